"""The `apigw` command (also `python -m apigw_core`): serve, validate, echo, schema,
--version.

Exit codes: 0 ok; 1 the config file cannot be read, or the gateway (or echo backend)
cannot start (a port in use, an address that is not local, a TLS file that does not load);
2 the config is invalid (or bad arguments, as argparse does).  Whatever goes wrong is said
in one line per problem on stderr, never a traceback: `CONFIG: PATH: MESSAGE` for each
error of a config file, `apigw: MESSAGE` for the rest (a config the config module chokes
on is reported as `apigw: cannot load CONFIG: ...`, exit 2).  `apigw_core.runtime` (trio,
sockets) is imported inside the commands that need it, so `apigw validate` and `--help`
stay cheap and work without it.
"""

from __future__ import annotations

import argparse
import sys
from importlib import metadata, resources

from .gateway.config import ConfigError, GatewayConfig, load_config, parse_config

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
    p.add_argument("--version", action="version", version=f"apigw_core {version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="{serve,validate,echo,schema}")

    s = sub.add_parser("serve", help="run the gateway (the demo when CONFIG is omitted)")
    s.add_argument("config", nargs="?", metavar="CONFIG", help="YAML or JSON config file")
    s.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                   help="worker processes sharing the listening ports (default 1)")
    s.add_argument("--watch", action="store_true",
                   help="reload CONFIG when the file changes (SIGHUP and the admin "
                        "POST /reload always do)")
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


def version() -> str:
    """The installed distribution's version; the package's own when it is not installed
    (run from a source tree)."""
    try:
        return metadata.version("apigw_core")
    except metadata.PackageNotFoundError:
        from . import __version__
        return __version__


def _positive_int(s: str) -> int:
    if not s.isdigit() or int(s) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    return int(s)


def _host_port(s: str) -> tuple[str, int]:
    """`--bind` read as a listener's `bind` by the config module itself: the same rules,
    and the same words for what is wrong."""
    try:
        lc = parse_config({"listeners": [{"bind": s}], "backends": {}, "apis": []},
                          source="--bind").listeners[0]
    except ConfigError as e:
        why = [m for m in e.errors if "bind" in m.partition(": ")[0]]
        if why:
            raise argparse.ArgumentTypeError(why[0].partition(": ")[2] or why[0]) from None
        # the bind is fine; the config module wants more of a config than this one
        host, _, port = s.rpartition(":")
        return host.strip("[]").lower(), int(port)
    return lc.host, lc.port


def _load(path: str) -> GatewayConfig | int:
    """The config, or the exit code after reporting why not."""
    try:
        return load_config(path)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    except OSError as e:
        print(f"apigw: cannot read {path}: {_lower(e.strerror or str(e))}", file=sys.stderr)
        return 1
    except RecursionError:  # the parsers recurse once per level of nesting
        print(f"apigw: cannot load {path}: nested too deeply", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - a config module bug: still a file it refused
        print(f"apigw: cannot load {path}: {type(e).__name__}: {e}", file=sys.stderr)
        return 2


def _lower(reason: str) -> str:
    """'No such file or directory' -> 'no such file or directory': the messages' case."""
    return reason[:1].lower() + reason[1:]


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
        return runtime.serve(config, workers=args.workers, watch=args.watch)

    # The packaged demo: as_file gives a real path even if the package is zipped.
    with resources.as_file(resources.files("apigw_core") / "demo" / "demo.yaml") as demo:
        config = load_config(demo)
    print(_DEMO_BANNER.format(echo=DEMO_ECHO), end="", flush=True)
    return runtime.serve(config, workers=args.workers, echo=DEMO_ECHO, watch=args.watch)


def _echo(args: argparse.Namespace) -> int:
    from .runtime import echo

    host, port = args.bind
    return echo.run_echo(host, port)


def _schema(args: argparse.Namespace) -> int:
    import json

    from .gateway.config import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0
