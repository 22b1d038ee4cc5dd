"""Look deployments up in genai-prices' bundled data and pin their prices into a `PriceTable`.

Offline by construction: genai-prices ships its prices as a Python module (`genai_prices.data`)
and only fetches newer ones when someone starts its `UpdatePrices` background thread. We never
start it, and we read the bundled providers directly rather than through
`genai_prices.data_snapshot.get_snapshot()`, so a snapshot fetched by anything else in the process
cannot change what we pin.

Only the four token prices (plus a per-request price) are pinned; our `Usage` carries nothing else
(no web searches, audio or image token counts), so other genai-prices price keys never apply.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING

from batchgate.config import Deployment
from batchgate.pricing._table import (
    SOURCE_CONFIG,
    SOURCE_GENAI_PRICES,
    ZERO,
    PriceEntry,
    PriceTable,
    PriceTier,
    batch_key,
    unpriced_entry,
)

if TYPE_CHECKING:
    from genai_prices.data_snapshot import DataSnapshot
    from genai_prices.types import ModelPrice

log = logging.getLogger(__name__)

# Our adapter → genai-prices provider id. Azure falls back to OpenAI's (and Anthropic's) models
# inside genai-prices. OpenAI-compatible servers are self-hosted or unknown: priced only from
# the config. The vendor prefix decides, not api_base: `openai/gpt-4o-mini` behind the simulator
# is priced as gpt-4o-mini.
GENAI_PROVIDERS: dict[str, str | None] = {
    "openai": "openai",
    "azure": "azure",
    "anthropic": "anthropic",
    "gemini": "google",
    "compatible": None,
}

# genai-prices price keys: `*_mtok` are USD per million tokens, `requests_kcount` USD per 1000
# requests (genai_prices/data_units.py).
_PER_MTOK = 6
_PER_KREQ = 3
_TOKEN_PRICE_KEYS = {
    "input": "input_mtok",
    "output": "output_mtok",
    "cache_read": "cache_read_mtok",
    "cache_write": "cache_write_mtok",
}


@cache
def _bundled_snapshot() -> DataSnapshot:
    from genai_prices import data
    from genai_prices.data_snapshot import DataSnapshot

    return DataSnapshot(providers=data.providers, from_auto_update=False)


def genai_prices_version() -> str | None:
    try:
        from genai_prices import __version__
    except ImportError:  # pragma: no cover - a dependency of the package
        return None
    return __version__


def genai_model_ref(deployment: Deployment) -> str:
    """The model reference we look up: the provider model id, minus Gemini's `models/` prefix."""
    model = deployment.model
    if deployment.adapter == "gemini" and model.startswith("models/"):
        model = model[len("models/") :]
    return model


def price_entry(
    deployment: Deployment, at: datetime | None = None, processing: str | None = None
) -> PriceEntry:
    """The price of one deployment at `at` (default now): config prices, else genai-prices, else
    an `unpriced` zero entry. `processing="batch"`: the vendor batch API's price (genai-prices'
    `price_context={'processing': 'batch'}`; config prices have no batch variant)."""
    at = _aware(at)
    if deployment.input_cost_per_token is not None or deployment.output_cost_per_token is not None:
        return _config_entry(deployment)

    provider_id = GENAI_PROVIDERS.get(deployment.adapter)
    model_ref = genai_model_ref(deployment)
    if provider_id is None:
        return unpriced_entry(
            deployment.alias,
            None,
            model_ref,
            note=f"no price source for {deployment.vendor}/ models: set input_cost_per_token"
            " and output_cost_per_token in the config",
        )
    try:
        provider, model = _bundled_snapshot().find_provider_model(
            model_ref, None, provider_id, None
        )
    except LookupError as exc:
        return unpriced_entry(deployment.alias, provider_id, model_ref, note=str(exc))

    # Standard prices for our real-time calls; the batch variant for vendor batch lines. As in
    # genai-prices' calc_price, a model found through another provider's fallback gets no
    # variant (its variants are that provider's).
    context = {"processing": processing} if processing else None
    if context and not any(model is m for m in provider.models):
        context = None
    prices = model.get_prices(at, context)
    if prices.input_mtok is None and prices.output_mtok is None:
        return unpriced_entry(
            deployment.alias,
            provider.id,
            model_ref,
            note=f"genai-prices has no token prices for {model.id}",
        )
    return _genai_entry(prices, deployment.alias, provider.id, model_ref, model.id)


def pin_prices(
    deployments: Iterable[Deployment],
    at: datetime | None = None,
    batch_adapters: Iterable[str] = (),
) -> PriceTable:
    """Pin the prices of every deployment a batch may use (all deployments of every alias in its
    fallback chains), as they are at `at` (default now); for deployments of `batch_adapters`
    also their vendor batch price, under `batch_key(id)`."""
    at = _aware(at)
    entries: dict[str, PriceEntry] = {}
    batched = set(batch_adapters)
    for deployment in deployments:
        if deployment.id in entries:
            continue
        if deployment.adapter in batched:
            entries[batch_key(deployment.id)] = price_entry(deployment, at, "batch")
        entry = price_entry(deployment, at)
        if entry.unpriced:
            log.warning(
                "pricing: no price for deployment %s (%s/%s), its usage is priced at 0: %s",
                deployment.id,
                deployment.vendor,
                deployment.model,
                entry.note,
            )
        entries[deployment.id] = entry
    return PriceTable(entries=entries, pinned_at=at, genai_prices_version=genai_prices_version())


def _config_entry(deployment: Deployment) -> PriceEntry:
    notes = []
    for key in ("input_cost_per_token", "output_cost_per_token"):
        if getattr(deployment, key) is None:
            notes.append(f"{key} not set: priced at 0")
            log.warning("pricing: deployment %s has no %s: priced at 0", deployment.id, key)
    input_price = deployment.input_cost_per_token or ZERO
    # The config has no cache prices: cached prompt tokens cost the same as the rest of the prompt.
    return PriceEntry(
        input=input_price,
        output=deployment.output_cost_per_token or ZERO,
        cache_read=input_price,
        cache_write=input_price,
        source=SOURCE_CONFIG,
        alias=deployment.alias,
        model_ref=deployment.model,
        note="; ".join(notes) or None,
    )


def _genai_entry(
    prices: ModelPrice, alias: str, provider_id: str, model_ref: str, model_id: str
) -> PriceEntry:
    from genai_prices.types import TieredPrices

    base: dict[str, Decimal] = {}
    tiers: dict[str, tuple[PriceTier, ...]] = {}
    for name, key in _TOKEN_PRICE_KEYS.items():
        value = getattr(prices, key)
        if value is None:
            continue
        if isinstance(value, TieredPrices):
            base[name] = value.base.scaleb(-_PER_MTOK)
            tiers[name] = tuple(PriceTier(t.start, t.price.scaleb(-_PER_MTOK)) for t in value.tiers)
        else:
            base[name] = value.scaleb(-_PER_MTOK)

    input_price = base.get("input", ZERO)
    # genai-prices subtracts cache reads/writes from input_tokens only when it has a price for
    # them; otherwise they are billed as plain input. Pin exactly that.
    for name in ("cache_read", "cache_write"):
        if name not in base:
            base[name] = input_price
            if "input" in tiers:
                tiers[name] = tiers["input"]

    requests = prices.requests_kcount
    if isinstance(requests, TieredPrices):  # pragma: no cover - not in the data; keep it exact
        raise ValueError(f"tiered per-request price for {model_id} is not supported")
    return PriceEntry(
        input=input_price,
        output=base.get("output", ZERO),
        cache_read=base["cache_read"],
        cache_write=base["cache_write"],
        source=SOURCE_GENAI_PRICES,
        alias=alias,
        provider_id=provider_id,
        model_ref=model_ref,
        model_id=model_id,
        request=requests.scaleb(-_PER_KREQ) if requests is not None else ZERO,
        tiers=tiers,
    )


def _aware(at: datetime | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
