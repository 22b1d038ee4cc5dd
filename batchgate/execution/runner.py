"""Run one chunk of items: claim, call concurrently, retry, fall back, record.

One retry layer only: this one. Adapters never retry; Celery never retries a task.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from batchgate import structured
from batchgate.config import Deployment
from batchgate.errors import ErrorKind, InvalidOutput, ProviderError, ServerError
from batchgate.execution import faults
from batchgate.execution.cache import Hit, ResponseCache, answer_of
from batchgate.execution.recorder import Recorder
from batchgate.execution.runtime import BatchInfo, Runtime
from batchgate.filestore import FileStore
from batchgate.money import usd_str, usd_to_pusd
from batchgate.names import alive_key
from batchgate.pipeline.finalize import try_finalize
from batchgate.pipeline.lifecycle import CANCELLED, EXPIRED, stop_for_budget
from batchgate.pricing import PriceEntry, cost_of, estimate_request, estimate_tokens
from batchgate.providers._http import send
from batchgate.providers.base import Completion
from batchgate.providers.registry import get_adapter
from batchgate.routing.policy import choose_deployment, decide, next_aliases, next_vendor
from batchgate.routing.probes import PROBE_POLL
from batchgate.store.fairshare import claim_fair
from batchgate.store.items import (
    AttemptRow,
    ClaimedItem,
    ItemUpdate,
    claim,
)
from batchgate.store.models import TERMINAL_ITEM_STATES

log = logging.getLogger(__name__)

# Returned by _attempt when the batch's budget refuses the call (no call was made).
BUDGET_EXCEEDED = ServerError("budget exceeded", code="budget_exceeded")
# Returned by _attempt when the batch was cancelled or expired while the item waited for a slot.
NOT_RUN = ServerError("not run", code="not_run")

# While a chunk runs, its process says it is alive this often, with this TTL: the reconciler
# releases the leases of a process whose key is gone (batchgate.pipeline.reconcile.DeathWatch).
ALIVE_INTERVAL = 1.0
ALIVE_TTL = 10  # generous: a CPU-starved live worker must not pass for dead
COOLDOWN_WINDOW = 60.0
# Why an item moved on without a call: every deployment of its model was out of rotation.
COOLING = ServerError("every deployment of this model is cooling down", code="cooldown")
# A budget reservation for a call that sends no output cap, to a model whose config names no
# `model_info.max_output_tokens`: the most output tokens it is assumed to produce.
UNKNOWN_MODEL_OUTPUT_LIMIT = 16384


@dataclass
class ChunkReport:
    claimed: int = 0
    succeeded: int = 0
    failed: int = 0
    rerouted: int = 0
    deferred: int = 0
    cancelled: int = 0
    batches: set[str] = field(default_factory=set)


class ChunkRun:
    def __init__(
        self,
        rt: Runtime,
        vendor: str,
        enqueue: Callable[[str, str, list[int]], None],
    ) -> None:
        self.rt = rt
        self.vendor = vendor
        self.owner = f"{rt.worker_id}:{uuid.uuid4().hex[:12]}"
        # Leased ids, renewed by the heartbeat until the recorder has written their outcome.
        self.in_flight: set[int] = set()
        self.recorder = Recorder(rt, self.owner, enqueue, self.in_flight)
        self.cache = ResponseCache(rt, vendor, self.recorder)
        self.report = ChunkReport()
        self._tasks: set[asyncio.Task[None]] = set()
        self._backing_off = 0  # items sleeping out a retry delay: they hold no slot
        self._changed = asyncio.Event()  # an item finished or started backing off
        # Items running here whose outcome is with the recorder already (dropped when their task
        # ends: a task that refills for minutes runs hundreds of thousands of items).
        self._ended: set[int] = set()
        self._held: dict[str, int] = {}  # items of each batch this chunk runs now
        self._finalizing: set[asyncio.Task[None]] = set()

    async def run(self, batch_id: str, ids: list[int]) -> ChunkReport:
        rt = self.rt
        items = await rt.db(
            claim, rt.engine, ids, self.owner, time.time(), rt.settings.lease_seconds
        )
        self.report.claimed = len(items)
        if not items:
            return self.report
        self.report.batches = {i.batch_id for i in items}
        self.recorder.start()
        loop = asyncio.get_running_loop()
        beats = [loop.create_task(self._heartbeat()), loop.create_task(self._alive())]
        try:
            await self._run_all(items)
        finally:
            try:
                await self.recorder.close()
            finally:
                # Only now: leases are renewed for as long as outcomes wait to be written.
                for beat in beats:
                    beat.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await beat
        return self.report

    async def _run_all(self, items: list[ClaimedItem]) -> None:
        """Run the chunk, and while the batch has queued items of this vendor, claim more as
        items finish: a chunk's slow tail must not leave the vendor's slots idle. Items waiting
        out a backoff hold no slot, so they do not count against the `size` kept in play.
        Refilling stops after `refill_seconds`, so the task ends and its message is
        acknowledged; the items' own messages then find them done (no-ops)."""
        rt = self.rt
        size = max(len(items), rt.config.limits(self.vendor).effective_chunk_size())
        # Refill in groups (a quarter of `size`), not one claim per finished item.
        low = size - max(1, size // 4)
        deadline = time.monotonic() + rt.settings.refill_seconds
        self._start(items, await self.cache.lookup(items))
        exhausted = False
        while self._tasks:
            await self._changed.wait()
            self._changed.clear()
            active = len(self._tasks) - self._backing_off
            if exhausted or active >= low or time.monotonic() > deadline:
                continue
            if rt.draining.is_set():
                continue
            try:
                faults.fire("runner.claim")
                more = await rt.db(
                    claim_fair,
                    rt.engine,
                    self.vendor,
                    size - active,
                    self.owner,
                    time.time(),
                    rt.settings.lease_seconds,
                )
            except Exception as exc:  # any failure: the queue keeps them, the chunk runs on
                log.warning("claiming more items failed: %s: %s", type(exc).__name__, exc)
                continue
            exhausted = not more
            self.report.claimed += len(more)
            self.report.batches.update(i.batch_id for i in more)
            self._start(more, await self.cache.lookup(more))
        await asyncio.gather(*self._finalizing)

    def _start(self, items: list[ClaimedItem], hits: dict[int, Hit]) -> None:
        loop = asyncio.get_running_loop()
        for item in self._track(items):
            self._ended.discard(item.id)
            hit = hits.get(item.id)
            task = loop.create_task(
                self._run_item(item) if hit is None else self._serve_cached(item, hit)
            )
            self._tasks.add(task)
            self._held[item.batch_id] = self._held.get(item.batch_id, 0) + 1
            task.add_done_callback(functools.partial(self._on_done, item.batch_id, item.id))

    def _on_done(self, batch_id: str, item_id: int, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._ended.discard(item_id)
        self._held[batch_id] -= 1
        if not self._held[batch_id]:
            # This chunk holds no more of the batch: it may be done now. A small batch served
            # by refills must not wait for the end of the task that ran it to be finalized.
            finalizing = asyncio.get_running_loop().create_task(self._finalize(batch_id))
            self._finalizing.add(finalizing)
            finalizing.add_done_callback(self._finalizing.discard)
        self._changed.set()

    async def _finalize(self, batch_id: str) -> None:
        try:
            if await self.recorder.flush():
                files = FileStore(self.rt.settings.files_dir)
                await asyncio.to_thread(try_finalize, self.rt.engine, files, batch_id)
        except Exception:  # the task's end, or the reconciler, finalizes it instead
            log.exception("finalizing %s after its last item here failed", batch_id)

    def _track(self, items: list[ClaimedItem]) -> list[ClaimedItem]:
        self.in_flight.update(i.id for i in items)
        return items

    async def _heartbeat(self) -> None:
        lease = self.rt.settings.lease_seconds
        while True:
            await asyncio.sleep(lease / 3)
            ids = list(self.in_flight)
            try:
                faults.fire("runner.renew")
                await self.rt.renew(self.owner, ids, time.time() + lease)
            except Exception as exc:  # any failure: the next beat tries again
                log.warning("lease renewal failed, will retry: %s: %s", type(exc).__name__, exc)

    async def _alive(self) -> None:
        key = alive_key(self.rt.worker_id)
        while True:
            try:
                await self.rt.redis.set(key, self.owner, ex=ALIVE_TTL)
            except Exception as exc:  # Redis away: the reconciler cannot judge us either
                log.warning("liveness beat failed: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(ALIVE_INTERVAL)

    def _finish(self, item: ClaimedItem, state: str, **kw: Any) -> None:
        now = time.time()
        update = ItemUpdate.of(
            item, state, finished_at=now if state in TERMINAL_ITEM_STATES else None, **kw
        )
        reroute = state == "queued" and kw.get("enqueued_at") is not None
        self._ended.add(item.id)
        self.recorder.finish(update, item.batch_id, reroute=reroute)
        key = {
            "succeeded": "succeeded",
            "failed": "failed",
            "cancelled": "cancelled",
            "expired": "cancelled",
        }.get(state)
        if key:
            setattr(self.report, key, getattr(self.report, key) + 1)
        elif reroute:
            self.report.rerouted += 1
        else:
            self.report.deferred += 1

    def _fail(self, item: ClaimedItem, err: ProviderError | None, code: str, message: str) -> None:
        error: dict[str, Any] = {"code": code, "message": message}
        if err is not None:
            error["status_code"] = err.status_code
            error["vendor_code"] = err.code
            error["request_id"] = err.request_id
        self._finish(item, "failed", error=error)

    async def _serve_cached(self, item: ClaimedItem, hit: Hit) -> None:
        # A task like any line's, so the batch is finalized as soon as its last line ends here.
        self._finish(item, "succeeded", **hit.outcome())

    async def _run_item(self, item: ClaimedItem) -> None:
        try:
            await self._run_item_inner(item)
        except Exception as exc:  # never let one item take the chunk down
            if item.id in self._ended:
                # Its outcome (e.g. a paid completion) is with the recorder already: a failure
                # after that, such as a slot release Redis refused, must not overwrite it.
                log.warning("item %s: %s after its outcome", item.id, type(exc).__name__)
            elif isinstance(exc, RedisError | OSError):
                # Broker trouble (e.g. a restart) is ours, not the item's: hand it back to the
                # reconciler, which re-enqueues it once the broker answers again.
                log.warning("item %s released after a broker error: %s", item.id, exc)
                self._finish(item, "queued")
            else:
                log.exception("item %s failed unexpectedly", item.id)
                self._fail(item, None, "internal_error", "batchgate failed to process this line")

    async def _run_item_inner(self, item: ClaimedItem) -> None:
        rt = self.rt
        config = rt.config
        while True:
            if rt.draining.is_set():
                # A planned stop: no new call; the item goes back to the queue as it is.
                self._finish(item, "queued")
                return
            info = await rt.batch(item.batch_id)
            if info is None or info.status != "in_progress":
                self._finish(item, "cancelled", error=CANCELLED)
                return
            if time.time() >= info.expires_at:
                self._finish(item, "expired", error=EXPIRED)
                return
            deps = config.deployments_for(item.alias)
            if not deps:
                self._fail(
                    item, None, "model_not_configured", f"model {item.alias!r} is not configured"
                )
                return
            local = [d for d in deps if d.vendor == self.vendor]
            if not local:  # the name has no deployment this worker's vendor serves
                self._move(item, config.vendor_for(item.alias, item.idx))
                return
            cooling = await rt.cooling([d.id for d in deps])
            dep = choose_deployment(local, cooling, rt.rng)
            probe = False
            if dep is None:
                # This vendor's deployments of the name are benched; another vendor's may not be.
                healthy = [d.vendor for d in deps if d.id not in cooling]
                if healthy:
                    self._move(item, healthy[0])
                    return
                dep = await self._probe(local)
                probe = dep is not None
            if dep is None:
                if await self._wait_for_cooldown(item, deps):
                    continue
                return
            try:
                err_or_done = await self._attempt(item, info, dep, probe=probe)
            finally:
                if probe:  # also when no call was made (cancelled, budget): let another probe
                    await rt.probes.release(dep.id)
            if err_or_done is None:
                return
            if err_or_done is NOT_RUN:
                continue  # the checks at the top of the loop end it as cancelled or expired
            if err_or_done is BUDGET_EXCEEDED:
                self._finish(item, "failed", error=_budget_error(info))
                await rt.db(stop_for_budget, rt.engine, item.batch_id, _budget_error(info))
                return
            if await self._after_error(item, err_or_done):
                continue
            return

    async def _probe(self, deps: list[Deployment]) -> Deployment | None:
        """The deployment this item is to probe (its auth pause is over; `routing/probes.py`)."""
        ttl = max(d.timeout or self.rt.config.attempt_timeout for d in deps)
        won = await self.rt.probes.try_probe(
            [d.id for d in deps], ttl + self.rt.settings.slot_ttl_margin
        )
        return next((d for d in deps if d.id == won), None)

    async def _wait_for_cooldown(self, item: ClaimedItem, deps: list[Deployment]) -> bool:
        """Every deployment of the item's model is out of rotation. Never a failure without a
        call: the item moves to its next model, or waits, holding no slot, until a deployment
        is back (or its probe has decided); a wait longer than an inline backoff hands it back
        to the queue until then. True: look again now."""
        rt = self.rt
        rest = next_aliases(
            COOLING.kind, item.alias, item.chain[item.chain_pos + 1 :], rt.config, tried=item.tried
        )
        if any(rt.config.deployments_for(a) for a in rest):
            return self._fall_back(item, COOLING)
        wait = await rt.probes.wait_hint([d.id for d in deps])
        if wait > rt.settings.inline_backoff_max:
            self._finish(item, "queued", not_before=time.time() + wait)
            return False
        # Jitter: the lines waiting on one cooldown must not all look again at the same moment.
        await asyncio.sleep(wait + rt.rng.uniform(0.0, PROBE_POLL))
        return True

    async def _attempt(
        self, item: ClaimedItem, info: BatchInfo, dep: Deployment, *, probe: bool = False
    ) -> ProviderError | None:
        """One call on `dep`: None when the item ended (succeeded), else the error to act on.
        The call is on the books (attempt row, outcome) before any Redis bookkeeping after it,
        and that bookkeeping is best-effort: a broker failure there never loses a paid call."""
        rt = self.rt
        if dep.rpm or dep.tpm:
            tokens = estimate_tokens(item.body, info.endpoint)
            await rt.rates.wait_turn(
                dep.id, dep.rpm, dep.tpm, tokens.input_tokens + tokens.max_output_tokens
            )
        result = await self._call(item, info, dep)
        ran = result is not NOT_RUN and result is not BUDGET_EXCEEDED
        if probe and ran and (result is None or result.kind != ErrorKind.authentication):
            # The credentials work: the deployment is back for every worker.
            with contextlib.suppress(RedisError, OSError):
                await rt.probes.back(dep.id)
            rt.forget_cooling()
        if result is None:
            if dep.id in rt.failing:
                # Only a deployment that failed here has a failure count worth clearing.
                rt.failing.discard(dep.id)
                with contextlib.suppress(RedisError, OSError):
                    await rt.cooldowns.record_success(dep.id)
            return None
        if result is NOT_RUN or result is BUDGET_EXCEEDED:
            return result
        try:
            await self._note_failure(item, dep, result, probe)
        except (RedisError, OSError) as exc:  # the call is on the books; cooldowns are a hint
            log.warning("cooldown bookkeeping for %s failed: %s", dep.id, type(exc).__name__)
        return result

    async def _call(self, item: ClaimedItem, info: BatchInfo, dep: Any) -> ProviderError | None:
        """Hold the slots, reserve the budget, send, and put the call on the books at once
        (before the slots' release, which can fail); the reservation is settled whatever
        happens."""
        rt = self.rt
        target = rt.target(dep)
        adapter = get_adapter(dep.adapter)
        entry = info.prices.entry(dep.id)
        # The deployment's own vendor: its slots, its client, and the vendor its attempt is
        # recorded under (a load-balanced name may have deployments on several vendors).
        scopes = [(dep.vendor, rt.config.limits(dep.vendor).max_concurrency)]
        if dep.max_parallel_requests:
            scopes.append((dep.id, dep.max_parallel_requests))
        lapse = target.deadline + rt.settings.slot_ttl_margin
        async with rt.slots.hold_all(scopes, ttl=lapse):
            # The wait for a slot can be long: look again before paying for a call.
            fresh = await rt.batch(item.batch_id)
            if fresh is None or fresh.status != "in_progress" or time.time() >= fresh.expires_at:
                return NOT_RUN
            if rt.draining.is_set():
                return NOT_RUN  # the top of the item's loop hands it back
            reservation = None
            if fresh.cap_pusd is not None:
                reservation = await self._reserve(item, fresh, dep, adapter, entry, lapse)
                if reservation is None:
                    return BUDGET_EXCEEDED
            cost = 0
            try:
                faults.fire("runner.before_call", item.custom_id)
                started = time.time()
                completion: Completion | None = None
                error: ProviderError | None = None
                try:
                    completion = await send(
                        adapter,
                        rt.client(dep.vendor),
                        fresh.endpoint,
                        dict(item.body),
                        target,
                        max_bytes=rt.settings.max_response_bytes,
                    )
                except ProviderError as exc:
                    error = exc
                if completion is not None and fresh.validate_output:
                    # Paid, but not the JSON the line asked for: on the books as an error.
                    error = _invalid_output(fresh.endpoint, item.body, completion)
                    completion = None if error is not None else completion
                cost = self._account(item, dep, entry, started, completion, error)
                if completion is not None:
                    self.cache.keep(item, fresh, dep, completion)
                faults.fire("runner.after_call", item.custom_id)
            finally:
                if reservation is not None:
                    await rt.budgets.settle(item.batch_id, reservation, cost)
        return error

    async def _reserve(
        self,
        item: ClaimedItem,
        info: BatchInfo,
        dep: Any,
        adapter: Any,
        entry: PriceEntry,
        lapse: float,
    ) -> str | None:
        """Reserve the call's worst case: every output token it can produce."""
        rt = self.rt
        cap = adapter.output_cap(item.body) or dep.max_output_tokens or UNKNOWN_MODEL_OUTPUT_LIMIT
        worst = usd_to_pusd(estimate_request(item.body, info.endpoint, entry, cap)[1])

        async def spent() -> int:
            return await rt.db(rt.spent_pusd, item.batch_id)

        assert info.cap_pusd is not None
        return await rt.budgets.reserve(item.batch_id, info.cap_pusd, worst, spent, lapse)

    def _account(
        self,
        item: ClaimedItem,
        dep: Any,
        entry: PriceEntry,
        started: float,
        completion: Completion | None,
        error: ProviderError | None,
    ) -> int:
        """Hand the attempt, and a completion's outcome, to the recorder; returns the cost in
        pUSD. Plain bookkeeping with no I/O: nothing here can drop a paid completion."""
        item.attempts += 1
        item.model_attempts += 1
        usage = completion.usage if completion is not None else (error.usage if error else None)
        unpriced = entry.unpriced
        try:
            cost_pusd = usd_to_pusd(cost_of(usage, entry)) if usage is not None else 0
        except Exception:  # a pricing bug must not cost the line its paid answer
            log.exception("pricing an attempt of item %s failed; recorded unpriced", item.id)
            cost_pusd, unpriced = 0, True
        self.recorder.attempt(
            AttemptRow(
                item_id=item.id,
                batch_id=item.batch_id,
                alias=item.alias,
                deployment_id=dep.id,
                vendor=dep.vendor,
                started_at=started,
                finished_at=time.time(),
                status="ok" if completion is not None else "error",
                provider_model=completion.provider_model if completion else dep.model,
                error_kind=error.kind.value if error else None,
                status_code=completion.status_code
                if completion
                else error.status_code
                if error
                else None,
                input_tokens=usage.input_tokens if usage else 0,
                output_tokens=usage.output_tokens if usage else 0,
                cache_read_tokens=usage.cache_read_tokens if usage else 0,
                cache_write_tokens=usage.cache_write_tokens if usage else 0,
                cost_pusd=cost_pusd,
                unpriced=unpriced,
            )
        )
        if completion is not None:
            faults.fire(faults.CRASH_POINT, item.custom_id)
            self._finish(
                item,
                "succeeded",
                served_deployment=dep.id,
                result=answer_of(completion, dep),
                raw_body=completion.raw,
            )
        return cost_pusd

    async def _note_failure(
        self, item: ClaimedItem, dep: Any, error: ProviderError, probe: bool
    ) -> None:
        """Cooldown bookkeeping for a failed call (already on the books)."""
        rt = self.rt
        if error.kind == ErrorKind.authentication:
            await rt.probes.pause(dep.id, after_probe=probe)
            rt.forget_cooling()
        elif error.kind in (ErrorKind.server_error, ErrorKind.overloaded, ErrorKind.timeout):
            allowed = rt.config.allowed_fails_for(item.alias)
            if allowed is not None:
                rt.failing.add(dep.id)
                if await rt.cooldowns.record_failure(
                    dep.id, allowed, COOLDOWN_WINDOW, rt.config.cooldown_time
                ):
                    rt.forget_cooling()

    async def _after_error(self, item: ClaimedItem, err: ProviderError) -> bool:
        """Decide what an error means for the item. True: try again now (same or next model)."""
        rt = self.rt
        decision = decide(
            err,
            attempts_on_model=item.model_attempts,
            num_retries=rt.config.num_retries,
            rng=rt.rng,
        )
        if decision.action == "retry":
            other = next_vendor(rt.config.vendors_for(item.alias), self.vendor)
            if other is not None:
                # As LiteLLM's router: a retry goes to another deployment of the name, here the
                # next vendor's, at once (its limits are not the ones that just failed).
                self._move(item, other)
                return False
            if decision.delay <= rt.settings.inline_backoff_max:
                # The slot was released on leaving hold_all: waiting costs the vendor nothing,
                # and the chunk may claim another item to use it meanwhile.
                self._backing_off += 1
                self._changed.set()
                try:
                    with contextlib.suppress(TimeoutError):  # a planned stop cuts the wait short
                        await asyncio.wait_for(rt.draining.wait(), decision.delay)
                finally:
                    self._backing_off -= 1
                return True
            self._finish(item, "queued", not_before=time.time() + decision.delay)
            return False
        if decision.action == "fallback":
            return self._fall_back(item, err)
        self._fail(item, err, err.kind.value, err.message)
        return False

    def _fall_back(self, item: ClaimedItem, err: ProviderError) -> bool:
        """Move the item to the next model of its chain, or end it with `err`. True: the next
        model is on this worker's vendor, so try it now."""
        config = self.rt.config
        rest = next_aliases(
            err.kind, item.alias, item.chain[item.chain_pos + 1 :], config, tried=item.tried
        )
        rest = [a for a in rest if config.deployments_for(a)]
        if not rest:
            self._fail(item, err, err.kind.value, err.message)
            return False
        item.tried = [*item.tried, item.alias]
        item.chain = [*item.chain[: item.chain_pos + 1], *rest]
        item.chain_pos += 1
        item.alias = rest[0]
        item.model_attempts = 0
        if self.vendor in config.vendors_for(item.alias):
            return True
        self._move(item, config.vendor_for(item.alias, item.idx))
        return False

    def _move(self, item: ClaimedItem, vendor: str) -> None:
        """Hand the item to another vendor's queue (a new task there)."""
        item.vendor = vendor
        self._finish(item, "queued", enqueued_at=time.time())


def _invalid_output(
    endpoint: str, body: dict[str, Any], completion: Completion
) -> InvalidOutput | None:
    """The paid answer as an InvalidOutput when it is not the JSON the line asked for."""
    problem = structured.problem(endpoint, body, completion.body)
    if problem is None:
        return None
    return InvalidOutput(
        problem, code="invalid_output", request_id=completion.request_id, usage=completion.usage
    )


def _budget_error(info: BatchInfo) -> dict[str, Any]:
    cap = usd_str(info.cap_pusd or 0)
    return {
        "code": "budget_exceeded",
        "message": f"not run: the batch's budget of {cap} USD would be exceeded",
    }
