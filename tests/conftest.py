"""Shared fixtures and settings for the whole suite.

- One Hypothesis profile, `ci` (loaded unless HYPOTHESIS_PROFILE names another): no
  per-example deadline and no too_slow health check, because a loaded machine makes any
  example slow; derandomize off, so each run explores new examples (a failure prints its
  reproduction).  Tests set only their own `max_examples`.
- tests/ and tests/runtime/ on sys.path, so `support` (polling, skips) and the runtime
  helpers (`procs`, `backends`) import from every test directory.
- `echo`: the built-in echo backend (`python -m apigw_core echo`), one process for the
  session (it is stateless).
- `gateway`: a factory, `gateway(config_dict, workers=1) -> Proc`, for a gateway process
  on that config; every gateway it started is stopped at the end of the test.
- Bytecode for the processes the suite starts (gateways, echo, the CLI): where the
  environment says PYTHONDONTWRITEBYTECODE (a clean source tree), the suite's child
  processes write their .pyc files under a PYTHONPYCACHEPREFIX in the temp dir instead, so
  that each of the several hundred `python -m apigw_core` processes does not compile the
  package again (~0.3 s of CPU each).  The tree stays clean either way.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

_HERE = Path(__file__).resolve().parent
for _p in (_HERE, _HERE / "runtime"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

# For the child processes only (this one read the flag at its start): see the docstring.
if os.environ.get("PYTHONDONTWRITEBYTECODE") and not os.environ.get("PYTHONPYCACHEPREFIX"):
    del os.environ["PYTHONDONTWRITEBYTECODE"]
    os.environ["PYTHONPYCACHEPREFIX"] = os.path.join(
        tempfile.gettempdir(), f"apigw_core-tests-pycache-{os.getuid()}")

settings.register_profile("ci", deadline=None, derandomize=False,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def echo():
    """The echo backend process (its `.port`, `.url`), shared by the session."""
    from procs import start_echo
    p = start_echo()
    yield p
    p.stop()


@pytest.fixture
def gateway(tmp_path):
    """`gateway(config, workers=1)`: start a gateway on `config`; stopped after the test."""
    from procs import start_gateway
    started = []

    def start(config: dict, workers: int = 1, name: str = "gw"):
        d = tmp_path / f"{name}{len(started)}"
        d.mkdir()
        p = start_gateway(d, config, workers=workers)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()
