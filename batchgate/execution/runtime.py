"""Per-process state of a worker: config, engine, Redis, HTTP clients, limiters, batch cache.

Built lazily after fork (one per process id) and kept for the process's life, so HTTP
connections and the event loop are reused across tasks.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import random
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import aiohttp
from sqlalchemy.engine import Engine

from batchgate.config import Config, Deployment, load_config
from batchgate.coordination import connect_async
from batchgate.execution import faults
from batchgate.money import usd_to_pusd
from batchgate.pricing import PriceTable
from batchgate.providers._http import make_client
from batchgate.providers.base import Target
from batchgate.routing.budget import Budgets
from batchgate.routing.limits import Cooldowns, RateWindow, Slots
from batchgate.routing.probes import Probes
from batchgate.settings import Settings, get_settings
from batchgate.store import migrate, progress
from batchgate.store.batches import batch_for_calls
from batchgate.store.db import make_engine
from batchgate.store.items import renew

T = TypeVar("T")

BATCH_CACHE_SECONDS = 1.0
COOLING_CACHE_SECONDS = 0.5
# A process that exits while Redis is unreachable does not wait longer than this to close: what
# it still holds frees at its TTL.
CLOSE_SECONDS = 5.0


@dataclass(slots=True)
class BatchInfo:
    id: str
    endpoint: str
    status: str
    prices: PriceTable
    fetched_at: float
    expires_at: int
    cap_pusd: int | None
    validate_output: bool = True
    tenant: str = ""
    cache: bool = False  # the response cache is on for this batch


class Runtime:
    def __init__(self, settings: Settings, config: Config, engine: Engine) -> None:
        self.settings = settings
        self.config = config
        self.engine = engine
        self.pid = os.getpid()
        self.worker_id = f"{settings.host_id}:{self.pid}"
        self.rng = random.Random()
        self.loop = asyncio.new_event_loop()
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batchgate-db")
        # Lease renewals have their own thread (and so their own pooled connection): queued
        # behind claims and flushes that wait out SQLite's busy timeout, a lease could lapse
        # while its call is in flight.
        self._renewals = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batchgate-renew")
        self._clients: dict[str, aiohttp.ClientSession] = {}
        self._batches: dict[str, BatchInfo] = {}
        self._batch_loads: dict[str, asyncio.Future[BatchInfo | None]] = {}
        self.redis = connect_async(settings.redis_url or "", max_connections=32)
        self.failing: set[str] = set()
        self._cooling: dict[tuple[str, ...], tuple[float, set[str]]] = {}
        self._cooling_loads: dict[tuple[str, ...], asyncio.Future[set[str]]] = {}
        self.slots = Slots(self.redis, owner=self.worker_id)
        self.cooldowns = Cooldowns(self.redis)
        self.probes = Probes(self.redis)
        self.rates = RateWindow(self.redis)
        self.budgets = Budgets(self.redis)
        # Set on a planned stop (SIGTERM): chunks stop claiming and starting calls, finish the
        # calls in flight and hand the rest back to the queue, so a restart pays nothing twice.
        self.draining = asyncio.Event()

    def drain(self) -> None:
        """Ask the running chunk to wind down; safe from a signal handler."""
        self.loop.call_soon_threadsafe(self.draining.set)

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        """End what the process holds: the slots' tasks, HTTP clients, Redis, the loop, the
        database threads and engine. The loop closes last, with no task of ours pending."""
        try:
            self.run(asyncio.wait_for(self._aclose(), CLOSE_SECONDS))
        finally:
            self.loop.close()
            self._db.shutdown(wait=False, cancel_futures=True)
            self._renewals.shutdown(wait=False, cancel_futures=True)
            self.engine.dispose()

    async def _aclose(self) -> None:
        await self.slots.aclose()
        for client in self._clients.values():
            await client.close()
        await self.redis.aclose()

    async def db(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking database call off the event loop, one at a time per process."""
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    async def renew(self, owner: str, ids: list[int], lease_until: float) -> None:
        """Extend `owner`'s leases on `ids`, never queued behind this process's other writes."""
        await asyncio.get_running_loop().run_in_executor(
            self._renewals, renew, self.engine, owner, ids, lease_until
        )

    async def cooling(self, deployment_ids: list[str]) -> set[str]:
        """Deployments out of rotation, as Redis said at most COOLING_CACHE_SECONDS ago: one
        round trip per deployment set and interval instead of one per call. One load at a time:
        the items starting while it is on its way await it (at zero latency, dozens)."""
        key = tuple(deployment_ids)
        hit = self._cooling.get(key)
        if hit is not None and time.monotonic() - hit[0] < COOLING_CACHE_SECONDS:
            return hit[1]
        loading = self._cooling_loads.get(key)
        if loading is None:
            loading = asyncio.ensure_future(self._load_cooling(key))
            self._cooling_loads[key] = loading
            loading.add_done_callback(functools.partial(self._cooling_loaded, key))
        return await asyncio.shield(loading)  # a cancelled waiter must not cancel the others'

    def _cooling_loaded(self, key: tuple[str, ...], loading: asyncio.Future[set[str]]) -> None:
        if self._cooling_loads.get(key) is loading:  # not a newer load after forget_cooling
            del self._cooling_loads[key]

    async def _load_cooling(self, key: tuple[str, ...]) -> set[str]:
        asked = time.monotonic()
        found = await self.cooldowns.cooling(list(key))
        self._cooling[key] = (asked, found)
        return found

    def forget_cooling(self) -> None:
        self._cooling.clear()
        self._cooling_loads.clear()  # a load on its way may predate what made us forget

    def client(self, vendor: str) -> aiohttp.ClientSession:
        client = self._clients.get(vendor)
        if client is None:
            limit = self.config.limits(vendor).max_concurrency
            client = self._clients[vendor] = make_client(max_connections=limit)
        return client

    def target(self, dep: Deployment) -> Target:
        return Target.of(dep, deadline=dep.timeout or self.config.attempt_timeout)

    async def batch(self, batch_id: str) -> BatchInfo | None:
        """The batch as the database said at most BATCH_CACHE_SECONDS ago. One load per batch
        at a time: when the cache expires, every item starting then awaits the same query."""
        info = self._batches.get(batch_id)
        if info is not None and time.monotonic() - info.fetched_at < BATCH_CACHE_SECONDS:
            return info
        loading = self._batch_loads.get(batch_id)
        if loading is None:
            loading = asyncio.ensure_future(self._refresh_batch(batch_id, info))
            self._batch_loads[batch_id] = loading
            loading.add_done_callback(lambda _: self._batch_loads.pop(batch_id, None))
        return await asyncio.shield(loading)  # a cancelled waiter must not cancel the others'

    async def batch_fixed(self, batch_id: str) -> BatchInfo | None:
        """The batch as last loaded, however long ago: for what never changes once it is
        created (tenant, endpoint, pinned prices, whether it caches). No query when known."""
        info = self._batches.get(batch_id)
        return info if info is not None else await self.batch(batch_id)

    async def _refresh_batch(self, batch_id: str, info: BatchInfo | None) -> BatchInfo | None:
        row = await self.db(batch_for_calls, self.engine, batch_id)
        if row is None:
            return None
        endpoint, status, prices_json, expires_at, max_cost, validate_output, tenant, cache = row
        prices = info.prices if info is not None else PriceTable.from_json(json.loads(prices_json))
        cap = usd_to_pusd(Decimal(max_cost)) if max_cost is not None else None
        fresh = self._batches[batch_id] = BatchInfo(
            batch_id,
            endpoint,
            status,
            prices,
            time.monotonic(),
            expires_at,
            cap,
            bool(validate_output),
            tenant,
            bool(cache),
        )
        return fresh

    def spent_pusd(self, batch_id: str) -> int:
        """What the attempt ledger says a batch has spent (seeds the budget counter)."""
        return progress.spent_pusd(self.engine, batch_id)


_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    """The runtime of this process; rebuilt in a forked child (sockets don't survive fork)."""
    global _runtime
    if _runtime is None or _runtime.pid != os.getpid():
        settings = get_settings()
        if settings.config is None:
            raise RuntimeError("BATCHGATE_CONFIG is not set: workers need the config file")
        config = load_config(settings.config)
        engine = make_engine(
            settings.resolved_database_url(),
            idle_transaction_seconds=settings.db_idle_transaction_seconds,
        )
        migrate.upgrade(engine)  # a worker may be the first process to meet the database
        _runtime = Runtime(settings, config, engine)
        faults.install_from_spec(settings.test_faults, settings.data_dir)
    return _runtime


def close_runtime() -> None:
    """Close this process's runtime, if it built one (a worker's pool process, as it exits)."""
    global _runtime
    if _runtime is not None and _runtime.pid == os.getpid():
        _runtime.close()
    _runtime = None


def drain_on_sigterm() -> None:
    """In a worker's pool process: SIGTERM winds the running chunk down instead of killing it
    (Celery's warm shutdown then waits for the task to return)."""

    def handler(signum: int, frame: Any) -> None:
        if _runtime is not None and _runtime.pid == os.getpid():
            _runtime.drain()

    signal.signal(signal.SIGTERM, handler)
