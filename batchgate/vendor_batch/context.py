"""What the lane's stages share: the store, the config, one HTTP client, the wires."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy.engine import Engine

from batchgate.config import Config, Deployment
from batchgate.pricing import PriceTable
from batchgate.providers.base import Target
from batchgate.providers.batch_anthropic import AnthropicBatchWire
from batchgate.providers.batch_azure import AzureBatchWire
from batchgate.providers.batch_base import BatchWire
from batchgate.providers.batch_gemini import GeminiBatchWire
from batchgate.providers.batch_openai import OpenAIBatchWire
from batchgate.store.batches import batch_for_lane

# (batch_id, vendor, ids) → messages sent: how lines going online are enqueued at once.
Enqueue = Callable[[str, str, list[int]], Any]
HTTP_TIMEOUT = 120.0
PRICE_CACHE_MAX = 256


def wires() -> dict[str, BatchWire]:
    return {
        "openai": OpenAIBatchWire(),
        "azure": AzureBatchWire(),
        "anthropic": AnthropicBatchWire(),
        "gemini": GeminiBatchWire(),
    }


@dataclass
class Lane:
    engine: Engine
    config: Config
    enqueue: Enqueue
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=HTTP_TIMEOUT))
    wires: dict[str, BatchWire] = field(default_factory=wires)
    _prices: dict[str, PriceTable] = field(default_factory=dict)

    def deployment_for(self, alias: str, vendor: str, endpoint: str) -> Deployment | None:
        """The deployment a group of lines is submitted to: the alias's first on their vendor
        whose batch API serves the endpoint (None: the lines run online)."""
        for dep in self.config.deployments_for(alias):
            wire = self.wires.get(dep.adapter)
            if (
                dep.vendor == vendor
                and self.config.vendor_batch.supports(dep.adapter)
                and wire is not None
                and endpoint in wire.endpoints
            ):
                return dep
        return None

    def target(self, dep: Deployment) -> Target:
        return Target.of(dep, deadline=HTTP_TIMEOUT)

    def batch(self, batch_id: str) -> Any:
        return batch_for_lane(self.engine, batch_id)

    def prices(self, batch: Any) -> PriceTable:
        table = self._prices.get(batch.id)
        if table is None:
            if len(self._prices) >= PRICE_CACHE_MAX:
                self._prices.clear()  # a long-running reconciler sees many batches
            table = self._prices[batch.id] = PriceTable.from_json(
                json.loads(batch.price_table_json)
            )
        return table

    def close(self) -> None:
        self.client.close()
