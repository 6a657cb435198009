"""Decisions, not I/O: the configuration model and loader, and the router.

Nothing here imports trio or touches a socket; the runtime builds on these names.
"""

from .config import (
    AdminConfig,
    ApiConfig,
    BackendConfig,
    BackendTLSConfig,
    ConfigError,
    GatewayConfig,
    ListenerConfig,
    OperationConfig,
    PolicyEntry,
    PolicySections,
    ProductConfig,
    ServerConfig,
    SubscriptionConfig,
    SubscriptionKeyConfig,
    TLSConfig,
    json_schema,
    load_config,
    parse_config,
    parse_duration,
    parse_size,
)

__all__ = [
    "ConfigError",
    "parse_duration",
    "parse_size",
    "TLSConfig",
    "ListenerConfig",
    "ServerConfig",
    "BackendTLSConfig",
    "BackendConfig",
    "ApiConfig",
    "AdminConfig",
    "GatewayConfig",
    "PolicyEntry",
    "PolicySections",
    "OperationConfig",
    "SubscriptionKeyConfig",
    "ProductConfig",
    "SubscriptionConfig",
    "parse_config",
    "load_config",
    "json_schema",
]
