"""Cost bounds for requests before they run, from a character count (no tokenizer, no network).

The input estimate is ≈ 1 token per `CHARS_PER_TOKEN` characters of all the text a request sends
(message contents, names, tool-call arguments, tool and response-format schemas), plus
`TOKENS_PER_MESSAGE` per message and `TOKENS_PER_REQUEST` per request, as OpenAI's chat format
adds. Non-text parts (images, audio, files) count a flat `TOKENS_PER_NON_TEXT_PART`: their real
cost depends on size and detail, which only the vendor knows. English text runs 3.5-4.5 characters
per token, code and other languages fewer, so treat the estimate as ±30%.

Output: low = 0 tokens (a request may stop at once), high = `max_completion_tokens` or
`max_tokens` * `n` choices, or `DEFAULT_MAX_OUTPUT_TOKENS` when the request sets no cap. A caller
that knows the cap actually sent (a budget reservation: the adapter's default, or the model's own
output limit) passes it as `output_cap`, and high is then a true bound on the output.
Embeddings and moderations produce no output tokens; token-id inputs are counted exactly.
Responses bodies count `input` items as messages, `instructions` as the system prompt and
`max_output_tokens` as the cap; completions bodies count `prompt` as one message.

The bounds cover one successful attempt on the given deployment(s): retries and fallbacks are
not included.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any

from batchgate.pricing._table import ZERO, PriceEntry

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4
TOKENS_PER_REQUEST = 3
TOKENS_PER_NON_TEXT_PART = 256
# A chat request without max_tokens may run to the model's limit; 1024 is what a typical
# completion stays under. Set max_tokens for a real upper bound.
DEFAULT_MAX_OUTPUT_TOKENS = 1024

_TEXT_KEYS = ("text", "input_text", "output_text")


@dataclass(frozen=True, slots=True)
class TokenEstimate:
    input_tokens: int
    max_output_tokens: int


def is_embeddings(endpoint: str) -> bool:
    return endpoint.rstrip("/").endswith(("/embeddings", "/moderations"))


def _chat_shaped(body: Mapping[str, Any], endpoint: str) -> Mapping[str, Any]:
    """A Responses or completions body in the chat shape the estimate reads."""
    path = endpoint.rstrip("/")
    if path.endswith("/responses"):
        items = body.get("input")
        messages = [{"content": items}] if isinstance(items, str) else items
        return {
            "messages": [i for i in messages or [] if isinstance(i, Mapping)],
            "system": body.get("instructions"),
            "tools": body.get("tools"),
            "response_format": body.get("text"),
            "max_tokens": body.get("max_output_tokens"),
        }
    if path.endswith("/completions") and not path.endswith("/chat/completions"):
        prompt = body.get("prompt")
        text = prompt if isinstance(prompt, str) else json.dumps(prompt, default=str)
        return {**body, "messages": [{"content": text}]}
    return body


def estimate_tokens(
    body: Mapping[str, Any], endpoint: str, output_cap: int | None = None
) -> TokenEstimate:
    """Estimated input tokens and the output cap of one request body. Embeddings and
    moderations count input only; the other endpoints are read as chat-shaped (`messages`,
    optional `system`, `max_tokens`). `output_cap`, when given, is the per-choice cap the call
    really carries."""
    if is_embeddings(endpoint):
        return TokenEstimate(_embedding_input_tokens(body.get("input")), 0)
    body = _chat_shaped(body, endpoint)

    chars = 0
    non_text = 0
    messages = body.get("messages") or []
    for message in messages:
        if not isinstance(message, Mapping):
            continue
        c, n = _content_size(message.get("content"))
        chars += c + len(str(message.get("name") or ""))
        non_text += n
        for call in message.get("tool_calls") or []:
            chars += _json_chars(call.get("function") if isinstance(call, Mapping) else call)
    # Anthropic-shaped bodies carry the system prompt outside the messages.
    c, n = _content_size(body.get("system"))
    chars, non_text = chars + c, non_text + n
    for key in ("tools", "functions", "response_format"):
        if body.get(key):
            chars += _json_chars(body[key])

    input_tokens = (
        _ceil_div(chars, CHARS_PER_TOKEN)
        + TOKENS_PER_MESSAGE * len(messages)
        + TOKENS_PER_REQUEST
        + TOKENS_PER_NON_TEXT_PART * non_text
    )
    return TokenEstimate(input_tokens, _max_output_tokens(body, output_cap))


def estimate_request(
    body: Mapping[str, Any], endpoint: str, entry: PriceEntry, output_cap: int | None = None
) -> tuple[Decimal, Decimal]:
    """(low, high) USD for one request on the deployment priced by `entry`."""
    return _bounds(estimate_tokens(body, endpoint, output_cap), entry)


def _bounds(tokens: TokenEstimate, entry: PriceEntry) -> tuple[Decimal, Decimal]:
    prompt = tokens.input_tokens
    with localcontext() as ctx:
        ctx.prec = 60
        low = entry.rate("input", prompt) * prompt + entry.request
        high = low + entry.rate("output", prompt) * tokens.max_output_tokens
    return low, high


@dataclass(slots=True)
class AliasEstimate:
    lines: int = 0
    input_tokens_est: int = 0
    max_output_tokens: int = 0
    cost_low: Decimal = ZERO
    cost_high: Decimal = ZERO
    unpriced: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "input_tokens_est": self.input_tokens_est,
            "max_output_tokens": self.max_output_tokens,
            "cost_low": str(self.cost_low),
            "cost_high": str(self.cost_high),
            "unpriced": self.unpriced,
        }


@dataclass
class Estimate:
    """Per model alias totals of request estimates, e.g. for a batch before it runs."""

    by_alias: dict[str, AliasEstimate] = field(default_factory=dict)

    def add(
        self,
        alias: str,
        body: Mapping[str, Any],
        endpoint: str,
        entries: PriceEntry | Iterable[PriceEntry],
    ) -> tuple[Decimal, Decimal]:
        """Count one request for `alias`. With several deployments behind the alias (pass
        `table.for_alias(alias)`), low is the cheapest and high the dearest of them."""
        entries = [entries] if isinstance(entries, PriceEntry) else list(entries)
        tokens = estimate_tokens(body, endpoint)
        bounds = [_bounds(tokens, e) for e in entries] or [(ZERO, ZERO)]
        low = min(b[0] for b in bounds)
        high = max(b[1] for b in bounds)

        agg = self.by_alias.setdefault(alias, AliasEstimate())
        agg.lines += 1
        agg.input_tokens_est += tokens.input_tokens
        agg.max_output_tokens += tokens.max_output_tokens
        agg.cost_low += low
        agg.cost_high += high
        agg.unpriced = agg.unpriced or not entries or any(e.unpriced for e in entries)
        return low, high

    @property
    def lines(self) -> int:
        return sum(a.lines for a in self.by_alias.values())

    @property
    def cost_low(self) -> Decimal:
        return sum((a.cost_low for a in self.by_alias.values()), ZERO)

    @property
    def cost_high(self) -> Decimal:
        return sum((a.cost_high for a in self.by_alias.values()), ZERO)

    def to_json(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "cost_low": str(self.cost_low),
            "cost_high": str(self.cost_high),
            "by_alias": {alias: a.to_json() for alias, a in self.by_alias.items()},
        }


def _content_size(content: Any) -> tuple[int, int]:
    """(characters of text, number of non-text parts) of a message content."""
    if content is None:
        return 0, 0
    if isinstance(content, str):
        return len(content), 0
    if isinstance(content, Mapping):
        content = [content]
    if not isinstance(content, list):
        return len(str(content)), 0
    chars = non_text = 0
    for part in content:
        if isinstance(part, str):
            chars += len(part)
        elif isinstance(part, Mapping):
            text = next((part[k] for k in _TEXT_KEYS if isinstance(part.get(k), str)), None)
            if text is not None:
                chars += len(text)
            elif part.get("type") in ("tool_result", "tool_use"):
                chars += _json_chars(part.get("content") or part.get("input"))
            else:
                non_text += 1
    return chars, non_text


def _embedding_input_tokens(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, str):
        return _ceil_div(len(value), CHARS_PER_TOKEN)
    if isinstance(value, list):
        if value and all(isinstance(v, int) for v in value):
            return len(value)  # already token ids
        return sum(_embedding_input_tokens(v) for v in value)
    return _ceil_div(len(str(value)), CHARS_PER_TOKEN)


def _max_output_tokens(body: Mapping[str, Any], output_cap: int | None) -> int:
    cap = body.get("max_completion_tokens") if output_cap is None else output_cap
    if cap is None:
        cap = body.get("max_tokens")
    if not isinstance(cap, int) or isinstance(cap, bool) or cap < 0:
        cap = DEFAULT_MAX_OUTPUT_TOKENS
    n = body.get("n")
    choices = n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1
    return cap * choices


def _json_chars(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, str):
        return len(value)
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str))


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)
