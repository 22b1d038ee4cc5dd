"""GET /metrics: Prometheus text, computed at scrape time from the database and Redis.

Nothing is counted in this process: every value is read from the shared truth (attempts, items
and batches in the database; slots and queues in Redis), so one scrape of any API replica is
right for every worker process and host.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import redis
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from batchgate.api.auth import Caller, current_caller
from batchgate.api.errors import APIError
from batchgate.api.schemas import json_errors
from batchgate.config import Config
from batchgate.routing.load import vendor_load
from batchgate.store import stats
from batchgate.store.db import reading

router = APIRouter(tags=["metrics"])

PICO = 10**12
# Vendor calls take from milliseconds (a cache, a 4xx) to minutes (long generations).
LATENCY_BOUNDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class StoreCollector(Collector):
    def __init__(self, engine: Any, redis_client: redis.Redis, config: Config) -> None:
        self._engine = engine
        self._redis = redis_client
        self._config = config

    def collect(self) -> Iterator[Metric]:
        yield from self._database()
        yield from self._limits()
        try:
            broker = self._broker()
        except redis.RedisError:
            broker = []  # the database's metrics still stand; /healthz reports the broker
        yield from broker

    def _database(self) -> Iterator[Metric]:
        with reading(self._engine) as conn:
            calls = stats.calls(conn)
            lines = stats.lines_by_state(conn)
            batches = stats.batches_by_status(conn)
            latency = stats.call_latency(conn, LATENCY_BOUNDS)
        counter = CounterMetricFamily(
            "batchgate_vendor_calls",
            "Vendor calls made (lost: may have happened, its worker died).",
            labels=["vendor", "model", "outcome"],
        )
        cost: dict[str, int] = {}
        for c in calls:
            counter.add_metric([c.vendor, c.model, c.outcome], c.count)
            cost[c.model] = cost.get(c.model, 0) + c.cost_pusd
        yield counter
        spent = CounterMetricFamily(
            "batchgate_cost_usd", "Spend on vendor calls, by model alias.", labels=["model"]
        )
        for model, pusd in sorted(cost.items()):
            spent.add_metric([model], pusd / PICO)
        yield spent
        finished = CounterMetricFamily(
            "batchgate_lines_finished", "Batch lines that ended, by state.", labels=["state"]
        )
        for state, n in sorted(lines.items()):
            finished.add_metric([state], n)
        yield finished
        gauge = GaugeMetricFamily("batchgate_batches", "Batches by status.", labels=["status"])
        for status, n in sorted(batches.items()):
            gauge.add_metric([status], n)
        yield gauge
        hist = HistogramMetricFamily(
            "batchgate_call_latency_seconds", "Vendor call latency.", labels=["vendor"]
        )
        for lat in latency:
            buckets = [(str(b), n) for b, n in zip(LATENCY_BOUNDS, lat.cumulative, strict=True)]
            hist.add_metric([lat.vendor], [*buckets, ("+Inf", lat.count)], lat.total_seconds)
        yield hist

    def _limits(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "batchgate_vendor_limit", "Concurrent calls allowed per vendor.", labels=["vendor"]
        )
        for vendor in self._config.vendors:
            gauge.add_metric([vendor], self._config.limits(vendor).max_concurrency)
        yield gauge

    def _broker(self) -> list[Metric]:
        load = vendor_load(self._redis, self._config.vendors)
        inflight = GaugeMetricFamily(
            "batchgate_vendor_inflight", "Vendor call slots held now.", labels=["vendor"]
        )
        depth = GaugeMetricFamily(
            "batchgate_queue_depth", "Task messages waiting on a vendor queue.", labels=["vendor"]
        )
        for vendor, now in load.items():
            inflight.add_metric([vendor], now.in_flight)
            depth.add_metric([vendor], now.queued_messages)
        return [inflight, depth]


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format.",
            "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
        },
        **json_errors(401),
    },
)
def metrics(request: Request, caller: Caller = Depends(current_caller)) -> Response:
    """Needs the master key when one is configured (tenant keys are refused)."""
    if not caller.admin:
        raise APIError(401, "/metrics needs the master key.", code="invalid_api_key")
    st = request.app.state
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(st.engine, st.redis, st.config))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
