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
    ServerConfig,
    TLSConfig,
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
    "parse_config",
    "load_config",
]
