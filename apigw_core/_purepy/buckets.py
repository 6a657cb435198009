"""Pure-Python twin of native/src/buckets.c: the same table, the same numbers.

Strategy.  The table is a flat array of 64-bit words (a ``memoryview`` cast to ``Q``
over the shared mapping) with exactly the C layout (apigw/buckets.h): a 64-byte header
then groups of a fingerprint line and eight 64-byte slots.  Every operation is the C one transcribed with Python
ints, masked to 64 bits where C wraps (the hash) and range-checked beforehand where C
would overflow (``check_*``), so both give identical results bit for bit; the
differential tests hold them to it.  What the twin cannot do is an atomic
compare-and-swap, so it serialises whole operations instead: the wrapper holds an
exclusive ``flock`` on the table file (plus a thread lock) around each call.  Twin
processes sharing one table therefore exclude each other; a twin and a C process do not
(the C side locks slots with CAS), so one table is used by one implementation at a time
(all workers of a gateway import the same build).  See apigw_core/buckets.py for the
algorithm and its worst case.
"""

from __future__ import annotations

import struct

M64 = (1 << 64) - 1
MAGIC = 0x31544B4257474941  # b"AIGWBKT1" read as a little-endian word
VERSION = 1
HEADER_WORDS = 8            # magic, version, slots, group size, seed, reserved x3
GROUP = 8                   # slots per group; a key may live in one of two groups
FP_WORDS = 8                # a group opens with its slots' fingerprints (one cache line)
SLOT_WORDS = 8              # lock, claim, kind, a, b, p1, p2, reserved
# limits that keep every intermediate of the C code inside int64
TIME_MAX = 1 << 61          # |now|, |start|, period
FULL_MAX = 1 << 62          # calls * period_ns, counter values
AGE_SEM = -TIME_MAX - 1     # an idle semaphore is the first to be evicted

KIND_BUCKET, KIND_COUNTER, KIND_SEM = 1, 2, 3
# word offsets inside a slot
W_LOCK, W_CLAIM, W_KIND, W_A, W_B, W_P1, W_P2 = range(7)

P1 = 0x9E3779B185EBCA87
P2 = 0xC2B2AE3D27D4EB4F
P3 = 0x165667B19E3779F9
FP_SALT = 0x5BD1E9955BD1E995

OK, E_FULL, E_INVAL = 0, -1, -2


class BucketTableFull(RuntimeError):
    """Neither of the key's two groups has a slot free or idle enough to evict."""


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & M64


def hash64(key: bytes, seed: int) -> int:
    """A seeded 64-bit hash (xxHash64-like single lane; not XXH64 itself)."""
    n = len(key)
    h = (seed + P3 + n * P1) & M64
    if n % 8:
        key = key + bytes(8 - n % 8)
    for (w,) in struct.iter_unpack("<Q", key):
        k = (_rotl((w * P2) & M64, 31) * P1) & M64
        h = ((_rotl(h ^ k, 27) * P1) + P2) & M64
    h ^= h >> 33
    h = (h * P2) & M64
    h ^= h >> 29
    h = (h * P3) & M64
    h ^= h >> 32
    return h


def key_hashes(key: bytes, seed: int, kind: int) -> tuple[int, int]:
    """(group hash, fingerprint): two independently seeded hashes; kinds never meet."""
    s = seed ^ kind
    fp = hash64(key, s ^ FP_SALT)
    return hash64(key, s), fp or 1  # fingerprint 0 marks an empty slot


def _s64(x: int) -> int:
    return x - (1 << 64) if x >> 63 else x


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def check_time(*ts: int) -> None:
    for t in ts:
        if not -TIME_MAX <= t <= TIME_MAX:
            raise ValueError(f"time {t} ns out of range (|t| <= 2**61)")


def check_bucket(calls: int, period_ns: int) -> None:
    if calls < 1 or period_ns < 1 or calls * period_ns > FULL_MAX:
        raise ValueError("need calls >= 1, period_ns >= 1 and calls * period_ns <= 2**62")


def check_count(n: int, limit: int = FULL_MAX) -> None:
    if not 0 <= n <= FULL_MAX or not 0 <= limit <= FULL_MAX:
        raise ValueError("counts must be in 0 .. 2**62")


class Table:
    """The operations on one mapped table; the caller serialises calls (see module doc)."""

    def __init__(self, buf) -> None:
        self.w = memoryview(buf).cast("B").cast("Q")
        w = self.w
        why = None
        if len(w) < HEADER_WORDS or w[0] != MAGIC or w[1] != VERSION:
            why = "not a bucket table (bad magic or version)"
        else:
            self.slots, self.group, self.seed = w[2], w[3], w[4]
            if check_slots(self.slots) is not None or self.group != min(GROUP, self.slots) \
                    or len(w) * 8 < table_bytes(self.slots):
                why = "bucket table header does not match its size"
        if why:
            w.release()
            raise ValueError(why)
        self.groups = self.slots // self.group
        self.gwords = FP_WORDS + self.group * SLOT_WORDS

    @staticmethod
    def init(buf, slots: int, seed: int) -> None:
        """Writes the header into zeroed memory of size ``table_bytes(slots)``."""
        w = memoryview(buf).cast("B").cast("Q")
        w[1], w[2], w[3], w[4] = VERSION, slots, min(GROUP, slots), seed & M64
        w[0] = MAGIC
        w.release()

    def detach(self) -> None:
        self.w.release()

    # -- slots -------------------------------------------------------------------
    def _groups(self, h: int) -> tuple[int, ...]:
        """The key's two candidate groups (one when the table has one group)."""
        a = ((h & 0xFFFFFFFF) * self.groups) >> 32  # 0 .. groups-1 with no division
        if self.groups == 1:
            return (a,)
        b = ((h >> 32) * self.groups) >> 32
        return (a, b if b != a else (a + 1) % self.groups)

    def _fp_at(self, g: int) -> int:
        return HEADER_WORDS + g * self.gwords

    def _slot_at(self, g: int, j: int) -> int:
        return HEADER_WORDS + g * self.gwords + FP_WORDS + j * SLOT_WORDS

    def _find(self, key: bytes, kind: int) -> tuple[int, tuple, int]:
        """(slot base or -1, groups, fp): the key's slot if it has one.  A group fills
        from its front and never empties, so its scan stops at the first free slot."""
        h, fp = key_hashes(key, self.seed, kind)
        groups = self._groups(h)
        w = self.w
        for g in groups:
            f0 = self._fp_at(g)
            for j in range(self.group):
                f = w[f0 + j]
                if f == fp:
                    return self._slot_at(g, j), groups, fp
                if f == 0:
                    break
        return -1, groups, fp

    def _idle_age(self, b: int, now: int | None) -> int | None:
        """The slot's age when it may be evicted at `now`, else None."""
        w = self.w
        kind = w[b + W_KIND]
        if kind == KIND_SEM:
            return AGE_SEM if w[b + W_A] == 0 else None
        if now is None:
            return None
        if kind == KIND_BUCKET:
            t, calls, period = _s64(w[b + W_B]), w[b + W_P1], w[b + W_P2]
            if now >= t and w[b + W_A] + min(now - t, period) * calls >= calls * period:
                return t
            return None
        if kind == KIND_COUNTER:
            period = _s64(w[b + W_P2])
            end = _s64(w[b + W_B])
            return end - period if period > 0 and now >= end else None
        return None

    def _claim(self, key: bytes, kind: int, now: int | None) -> tuple[int, bool]:
        """(slot base, new): the key's slot; if it has none, the first free slot of the
        less occupied of its groups (ties: the first), else the slot of the two groups
        idle longest (ties: first in group order)."""
        b, groups, fp = self._find(key, kind)
        if b >= 0:
            return b, False
        w = self.w
        used = []
        for g in groups:
            f0 = self._fp_at(g)
            used.append(next((j for j in range(self.group) if w[f0 + j] == 0), self.group))
        gi = min(range(len(groups)), key=used.__getitem__)
        victim, vfp = -1, -1
        if used[gi] < self.group:
            victim = self._slot_at(groups[gi], used[gi])
            vfp = self._fp_at(groups[gi]) + used[gi]
        else:
            best = None
            for g in groups:
                for j in range(self.group):
                    c = self._slot_at(g, j)
                    age = self._idle_age(c, now)
                    if age is not None and (best is None or age < best):
                        victim, vfp, best = c, self._fp_at(g) + j, age
        if victim < 0:
            raise BucketTableFull("bucket table full: no idle slot in the key's groups")
        for k in range(W_KIND, SLOT_WORDS):
            w[victim + k] = 0
        w[victim + W_KIND] = kind
        w[vfp] = fp
        return victim, True

    # -- token bucket --------------------------------------------------------------
    def _refresh(self, b: int, calls: int, period: int, now: int, new: bool) -> int:
        """Brings the bucket to `now` (refill), converts it to new parameters; returns
        its credit (token-nanoseconds: one token = period_ns credit)."""
        w = self.w
        full = calls * period
        ocalls, operiod = w[b + W_P1], w[b + W_P2]
        if new or ocalls == 0 or operiod == 0:  # (0: a holder died mid-claim)
            c, t = full, now
        else:
            c, t = w[b + W_A], _s64(w[b + W_B])
            if now > t:
                c = min(ocalls * operiod, c + min(now - t, operiod) * ocalls)
                t = now
            if ocalls != calls or operiod != period:  # keep whole tokens, clamp
                c = min(full, (c // operiod) * period)
        w[b + W_B] = t & M64
        w[b + W_P1], w[b + W_P2] = calls, period
        return c

    def _wait(self, b: int, now: int, deficit: int, calls: int) -> int:
        """ns from `now` until `deficit` credits have refilled; refill runs from the
        bucket's last update, later than `now` when a slower caller's clock reading
        arrives after a faster one's."""
        t = _s64(self.w[b + W_B])
        return min((1 << 63) - 1, _ceil_div(deficit, calls) + max(0, t - now))

    def take(self, key: bytes, calls: int, period: int, n: int, now: int
             ) -> tuple[bool, int, int]:
        b, new = self._claim(key, KIND_BUCKET, now)
        c = self._refresh(b, calls, period, now, new)
        need = n * period
        if n > calls:
            allowed, wait = False, -1
        elif c >= need:
            c -= need
            allowed, wait = True, 0
        else:
            allowed, wait = False, self._wait(b, now, need - c, calls)
        self.w[b + W_A] = c
        return allowed, c // period, wait

    def refund(self, key: bytes, calls: int, period: int, n: int, now: int) -> None:
        b, _, _ = self._find(key, KIND_BUCKET)
        if b < 0:
            return  # never taken (or evicted full): nothing to give back
        c = self._refresh(b, calls, period, now, False)
        self.w[b + W_A] = min(calls * period, c + n * period)

    def peek(self, key: bytes, calls: int, period: int, now: int) -> tuple[int, int]:
        b, _, _ = self._find(key, KIND_BUCKET)
        if b < 0:
            return calls, 0
        c = self._refresh(b, calls, period, now, False)
        self.w[b + W_A] = c
        return c // period, (0 if c >= period else self._wait(b, now, period - c, calls))

    # -- fixed window counter --------------------------------------------------------
    def count(self, key: bytes, limit: int, period: int, start: int, n: int, now: int,
              force: bool) -> tuple[bool, int, int]:
        b, new = self._claim(key, KIND_COUNTER, now)
        w = self.w
        end = start + ((now - start) // period + 1) * period if period > 0 else 0
        if new or _s64(w[b + W_P2]) != period or (period > 0 and end > _s64(w[b + W_B])):
            w[b + W_A], w[b + W_B], w[b + W_P2] = 0, end & M64, period
        a = w[b + W_A]
        allowed = a + n <= limit
        if allowed or force:
            a = min(FULL_MAX, a + n)
            w[b + W_A] = a
        w[b + W_P1] = limit
        renew = _s64(w[b + W_B]) - now if period > 0 else 0
        return allowed, max(0, limit - a), renew

    # -- semaphore -------------------------------------------------------------------
    def acquire(self, key: bytes, max_count: int) -> bool:
        b, _ = self._claim(key, KIND_SEM, None)
        w = self.w
        w[b + W_P1] = max_count
        if w[b + W_A] < max_count:
            w[b + W_A] += 1
            return True
        return False

    def release(self, key: bytes) -> None:
        b, _, _ = self._find(key, KIND_SEM)
        if b >= 0 and self.w[b + W_A] > 0:
            self.w[b + W_A] -= 1


def check_slots(slots: int) -> str | None:
    """Why `slots` cannot be a table's size, or None."""
    if not 1 <= slots <= 1 << 32:
        return "slots must be in 1 .. 2**32"
    if slots > GROUP and slots % GROUP:
        return f"slots over {GROUP} must be a multiple of {GROUP}"
    return None


def table_bytes(slots: int) -> int:
    g = min(GROUP, slots)
    return 8 * (HEADER_WORDS + (slots // g) * (FP_WORDS + g * SLOT_WORDS))
