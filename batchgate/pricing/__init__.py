"""Exact cost: genai-prices lookups pinned per batch, line costs, and estimates before a run.

- `pin_prices(deployments, at)` → `PriceTable` (deployment id → `PriceEntry`), stored with the
  batch as `table.to_json()` and read back with `PriceTable.from_json()`.
- `cost_of(usage, entry)` → exact `Decimal` USD of one attempt.
- `estimate_request(body, endpoint, entry)` → (low, high) USD before the request runs;
  `Estimate` sums them per model alias.

Prices come from the config's `input_cost_per_token` / `output_cost_per_token` when set, else from
genai-prices' bundled data (never fetched at run time); a deployment with neither is priced at
zero and flagged `unpriced`.
"""

from batchgate.pricing._cost import CostBreakdown, cost_breakdown, cost_of, format_usd
from batchgate.pricing._estimate import (
    CHARS_PER_TOKEN,
    DEFAULT_MAX_OUTPUT_TOKENS,
    TOKENS_PER_MESSAGE,
    TOKENS_PER_NON_TEXT_PART,
    TOKENS_PER_REQUEST,
    AliasEstimate,
    Estimate,
    TokenEstimate,
    estimate_request,
    estimate_tokens,
)
from batchgate.pricing._pin import (
    GENAI_PROVIDERS,
    genai_model_ref,
    genai_prices_version,
    pin_prices,
    price_entry,
)
from batchgate.pricing._table import (
    COMPONENTS,
    SOURCE_CONFIG,
    SOURCE_GENAI_PRICES,
    SOURCE_UNPRICED,
    SOURCES,
    PriceEntry,
    PriceTable,
    PriceTier,
    batch_key,
    unpriced_entry,
)

__all__ = [
    "CHARS_PER_TOKEN",
    "COMPONENTS",
    "DEFAULT_MAX_OUTPUT_TOKENS",
    "GENAI_PROVIDERS",
    "SOURCES",
    "SOURCE_CONFIG",
    "SOURCE_GENAI_PRICES",
    "SOURCE_UNPRICED",
    "TOKENS_PER_MESSAGE",
    "TOKENS_PER_NON_TEXT_PART",
    "TOKENS_PER_REQUEST",
    "AliasEstimate",
    "CostBreakdown",
    "Estimate",
    "PriceEntry",
    "PriceTable",
    "PriceTier",
    "TokenEstimate",
    "batch_key",
    "cost_breakdown",
    "cost_of",
    "estimate_request",
    "estimate_tokens",
    "format_usd",
    "genai_model_ref",
    "genai_prices_version",
    "pin_prices",
    "price_entry",
    "unpriced_entry",
]
