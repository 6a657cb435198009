"""APIM's request tracing: debug credentials, `Apim-Debug-Authorization`, `GET /traces/{id}`.

Strategy.  `POST /debug-credentials` (admin) with `{"api": "NAME"}` issues a token valid
one hour for that API: `NAME.EXPIRY.MAC` (base64url), the MAC an HMAC-SHA256 under a key
made when the process starts, so nothing is stored per token and a token cannot be forged
or moved to another API.  A request's cost without tracing is one boolean test: only after
credentials were issued does `Telemetry.wrap` look for the header (`begin`).  A valid
token hangs a `Trace` on the request's Record; routing checks its API (`routed`), the
pipeline of a traced request runs as its traced twin (tracetwin.py: every policy, nested
ones too, with scope, section, paths, duration, decision and the values its expressions
produced), the backend attempts and the `trace` policy's messages come from the Record at
the end (`finish`), secrets are scrubbed (secret named values back to `{{name}}`; the
token, Authorization, cookies and subscription keys to REDACTED) and the document (flat
`entries`, and APIM's `traceEntries: {inbound: [{source, timestamp, elapsed, data}], ...}`)
is stored (`GET /traces/{id}`).  A wrong or expired token gets
`Apim-Debug-Authorization-Expired` / `Apim-Debug-Authorization-WrongAPI: true` and no trace.

With `--workers N` the key and the "credentials were issued" flag are made when this
module is imported, in the supervisor before it forks (the flag is a byte of a shared
anonymous mapping), so a token issued by one worker's admin listener works on every
worker, and traces go to the supervisor's trace directory (tracestore.py), so a GET that
lands on any worker finds a trace any worker recorded.  The header is removed from the
request before it is forwarded: the token is a credential.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import mmap
import os
import secrets
import time
from datetime import datetime, timezone
from typing import Any, Optional

from .tracestore import open_store
from .tracetwin import traced_program

__all__ = ["DebugTracing", "Trace", "traced_program", "apim_entries", "scrub", "HEADER"]

HEADER = b"apim-debug-authorization"
VALID_FOR = 3600.0          # seconds a token is valid (APIM: one hour)
RING = 100                  # traces kept
REDACTED = "REDACTED"
_MAX_ENTRIES = 2000         # entries of one trace (a retry loop cannot grow it without end)
_SECRET_HEADERS = (b"authorization", b"proxy-authorization", b"ocp-apim-subscription-key",
                   b"cookie")
_SECTIONS = ("inbound", "backend", "outbound", "on-error")
_now = time.perf_counter
_KEY = secrets.token_bytes(32)      # shared by forked workers (see the module docstring)
_ISSUED = mmap.mmap(-1, 1)          # MAP_SHARED | MAP_ANONYMOUS: [0] = 1 once issued


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class Trace:
    """One traced request: `entries` in the order things happened (ms from the start);
    `stack` the policy entries open now (tracetwin.py); `secrets` the strings scrubbed
    from the finished document."""

    __slots__ = ("id", "api", "start", "wall", "entries", "stack", "secrets")
    clock = staticmethod(_now)

    def __init__(self, api: str, start: float) -> None:
        self.id = secrets.token_hex(16)
        self.api = api
        self.start = start
        self.wall = time.time() - (_now() - start)     # the start on the wall clock
        self.entries: list[dict] = []
        self.stack: list[dict] = []
        self.secrets: dict[str, str] = {}             # text -> what replaces it

    def add(self, kind: str, t: float, **fields: Any) -> None:
        fields["kind"] = kind
        fields["at_ms"] = round((t - self.start) * 1000, 3)
        self.entries.append(fields)

    def add_policy(self, policy: str, scope: str, section: str, path: str,
                   apim_path: str, policy_id: str) -> dict:
        """A policy's entry, opened now (`_t0`); tracetwin closes it."""
        t = _now()
        e = {"kind": "policy", "at_ms": round((t - self.start) * 1000, 3), "policy": policy,
             "scope": scope, "section": section, "path": path, "apim_path": apim_path,
             "_t0": t}
        if policy_id:
            e["id"] = policy_id
        if len(self.entries) < _MAX_ENTRIES:
            self.entries.append(e)
        return e

    def secure(self, config: Any, ctx: Any) -> None:
        """Remember what must not appear: secret named values, the subscription key."""
        nv = getattr(config, "named_values", None) or {}
        for name in getattr(config, "secret_values", ()) or ():
            value = nv.get(name)
            if isinstance(value, str) and len(value) >= 3:
                self.secrets[value] = "{{%s}}" % name
        if ctx is not None and ctx.subscription_key:
            self.secrets[ctx.subscription_key] = REDACTED


class DebugTracing:
    """The process's key, the ring of finished traces and the header checks."""

    def __init__(self, api_names: Any, key: Optional[bytes] = None) -> None:
        self._key = _KEY if key is None else key
        self.apis = set(api_names)
        self.ring = open_store(RING)     # shared by the workers (tracestore.py)

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
                    tr = rec.debug = Trace(api, rec.start)
                    tr.secrets[v.decode("latin-1").strip()] = REDACTED
                    for n2, v2 in headers:      # credentials the request carries
                        if n2 in _SECRET_HEADERS and len(v2) >= 3:
                            tr.secrets[v2.decode("latin-1")] = REDACTED
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
        for e in tr.stack:                 # a step cut short (the client went away)
            e.pop("_t0", None)
            e.setdefault("decision", "unfinished")
        tr.entries.sort(key=lambda e: e["at_ms"])   # stable: same-time entries keep order
        ctx = rec.ctx
        if ctx is not None:
            for n, v in ctx.request.headers.items:   # as policies left them
                if n in _SECRET_HEADERS and len(v) >= 3:
                    tr.secrets.setdefault(v.decode("latin-1"), REDACTED)
        out = {"id": tr.id, "traceId": tr.id, "api": tr.api, "status": status,
               "worker": os.getpid(),
               "duration_ms": round((end - tr.start) * 1000, 3),
               "time": datetime.now(timezone.utc).isoformat(), "entries": tr.entries,
               "traceEntries": apim_entries(tr)}
        if ctx is not None and ctx.last_error is not None:
            out["last_error"] = dataclasses.asdict(ctx.last_error)
            out["last_error"].pop("headers", None)
        self.ring.put(tr.id, scrub(out, tr.secrets))

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


# -- the document ------------------------------------------------------------------------

def _timespan(seconds: float) -> str:
    """.NET's TimeSpan text, as APIM writes `elapsed`: `00:00:00.0012345`."""
    ticks = max(0, round(seconds * 1e7))
    s, frac = divmod(ticks, 10_000_000)
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    return f"{h:02d}:{m:02d}:{s:02d}.{frac:07d}"


def _timestamp(t: float) -> str:
    whole = int(t)
    return datetime.fromtimestamp(whole, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + \
        f".{int((t - whole) * 1e7):07d}Z"


_ENTRY_KEYS = ("kind", "at_ms", "policy", "section", "source")


def apim_entries(tr: Trace) -> dict[str, list[dict]]:
    """APIM's shape: `{inbound: [{source, timestamp, elapsed, data}], backend, outbound,
    on-error}`, elapsed counted from the start of the request."""
    out: dict[str, list[dict]] = {s: [] for s in _SECTIONS}
    for e in tr.entries:
        kind = e["kind"]
        if kind == "policy":
            section, source = e["section"], e["policy"]
        elif kind == "backend":
            section, source = "backend", "forward-request"
        elif kind == "trace":
            section, source = e.get("section") or "inbound", e.get("source") or "trace"
        else:
            section, source = "inbound", kind
        at = e["at_ms"] / 1000
        out.setdefault(section, []).append({
            "source": source, "timestamp": _timestamp(tr.wall + at),
            "elapsed": _timespan(at),
            "data": {k: v for k, v in e.items() if k not in _ENTRY_KEYS}})
    return out


def scrub(doc: Any, secrets: dict[str, str]) -> Any:
    """`doc` with every secret string replaced, at any depth (keys too)."""
    if not secrets:
        return doc
    order = sorted(secrets, key=len, reverse=True)   # a longer secret before its parts

    def clean(v: Any) -> Any:
        if isinstance(v, str):
            for s in order:
                if s in v:
                    v = v.replace(s, secrets[s])
            return v
        if isinstance(v, dict):
            return {clean(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v
    return clean(doc)


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
    if not tid:       # the list: ids of the traces kept, newest first
        await _reply(stream, 200, {"traces": gw.telemetry.debug.ring.ids()})
        return
    body = gw.telemetry.debug.ring.get(tid)
    if body is None:
        await _reply(stream, 404, {"error": f"no trace {tid!r} (kept: the latest {RING})"})
        return
    await stream.reply(200, [(b"content-type", b"application/json"),
                             (b"cache-control", b"no-store"),
                             (b"content-length", b"%d" % len(body))], body)


def add_routes(gw: Any) -> None:
    """`POST /debug-credentials`, `GET /traces/{id}` (`GET /traces/`: the ids kept) on
    the admin listener."""
    gw.add_admin_route(b"/debug-credentials", _credentials, methods=(b"POST",))
    gw.add_admin_route(b"/traces/", _trace, prefix=True)
