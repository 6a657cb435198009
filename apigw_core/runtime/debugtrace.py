"""APIM's request tracing: debug credentials, `Apim-Debug-Authorization`, `GET /traces/{id}`.

Strategy.  `POST /debug-credentials` (admin) with `{"api": "NAME"}` issues a token valid
one hour for that API: `NAME.EXPIRY.MAC` (base64url), the MAC an HMAC-SHA256 under a key
made when the process starts, so nothing is stored per token and a token cannot be forged
or moved to another API.  A request's cost without tracing is one boolean test: only after
credentials were issued does `Telemetry.wrap` look for the header (`begin`).  A valid
token hangs a `Trace` on the request's Record; routing checks its API (`routed`), the
pipeline of a traced request runs with each step wrapped (`traced_program`: the policy's
scope, section, path, duration and decision), the backend attempts and the `trace`
policy's messages come from the Record at the end (`finish`), and the trace lands in a
bounded ring (`GET /traces/{id}`).  A wrong or expired token gets
`Apim-Debug-Authorization-Expired` / `Apim-Debug-Authorization-WrongAPI: true` and no trace.

With `--workers N` the key and the "credentials were issued" flag are made when this
module is imported, in the supervisor before it forks (the flag is a byte of a shared
anonymous mapping), so a token issued by one worker's admin listener works on every
worker; the ring is per process: a trace is kept by the worker that served the request
(shared storage of traces is not built).  The header is removed from the request before
it is forwarded: the token is a credential.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import hashlib
import hmac
import json
import mmap
import secrets
import time
from datetime import datetime, timezone
from types import GeneratorType
from typing import Any, Optional

from ..gateway.pipeline.contract import Answer

__all__ = ["DebugTracing", "Trace", "traced_program", "HEADER"]

HEADER = b"apim-debug-authorization"
VALID_FOR = 3600.0          # seconds a token is valid (APIM: one hour)
RING = 100                  # traces kept
_now = time.perf_counter
_KEY = secrets.token_bytes(32)      # shared by forked workers (see the module docstring)
_ISSUED = mmap.mmap(-1, 1)          # MAP_SHARED | MAP_ANONYMOUS: [0] = 1 once issued


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class Trace:
    """One traced request: `entries` in the order things happened (ms from the start)."""

    __slots__ = ("id", "api", "start", "entries")

    def __init__(self, api: str, start: float) -> None:
        self.id = secrets.token_hex(16)
        self.api = api
        self.start = start
        self.entries: list[dict] = []

    def add(self, kind: str, t: float, **fields: Any) -> None:
        fields["kind"] = kind
        fields["at_ms"] = round((t - self.start) * 1000, 3)
        self.entries.append(fields)


class DebugTracing:
    """The process's key, the ring of finished traces and the header checks."""

    def __init__(self, api_names: Any, key: Optional[bytes] = None) -> None:
        self._key = _KEY if key is None else key
        self.apis = set(api_names)
        self.ring: collections.OrderedDict[str, dict] = collections.OrderedDict()

    @property
    def active(self) -> bool:
        """Credentials were issued (by any worker): requests are looked at."""
        return _ISSUED[0] == 1

    def _mac(self, body: bytes) -> str:
        return _b64(hmac.new(self._key, body, hashlib.sha256).digest()[:18])

    def issue(self, api: str, now: Optional[float] = None) -> dict:
        """`{"token", "expires"}` for `api` (the caller checked it exists)."""
        exp = int((time.time() if now is None else now) + VALID_FOR)
        body = f"{_b64(api.encode())}.{exp}"
        _ISSUED[0] = 1
        return {"token": f"{body}.{self._mac(body.encode())}",
                "expires": datetime.fromtimestamp(exp, timezone.utc).strftime(
                    "%Y-%m-%dT%H:%M:%SZ")}

    def check(self, token: bytes, now: Optional[float] = None) -> tuple[Optional[str], str]:
        """(api, "") for a good token; (None, "expired" | "invalid") otherwise."""
        try:
            text = token.decode("ascii").strip()
            name, exp, mac = text.split(".")
            if not hmac.compare_digest(mac, self._mac(f"{name}.{exp}".encode())):
                return None, "invalid"
            api = base64.urlsafe_b64decode(name + "=" * (-len(name) % 4)).decode()
            if int(exp) <= (time.time() if now is None else now):
                return None, "expired"
            return api, ""
        except (UnicodeError, ValueError):
            return None, "invalid"

    def begin(self, rec: Any, headers: list) -> None:
        """Look for the header; a good token starts a trace on `rec`."""
        for i, (n, v) in enumerate(headers):
            if n == HEADER:
                del headers[i]           # not forwarded: the token is a credential
                api, why = self.check(v)
                if api is None:
                    # APIM answers an unusable token with -Expired (a forged one included)
                    rec.resp_headers = [(b"apim-debug-authorization-expired", b"true")]
                else:
                    rec.debug = Trace(api, rec.start)
                return

    @staticmethod
    def routed(rec: Any, route: Any, host: bytes) -> None:
        """Routing is done: a trace for another API is dropped (`-WrongAPI`)."""
        tr = rec.debug
        if route.api.name != tr.api:
            rec.debug = None
            rec.resp_headers = [(b"apim-debug-authorization-wrongapi", b"true")]
            return
        rec.resp_headers = [(b"apim-trace-id", tr.id.encode())]
        tr.add("routing", _now(), api=route.api.name, host=host.decode("latin-1"),
               backend=route.backend.name, backend_path=route.path.decode("latin-1"))

    def finish(self, rec: Any, status: int, end: float) -> None:
        tr = rec.debug
        for i, (t0, backend, authority, t1) in enumerate(rec.debug_attempts or ()):
            tr.add("backend", t0, attempt=i + 1, backend=backend,
                   address=authority.decode("latin-1"),
                   duration_ms=round(((t1 or rec.t_head or end) - t0) * 1000, 3))
        tr.entries.sort(key=lambda e: e["at_ms"])   # stable: same-time entries keep order
        ctx = rec.ctx
        out = {"id": tr.id, "api": tr.api, "status": status,
               "duration_ms": round((end - tr.start) * 1000, 3),
               "time": datetime.now(timezone.utc).isoformat(), "entries": tr.entries}
        if ctx is not None and ctx.last_error is not None:
            out["last_error"] = dataclasses.asdict(ctx.last_error)
            out["last_error"].pop("headers", None)
        self.ring[tr.id] = out
        while len(self.ring) > RING:
            self.ring.popitem(last=False)

    # -- admin ---------------------------------------------------------------------------

    def credentials(self, body: bytes) -> tuple[int, dict]:
        try:
            data = json.loads(body or b"null")
        except ValueError:
            return 400, {"error": "the body is not JSON"}
        api = data.get("api") if isinstance(data, dict) else None
        if not isinstance(api, str):
            return 400, {"error": 'expected {"api": "NAME"}'}
        if api not in self.apis:
            return 404, {"error": f"no API named {api!r}"}
        return 200, self.issue(api)


# -- the instrumented pipeline of a traced request ---------------------------------------

class _Step:
    """A program step that records what it did in the trace; everything else (name,
    scope, apim_path, ... read by the engine for errors) is the step's own."""

    __slots__ = ("_step", "_trace")

    def __init__(self, step: Any, trace: Trace) -> None:
        self._step, self._trace = step, trace

    def __getattr__(self, name: str) -> Any:
        return getattr(self._step, name)

    def _log(self, t0: float, decision: str, **more: Any) -> None:
        s = self._step
        self._trace.add("policy", t0, policy=s.name, scope=s.scope, section=s.section,
                        path=s.path, duration_ms=round((_now() - t0) * 1000, 3),
                        decision=decision, **more)

    def apply(self, ctx: Any) -> Any:
        t0 = _now()
        try:
            r = self._step.apply(ctx)
        except Exception as e:
            self._log(t0, "error", error=str(getattr(e, "reason", type(e).__name__)))
            raise
        if r is None:
            self._log(t0, "continue")
            return None
        if isinstance(r, Answer):
            self._log(t0, "answer", status=r.status)
            return r
        if type(r) is GeneratorType:
            return self._gen(r, t0)
        return r

    def _gen(self, gen: Any, t0: float) -> Any:
        try:
            r = yield from gen
        except Exception as e:
            self._log(t0, "error", error=str(getattr(e, "reason", type(e).__name__)))
            raise
        if isinstance(r, Answer):
            self._log(t0, "answer", status=r.status)
        else:
            self._log(t0, "continue")
        return r


def traced_program(program: Any, trace: Trace) -> Any:
    """`program` with each top-level step of every section recording into `trace`."""
    def wrap(steps: tuple) -> tuple:
        return tuple(_Step(s, trace) for s in steps)
    return dataclasses.replace(program, inbound=wrap(program.inbound),
                               backend=wrap(program.backend),
                               outbound=wrap(program.outbound),
                               on_error=wrap(program.on_error))


# -- the admin endpoints -----------------------------------------------------------------

_MAX_BODY = 64 * 1024


async def _reply(stream: Any, status: int, doc: Any) -> None:
    body = json.dumps(doc).encode()
    await stream.reply(status, [(b"content-type", b"application/json"),
                                (b"cache-control", b"no-store"),
                                (b"content-length", b"%d" % len(body))], body)


async def _credentials(gw: Any, stream: Any) -> None:
    from ..protocol import Data, EndOfMessage
    chunks: list[bytes] = []
    size = 0
    while True:
        ev = await stream.receive_body()
        if ev.__class__ is Data:
            size += len(ev.data)
            if size > _MAX_BODY:
                await _reply(stream, 413, {"error": "body too large"})
                return
            chunks.append(ev.data)
        elif ev.__class__ is EndOfMessage:
            break
        else:
            return
    dbg: DebugTracing = gw.telemetry.debug
    dbg.apis = {api.name for api in gw.config.apis}   # the config now (after reloads)
    status, doc = dbg.credentials(b"".join(chunks))
    await _reply(stream, status, doc)


async def _trace(gw: Any, stream: Any) -> None:
    tid = stream.request.target.partition(b"?")[0][len(b"/traces/"):].decode("latin-1")
    doc = gw.telemetry.debug.ring.get(tid)
    if doc is None:
        await _reply(stream, 404, {"error": f"no trace {tid!r} (kept: the latest {RING})"})
        return
    await _reply(stream, 200, doc)


def add_routes(gw: Any) -> None:
    """`POST /debug-credentials`, `GET /traces/{id}` on the admin listener."""
    gw.add_admin_route(b"/debug-credentials", _credentials, methods=(b"POST",))
    gw.add_admin_route(b"/traces/", _trace, prefix=True)
