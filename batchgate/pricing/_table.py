"""Pinned prices: one `PriceEntry` per deployment, gathered in a JSON-serialisable `PriceTable`.

Every price is a per-token (or per-request) `Decimal`, stored in JSON as a string so a round trip
is exact. A batch keeps the table it was created with; later price or config changes never
reach it (guarantee 4 of DESIGN.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

log = logging.getLogger(__name__)

SOURCE_GENAI_PRICES = "genai-prices"
SOURCE_CONFIG = "config"
SOURCE_UNPRICED = "unpriced"
SOURCES = (SOURCE_GENAI_PRICES, SOURCE_CONFIG, SOURCE_UNPRICED)

# The token components a price entry prices. `input` is the uncached part of the prompt.
COMPONENTS = ("input", "output", "cache_read", "cache_write")

TABLE_FORMAT_VERSION = 1
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class PriceTier:
    """Once a request's whole prompt (cached part included) exceeds `above` tokens, every token of
    the component costs `price` — the "cliff" tiers genai-prices and the vendors use."""

    above: int
    price: Decimal


@dataclass(frozen=True, slots=True)
class PriceEntry:
    """The pinned price of one deployment. Prices are USD per token (`request`: per request)."""

    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal
    source: str
    alias: str | None = None
    provider_id: str | None = None  # genai-prices provider id we looked the model up in
    model_ref: str | None = None  # the reference we looked up (the deployment's model id)
    model_id: str | None = None  # the genai-prices model id it matched
    request: Decimal = ZERO
    tiers: Mapping[str, tuple[PriceTier, ...]] = field(default_factory=dict)
    note: str | None = None

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"unknown price source {self.source!r}")
        for name in (*COMPONENTS, "request"):
            _check_price(name, getattr(self, name))
        for name, tiers in self.tiers.items():
            if name not in COMPONENTS:
                raise ValueError(f"tiers for unknown component {name!r}")
            for tier in tiers:
                _check_price(f"{name} tier", tier.price)

    @property
    def unpriced(self) -> bool:
        return self.source == SOURCE_UNPRICED

    def rate(self, component: str, prompt_tokens: int = 0) -> Decimal:
        """Per-token price of `component` for a request whose whole prompt is `prompt_tokens`."""
        price: Decimal = getattr(self, component)
        for tier in sorted(self.tiers.get(component, ()), key=lambda t: t.above, reverse=True):
            if prompt_tokens > tier.above:
                return tier.price
        return price

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source}
        for key in ("alias", "provider_id", "model_ref", "model_id"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        for name in COMPONENTS:
            out[name] = _dec_to_json(getattr(self, name))
        if self.request:
            out["request"] = _dec_to_json(self.request)
        if self.tiers:
            out["tiers"] = {
                name: [[t.above, _dec_to_json(t.price)] for t in tiers]
                for name, tiers in self.tiers.items()
                if tiers
            }
        if self.note is not None:
            out["note"] = self.note
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PriceEntry:
        if not isinstance(data, Mapping):
            raise ValueError("price entry must be an object")
        try:
            tiers = {
                name: tuple(PriceTier(int(above), _dec_from_json(price)) for above, price in raw)
                for name, raw in (data.get("tiers") or {}).items()
            }
            return cls(
                input=_dec_from_json(data["input"]),
                output=_dec_from_json(data["output"]),
                cache_read=_dec_from_json(data["cache_read"]),
                cache_write=_dec_from_json(data["cache_write"]),
                source=data["source"],
                alias=data.get("alias"),
                provider_id=data.get("provider_id"),
                model_ref=data.get("model_ref"),
                model_id=data.get("model_id"),
                request=_dec_from_json(data.get("request", "0")),
                tiers=tiers,
                note=data.get("note"),
            )
        except KeyError as exc:
            raise ValueError(f"price entry is missing {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"invalid price entry: {exc}") from None


def unpriced_entry(
    alias: str | None = None,
    provider_id: str | None = None,
    model_ref: str | None = None,
    note: str | None = None,
) -> PriceEntry:
    """A zero price that says so: lines served by it cost 0 and are flagged `unpriced`."""
    return PriceEntry(
        input=ZERO,
        output=ZERO,
        cache_read=ZERO,
        cache_write=ZERO,
        source=SOURCE_UNPRICED,
        alias=alias,
        provider_id=provider_id,
        model_ref=model_ref,
        note=note,
    )


# Vendor batch prices are pinned next to the online ones, under this prefix + deployment id.
BATCH_PREFIX = "batch:"


def batch_key(deployment_id: str) -> str:
    return BATCH_PREFIX + deployment_id


@dataclass(frozen=True)
class PriceTable:
    """Deployment id → pinned `PriceEntry`, for every deployment a batch may use."""

    entries: Mapping[str, PriceEntry]
    pinned_at: datetime
    genai_prices_version: str | None = None

    def __getitem__(self, deployment_id: str) -> PriceEntry:
        return self.entries[deployment_id]

    def __contains__(self, deployment_id: object) -> bool:
        return deployment_id in self.entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, deployment_id: str) -> PriceEntry | None:
        return self.entries.get(deployment_id)

    def entry(self, deployment_id: str) -> PriceEntry:
        """The pinned entry; a deployment the batch did not pin (it was added to the config
        later) is `unpriced`, never priced at today's rate behind the batch's back."""
        found = self.entries.get(deployment_id)
        if found is not None:
            return found
        log.warning("pricing: deployment %s has no pinned price: priced at 0", deployment_id)
        return unpriced_entry(note=f"deployment {deployment_id!r} was not pinned with the batch")

    def for_alias(self, alias: str) -> list[PriceEntry]:
        """The online prices of an alias's deployments (not their vendor batch prices)."""
        return [
            e
            for key, e in self.entries.items()
            if e.alias == alias and not key.startswith(BATCH_PREFIX)
        ]

    def unpriced(self) -> list[str]:
        """Deployment ids priced at zero because no price was known."""
        return [dep_id for dep_id, e in self.entries.items() if e.unpriced]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": TABLE_FORMAT_VERSION,
            "pinned_at": self.pinned_at.isoformat(),
            "genai_prices_version": self.genai_prices_version,
            "entries": {dep_id: e.to_json() for dep_id, e in self.entries.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PriceTable:
        if not isinstance(data, Mapping):
            raise ValueError("price table must be an object")
        if data.get("version") != TABLE_FORMAT_VERSION:
            raise ValueError(f"unsupported price table version {data.get('version')!r}")
        try:
            pinned_at = datetime.fromisoformat(data["pinned_at"])
            raw_entries = data["entries"]
        except KeyError as exc:
            raise ValueError(f"price table is missing {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"invalid price table: {exc}") from None
        if not isinstance(raw_entries, Mapping):
            raise ValueError("price table entries must be an object")
        return cls(
            entries={str(k): PriceEntry.from_json(v) for k, v in raw_entries.items()},
            pinned_at=pinned_at,
            genai_prices_version=data.get("genai_prices_version"),
        )


def _check_price(name: str, value: object) -> None:
    if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
        raise ValueError(f"{name} price must be a finite non-negative Decimal, got {value!r}")


def _dec_to_json(value: Decimal) -> str:
    # Fixed-point keeps the JSON readable and, for exponents <= 0, gives back the same coefficient
    # and exponent; a positive exponent would lose its trailing-zero information, so keep str().
    return str(value) if value.as_tuple().exponent > 0 else format(value, "f")


def _dec_from_json(value: object) -> Decimal:
    # Floats are refused: they would already have lost the exact value.
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"price must be a decimal string, got {value!r}")
    try:
        return Decimal(value)
    except InvalidOperation:
        raise ValueError(f"not a decimal: {value!r}") from None
