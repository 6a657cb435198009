"""The `apigw` command (also `python -m apigw_core`): serve, validate, echo, schema.

Exit codes: 0 ok, 1 the config file cannot be read, 2 the config is invalid (or bad
arguments, as argparse does).  `apigw_core.runtime` (trio, sockets) is imported inside the
commands that need it, so `apigw validate` and `--help` stay cheap and work without it.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources

from .gateway.config import ConfigError, GatewayConfig, load_config

__all__ = ["main"]

DEMO_ECHO = "127.0.0.1:8081"     # where `apigw serve` without CONFIG runs the echo backend

_DEMO_BANNER = """\
apigw demo: gateway on http://127.0.0.1:8080 -> echo backend on http://{echo}
  curl -i http://127.0.0.1:8080/echo/hello?x=1
  curl -i -d '{{"a":1}}' http://127.0.0.1:8080/echo/post
  curl -i http://127.0.0.1:9901/healthz        (admin; Ctrl-C stops)
"""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `apigw` script; returns the process exit code."""
    args = _parser().parse_args(argv)
    return args.run(args)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="apigw", description="API-gateway data plane.")
    sub = p.add_subparsers(dest="command", required=True, metavar="{serve,validate,echo,schema}")

    s = sub.add_parser("serve", help="run the gateway (the demo when CONFIG is omitted)")
    s.add_argument("config", nargs="?", metavar="CONFIG", help="YAML or JSON config file")
    s.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                   help="worker processes sharing the listening ports (default 1)")
    s.set_defaults(run=_serve)

    v = sub.add_parser("validate", help="check a config file and exit")
    v.add_argument("config", metavar="CONFIG")
    v.set_defaults(run=_validate)

    e = sub.add_parser("echo", help="run the echo backend (for the demo and tests)")
    e.add_argument("--bind", default=DEMO_ECHO, type=_host_port, metavar="HOST:PORT",
                   help=f"listen address (default {DEMO_ECHO})")
    e.set_defaults(run=_echo)

    j = sub.add_parser("schema", help="print the JSON Schema of the config file (for editors)")
    j.set_defaults(run=_schema)
    return p


def _positive_int(s: str) -> int:
    if not s.isdigit() or int(s) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    return int(s)


def _host_port(s: str) -> tuple[str, int]:
    host, _, port = s.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {s!r}")
    return host, int(port)


def _load(path: str) -> GatewayConfig | int:
    """The config, or the exit code after reporting why not."""
    try:
        return load_config(path)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    except OSError as e:
        print(f"apigw: cannot read {path}: {e.strerror or e}", file=sys.stderr)
        return 1


def _validate(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if isinstance(config, int):
        return config
    print(f"ok: {args.config}: {len(config.listeners)} listeners, "
          f"{len(config.backends)} backends, {len(config.apis)} apis")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from . import runtime

    if args.config is not None:
        config = _load(args.config)
        if isinstance(config, int):
            return config
        return runtime.serve(config, workers=args.workers)

    # The packaged demo: as_file gives a real path even if the package is zipped.
    with resources.as_file(resources.files("apigw_core") / "demo" / "demo.yaml") as demo:
        config = load_config(demo)
    print(_DEMO_BANNER.format(echo=DEMO_ECHO), end="", flush=True)
    return runtime.serve(config, workers=args.workers, echo=DEMO_ECHO)


def _echo(args: argparse.Namespace) -> int:
    from .runtime import echo

    host, port = args.bind
    echo.run_echo(host, port)
    return 0


def _schema(args: argparse.Namespace) -> int:
    import json

    from .gateway.config import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0
