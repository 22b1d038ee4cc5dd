"""Expected cost of a batch file before running it: per model, a low and a high bound.

Validates the file first (an estimate of a file that would be refused is no estimate), then
prices every line on its model's deployments with the current price table.
"""

from __future__ import annotations

from typing import Any, BinaryIO

from batchgate.config import VENDOR_BATCH_LIMITS, Config
from batchgate.pricing import Estimate, batch_key, pin_prices
from batchgate.validation import Limits, iter_requests, validate_file


class InvalidFile(ValueError):
    def __init__(self, errors: list[Any]) -> None:
        super().__init__(f"{len(errors)} validation error(s)")
        self.errors = errors


def estimate_file(
    config: Config,
    open_file: Any,
    endpoint: str | None,
    *,
    model: str | None = None,
    limits: Limits = Limits(),
) -> dict[str, Any]:
    """`open_file()` returns a fresh binary file object (the file is read twice, streaming)."""
    fp: BinaryIO
    with open_file() as fp:
        report = validate_file(
            fp,
            endpoint=endpoint,
            known_models=None if model else config.aliases,
            default_model=model,
            limits=limits,
        )
    if not report.ok:
        raise InvalidFile(report.errors)
    prices = pin_prices(config.deployments, None, VENDOR_BATCH_LIMITS)
    estimate, batched = Estimate(), Estimate()
    endpoint = endpoint or report.endpoint or "/v1/chat/completions"
    with open_file() as fp:
        for line in iter_requests(fp, limits=limits, default_model=model):
            alias = model or line.body["model"]
            deps = config.deployments_for(alias)
            entries = [prices.entry(d.id) for d in deps]
            estimate.add(alias, line.body, endpoint, entries)
            # With `vendor_batch`: a line whose deployment has a batch API is priced at its
            # batch price (retries of failed or expired lines online are not included).
            lane_entries = [
                prices.entry(batch_key(d.id)) if batch_key(d.id) in prices else prices.entry(d.id)
                for d in deps
            ]
            batched.add(alias, line.body, endpoint, lane_entries)
    return {
        "object": "batch.estimate",
        "endpoint": endpoint,
        "lines": estimate.lines,
        "cost_usd_low": format(estimate.cost_low, "f"),
        "cost_usd_high": format(estimate.cost_high, "f"),
        "models": estimate.to_json().get("by_alias", estimate.to_json()),
        "vendor_batch_cost_usd_low": format(batched.cost_low, "f"),
        "vendor_batch_cost_usd_high": format(batched.cost_high, "f"),
        "note": "input tokens ≈ characters/4; output between 0 and max_tokens (1024 when unset); "
        "retries and fallbacks not included",
    }
