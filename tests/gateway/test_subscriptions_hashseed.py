"""With a fixed PYTHONHASHSEED the interpreter's bytes hash is no secret, so subscription
keys are then stored under SHA-256 digests; lookups give the same answers either way."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = r"""
from apigw_core.gateway import subscriptions as s
print(s._HASH_SECRET, s._slot(b"k1") == b"k1", len(s._slot(b"k1")))
"""


def _run(env_seed):
    env = dict(os.environ)
    env.pop("PYTHONHASHSEED", None)
    if env_seed is not None:
        env["PYTHONHASHSEED"] = env_seed
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, timeout=120, check=True)
    return out.stdout.split()


def test_random_seed_keys_by_the_key_itself():
    assert _run(None) == ["True", "True", "2"]
    assert _run("random") == ["True", "True", "2"]


def test_fixed_seed_keys_by_digest():
    assert _run("0") == ["False", "False", "32"]
    assert _run("1234") == ["False", "False", "32"]
