"""Which member of a pool serves a request: priority groups, weights, affinity.

Strategy (APIM pools, nginx's balancer):
- members are grouped by priority, lowest number first; a group is used only when no
  member of the groups before it is available (breaker open, unhealthy or ejected: the
  caller says, per member, through `available`);
- within a group, nginx's smooth weighted round-robin: each pick adds every candidate's
  weight to its current weight, takes the largest and subtracts the candidates' total from
  it, so weights 3:1 go a a b a, a a b a (interleaved, never a burst of three), and equal
  weights are plain round-robin;
- `exclude` holds the members a request tried already (a retry, a connect failure): they
  count as unavailable for this pick, unless nothing else is available at all;
- cookie affinity: the request's cookie names the member that served the client before
  (by an opaque token, never an address); it is kept while that member is available.
The result is a member index, or None when no member is available.
"""

from __future__ import annotations

import hashlib
from typing import Collection, Optional, Sequence

from ..config import PoolMemberConfig

__all__ = ["Balancer", "affinity_token", "cookie_value"]


def affinity_token(name: str) -> str:
    """The cookie value that names member `name` (stable across reloads and workers)."""
    return hashlib.sha256(name.encode()).hexdigest()[:16]


def cookie_value(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> Optional[bytes]:
    """The value of cookie `name` in the request's Cookie fields (RFC 6265 §5.4)."""
    for n, v in headers:
        if n != b"cookie":
            continue
        for pair in v.split(b";"):
            k, eq, val = pair.strip().partition(b"=")
            if eq and k == name:
                return val.strip().strip(b'"')
    return None


class Balancer:
    """One pool's member choice.  `current` holds the smooth round-robin state."""

    __slots__ = ("names", "weights", "groups", "current", "tokens", "cycle", "pos")

    def __init__(self, members: Sequence[PoolMemberConfig]) -> None:
        self.names = [m.backend for m in members]
        self.weights = [m.weight for m in members]
        by_priority: dict[int, list[int]] = {}
        for i, m in enumerate(members):
            by_priority.setdefault(m.priority, []).append(i)
        self.groups = [by_priority[p] for p in sorted(by_priority)]
        self.current = [0] * len(members)
        self.tokens = {affinity_token(n).encode(): i for i, n in enumerate(self.names)}
        # With every member available the smooth order repeats every sum(weights) picks:
        # computed once, then each pick is an index (`pick(..., every=True)`).
        first = self.groups[0]
        period = sum(self.weights[i] for i in first)
        self.cycle: list[int] = []
        if period <= 4096:
            ok = [True] * len(members)
            self.cycle = [self._smooth(first, ok) for _ in range(period)]  # type: ignore[misc]
            self.current = [0] * len(members)
        self.pos = 0

    def pick(self, ok: list[bool], exclude: Collection[str] = (),
             affinity: Optional[bytes] = None, every: bool = False) -> Optional[int]:
        """A member index; `ok[i]`: member i is available (the caller asks its breaker and
        health); `every`: all of them are."""
        if every and not exclude and affinity is None and self.cycle:
            pos = self.pos
            self.pos = pos + 1 if pos + 1 < len(self.cycle) else 0
            return self.cycle[pos]
        if affinity is not None:
            i = self.tokens.get(affinity)
            if i is not None and ok[i] and self.names[i] not in exclude:
                return i
        if exclude:
            names = self.names
            fresh = [a and names[i] not in exclude for i, a in enumerate(ok)]
            if any(fresh):
                ok = fresh
        for group in self.groups:
            best = self._smooth(group, ok)
            if best is not None:
                return best
        return None

    def _smooth(self, group: list[int], ok: list[bool]) -> Optional[int]:
        cur, weights = self.current, self.weights
        best = None
        total = 0
        for i in group:
            if not ok[i]:
                continue
            w = weights[i]
            cur[i] += w
            total += w
            if best is None or cur[i] > cur[best]:
                best = i
        if best is not None:
            cur[best] -= total
        return best
