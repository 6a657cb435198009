"""`llm-token-limit` (and its older name `azure-openai-token-limit`): tokens per minute and
token quotas for OpenAI-shaped APIs (/work/shared/APIM-REFERENCE.md "Rate limits").

Strategy.  The same commands as the call limits (limits.py): the tokens-per-minute limit is
a token bucket of `tokens-per-minute` refilled over 60 s, the quota a fixed window of
`token-quota-period` (Hourly, Daily, Weekly from Monday, Monthly, Yearly; UTC-aligned;
months and years are calendar windows the runtime computes).  Before forwarding, a call
takes its prompt's estimated tokens (`estimate-prompt-tokens: true`; else one token, so a
key with nothing left is refused at once) and the quota is checked (count 0).  When the
request is over the cost is *settled* to what the response says it used: a `UsageMeter`
sees the response body as it is written (`TapResponse`; nothing is buffered for it) and
reads OpenAI's `usage.total_tokens` from the JSON body, or from the last chunk of a
streamed (SSE) one (`stream_options.include_usage`); a stream without usage is counted as
the prompt estimate plus the streamed text's estimate.

The estimate (no tokenizer: the well-kept one, tiktoken, downloads its vocabularies at
run time, which a gateway must not depend on): about four characters per token, OpenAI's
rule of thumb for English, ceil(chars / 4) over the text of `messages[].content` (strings
or text parts), `prompt` or `input`, plus 3 per message and 3 for the reply's priming, as
OpenAI's cookbook counts chat overhead.  It is an estimate: the settlement corrects it.

Answers: 429 "Token limit is exceeded. Try again in N seconds." with Retry-After (or
`retry-after-header-name`); 403 "Token quota is exceeded. Quota will be replenished in
hh:mm:ss." (the first sentence is APIM's; the second follows quota's wording).  The
remaining-tokens and remaining-quota-tokens headers / variables are set before forwarding;
`tokens-consumed-variable-name` when the request is over.  `tokens-consumed-header-name`
is refused at load time: the response head is sent before its usage is known.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

from ..contract import Command, Context, Policy, Site
from ..registry import register
from ._spec import Spec
from .limits import (
    MAX_CALL_SECONDS, STORE_KEYS, Answers, CountQuota, StoreAttrs, TakeTokens, retry_seconds, scope_id,
    timespan,
)

__all__ = ["TapResponse", "LlmTokenLimit", "UsageMeter", "estimate_prompt_tokens",
           "QUOTA_PERIODS"]

# seconds and alignment (Unix seconds) of the fixed-length periods; None: calendar windows
QUOTA_PERIODS: dict[str, Optional[tuple[int, int]]] = {
    "Hourly": (3600, 0), "Daily": (86400, 0), "Weekly": (7 * 86400, 4 * 86400),  # Monday
    "Monthly": None, "Yearly": None}
_METER_CAP = 1 << 20     # bytes of a JSON body kept for reading its usage


@dataclass(slots=True)       # per request: not frozen (see limits.py's commands)
class TapResponse(Command):
    """Call `feed(data)` with each piece of the response body as it goes to the client."""

    feed: Callable[[bytes], None]


def _text_chars(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_text_chars(v) for v in value)
    if isinstance(value, dict):
        return _text_chars(value.get("text")) if value.get("type", "text") == "text" else 0
    return 0


def _tokens(chars: int) -> int:
    return math.ceil(chars / 4)


def estimate_prompt_tokens(body: Optional[bytes]) -> int:
    """The prompt's tokens, estimated (see the module docstring); 0 for no JSON body."""
    try:
        doc = json.loads(body or b"")
    except (ValueError, UnicodeDecodeError):
        return 0
    if not isinstance(doc, dict):
        return 0
    messages = doc.get("messages")
    if isinstance(messages, list):
        return sum(3 + _tokens(_text_chars(m.get("content")) + _text_chars(m.get("name")))
                   for m in messages if isinstance(m, dict)) + 3
    for key in ("prompt", "input"):
        if key in doc:
            return _tokens(_text_chars(doc[key]))
    return 0


class UsageMeter:
    """Reads a response body as it passes for its token usage (JSON or SSE)."""

    def __init__(self, ctx: Context, prompt_estimate: int) -> None:
        self.ctx = ctx
        self.prompt_estimate = prompt_estimate
        self.sse: Optional[bool] = None
        self.buf = bytearray()
        self.usage: Optional[int] = None
        self.usage_doc: Optional[dict] = None   # the response's `usage` object, if any
        self.streamed_chars = 0

    def feed(self, data: bytes) -> None:
        if self.sse is None:
            resp = self.ctx.response
            ctype = resp.headers.get(b"content-type") if resp is not None else None
            self.sse = ctype is not None and b"text/event-stream" in ctype.lower()
        if not self.sse:
            if len(self.buf) < _METER_CAP:
                self.buf += data[:_METER_CAP - len(self.buf)]
            return
        self.buf += data
        *lines, rest = self.buf.split(b"\n")
        self.buf = bytearray(rest)
        for line in lines:
            line = line.strip()
            if line.startswith(b"data:"):
                self._event(line[5:].strip())

    def _event(self, payload: bytes) -> None:
        if payload == b"[DONE]":
            return
        try:
            doc = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            return
        if not isinstance(doc, dict):
            return
        self._usage(doc.get("usage"))
        for choice in doc.get("choices") or ():
            if isinstance(choice, dict):
                delta = choice.get("delta") or {}
                self.streamed_chars += _text_chars(delta.get("content")) \
                    if isinstance(delta, dict) else 0
                self.streamed_chars += _text_chars(choice.get("text"))

    def _usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self.usage_doc = usage
            if isinstance(usage.get("total_tokens"), int):
                self.usage = usage["total_tokens"]

    def counts(self, ctx: Context) -> Optional[tuple[int, int, int]]:
        """(prompt, completion, total) tokens: the response's usage (chat / completions
        `prompt_tokens`, `completion_tokens`; Responses API `input_tokens`,
        `output_tokens`), else the estimates; None when there is nothing to count."""
        total = self.total(ctx)
        u = self.usage_doc
        if u is not None:
            p = next((u[k] for k in ("prompt_tokens", "input_tokens")
                      if isinstance(u.get(k), int)), None)
            c = next((u[k] for k in ("completion_tokens", "output_tokens")
                      if isinstance(u.get(k), int)), None)
            if self.usage is None:
                total = (p or 0) + (c or 0)
            if p is None and c is not None:
                p = max(0, total - c)
            if c is None and p is not None:
                c = max(0, total - p)
            if p is not None or self.usage is not None:
                return (p or 0, c or 0, total)
        if self.sse:
            return (self.prompt_estimate, _tokens(self.streamed_chars), total)
        if self.prompt_estimate:
            return (self.prompt_estimate, 0, self.prompt_estimate)
        return None

    def total(self, ctx: Context) -> int:
        """The call's tokens: the response's usage, else the estimates."""
        if self.usage is None and not self.sse and self.buf:
            try:
                doc = json.loads(bytes(self.buf))
                self._usage(doc.get("usage") if isinstance(doc, dict) else None)
                self.buf = bytearray()   # read once (total() and counts() may both ask)
            except (ValueError, UnicodeDecodeError):
                pass
        if self.usage is not None:
            return self.usage
        if self.sse:
            return self.prompt_estimate + _tokens(self.streamed_chars)
        return self.prompt_estimate


_ANSWERS = ("retry-after-header-name", "retry-after-variable-name",
            "remaining-tokens-header-name", "remaining-tokens-variable-name",
            "remaining-quota-tokens-header-name", "remaining-quota-tokens-variable-name",
            "tokens-consumed-header-name", "tokens-consumed-variable-name")


@register
class LlmTokenLimit(Policy):
    """`llm-token-limit: {counter-key, tokens-per-minute, token-quota, token-quota-period,
    estimate-prompt-tokens, ...header / variable names, store, on-store-failure}`."""

    name = "llm-token-limit"
    sections = frozenset({"inbound"})

    def __init__(self, spec: Any, site: Site) -> None:
        super().__init__(spec, site)
        s = Spec(spec, site, ("counter-key", "tokens-per-minute", "token-quota",
                              "token-quota-period", "estimate-prompt-tokens") + _ANSWERS
                 + STORE_KEYS)
        self.scope = site.scope
        self.key = s.template("counter-key", required=True)
        self.tpm = s.integer("tokens-per-minute", None, 1, MAX_CALL_SECONDS // 60)
        self.quota = s.integer("token-quota", None, 1, 1 << 50)
        self.period = s.choice("token-quota-period", tuple(QUOTA_PERIODS),
                               required=self.quota is not None)
        if self.tpm is None and self.quota is None and not (
                s.has("tokens-per-minute") or s.has("token-quota")):
            site.error("expected tokens-per-minute, token-quota or both")
        if s.has("token-quota-period") and not s.has("token-quota"):
            site.error("only with token-quota", "token-quota-period")
        self.estimate = s.flag("estimate-prompt-tokens", False)
        if s.has("tokens-consumed-header-name"):
            site.error("not supported: the response head is sent before its usage is known "
                       "(use tokens-consumed-variable-name)", "tokens-consumed-header-name")
        self.consumed_var = s.text("tokens-consumed-variable-name")
        self.stores = StoreAttrs(s)
        self.tpm_names = Answers(s, "remaining-tokens", None)
        seen = len(site.errors)
        self.quota_names = Answers(s, "remaining-quota-tokens", None)
        # the retry-after names are read twice: report a bad one once
        site.errors[seen:] = [e for e in site.errors[seen:] if e not in site.errors[:seen]]
        self.reads_request_body = self.estimate or bool(self.key and self.key.reads_request_body)

    def apply(self, ctx: Context) -> Any:
        return self._limit(ctx)

    def _limit(self, ctx: Context) -> Any:
        base = f"{self.name}|{scope_id(self.scope, ctx)}|" + \
            (self.key.render(ctx) if self.key is not None else "")
        prompt = estimate_prompt_tokens(ctx.request.body) if self.estimate else 0
        meter = UsageMeter(ctx, prompt)
        st = self.stores
        if self.quota is not None and self.period is not None:
            fixed = QUOTA_PERIODS[self.period]
            period, start = fixed if fixed is not None else (0, 0)
            d = yield CountQuota(base + "|quota", self.quota, float(period), float(start), 0,
                                 st.store, st.on_failure, meter.total,
                                 calendar=None if fixed else self.period)
            if d.remaining <= 0:
                raise self.quota_names.refuse(
                    ctx, 403, "TokenQuotaExceeded", "Token quota is exceeded. Quota will be "
                    f"replenished in {timespan(d.retry_after)}.", d.retry_after, self.quota)
            self.quota_names.passed(ctx, d.remaining, self.quota)
        if self.tpm is not None:
            n = min(max(prompt, 1), self.tpm) if self.estimate else 1
            d = yield TakeTokens(base + "|tpm", self.tpm, 60.0, n, st.store, st.on_failure,
                                 meter.total)
            if not d.allowed:
                raise self.tpm_names.refuse(
                    ctx, 429, "TokenLimitExceeded", "Token limit is exceeded. Try again in "
                    f"{retry_seconds(d.retry_after)} seconds.", d.retry_after, self.tpm)
            self.tpm_names.passed(ctx, d.remaining, self.tpm)
        yield TapResponse(meter.feed)
        if self.consumed_var is not None:
            var = self.consumed_var
            ctx.finish.append(lambda c: c.variables.__setitem__(var, meter.total(c)))
        return None


@register
class AzureOpenAiTokenLimit(LlmTokenLimit):
    """APIM's older name for the same policy."""

    name = "azure-openai-token-limit"
