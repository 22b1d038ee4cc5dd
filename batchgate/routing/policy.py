"""Retry and fallback decisions: pure functions of (error, attempt count, config).

The one retry layer of batchgate (`STYLE.md`, habit 3). Nothing here does I/O or reads a clock;
randomness comes in as an explicit `random.Random` so tests are deterministic.

Per model, an item gets at most `num_retries + 1` calls (`DESIGN.md`, guarantee 3): transient
errors (rate limit, overload, 5xx, timeout) are retried on the same model with backoff, invalid
structured output at once (guarantee 7); errors another model may not have (quota, context
window, content filter, unknown model, a parameter or file this vendor refuses) move the item
down its fallback chain; errors in the request or the credentials end it.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from batchgate.config import Config, Deployment
from batchgate.errors import ErrorKind, ProviderError

Action = Literal["retry", "fallback", "fail"]

# What each error kind calls for once it reaches routing. Every ErrorKind is listed (a unit test
# checks it), so adding a kind forces a decision here instead of silently defaulting.
_ACTIONS: dict[ErrorKind, Action] = {
    ErrorKind.rate_limited: "retry",
    ErrorKind.overloaded: "retry",
    ErrorKind.server_error: "retry",
    ErrorKind.timeout: "retry",
    # Re-asked at once on the same model (models answer differently each time), then fallback.
    ErrorKind.invalid_output: "retry",
    # A quota/billing 429 does not clear in seconds: retrying only burns the item's time.
    ErrorKind.quota_exceeded: "fallback",
    ErrorKind.context_window_exceeded: "fallback",
    ErrorKind.not_found: "fallback",
    # A parameter or resource this vendor refuses: the next model may well accept it.
    ErrorKind.vendor_refused: "fallback",
    # Routing ends the item instead when no content-policy fallback is configured (next_aliases).
    ErrorKind.content_filtered: "fallback",
    # Another vendor may honour what this one cannot (previous_response_id, built-in tools).
    ErrorKind.unsupported_parameter: "fallback",
    # The same request would fail the same way on any model.
    ErrorKind.invalid_request: "fail",
    # The caller pauses the deployment; the item's error names the bad credentials.
    ErrorKind.authentication: "fail",
}

RETRYABLE: frozenset[ErrorKind] = frozenset(k for k, a in _ACTIONS.items() if a == "retry")
# Retried without a backoff: the vendor is healthy, only the answer was wrong.
_NO_BACKOFF = frozenset({ErrorKind.invalid_output})

DEFAULT_BASE = 0.5
DEFAULT_CAP = 30.0


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with an item after a failed call. `delay` (seconds) matters for retries only."""

    action: Action
    delay: float
    reason: str


def action_for(kind: ErrorKind) -> Action:
    """The action an error kind calls for, before counting attempts."""
    return _ACTIONS.get(kind, "fail")


def backoff_delay(
    attempt: int,
    retry_after: float | None,
    *,
    base: float = DEFAULT_BASE,
    cap: float = DEFAULT_CAP,
    rng: random.Random,
) -> float:
    """Seconds to wait before the next call on the same model.

    `attempt` counts the calls already made on this model (1 after the first failure). Our own
    backoff is "full jitter": uniform in [0, min(cap, base * 2**(attempt - 1))], which spreads a
    burst of failures out instead of sending it back in lockstep. A vendor's `retry_after` is a
    floor and is not capped (the vendor knows its limit better than we do); up to `base` seconds
    of jitter go on top of it so items told the same retry-after do not all return at once.
    """
    exponent = min(max(attempt, 1) - 1, 60)  # 2**60 already dwarfs any cap; avoids overflow
    delay = rng.uniform(0.0, min(cap, base * 2.0**exponent))
    if retry_after is not None and retry_after > 0:
        delay = max(delay, retry_after + rng.uniform(0.0, base))
    return delay


def decide(
    error: ProviderError,
    *,
    attempts_on_model: int,
    num_retries: int,
    rng: random.Random,
    base: float = DEFAULT_BASE,
    cap: float = DEFAULT_CAP,
) -> Decision:
    """Retry on the same model, fall back to the next model, or fail the item.

    `attempts_on_model` counts calls already made on this model, the failed one included, so a
    transient error is retried while `attempts_on_model <= num_retries`: at most
    `num_retries + 1` calls per model.
    """
    kind = error.kind
    action = action_for(kind)
    if action == "retry":
        if attempts_on_model <= num_retries:
            delay = 0.0
            if kind not in _NO_BACKOFF:
                delay = backoff_delay(
                    attempts_on_model, error.retry_after, base=base, cap=cap, rng=rng
                )
            return Decision("retry", delay, f"{kind}: retry {attempts_on_model} of {num_retries}")
        return Decision(
            "fallback", 0.0, f"{kind}: retries exhausted after {attempts_on_model} calls"
        )
    if action == "fallback":
        return Decision("fallback", 0.0, f"{kind}: not retried on this model")
    return Decision("fail", 0.0, f"{kind}: not retried on any model")


def next_aliases(
    kind: ErrorKind,
    alias: str,
    remaining: Sequence[str],
    config: Config,
    *,
    tried: Iterable[str] = (),
) -> list[str]:
    """The rest of the chain to try after `alias` failed with a fallback-worthy error.

    - context window exceeded: the alias's `context_window_fallbacks` first (larger models),
      then the remaining chain;
    - content filtered: only the alias's `content_policy_fallbacks`; none configured means the
      item ends with the filter error (another general model would likely refuse it too);
    - anything else: the remaining chain.

    The result never repeats an alias, nor contains `alias` or anything in `tried`, so two
    aliases naming each other as context-window fallbacks cannot loop.
    """
    if kind is ErrorKind.content_filtered:
        candidates: Iterable[str] = config.content_policy_fallbacks.get(alias, ())
    elif kind is ErrorKind.context_window_exceeded:
        candidates = (*config.context_window_fallbacks.get(alias, ()), *remaining)
    else:
        candidates = remaining
    seen = {alias, *tried}
    out: list[str] = []
    for a in candidates:
        if a not in seen:
            seen.add(a)
            out.append(a)
    return out


def choose_deployment(
    candidates: Sequence[Deployment], cooling: set[str], rng: random.Random
) -> Deployment | None:
    """A random deployment among those not cooling down; None when all of them are."""
    healthy = [d for d in candidates if d.id not in cooling]
    return rng.choice(healthy) if healthy else None


def next_vendor(vendors: Sequence[str], current: str) -> str | None:
    """The vendor after `current` among a load-balanced name's vendors (cyclically), where a
    retry goes; None when the name lives on `current` alone."""
    i = vendors.index(current) if current in vendors else -1
    rotated = [*vendors[i + 1 :], *vendors[: max(i, 0)]]
    return rotated[0] if rotated else None
