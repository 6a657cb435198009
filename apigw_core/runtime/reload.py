"""Hot reload: reading the config file again, what a reload may change, the status that
`GET /config` reports, and the file watch of `apigw serve --watch`.

Strategy.  A reload is all or nothing.  The file is read and validated exactly as at
startup (`load_config`), then compared with the running config on the parts that the
process captured when it started and cannot change under live sockets: `listeners` (bound
ports, TLS contexts), `admin` (its bind) and `server` (the limits each listener's drivers
and the connection limit hold).  A difference there refuses the whole reload with one error
per section ("listeners: changed; restart the gateway to apply"): applying the rest would
leave the process running a config that is in no file.  Everything else (APIs, backends,
operations, products, subscriptions, policies, named values) becomes a new `GatewayState`
that the gateway swaps in (runtime/gateway.py).  Errors are the config module's
"path: message" lines, which never print a named value or a key.

`--workers N`: the supervisor hands its workers concrete ports for `:0` listeners, so a
worker `pin`s a reloaded config the same way before comparing (a file that still says `:0`
has not changed its listeners).
"""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import datetime, timezone
from typing import Callable, Optional

from ..gateway.config import ConfigError, GatewayConfig, load_config

__all__ = ["ReloadRefused", "RESTART_ONLY", "read_config", "restart_only_changes",
           "load_reloadable", "ReloadStatus", "FileWatch", "pin_ports", "iso_time"]

# Sections a running process cannot apply (compared as a whole).
RESTART_ONLY = ("listeners", "admin", "server", "telemetry")


class ReloadRefused(Exception):
    """The new config is not applied; `errors` says why, one "path: message" each."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(self.errors))


def read_config(path: str) -> GatewayConfig:
    """The config file, validated; ReloadRefused with every error (or why it is unreadable)."""
    try:
        return load_config(path)
    except ConfigError as e:
        raise ReloadRefused(e.errors) from None
    except OSError as e:
        reason = e.strerror or str(e)
        raise ReloadRefused([f"cannot read {path}: {reason[:1].lower()}{reason[1:]}"]) \
            from None
    except RecursionError:  # the parsers recurse once per level of nesting
        raise ReloadRefused([f"cannot load {path}: nested too deeply"]) from None


def restart_only_changes(current: GatewayConfig, new: GatewayConfig) -> list[str]:
    """One error per section that differs and needs a restart."""
    return [f"{name}: changed; restart the gateway to apply" for name in RESTART_ONLY
            if getattr(current, name) != getattr(new, name)]


def load_reloadable(current: GatewayConfig,
                    pin: Optional[Callable[[GatewayConfig], GatewayConfig]] = None
                    ) -> GatewayConfig:
    """`current.source` read again, pinned, and checked against `current`: the config to
    swap in, or ReloadRefused."""
    new = read_config(current.source)
    if pin is not None:
        new = pin(new)
    changed = restart_only_changes(current, new)
    if changed:
        raise ReloadRefused(changed)
    return new


def pin_ports(new: GatewayConfig, started: GatewayConfig,
              pinned: GatewayConfig) -> GatewayConfig:
    """`new` with each `:0` listener (and admin) that was `:0` in `started` (the file the
    supervisor started from) given the port `pinned` (what the workers run) has there."""
    listeners = list(new.listeners)
    for i, lc in enumerate(listeners):
        if (lc.port == 0 and i < len(started.listeners) and started.listeners[i].port == 0
                and i < len(pinned.listeners)):
            listeners[i] = dataclasses.replace(lc, port=pinned.listeners[i].port,
                                               bind=pinned.listeners[i].bind)
    admin = new.admin
    if (admin is not None and admin.port == 0 and started.admin is not None
            and started.admin.port == 0 and pinned.admin is not None):
        admin = dataclasses.replace(admin, port=pinned.admin.port, bind=pinned.admin.bind)
    return dataclasses.replace(new, listeners=tuple(listeners), admin=admin)


def iso_time(t: float) -> str:
    """Epoch seconds as ISO 8601 UTC, to the millisecond: 2024-05-01T12:00:00.123Z."""
    return (datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"))


@dataclasses.dataclass
class ReloadStatus:
    """What `GET /config` says: the running config and the latest refused reload (cleared
    by the next reload that succeeds)."""

    version: int
    loaded_at: float
    source: str
    last_error: Optional[tuple[float, list[str]]] = None

    def to_json(self) -> bytes:
        err = None
        if self.last_error is not None:
            at, errors = self.last_error
            err = {"at": iso_time(at), "errors": errors}
        return json.dumps({"version": self.version, "loaded-at": iso_time(self.loaded_at),
                           "source": self.source, "pid": os.getpid(),
                           "last-error": err}).encode() + b"\n"


class FileWatch:
    """Tells when a file changed: its inode, size and mtime (ns) since the last look.
    An editor's write-then-rename changes the inode; a missing file is no change (it
    is probably being replaced), its reappearance is one."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._seen = self._signature()

    def _signature(self) -> Optional[tuple[int, int, int]]:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def changed(self) -> bool:
        sig = self._signature()
        if sig is None or sig == self._seen:
            return False
        self._seen = sig
        return True
