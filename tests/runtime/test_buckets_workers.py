"""Who owns the shared bucket table: the supervisor makes it, every worker attaches.

With `--workers 2` the supervisor creates one table in /dev/shm before it forks; each
worker (a restarted one too) maps that very file, and the supervisor removes it when it
exits.  Seen from outside: the file's name carries the supervisor's pid, and
/proc/PID/maps of each worker lists it.  A gateway without workers makes its own private
table on first use (unlinked at once), and a reload keeps it: the buckets live on the
Gateway, not in the state a reload swaps.
"""

from __future__ import annotations

import glob
import os
import signal
from pathlib import Path

import trio

from apigw_core import buckets
from apigw_core.buckets import BucketTable
from apigw_core.runtime.gateway import Gateway
from inproc import config as make_config
from support import wait_until


def _children(pid: int) -> set[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return set()
    return {int(x) for x in text.split()}


def _maps(pid: int, path: str) -> bool:
    try:
        return path in Path(f"/proc/{pid}/maps").read_text()
    except FileNotFoundError:
        return False


def _tables(pid: int) -> list[str]:
    return glob.glob(os.path.join(buckets.SHM_DIR, f"apigw-buckets-{pid}-*"))


def _config(echo_url: str) -> dict:
    return {"listeners": [{"bind": "127.0.0.1:0"}],
            "backends": {"b": {"url": echo_url, "timeout": "5s"}},
            "apis": [{"name": "root", "path": "", "backend": "b"}],
            "server": {"shutdown-timeout": "2s"}}


def test_workers_attach_to_the_supervisors_table_which_goes_at_exit(gateway, echo):
    gw = gateway(_config(echo.url), workers=2)
    wait_until(lambda: len(_children(gw.pid)) == 2, message="two workers")
    [path] = wait_until(lambda: _tables(gw.pid), message="the supervisor's table")
    workers = _children(gw.pid)
    wait_until(lambda: all(_maps(w, path) for w in workers), message="workers map it")

    # it is a real table: another process attaches to it by name and shares its buckets
    with BucketTable(name=os.path.basename(path), create=False) as t:
        assert t.slots == 65536
        assert t.take(b"probe", 2, 10**9, 2, 0) == (True, 0, 0)
    with BucketTable(name=os.path.basename(path), create=False) as t:
        assert t.take(b"probe", 2, 10**9, 1, 0)[0] is False

    # a worker killed and restarted attaches to the same table
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: len(_children(gw.pid) - workers) == 1, message="a new worker")
    new = (_children(gw.pid) - workers).pop()
    wait_until(lambda: _maps(new, path), message="the new worker maps the same table")
    assert _tables(gw.pid) == [path]

    assert gw.stop() == 0
    assert not os.path.exists(path)


def test_one_process_has_a_private_table_that_a_reload_keeps():
    cfg = make_config({"b": {"url": "http://127.0.0.1:9/", "timeout": "1s"}})

    async def main() -> None:
        gw = Gateway(cfg)
        async with trio.open_nursery() as nursery:
            await nursery.start(gw.run)
            table = gw.buckets
            assert gw.buckets is table
            assert not os.path.exists(os.path.join(buckets.SHM_DIR, table.name))  # private
            assert table.take(b"k", 3, 10**9, 3, 0)[0]
            assert await gw.reload(cfg)
            assert gw.state.version == 2
            assert gw.buckets is table
            assert gw.buckets.take(b"k", 3, 10**9, 1, 0)[0] is False  # state kept
            gw.shutdown()

    trio.run(main)
