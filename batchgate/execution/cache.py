"""The response cache on the hot path: look up a claim's lines in one query, serve the hits
without a call, and hand successful answers to the recorder, which writes them in its grouped
flush. The SQL is in `store/cache.py`.

A line's key is what would be sent: its tenant, its endpoint, and the canonical JSON of its body
with `model` set to the deployment's model (so another deployment model is another key). The
cache is a hint, never the truth: a lookup that fails costs a call, not a line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from batchgate import structured
from batchgate.config import Deployment
from batchgate.execution.runtime import BatchInfo, Runtime
from batchgate.money import usd_to_pusd
from batchgate.pricing import cost_of
from batchgate.providers.base import Completion, Usage
from batchgate.store.cache import CacheRow, find
from batchgate.store.items import ClaimedItem

if TYPE_CHECKING:
    from batchgate.execution.recorder import Recorder

log = logging.getLogger(__name__)


def canonical(value: Any) -> str:
    """One spelling per JSON value: key order and whitespace do not change it."""
    # ASCII: a lone surrogate in a body must hash, not raise.
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def cache_key(tenant: str, endpoint: str, body: dict[str, Any], model: str) -> str:
    """The key of the request `body` as sent to `model`, for `tenant` only."""
    material = canonical([tenant, endpoint, {**body, "model": model}])
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def answer_of(completion: Completion, dep: Deployment) -> dict[str, Any]:
    """An item's `result` for a vendor's answer: what is recorded, and what the cache keeps."""
    u = completion.usage
    return {
        "status_code": completion.status_code,
        "request_id": completion.request_id,
        "body": completion.body,
        "provider_model": completion.provider_model or dep.model,
        "usage": {
            "input_tokens": u.input_tokens,
            "output_tokens": u.output_tokens,
            "cache_read_tokens": u.cache_read_tokens,
            "cache_write_tokens": u.cache_write_tokens,
        },
    }


@dataclass(frozen=True, slots=True)
class Hit:
    deployment: Deployment
    result: dict[str, Any]
    saved_pusd: int  # what the call would have cost this batch, at its pinned prices

    def outcome(self) -> dict[str, Any]:
        """The succeeded item's fields (for `ItemUpdate`): no attempt, so cost 0."""
        return {
            "served_deployment": self.deployment.id,
            "result": self.result,
            "cached": True,
            "saved_pusd": self.saved_pusd,
        }


class ResponseCache:
    def __init__(self, rt: Runtime, vendor: str, recorder: Recorder) -> None:
        self.rt = rt
        self.vendor = vendor
        self.recorder = recorder

    async def lookup(self, items: list[ClaimedItem]) -> dict[int, Hit]:
        """The hits among `items` (by item id), in one query; {} when no batch of theirs
        caches, without a query."""
        try:
            return await self._lookup(items)
        except Exception as exc:  # the lines are called instead
            log.warning("response cache lookup failed: %s: %s", type(exc).__name__, exc)
            return {}

    async def _lookup(self, items: list[ClaimedItem]) -> dict[int, Hit]:
        rt = self.rt
        infos = {bid: await rt.batch_fixed(bid) for bid in {i.batch_id for i in items}}
        wanted: dict[int, list[tuple[str, Deployment]]] = {}
        for item in items:
            info = infos[item.batch_id]
            if info is not None and info.cache:
                wanted[item.id] = self._candidates(item, info)
        keys = [k for candidates in wanted.values() for k, _ in candidates]
        if not keys:
            return {}
        since = time.time() - rt.config.cache.ttl_seconds
        found = await rt.db(find, rt.engine, keys, since)
        hits: dict[int, Hit] = {}
        for item in items:
            info = infos[item.batch_id]
            for key, dep in wanted.get(item.id, ()):
                hit = found.get(key)
                if info is not None and hit is not None and hit[0] == info.tenant:
                    served = _serve(item, info, dep, json.loads(hit[1]))
                    if served is not None:
                        hits[item.id] = served
                        break
        return hits

    def _candidates(self, item: ClaimedItem, info: BatchInfo) -> list[tuple[str, Deployment]]:
        """One key per model this worker's deployments of the line's name would send."""
        by_model: dict[str, Deployment] = {}
        for dep in self.rt.config.deployments_for(item.alias):
            if dep.vendor == self.vendor:
                by_model.setdefault(dep.model, dep)
        return [
            (cache_key(info.tenant, info.endpoint, item.body, model), dep)
            for model, dep in by_model.items()
        ]

    def keep(self, item: ClaimedItem, info: BatchInfo, dep: Deployment, answer: Completion) -> None:
        """Queue a successful answer of a caching batch for the recorder's next flush."""
        if not info.cache:
            return
        try:
            row = CacheRow(
                key=cache_key(info.tenant, info.endpoint, item.body, dep.model),
                tenant=info.tenant,
                endpoint=info.endpoint,
                model=dep.model,
                result_json=json.dumps(answer_of(answer, dep)),
                created_at=time.time(),
            )
        except (TypeError, ValueError) as exc:  # not storable: the line is recorded anyway
            log.warning("item %s: answer not cached: %s", item.id, exc)
            return
        self.recorder.cache(row)


def _serve(item: ClaimedItem, info: BatchInfo, dep: Deployment, result: dict) -> Hit | None:
    """The hit, unless the stored answer is not the JSON this line asks for (it was stored by a
    batch that did not check): then the line is called."""
    if info.validate_output and structured.problem(info.endpoint, item.body, result["body"]):
        return None
    try:
        saved = usd_to_pusd(cost_of(Usage(**result["usage"]), info.prices.entry(dep.id)))
    except Exception:  # a pricing problem must not cost the hit; it only shows no saving
        log.exception("pricing the saving of cached item %s failed", item.id)
        saved = 0
    return Hit(dep, result, saved)
