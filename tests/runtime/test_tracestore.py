"""The trace stores (runtime/tracestore.py): bounded in count and size, shared through a
directory by separate processes, ids checked (no path outside the directory)."""

from __future__ import annotations

import json
import multiprocessing
import os
import secrets

import pytest

from apigw_core.runtime import tracestore
from apigw_core.runtime.tracestore import DirRing, MemoryRing, open_store


def _doc(tid: str, n: int = 3) -> dict:
    return {"id": tid, "entries": [{"kind": "policy", "n": i} for i in range(n)]}


@pytest.mark.parametrize("kind", ["memory", "dir"])
def test_bounded_count_newest_kept(kind, tmp_path):
    ring = MemoryRing(5) if kind == "memory" else DirRing(str(tmp_path), 5)
    ids = [secrets.token_hex(16) for _ in range(12)]
    for tid in ids:
        ring.put(tid, _doc(tid))
    assert len(ring) == 5
    assert ring.ids() == ids[::-1][:5]
    assert ring.get(ids[0]) is None
    assert json.loads(ring.get(ids[-1]))["id"] == ids[-1]
    if kind == "dir":
        assert sorted(os.listdir(tmp_path)) == sorted(f"{t}.json" for t in ids[-5:])


def test_big_documents_are_cut_to_the_limit(monkeypatch):
    monkeypatch.setattr(tracestore, "MAX_BYTES", 4000)
    ring = MemoryRing(2)
    tid = secrets.token_hex(16)
    ring.put(tid, _doc(tid, 1000))
    body = ring.get(tid)
    assert len(body) <= 4000
    doc = json.loads(body)
    assert doc["truncated"] is True and 0 < len(doc["entries"]) < 1000
    assert doc["entries"][0] == {"kind": "policy", "n": 0}


def test_ids_are_checked(tmp_path):
    ring = DirRing(str(tmp_path), 5)
    (tmp_path.parent / "secret.json").write_text("{}")
    assert ring.get("../secret") is None
    with pytest.raises(ValueError):
        ring.put("../x", {})


def _writer(path: str, tid: str) -> None:
    DirRing(path, 50).put(tid, _doc(tid))


def test_another_process_reads_what_one_wrote(tmp_path, monkeypatch):
    tid = secrets.token_hex(16)
    p = multiprocessing.get_context("fork").Process(target=_writer,
                                                    args=(str(tmp_path), tid))
    p.start()
    p.join(30)
    assert p.exitcode == 0
    monkeypatch.setenv(tracestore.ENV, str(tmp_path))
    store = open_store(50)
    assert isinstance(store, DirRing)
    assert json.loads(store.get(tid))["id"] == tid
    monkeypatch.delenv(tracestore.ENV)
    assert isinstance(open_store(50), MemoryRing)


def test_latest_newest_first(tmp_path):
    ring = DirRing(str(tmp_path), 5)
    ids = [secrets.token_hex(16) for _ in range(3)]
    for tid in ids:
        ring.put(tid, _doc(tid))
    assert [d["id"] for d in ring.latest(2)] == ids[::-1][:2]
