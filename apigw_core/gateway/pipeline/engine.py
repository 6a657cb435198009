"""Running a program for one request: a generator of commands, no I/O.

Strategy.  `run(program, ctx)` is the one generator the runtime's executor drives with
`send()` / `throw()`: it yields the commands the policies yield (read a body, call a
service, forward to the backend) and returns a `Result` saying what to send.  The fast
path is a plain loop: a policy whose `apply()` returns None or an Answer is one call, no
generator, no try block set up per step beyond the zero-cost one; only when a policy
returns a generator does `run_steps` switch to a generator that delegates to it
(`yield from`) and carries on with the rest of the section.  Nested lists (choose) run
through the same `run_steps`.

Flow (APIM): inbound, then backend (where forward-request yields ForwardRequest and the
runtime fills ctx.response), then outbound.  An Answer (return-response) ends the
pipeline at once: nothing after it runs, outbound included.  Without a forward the
response is an empty 200 that outbound may change.  An error anywhere (PolicyError, or
any exception: a bug) stops its section; the engine records ctx.last_error (source,
reason, message, scope, section, APIM path such as `choose[1]\\when[2]`, policy id),
makes ctx.response the error's own answer (APIM JSON) and runs on-error, whose policies
may edit that response or answer with return-response.  An error inside on-error keeps
the original error's answer.  A bug's answer is a 500 "internal error"; the exception is
kept in the Result for the log, never put on the wire.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import GeneratorType
from typing import Any, Generator, Optional, Sequence

from .contract import (
    Answer, Command, Context, Headers, LastError, PolicyError, ReadRequestBody, ResponseView,
)

__all__ = ["Result", "run", "run_steps", "inbound", "from_backend", "outbound",
           "forward_failed",
           "error_response", "INTERNAL_ERROR_REASON"]

INTERNAL_ERROR_REASON = "InternalError"
_MARK = "_pipeline_step"      # the innermost step an exception passed through
_SUBPATH = "_pipeline_subpath"  # set by a policy to point inside itself (`when[2]`)


@dataclass(frozen=True, slots=True)
class Result:
    """What to send.  `kind`:

    - "response": ctx.response (its body when set; else the backend's body, streamed, when
      `forwarded`; else empty).  ForwardRequest must leave a new ResponseView in
      ctx.response: `forwarded` is "ctx.response is not the one before the backend";
    - "answer": `answer` exactly (a policy's local reply); a backend body is discarded;
    - "error": the error's local reply: ctx.response holds it as on-error left it (status,
      headers, APIM JSON body); `error` is the LastError (a gRPC caller gets its status
      and message as trailers instead).  `exception` is set for a bug (log it)."""

    kind: str
    forwarded: bool = False
    answer: Optional[Answer] = None
    error: Optional[LastError] = None
    exception: Optional[BaseException] = None


# the usual results, made once (a Result is never changed)
_FORWARDED = Result("response", forwarded=True)
_NOT_FORWARDED = Result("response", forwarded=False)


def error_response(status: int, message: str,
                   headers: Sequence[tuple[bytes, bytes]] = ()) -> ResponseView:
    """An error's own answer as a response on-error can edit: APIM's JSON body."""
    body = json.dumps({"statusCode": status, "message": message},
                      separators=(",", ":")).encode()
    items = [(b"content-type", b"application/json")]
    items.extend(h for h in headers if h[0] != b"content-type")
    return ResponseView(status=status, reason="", headers=Headers(items), body=body)


# --- sections -------------------------------------------------------------------------------

def _mark(e: BaseException, step: Any) -> None:
    if not hasattr(e, _MARK):
        setattr(e, _MARK, step)


def run_steps(steps: Sequence[Any], ctx: Context) -> Any:
    """Run steps in order: None when all continued, the Answer that ended them, or (when a
    step returned a generator) a generator that finishes the job and returns one of those."""
    for i, step in enumerate(steps):
        try:
            r = step.apply(ctx)
        except Exception as e:
            _mark(e, step)
            raise
        if r is None:
            continue
        if isinstance(r, Answer):
            return r
        return _run_from(steps, i, r, ctx)
    return None


def _run_from(steps: Sequence[Any], i: int, gen: Any, ctx: Context) -> Generator:
    step = steps[i]
    while True:
        try:
            if type(gen) is not GeneratorType:
                raise TypeError(f"policy {step.name} apply() returned {type(gen).__name__}, "
                                f"expected None, an Answer or a generator")
            r = yield from gen
        except Exception as e:
            _mark(e, step)
            raise
        if r is not None:
            if isinstance(r, Answer):
                return r
            _mark(exc := TypeError(f"policy {step.name} returned {type(r).__name__}, "
                                   f"expected None or an Answer"), step)
            raise exc
        while True:
            i += 1
            if i >= len(steps):
                return None
            step = steps[i]
            try:
                r = step.apply(ctx)
            except Exception as e:
                _mark(e, step)
                raise
            if r is None:
                continue
            if isinstance(r, Answer):
                return r
            gen = r
            break


def _section(steps: Sequence[Any], ctx: Context) -> Generator[Command, Any, Optional[Answer]]:
    r = run_steps(steps, ctx)
    if r is None or isinstance(r, Answer):
        return r
    return (yield from r)


# --- the request ----------------------------------------------------------------------------

def _last_error(e: Exception, section: str) -> LastError:
    step = getattr(e, _MARK, None)
    path = step.apim_path if step is not None else ""
    sub = getattr(e, _SUBPATH, "")
    if sub:
        path = f"{path}\\{sub}" if path else sub
    scope = step.scope if step is not None else ""
    policy_id = step.policy_id if step is not None else ""
    if isinstance(e, PolicyError):
        return LastError(source=e.source or (step.name if step is not None else ""),
                         reason=e.reason, message=e.message, scope=scope, section=section,
                         path=path, policy_id=policy_id, status=e.status, headers=e.headers)
    return LastError(source=step.name if step is not None else "", reason=INTERNAL_ERROR_REASON,
                     message="internal error", scope=scope, section=section, path=path,
                     policy_id=policy_id, status=500)


def run(program: Any, ctx: Context, error: Optional[PolicyError] = None
        ) -> Generator[Command, Any, Result]:
    """The whole pipeline for one request.  With `error` (a refusal made before the
    pipeline, e.g. no subscription key), only on-error runs, for that error."""
    if error is not None:
        return (yield from _on_error(program, ctx, error, "inbound", False))
    rest = inbound(program, ctx)
    if rest is not None:
        return (yield from rest)
    return (yield from from_backend(program, ctx))


# The three pieces of `run` that are plain calls when no policy needs a generator: a
# runtime that carries out a lone forward-request itself (runtime/lean.py) calls
# `inbound`, forwards `program.lone_forward`, then calls `outbound` (or `forward_failed`),
# and drives a generator only when one of them returns one (or `from_backend`'s, when it
# leaves the forward to the general executor).

def inbound(program: Any, ctx: Context) -> Optional[Generator[Command, Any, Result]]:
    """The inbound section: None when every step went on (the backend section is next),
    else the generator of the rest of the request (an answer, an error and on-error, or a
    step that yields commands, then the rest of `run`)."""
    ctx.section = "inbound"
    try:
        r = run_steps(program.inbound, ctx)
    except Exception as e:
        return _on_error(program, ctx, e, "inbound", False)
    if r is None:
        return None
    return _inbound_rest(program, ctx, r)


def _inbound_rest(program: Any, ctx: Context, r: Any) -> Generator[Command, Any, Result]:
    try:
        if not isinstance(r, Answer):
            r = yield from r
    except Exception as e:   # (on-error runs outside the except block, as in run)
        exc = e
    else:
        if r is not None:
            return Result("answer", answer=r)
        return (yield from from_backend(program, ctx))
    return (yield from _on_error(program, ctx, exc, "inbound", False))


def from_backend(program: Any, ctx: Context) -> Generator[Command, Any, Result]:
    """The rest of the request from the backend section on (where forward-request yields
    ForwardRequest and the runtime fills ctx.response), then outbound."""
    ctx.section = "backend"
    before = ctx.response      # an inbound set-status may have started one already
    try:
        if program.reads_request_body and ctx.request.body is None:
            yield ReadRequestBody(program.body_limit)
        steps = program.backend
        bare = getattr(steps[0], "bare", None) if len(steps) == 1 else None
        if bare is not None:       # a lone forward-request: its command, no generators
            try:
                yield bare
            except Exception as e:
                _mark(e, steps[0])
                raise
            r = None
        else:
            r = run_steps(steps, ctx)
        if r is not None:
            if not isinstance(r, Answer):
                r = yield from r
            if r is not None:
                return Result("answer", answer=r, forwarded=ctx.response is not before)
    except Exception as e:   # (after the backend answered: fail-on-error-status-code)
        exc = e
    else:
        out = outbound(program, ctx, ctx.response is not before)
        if out.__class__ is Result:
            return out
        return (yield from out)
    return (yield from _on_error(program, ctx, exc, "backend", ctx.response is not before))


def forward_failed(program: Any, ctx: Context, exc: Exception, before: Any
                   ) -> Generator[Command, Any, Result]:
    """The rest of the request when `program.lone_forward`, carried out by the runtime,
    failed with `exc` (a PolicyError): on-error, as `run` would have gone on.  `before`:
    ctx.response before the forward."""
    _mark(exc, program.backend[0])
    return _on_error(program, ctx, exc, "backend", ctx.response is not before)


def outbound(program: Any, ctx: Context, forwarded: bool
             ) -> "Result | Generator[Command, Any, Result]":
    """The outbound section, after the backend section (`forwarded`: ctx.response is the
    backend's): the Result when it ran through without a generator, else the generator
    of the rest of the request."""
    if ctx.response is None:
        ctx.response = ResponseView(status=200, reason="OK", headers=Headers(), body=b"")
    ctx.section = "outbound"
    try:
        r = run_steps(program.outbound, ctx)
    except Exception as e:
        return _on_error(program, ctx, e, "outbound", forwarded)
    if r is None:
        return _FORWARDED if forwarded else _NOT_FORWARDED
    if isinstance(r, Answer):
        return Result("answer", answer=r, forwarded=forwarded)
    return _outbound_rest(program, ctx, r, forwarded)


def _outbound_rest(program: Any, ctx: Context, r: Any, forwarded: bool
                   ) -> Generator[Command, Any, Result]:
    try:
        r = yield from r
    except Exception as e:
        exc = e
    else:
        if r is not None:
            return Result("answer", answer=r, forwarded=forwarded)
        return _FORWARDED if forwarded else _NOT_FORWARDED
    return (yield from _on_error(program, ctx, exc, "outbound", forwarded))


def _on_error(program: Any, ctx: Context, exc: Exception, section: str, forwarded: bool
              ) -> Generator[Command, Any, Result]:
    last = _last_error(exc, section)
    bug = None if isinstance(exc, PolicyError) else exc
    ctx.last_error = last
    ctx.response = error_response(last.status, last.message, last.headers)
    ctx.section = "on-error"
    try:
        r = yield from _section(program.on_error, ctx)
    except Exception as e:   # the original error's answer; the second one only for the log
        ctx.response = error_response(last.status, last.message, last.headers)
        return Result("error", forwarded=forwarded, error=last, exception=bug or e)
    if r is not None:
        return Result("answer", answer=r, forwarded=forwarded, error=last, exception=bug)
    return Result("error", forwarded=forwarded, error=last, exception=bug)
