"""The policy pipeline (sans-IO): APIM's policies compiled once into flat programs, run
per request by a small engine that yields commands for the runtime.

- `contract`: what a policy is and sees (Policy, Site, Context, Answer, PolicyError, commands)
- `expressions`: templates and conditions (never eval)
"""

from __future__ import annotations

from .expressions import Condition, Template, compile_condition, compile_template

__all__ = ["Condition", "Template", "compile_condition", "compile_template"]
