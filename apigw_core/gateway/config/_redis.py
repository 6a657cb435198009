"""The top-level `redis:` section: the Redis server that `store: redis` counters live in.

Strategy.  One small section in its own file, like `rate-limits:` beside it: a pydantic
model that validates the file's shape (errors such as `redis.url: ...`), a frozen
dataclass the runtime reads (`GatewayConfig.redis`, None when the file has no section),
and the one check that spans sections: a policy (or `rate-limits`) that says
`store: redis` in a file with no `redis:` section is an error at that attribute's path.

    redis: {url: "redis://[[user]:password@]host[:port][/db]", timeout: 50ms, pool: 8,
            sentinels: ["10.0.0.1:26379", ...], master: mymaster}

`timeout` is the deadline of each decision (connection, Sentinel lookup, round trip);
`pool` the connections per gateway process.  With `sentinels` the URL's host and port are
not used: the master named `master` is asked from the sentinels (its password and db
still come from the URL).  Redis Cluster, TLS (`rediss://`) and unix sockets are not
supported (runtime/redis.py says why and what a cluster node answers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Iterator, Mapping, Optional, Sequence
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema, model_validator

from ._values import DURATION_PATTERN, _bind, _Invalid, _positive_duration, _string

__all__ = ["Redis", "RedisConfig", "RedisAddress", "parse_redis_url", "store_redis_errors"]


@dataclass(frozen=True, slots=True)
class RedisAddress:
    host: str
    port: int = 6379
    db: int = 0
    username: Optional[str] = None
    password: Optional[str] = None


def parse_redis_url(url: str) -> RedisAddress:
    """`redis://[[user]:password@]host[:port][/db]` -> RedisAddress; ValueError says why."""
    u = urlsplit(url)
    if u.scheme != "redis":
        raise ValueError(f"expected a redis://host:port/db URL, got scheme {u.scheme or 'none'!r}"
                         + (" (TLS to Redis is not supported yet)" if u.scheme == "rediss" else ""))
    if not u.hostname:
        raise ValueError("the URL has no host")
    if u.query or u.fragment:
        raise ValueError("the URL takes no query or fragment")
    try:
        port = u.port or 6379
    except ValueError:
        raise ValueError("the port is not a number from 1 to 65535") from None
    path = u.path.strip("/")
    if path and not (path.isdigit() and int(path) < 2**31):
        raise ValueError(f"the database is a number (redis://host:port/0), got {path!r}")
    return RedisAddress(u.hostname, port, int(path or 0),
                        unquote(u.username) if u.username else None,
                        unquote(u.password) if u.password is not None else None)


@dataclass(frozen=True, slots=True)
class RedisConfig:
    """YAML `redis: {url, timeout, pool, sentinels, master}`."""

    url: str = "redis://127.0.0.1:6379/0"
    timeout: float = 0.05                            # per decision: a request never waits longer
    pool: int = 8                                    # connections per gateway process
    sentinels: tuple[tuple[str, int], ...] = ()      # (host, port) of each sentinel
    master: Optional[str] = None                     # the master's name (with sentinels)

    def __repr__(self) -> str:   # the URL may carry a password
        a = parse_redis_url(self.url)
        return (f"RedisConfig(url='redis://{a.host}:{a.port}/{a.db}', timeout={self.timeout}, "
                f"pool={self.pool}, sentinels={self.sentinels}, master={self.master!r})")


def _url(v: object) -> str:
    s = _string(v)
    try:
        parse_redis_url(s)
    except ValueError as e:
        raise _Invalid(str(e)) from None
    return s


def _sentinel(v: object) -> tuple[str, int]:
    b = _bind(v)
    return (b.host, b.port)


_D = RedisConfig()
Url = Annotated[str, PlainValidator(_url), WithJsonSchema({"type": "string", "pattern": "^redis://"})]
Timeout = Annotated[float, PlainValidator(_positive_duration), WithJsonSchema(
    {"anyOf": [{"type": "number", "exclusiveMinimum": 0},
               {"type": "string", "pattern": DURATION_PATTERN}]})]
Sentinel = Annotated[tuple[str, int], PlainValidator(_sentinel),
                     WithJsonSchema({"type": "string", "pattern": r"^.+:\d{1,5}$"})]


class Redis(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=lambda s: s.replace("_", "-"),
                              use_attribute_docstrings=True)

    url: Url = _D.url
    """redis://[[user]:password@]host[:port][/db]"""
    timeout: Timeout = _D.timeout
    """deadline of one decision (default 50ms)"""
    pool: Annotated[int, Field(strict=True, ge=1, le=1024)] = _D.pool
    """connections per gateway process"""
    sentinels: list[Sentinel] = []
    """host:port of each sentinel; the master is found through them"""
    master: Optional[Annotated[str, Field(strict=True, min_length=1)]] = None
    """the master's name (needed with sentinels)"""

    @model_validator(mode="after")
    def _master(self) -> Redis:
        if self.sentinels and self.master is None:
            raise _Invalid("sentinels need the master's name (master: NAME)", at=("master",))
        if self.master is not None and not self.sentinels:
            raise _Invalid("master names a Sentinel master: give the sentinels too",
                           at=("sentinels",))
        return self

    def build(self) -> RedisConfig:
        return RedisConfig(self.url, self.timeout, self.pool, tuple(self.sentinels), self.master)


# --- `store: redis` needs this section --------------------------------------------------------

def store_redis_errors(config: Any) -> list[str]:
    """"path: message" for every `store: redis` in a config that has no `redis:` section."""
    if getattr(config, "redis", None) is not None:
        return []
    msg = "store: redis needs the top-level redis: section (redis: {url: redis://host:port/0})"
    errors = []
    rl = getattr(config, "rate_limits", None)
    if rl is not None and getattr(rl, "store", None) == "redis":
        errors.append(f"rate-limits.store: {msg}")
    for path, sections in _scopes(config):
        for name in ("inbound", "backend", "outbound", "on_error"):
            base = f"{path}.{name.replace('_', '-')}"
            errors += [f"{p}: {msg}" for p in _stores(getattr(sections, name), base)]
    return errors


def _scopes(config: Any) -> Iterator[tuple[str, Any]]:
    yield "policies", config.policies
    for name, product in config.products.items():
        yield f"products.{name}.policies", product.policies
    for i, api in enumerate(config.apis):
        yield f"apis[{i}].policies", api.policies
        for j, op in enumerate(api.operations):
            yield f"apis[{i}].operations[{j}].policies", op.policies


def _stores(value: Any, path: str) -> Iterator[str]:
    """Paths of `store: redis` anywhere below `value` (nested policies too)."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            if k == "store" and v == "redis":
                yield f"{path}.store"
            else:
                yield from _stores(v, f"{path}.{k}")
    elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        for i, v in enumerate(value):
            yield from _stores(v, f"{path}[{i}]")
