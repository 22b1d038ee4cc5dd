"""Turn a vendor job's result lines into item outcomes and attempts, written in groups.

A line the vendor answered succeeds at the batch price (`lane: vendor_batch`). A line it
answered with an error is on the books as an attempt; a non-retryable error ends it as an error
line, any other goes online. Expired, cancelled and missing lines go online with no attempt.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from batchgate import structured
from batchgate.config import Deployment
from batchgate.errors import InvalidOutput, ProviderError
from batchgate.money import usd_to_pusd
from batchgate.pricing import PriceTable, batch_key, cost_of
from batchgate.providers.base import Adapter, Completion, Target
from batchgate.providers.batch_base import LineResult
from batchgate.routing.policy import action_for
from batchgate.store.items import AttemptRow, ItemUpdate
from batchgate.store.vendor_jobs import JobItem

log = logging.getLogger(__name__)

LANE = "vendor_batch"
GROUP = 1000  # result lines per transaction


@dataclass
class Outcomes:
    """One group's rows, and the lines it sends online."""

    updates: list[ItemUpdate] = field(default_factory=list)
    attempts: list[AttemptRow] = field(default_factory=list)
    online: list[JobItem] = field(default_factory=list)


def custom_id(item_id: int) -> str:
    """The custom_id a line carries in the vendor job: the item id (fits Anthropic's pattern)."""
    return f"i{item_id}"


def item_id_of(custom: str) -> int | None:
    return int(custom[1:]) if custom[:1] == "i" and custom[1:].isdigit() else None


@dataclass
class JobContext:
    dep: Deployment
    adapter: Adapter
    target: Target
    endpoint: str
    prices: PriceTable
    validate_output: bool


def outcomes(ctx: JobContext, items: dict[int, JobItem], results: Iterable[LineResult]) -> Outcomes:
    """The rows for the results of lines still waiting (others were ended meanwhile)."""
    out = Outcomes()
    now = time.time()
    for res in results:
        item = items.get(item_id_of(res.custom_id) or -1)
        if item is None:
            continue
        if res.kind in ("expired", "cancelled"):
            out.online.append(item)
            out.updates.append(ItemUpdate.of(item, "queued"))
            continue
        completion, error = _parse(ctx, res, item)
        cost = _cost(ctx, completion, error)
        out.attempts.append(_attempt(item, ctx, now, completion, error, cost))
        item.attempts += 1
        if completion is not None:
            out.updates.append(
                ItemUpdate.of(
                    item,
                    "succeeded",
                    served_deployment=ctx.dep.id,
                    finished_at=now,
                    result={
                        "status_code": completion.status_code,
                        "request_id": completion.request_id,
                        "body": completion.body,
                        "provider_model": completion.provider_model or ctx.dep.model,
                        "usage": {
                            "input_tokens": completion.usage.input_tokens,
                            "output_tokens": completion.usage.output_tokens,
                            "cache_read_tokens": completion.usage.cache_read_tokens,
                            "cache_write_tokens": completion.usage.cache_write_tokens,
                        },
                        "lane": LANE,
                    },
                )
            )
        elif error is not None and action_for(error.kind) == "fail":
            out.updates.append(
                ItemUpdate.of(
                    item,
                    "failed",
                    finished_at=now,
                    error={
                        "code": error.kind.value,
                        "message": error.message,
                        "status_code": error.status_code,
                        "vendor_code": error.code,
                        "request_id": error.request_id,
                        "lane": LANE,
                    },
                )
            )
        else:
            out.online.append(item)
            out.updates.append(ItemUpdate.of(item, "queued"))
    return out


def _parse(
    ctx: JobContext, res: LineResult, item: JobItem
) -> tuple[Completion | None, ProviderError | None]:
    try:
        if res.kind != "ok":
            return None, ctx.adapter.parse_error(res.status, {}, res.payload)
        completion = ctx.adapter.parse_response(ctx.endpoint, res.payload or {}, {}, ctx.target)
    except ProviderError as exc:
        return None, exc
    if ctx.validate_output:
        # Paid, but not the JSON the line asked for: an error on the books; it goes online.
        problem = structured.problem(ctx.endpoint, item.body, completion.body)
        if problem is not None:
            return None, InvalidOutput(problem, code="invalid_output", usage=completion.usage)
    return completion, None


def _cost(ctx: JobContext, completion: Completion | None, error: ProviderError | None) -> int:
    usage = completion.usage if completion is not None else (error.usage if error else None)
    if usage is None:
        return 0
    try:
        return usd_to_pusd(cost_of(usage, ctx.prices.entry(batch_key(ctx.dep.id))))
    except Exception:  # a pricing bug must not cost the line its paid answer
        log.exception("pricing a vendor batch line failed; recorded at 0")
        return 0


def _attempt(
    item: JobItem,
    ctx: JobContext,
    now: float,
    completion: Completion | None,
    error: ProviderError | None,
    cost: int,
) -> AttemptRow:
    usage = completion.usage if completion is not None else (error.usage if error else None)
    entry = ctx.prices.entry(batch_key(ctx.dep.id))
    return AttemptRow(
        item_id=item.id,
        batch_id=item.batch_id,
        alias=item.alias,
        deployment_id=ctx.dep.id,
        vendor=ctx.dep.vendor,
        started_at=now,
        finished_at=now,
        status="ok" if completion is not None else "error",
        provider_model=(completion.provider_model if completion else None) or ctx.dep.model,
        error_kind=error.kind.value if error else None,
        status_code=completion.status_code
        if completion
        else (error.status_code if error else None),
        input_tokens=usage.input_tokens if usage else 0,
        output_tokens=usage.output_tokens if usage else 0,
        cache_read_tokens=usage.cache_read_tokens if usage else 0,
        cache_write_tokens=usage.cache_write_tokens if usage else 0,
        cost_pusd=cost,
        unpriced=entry.unpriced,
        lane=LANE,
    )


def groups(results: Iterable[LineResult], size: int = GROUP) -> Iterable[list[LineResult]]:
    group: list[LineResult] = []
    for res in results:
        group.append(res)
        if len(group) >= size:
            yield group
            group = []
    if group:
        yield group
