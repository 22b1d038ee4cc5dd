"""Exact cost of one attempt: reported `Usage` * a pinned `PriceEntry`, in `Decimal`.

The split follows genai-prices' `calc_price`, which our `Usage` already matches: `input_tokens`
is the whole prompt with cache reads and writes inside it, so the uncached part is
`input_tokens - cache_read_tokens - cache_write_tokens`; `output_tokens` includes reasoning.
Tiered prices are chosen by the whole prompt (`input_tokens`), as genai-prices does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

from batchgate.pricing._table import ZERO, PriceEntry
from batchgate.providers.base import Usage

log = logging.getLogger(__name__)

# Enough digits that no product of a token count and a per-token price is ever rounded.
_PRECISION = 60


@dataclass(frozen=True, slots=True)
class CostBreakdown:
    """USD per component of one attempt; `input` is the uncached part of the prompt."""

    input: Decimal = ZERO
    cache_read: Decimal = ZERO
    cache_write: Decimal = ZERO
    output: Decimal = ZERO
    request: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        with localcontext() as ctx:
            ctx.prec = _PRECISION
            return self.input + self.cache_read + self.cache_write + self.output + self.request


def cost_breakdown(usage: Usage, entry: PriceEntry) -> CostBreakdown:
    uncached = usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens
    if uncached < 0:
        # An adapter bug, not a reason to lose the accounting of a paid call: trust the cache
        # counts, which carry the more specific prices.
        log.warning(
            "pricing: cache tokens (%d read + %d write) exceed input tokens (%d); "
            "counting no uncached input",
            usage.cache_read_tokens,
            usage.cache_write_tokens,
            usage.input_tokens,
        )
        uncached = 0
    prompt = usage.input_tokens
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return CostBreakdown(
            input=entry.rate("input", prompt) * uncached,
            cache_read=entry.rate("cache_read", prompt) * usage.cache_read_tokens,
            cache_write=entry.rate("cache_write", prompt) * usage.cache_write_tokens,
            output=entry.rate("output", prompt) * usage.output_tokens,
            request=entry.request,
        )


def cost_of(usage: Usage, entry: PriceEntry) -> Decimal:
    """Exact USD cost of one attempt's usage at the pinned price (zero for `unpriced` entries)."""
    return cost_breakdown(usage, entry).total


def format_usd(amount: Decimal, places: int = 6) -> str:
    """For display only: money stays an exact Decimal everywhere else."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return f"${amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)}"
