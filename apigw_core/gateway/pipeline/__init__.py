"""The policy pipeline (sans-IO): APIM's policies compiled once into flat programs, run
per request by a small engine that yields commands for the runtime.

- `contract`: what a policy is and sees (Policy, Site, Context, Answer, PolicyError, commands)
- `expressions`: templates and conditions (never eval)
- `program`: scopes and sections resolved into a `Program` per (API, operation, product);
  `check_config(config)` lists every policy mistake with its path
- `engine`: `run(program, ctx)`, the generator the runtime drives; `Result` says what to send
- `policies/`: the built-in policies; `custom`: user classes named in the config
- `registry`: policy classes by name
"""

from __future__ import annotations

from .contract import (
    Answer, Command, Context, ForwardRequest, Headers, LastError, Policy, PolicyError,
    ReadRequestBody, ReadResponseBody, RequestView, ResponseView, SendRequest,
    ServiceResponse, Site,
)
from .engine import Result, run, run_steps
from .expressions import Condition, Template, compile_condition, compile_template
from .program import CompiledStep, Program, Programs, build_programs, check_config

__all__ = [
    "Answer", "Command", "Context", "ForwardRequest", "Headers", "LastError", "Policy",
    "PolicyError", "ReadRequestBody", "ReadResponseBody", "RequestView", "ResponseView",
    "SendRequest", "ServiceResponse", "Site", "Result", "run", "run_steps", "Condition",
    "Template", "compile_condition", "compile_template", "CompiledStep", "Program",
    "Programs", "build_programs", "check_config",
]
