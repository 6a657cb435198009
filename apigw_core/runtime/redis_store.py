"""`RedisStore`: the limit policies' counters in a Redis server shared by several gateways.

Strategy.  Each decision is one Lua script run atomically by Redis (EVALSHA, one round
trip), with the same arithmetic as the shared-memory table's (apigw_core/_purepy/buckets.py)
so `store: redis` and `store: local` give the same answers to the same sequence of calls:

- token bucket (rate-limit, rate-limit-by-key): APIM v2's; it starts full at `calls` and
  refills continuously at `calls / period`, in integer "credit" (one token = `period`
  credit units, refill `calls` units per elapsed time unit, at most one period's worth); a
  take of n needs `n * period` credit, and a refused take takes nothing; a take of more
  than `calls` can never pass (retry_after: one period); new parameters keep the whole tokens;
  a refund gives back at most up to full, and only to a bucket that exists.
- fixed window (quota, quota-by-key): windows of `period` aligned on `start` (Unix time;
  period 0: one window forever); a count past the limit adds nothing unless `force`.

Time is Redis' own (`TIME`, microseconds), so gateways whose clocks differ still agree.
Numbers in Lua are doubles: every value stays an integer below 2**53 (credit is kept in
microseconds, or milliseconds when `calls * period` in microseconds would pass 2**52) and
is written with `%.0f`, never Lua's 14-digit default.  A bucket's key expires (PEXPIRE)
when it would be full again, and is deleted when it is full: a missing key *is* a full
bucket.  A window's key expires when the window ends.  Keys: `apigw:b:<key>` (buckets),
`apigw:q:<key>` (windows), so the two kinds never meet.

Failures: the client's deadline and breaker (runtime/redis.py) bound every call; whatever
keeps Redis from answering becomes `StoreUnavailable`, which the handler turns into the
policy's `on-store-failure` (runtime/limits.py).  An error reply (out of memory, a cluster
redirection) is a failure too, logged once per error code (MOVED, OOM, ...).

Lifecycle: `redis_stores(config, previous)` is called by `GatewayState`: `{"redis":
RedisStore}` when the config has a `redis:` section (kept across a reload that does not
change it, a new one when it does), and the state lists the store with its pools, so it
is closed like them: at shutdown, and once the last request of a replaced state is done.

Tests pass the time in (`clock`, microseconds; the script reads `ARGV` instead of `TIME`)
to hold the scripts to the local table's twin on the same sequences
(tests/runtime/test_redis_store.py); production leaves it None.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional

from ..gateway.config import GatewayConfig
from .limits import Decision, StoreUnavailable
from .redis import RedisClient, RedisError, RedisUnavailable, Script

__all__ = ["RedisStore", "redis_stores", "TAKE", "REFUND", "COUNT"]

log = logging.getLogger("apigw_core.runtime")

_PRELUDE = """
local function num(x) return string.format('%.0f', x) end
local function now_in(arg, unit)
  if arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return math.floor((tonumber(t[1]) * 1000000 + tonumber(t[2])) / unit)
end
"""

# The bucket brought to `now` (refill, new parameters), as the table's _refresh does.
_REFRESH = """
local function refresh(s, calls, period, now)
  local full = calls * period
  if not s[1] then return full, now end
  local c, t = tonumber(s[1]), tonumber(s[2])
  local ocalls, operiod = tonumber(s[3]), tonumber(s[4])
  if now > t then
    c = math.min(ocalls * operiod, c + math.min(now - t, operiod) * ocalls)
    t = now
  end
  if ocalls ~= calls or operiod ~= period then
    c = math.min(full, math.floor(c / operiod) * period)
  end
  return c, t
end
local function store(key, c, t, calls, period, now, unit)
  local full = calls * period
  if c >= full then redis.call('DEL', key) return end
  redis.call('HSET', key, 'c', num(c), 't', num(t), 'k', num(calls), 'p', num(period))
  -- full again after (full - c) / calls units, counted from t (t > now if time went back)
  local units = (full - c) / calls + math.max(0, t - now)
  redis.call('PEXPIRE', key, math.ceil(units * unit / 1000) + 1)
end
"""

# KEYS[1]; ARGV: calls, period (units), n, unit (us per unit), now ('' = TIME)
# -> {allowed 0/1, remaining, wait units (0 allowed, -1 never)}
TAKE = Script(_PRELUDE + _REFRESH + """
local calls, period, n, unit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local now = now_in(ARGV[5], unit)
local c, t = refresh(redis.call('HMGET', KEYS[1], 'c', 't', 'k', 'p'), calls, period, now)
local need = n * period
local allowed, wait = 0, 0
if n > calls then wait = -1
elseif c >= need then c = c - need allowed = 1
else wait = math.ceil((need - c) / calls) end
store(KEYS[1], c, t, calls, period, now, unit)
return {allowed, math.floor(c / period), wait}
""")

# KEYS[1]; ARGV as TAKE -> 1 if the bucket existed
REFUND = Script(_PRELUDE + _REFRESH + """
local calls, period, n, unit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local s = redis.call('HMGET', KEYS[1], 'c', 't', 'k', 'p')
if not s[1] then return 0 end
local now = now_in(ARGV[5], unit)
local c, t = refresh(s, calls, period, now)
store(KEYS[1], math.min(calls * period, c + n * period), t, calls, period, now, unit)
return 1
""")

# KEYS[1]; ARGV: limit, period (us, 0 = forever), start (us), n, force 0/1, now ('' = TIME)
# -> {allowed 0/1, remaining, us until the window renews (0: never)}
COUNT = Script(_PRELUDE + """
local limit, period, start, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local force = ARGV[5] == '1'
local now = now_in(ARGV[6], 1)
local e = 0
if period > 0 then e = start + (math.floor((now - start) / period) + 1) * period end
local s = redis.call('HMGET', KEYS[1], 'a', 'e', 'p')
local a, se = 0, e
if s[1] and tonumber(s[3]) == period and not (period > 0 and e > tonumber(s[2])) then
  a, se = tonumber(s[1]), tonumber(s[2])
end
local allowed = a + n <= limit
if allowed or force then a = a + n end
redis.call('HSET', KEYS[1], 'a', num(a), 'e', num(se), 'p', num(period))
local renew = 0
if period > 0 then
  renew = se - now
  redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil(renew / 1000) + 1))
end
return {allowed and 1 or 0, math.max(0, limit - a), renew}
""")

_US = 1_000_000
_EXACT = 1 << 52      # credit above this is kept in milliseconds, not microseconds


def _key(prefix: bytes, key: str) -> bytes:
    return prefix + key.encode("utf-8", "surrogateescape")


class RedisStore:
    """A CounterStore (runtime/limits.py) in Redis.  `client.failures` counts failed
    calls; `failures` counts the decisions this store could not make."""

    def __init__(self, client: RedisClient, clock: Optional[Callable[[], int]] = None) -> None:
        self.client = client
        self.clock = clock          # tests only: microseconds instead of Redis TIME
        self.failures = 0
        self._logged: set[str] = set()
        self.nursery: Any = None    # listed with the state's pools, which get one

    def _now(self, unit: int = 1) -> str:
        return "" if self.clock is None else str(self.clock() // unit)

    async def _run(self, script: Script, key: bytes, args: list) -> Any:
        try:
            return await self.client.run_script(script, (key,), args)
        except RedisUnavailable as e:
            self.failures += 1
            raise StoreUnavailable(str(e)) from None
        except RedisError as e:
            self.failures += 1
            text = str(e)
            code = text.split(" ", 1)[0]   # MOVED, OOM, WRONGTYPE...: once each, not per slot
            if code not in self._logged and len(self._logged) < 32:
                self._logged.add(code)
                log.warning("redis store: %s", text)
            raise StoreUnavailable(text) from None

    @staticmethod
    def _units(calls: int, period: float) -> tuple[int, int]:
        """(period in units, microseconds per unit)."""
        p = max(1, round(period * _US))
        if calls * p <= _EXACT:
            return p, 1
        return max(1, round(period * 1000)), 1000

    async def take(self, key: str, calls: int, period: float, n: int) -> Decision:
        p, unit = self._units(calls, period)
        ok, remaining, wait = await self._run(TAKE, _key(b"apigw:b:", key),
                                              [calls, p, n, unit, self._now(unit)])
        # wait -1: n > calls can never pass; as the local store, say one period
        return Decision(ok == 1, remaining, 0.0 if ok else
                        wait * unit / _US if wait >= 0 else float(period))

    async def refund(self, key: str, calls: int, period: float, n: int) -> None:
        p, unit = self._units(calls, period)
        await self._run(REFUND, _key(b"apigw:b:", key), [calls, p, n, unit, self._now(unit)])

    async def count(self, key: str, limit: int, period: float, start: float, n: int,
                    force: bool = False) -> Decision:
        ok, remaining, renew = await self._run(
            COUNT, _key(b"apigw:q:", key),
            [limit, round(period * _US), round(start * _US), n, int(force), self._now()])
        return Decision(ok == 1, remaining, renew / _US)

    def close(self) -> None:
        self.client.close()


def redis_stores(config: GatewayConfig, previous: Any = None) -> dict[str, RedisStore]:
    """The stores of one config: {"redis": ...} when it has a `redis:` section; the
    previous state's store when that section did not change."""
    rc = getattr(config, "redis", None)
    if rc is None:
        return {}
    if previous is not None:
        old = getattr(previous, "stores", {}).get("redis")
        if old is not None and getattr(previous.config, "redis", None) == rc:
            return {"redis": old}
    return {"redis": RedisStore(RedisClient(rc.url, timeout=rc.timeout, pool=rc.pool,
                                            sentinels=rc.sentinels, master=rc.master))}
