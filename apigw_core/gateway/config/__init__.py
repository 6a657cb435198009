"""The gateway configuration: a file format declared with pydantic, frozen dataclasses out.

Strategy.  A config file (YAML through PyYAML's safe loader, or JSON for `.json` files) is
plain data; `parse_config` takes it through five steps and stops only at the end, so that
one `ConfigError` carries every mistake and a user fixes them all in one round:

1. named values: `{{name}}` replaced in every string (`_named.py`);
2. the pydantic models of `_schema.py` validate the whole file (kebab-case keys, unknown
   keys refused, strict leaves, each section checking itself);
3. the checks across sections (`_checks.py`) run on whatever validated, item by item;
4. every problem becomes "path: message", the path spelt as in the file
   (`apis[2].policies.inbound[0]`, `backends.orders.url`), in document order (`_errors.py`);
5. a valid file is turned into the frozen dataclasses of `_model.py` (`_build.py`), which
   the runtime reads; then the policy pipeline, if installed, checks the policies' own
   attributes (`apigw_core.gateway.pipeline.check_config`).

Defaults follow the established edge proxies; each field says whose value it takes.
Relative file paths (TLS certificates, CA bundles) are resolved against the config file's
directory and must exist when the config is loaded, so a bad path fails `apigw validate`,
not the first TLS handshake.  Pools, circuit breakers and health checks are declared in
`_resilience.py`.  `json_schema()` is the file's JSON Schema.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ValidationError

from . import _build
from ._certs import certificate_problems
from ._checks import Parts, cross_check, declared_names
from ._errors import Problem, from_validation_error, in_document_order, spell
from ._loader import load_json, load_yaml
from ._model import (AdminConfig, ApiConfig, BackendConfig, BackendTLSConfig, ConfigError,
                     GatewayConfig, ListenerConfig, OperationConfig, PolicyEntry,
                     PolicySections, ProductConfig, RetryBudgetConfig, ServerConfig,
                     SubscriptionConfig, SubscriptionKeyConfig, TLSConfig)
from ._resilience import CircuitBreakerConfig, HealthCheckConfig, PoolMemberConfig
from ._named import redact, substitute, usable
from ._redis import RedisConfig, store_redis_errors
from ._schema import Admin, Api, Backend, Gateway, Listener, Product, Subscription, json_schema
from ._values import _duration, _Invalid, _size

__all__ = [
    "ConfigError", "parse_duration", "parse_size", "TLSConfig", "ListenerConfig",
    "ServerConfig", "BackendTLSConfig", "BackendConfig", "PolicyEntry", "PolicySections",
    "OperationConfig", "SubscriptionKeyConfig", "ApiConfig", "ProductConfig",
    "SubscriptionConfig", "AdminConfig", "GatewayConfig", "RedisConfig", "parse_config", "load_config",
    "json_schema", "PoolMemberConfig", "CircuitBreakerConfig", "HealthCheckConfig",
    "RetryBudgetConfig",
]


def parse_config(data: object, source: str = "<config>", base_dir: str | None = None) -> GatewayConfig:
    """Validate plain data (as loaded from YAML or JSON) into a GatewayConfig.

    Relative file paths are resolved against `base_dir` (default: the current directory).
    Raises ConfigError with every problem found.
    """
    context = {"base_dir": os.path.abspath(base_dir if base_dir is not None else os.getcwd())}
    problems: list[Problem] = []
    values: dict[str, str] = {}
    used: list = []
    raw = data
    if isinstance(data, dict):
        values = usable(data.get("named-values"))
        nv = data.get("named-values")
        sub = substitute(data, values, set(nv) if isinstance(nv, dict) else set())
        raw, used = sub.data, sub.used
        problems += sub.problems

    model: Gateway | None = None
    try:
        model = Gateway.model_validate(raw, context=context)
        parts = _parts_of(model)
    except ValidationError as e:
        problems += from_validation_error(e, Gateway)
        parts = _valid_parts(raw, context)
    if isinstance(raw, dict):
        for name, value in declared_names(raw).items():
            setattr(parts, name, value)
        problems += cross_check(parts)
        problems += certificate_problems(raw)

    spelt_used = [(spell(raw, loc), name) for loc, name in used]
    if problems or model is None:
        errors = redact(in_document_order(raw, problems), spelt_used, values)
        raise ConfigError([f"{path}: {message}" for path, message in errors], source)
    config = _build.gateway(model, source)
    pipeline_errors = [tuple(e.partition(": ")[::2]) for e in _pipeline_check(config)]
    if pipeline_errors:
        errors = redact(pipeline_errors, spelt_used, values)  # type: ignore[arg-type]
        raise ConfigError([f"{path}: {message}" for path, message in errors], source)
    return config


def _parts_of(g: Gateway) -> Parts:
    return Parts(listeners=list(enumerate(g.listeners)), admin=g.admin, apis=list(enumerate(g.apis)),
                 products=list(g.products.items()), subscriptions=list(enumerate(g.subscriptions)),
                 backends=list(g.backends.items()))


def _valid_parts(raw: object, context: dict) -> Parts:
    """The items of an invalid file that are valid on their own, for the cross-checks."""
    parts = Parts()
    if not isinstance(raw, dict):
        return parts

    def ok(model: type[BaseModel], value: Any) -> Any:
        try:
            return model.model_validate(value, context=context)
        except ValidationError:
            return None

    def items(key: str, model: type[BaseModel]) -> list[tuple[Any, Any]]:
        section = raw.get(key)
        pairs = (enumerate(section) if isinstance(section, list) else
                 section.items() if isinstance(section, dict) else ())
        return [(k, v) for k, v in ((k, ok(model, v)) for k, v in pairs) if v is not None]

    parts.listeners, parts.apis = items("listeners", Listener), items("apis", Api)
    parts.products, parts.subscriptions = items("products", Product), items("subscriptions", Subscription)
    parts.admin = ok(Admin, raw["admin"]) if "admin" in raw else None
    parts.backends = items("backends", Backend)
    return parts


def _pipeline_check(config: GatewayConfig) -> list[str]:
    """The decision modules' own load-time checks ("path: message"): every policy's
    attributes (the pipeline), operation templates that could never be chosen, and
    subscriptions that contradict each other.  Imported here, not at the top: they import
    this package's model."""
    from ..operations import OperationIndex, TemplateError
    from ..pipeline import check_config
    from ..subscriptions import subscription_errors

    errors = list(check_config(config)) + store_redis_errors(config)
    try:
        OperationIndex(config.apis)
    except TemplateError as e:
        errors.append(str(e))
    return errors + [e for e in subscription_errors(config) if e not in errors]


# --- public helpers and the file loader ----------------------------------------------------

def parse_duration(value: object, path: str) -> float:
    """Seconds from 30, 2.5, "30s", "30 s", "500ms", "2m", "1h", "1m30s"; ConfigError at `path` else."""
    try:
        return _duration(value)
    except _Invalid as e:
        raise ConfigError([f"{path}: {e}"]) from None


def parse_size(value: object, path: str) -> int:
    """Bytes from 1024, "64KiB", "1MiB", "1GiB", "8KB" (1000s), "1 MB"; ConfigError at `path` else."""
    try:
        return _size(value)
    except _Invalid as e:
        raise ConfigError([f"{path}: {e}"]) from None


def load_config(path: str | os.PathLike) -> GatewayConfig:
    """Read and validate a YAML file (JSON if it ends in .json).

    OSError if it cannot be read; ConfigError for a syntax error or an invalid config.
    """
    path = os.fspath(path)
    source = path                   # as given: that is how the user named it
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
        data = load_json(text) if path.lower().endswith(".json") else load_yaml(text)
    except UnicodeDecodeError as e:
        raise ConfigError([f"byte {e.start}: not UTF-8"], source) from None
    except _Invalid as e:
        raise ConfigError([str(e)], source) from None
    return parse_config(data, source=source, base_dir=os.path.dirname(os.path.abspath(path)))
