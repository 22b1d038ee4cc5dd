"""Global limits against a real (embedded) Valkey: slots across coroutines, processes and a
SIGKILL; rpm/tpm windows; cooldowns and pauses. Every test uses fresh key names."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from redis.asyncio import Redis

from batchgate import names
from batchgate.routing import slots as slots_module
from batchgate.routing.limits import Cooldowns, RateWindow, Slots
from tests.integration.valkey_fixture import valkey_url  # noqa: F401  (a pytest fixture)

T = TypeVar("T")
SPAWN = mp.get_context("spawn")  # a fresh interpreter: no inherited loop, sockets or locks


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def run(url: str, body: Callable[[Redis], Awaitable[T]]) -> T:
    """Run `body(client)` in a fresh event loop with its own client, like a worker process."""

    async def main() -> T:
        client = Redis.from_url(url)
        try:
            return await body(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


async def _eventually(check: Callable[[], Awaitable[bool]], timeout: float) -> float:
    """Poll `check` until true; seconds it took. Fails the test after `timeout`."""
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > timeout:
            pytest.fail(f"condition not met within {timeout}s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def _true(value: bool) -> bool:
    return value


def _queued(slots: Slots) -> bool:
    """A waiter sits in the local queue (between polls), where a release can reach it."""
    state = slots._state
    return state is not None and any(g.waiters for g in state.gates.values())


def _waiting(slots: Slots) -> int:
    state = slots._state
    return 0 if state is None else sum(len(g.waiters) for g in state.gates.values())


# -- slots within one process ----------------------------------------------------------------


def test_200_coroutines_never_exceed_a_limit_of_8_and_reach_it(valkey_url: str) -> None:  # noqa: F811
    scope = _name("vendor")

    async def body(r: Redis) -> tuple[int, int, int]:
        slots = Slots(r)
        current = peak = 0

        async def one(i: int) -> None:
            nonlocal current, peak
            async with slots.hold(scope, 8, ttl=30):
                current += 1
                peak = max(peak, current)
                await asyncio.sleep(0.001 * (i % 5))
                current -= 1

        await asyncio.gather(*(one(i) for i in range(200)))
        return peak, current, await slots.in_use(scope)

    peak, current, left = run(valkey_url, body)
    assert peak == 8
    assert current == 0
    assert left == 0


def test_many_waiters_share_a_couple_of_connections(valkey_url: str) -> None:  # noqa: F811
    # redis-py raises MaxConnectionsError past its pool size (100 by default): waiting
    # coroutines must not each need a connection of their own.
    scope = _name("vendor")

    async def body() -> int:
        client = Redis.from_url(valkey_url, max_connections=2)
        try:
            slots, done = Slots(client), 0

            async def one() -> None:
                nonlocal done
                for _ in range(3):
                    async with slots.hold(scope, 16, ttl=30):
                        await asyncio.sleep(0.001)
                        done += 1

            await asyncio.gather(*(one() for _ in range(300)))
            return done
        finally:
            await client.aclose()

    assert asyncio.run(body()) == 900


def test_waiters_queue_in_fifo_order_locally(valkey_url: str) -> None:  # noqa: F811
    scope = _name("vendor")

    async def body(r: Redis) -> list[int]:
        slots = Slots(r)
        order: list[int] = []
        first = await slots.acquire(scope, 1, ttl=30)

        async def waiter(i: int) -> None:
            async with slots.hold(scope, 1, ttl=30):
                order.append(i)

        tasks = []
        for i in range(10):
            tasks.append(asyncio.create_task(waiter(i)))
            # each one joins the queue before the next arrives
            await _eventually(lambda n=i + 1: _true(_waiting(slots) == n), timeout=5)
        await slots.release(scope, first)
        await asyncio.gather(*tasks)
        return order

    assert run(valkey_url, body) == list(range(10))


def test_a_released_slot_goes_to_a_local_waiter_without_a_round_trip(
    valkey_url: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scope = _name("vendor")
    # A hand-on window far longer than the test: on a loaded machine the second past the
    # acquisition (the default window) can go by before the release, and that is the other path.
    monkeypatch.setattr(slots_module, "HANDOFF_MAX_AGE", 60.0)

    async def body(r: Redis) -> tuple[bool, int, int, int]:
        slots = Slots(r)
        first = await slots.acquire(scope, 1, ttl=1200)
        waiter = asyncio.create_task(slots.acquire(scope, 1, ttl=1200))
        await _eventually(lambda: _true(_queued(slots)), timeout=5)
        await r.config_resetstat()
        await slots.release(scope, first)
        second = await waiter
        stats = await r.info("commandstats")
        held_meanwhile = await slots.in_use(scope)
        await slots.release(scope, second)  # nobody waits now: back to Redis
        return (
            second == first,
            held_meanwhile,
            stats.get("cmdstat_zrem", {}).get("calls", 0),
            (await slots.in_use(scope)),
        )

    same_token, held, zrems, after = run(valkey_url, body)
    # Handed over under the same token: the slot never left Redis, no ZREM, never over limit.
    assert same_token and held == 1 and zrems == 0
    assert after == 0


def test_an_old_slot_goes_back_through_redis_instead_of_being_handed_on(
    valkey_url: str,  # noqa: F811
) -> None:
    scope = _name("vendor")

    async def body(r: Redis) -> tuple[bool, int]:
        slots = Slots(r)
        first = await slots.acquire(scope, 1, ttl=2)  # hand-on window: 5% of 2 s = 0.1 s
        await asyncio.sleep(0.15)  # let it age past the window (the behaviour under test)
        waiter = asyncio.create_task(slots.acquire(scope, 1, ttl=2))
        await _eventually(lambda: _true(_queued(slots)), timeout=5)
        await r.config_resetstat()
        await slots.release(scope, first)
        second = await waiter
        stats = await r.info("commandstats")
        await slots.release(scope, second)
        return second == first, stats.get("cmdstat_zrem", {}).get("calls", 0)

    same_token, zrems = run(valkey_url, body)
    assert not same_token and zrems >= 1


def test_waiting_does_not_hammer_redis(valkey_url: str) -> None:  # noqa: F811
    scope = _name("vendor")

    async def body(r: Redis) -> int:
        holder, waiters = Slots(r), Slots(r)
        token = await holder.acquire(scope, 1, ttl=30)
        await r.config_resetstat()
        tasks = [asyncio.create_task(waiters.acquire(scope, 1, ttl=30)) for _ in range(50)]
        await asyncio.sleep(1.0)  # all 50 wait the whole second
        stats = await r.info("commandstats")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await holder.release(scope, token)
        return sum(v["calls"] for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval"))

    scripts = run(valkey_url, body)
    # One poll task asks for all 50 at once and backs off to 25 ms: ~45 calls, not 50 per ms.
    assert scripts < 70


def test_cancelled_waiters_and_holders_give_slots_back(valkey_url: str) -> None:  # noqa: F811
    scope = _name("vendor")

    async def body(r: Redis) -> tuple[int, int]:
        slots = Slots(r)
        token = await slots.acquire(scope, 2, ttl=30)

        async def hold_forever() -> None:
            async with slots.hold(scope, 2, ttl=30):
                await asyncio.sleep(3600)

        holder = asyncio.create_task(hold_forever())
        await _eventually(lambda: _eq(slots.in_use(scope), 2), timeout=5)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(slots.acquire(scope, 2, ttl=30), 0.2)
        holder.cancel()
        await asyncio.gather(holder, return_exceptions=True)
        after_cancel = await slots.in_use(scope)
        await slots.release(scope, token)
        return after_cancel, await slots.in_use(scope)

    assert run(valkey_url, body) == (1, 0)


def test_hold_all_limits_vendor_and_deployment_together(valkey_url: str) -> None:  # noqa: F811
    vendor, narrow, wide = _name("vendor"), _name("dep"), _name("dep")

    async def body(r: Redis) -> dict[str, int]:
        slots = Slots(r)
        current = {vendor: 0, narrow: 0, wide: 0}
        peak = dict(current)

        async def one(i: int) -> None:
            dep, dep_limit = (narrow, 1) if i % 2 else (wide, 10)
            pairs = [(vendor, 3), (dep, dep_limit)]
            if i % 3 == 0:
                pairs.reverse()  # callers' order must not matter (no lock-order deadlock)
            async with slots.hold_all(pairs, ttl=30):
                for scope in (vendor, dep):
                    current[scope] += 1
                    peak[scope] = max(peak[scope], current[scope])
                await asyncio.sleep(0.002)
                for scope in (vendor, dep):
                    current[scope] -= 1

        await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(60))), 30)
        for scope in (vendor, narrow, wide):
            assert await slots.in_use(scope) == 0
        return peak

    peak = run(valkey_url, body)
    assert peak[vendor] == 3
    assert peak[narrow] == 1
    assert peak[wide] >= 2


def test_refresh_extends_a_slot_and_fails_once_it_expired(valkey_url: str) -> None:  # noqa: F811
    scope = _name("vendor")

    async def body(r: Redis) -> tuple[bool, int, bool]:
        slots = Slots(r)
        token = await slots.acquire(scope, 1, ttl=0.3)
        refreshed = await slots.refresh(scope, token, ttl=5)
        await asyncio.sleep(0.5)  # past the original TTL
        still_held = await slots.in_use(scope)
        await slots.release(scope, token)
        short = await slots.acquire(scope, 1, ttl=0.1)
        await _eventually(lambda: _eq(slots.in_use(scope), 0), timeout=5)
        return refreshed, still_held, await slots.refresh(scope, short, ttl=5)

    assert run(valkey_url, body) == (True, 1, False)


async def _eq(value: Awaitable[Any], expected: Any) -> bool:
    return (await value) == expected


# -- slots across processes ------------------------------------------------------------------


def _hold_in_a_loop(url: str, scope: str, limit: int, tasks: int, holds: int, barrier: Any) -> Any:
    """A separate worker process: its own loop and client; returns (peak seen, holds done)."""

    async def body(r: Redis) -> tuple[int, int]:
        slots = Slots(r)
        peak = done = 0
        barrier.wait()  # both processes start contending together

        async def one() -> None:
            nonlocal peak, done
            for _ in range(holds):
                async with slots.hold(scope, limit, ttl=30):
                    # INCR inside the hold counts holders in *all* processes at this moment.
                    peak = max(peak, await r.incr(f"test:{scope}:holders"))
                    await asyncio.sleep(0.002)
                    await r.decr(f"test:{scope}:holders")
                    done += 1

        await asyncio.gather(*(one() for _ in range(tasks)))
        return peak, done

    return run(url, body)


def _child(queue: Any, fn: Callable[..., Any], *args: Any) -> None:
    queue.put(fn(*args))


def test_two_processes_sharing_a_limit_of_4_never_exceed_it(valkey_url: str) -> None:  # noqa: F811
    scope = _name("vendor")
    queue, barrier = SPAWN.Queue(), SPAWN.Barrier(2)
    args = (valkey_url, scope, 4, 8, 15, barrier)
    procs = [SPAWN.Process(target=_child, args=(queue, _hold_in_a_loop, *args)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=10)
        assert p.exitcode == 0
    assert max(peak for peak, _ in results) == 4
    assert sum(done for _, done in results) == 2 * 8 * 15


def _take_a_slot_and_hang(url: str, scope: str, ttl: float, ready: Any) -> None:
    async def body(r: Redis) -> None:
        await Slots(r).acquire(scope, 1, ttl)
        ready.set()
        await asyncio.sleep(3600)

    run(url, body)


def test_slot_of_a_sigkilled_process_frees_after_its_ttl(valkey_url: str) -> None:  # noqa: F811
    scope = _name("vendor")
    ready = SPAWN.Event()
    proc = SPAWN.Process(target=_take_a_slot_and_hang, args=(valkey_url, scope, 1.0, ready))
    proc.start()
    try:
        assert ready.wait(timeout=30)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(timeout=10)
    assert proc.exitcode == -signal.SIGKILL

    async def body(r: Redis) -> tuple[int, float, str]:
        slots = Slots(r)
        held = await slots.in_use(scope)
        freed_after = await _eventually(lambda: _eq(slots.in_use(scope), 0), timeout=5)
        token = await asyncio.wait_for(slots.acquire(scope, 1, ttl=5), 1)
        await slots.release(scope, token)
        return held, freed_after, token

    held, freed_after, _ = run(valkey_url, body)
    assert held == 1
    assert freed_after <= 1.5


# -- cooldowns -------------------------------------------------------------------------------


def test_cooldown_starts_after_allowed_fails_and_ends_after_cooldown_time(
    valkey_url: str,  # noqa: F811
) -> None:
    dep, other = _name("dep"), _name("dep")

    async def body(r: Redis) -> None:
        cd = Cooldowns(r)
        for _ in range(2):  # allowed_fails=2: two failures are tolerated
            assert not await cd.record_failure(dep, 2, window=60, cooldown_time=0.5)
        assert await cd.cooling([dep, other]) == set()
        assert await cd.record_failure(dep, 2, window=60, cooldown_time=0.5)
        assert await cd.cooling([dep, other]) == {dep}
        took = await _eventually(lambda: _eq(cd.cooling([dep]), set()), timeout=5)
        assert took <= 1.0

    run(valkey_url, body)


def test_failures_outside_the_window_or_before_a_success_do_not_count(
    valkey_url: str,  # noqa: F811
) -> None:
    dep = _name("dep")

    async def body(r: Redis) -> None:
        cd = Cooldowns(r)
        assert not await cd.record_failure(dep, 1, window=0.2, cooldown_time=30)
        await _eventually(lambda: _eq(r.exists(names.failures_key(dep)), 0), timeout=5)
        assert not await cd.record_failure(dep, 1, window=0.2, cooldown_time=30)
        await cd.record_success(dep)
        assert not await cd.record_failure(dep, 1, window=60, cooldown_time=30)
        assert await cd.cooling([dep]) == set()

    run(valkey_url, body)


def test_pause_takes_a_deployment_out_and_is_not_shortened(valkey_url: str) -> None:  # noqa: F811
    dep = _name("dep")

    async def body(r: Redis) -> None:
        cd = Cooldowns(r)
        await cd.pause(dep, 30, reason="authentication")
        # A short failure cooldown afterwards must not end the 30 s pause early.
        assert await cd.record_failure(dep, 0, window=60, cooldown_time=0.1)
        assert await r.pttl(names.cooldown_key(dep)) > 25_000
        assert await cd.cooling([dep]) == {dep}
        await cd.resume(dep)
        assert await cd.cooling([dep]) == set()
        await cd.pause(dep, 0.2)
        assert await cd.cooling([dep]) == {dep}
        await _eventually(lambda: _eq(cd.cooling([dep]), set()), timeout=5)

    run(valkey_url, body)


# -- rpm / tpm -------------------------------------------------------------------------------


async def _admission_times(rw: RateWindow, n: int, dep: str, **limits: Any) -> list[float]:
    start = time.monotonic()

    async def one() -> float:
        await rw.wait_turn(dep, **limits)
        return time.monotonic() - start

    return sorted(await asyncio.gather(*(one() for _ in range(n))))


def test_rpm_admits_at_most_rpm_requests_per_window(valkey_url: str) -> None:  # noqa: F811
    dep = _name("dep")

    async def body(r: Redis) -> list[float]:
        return await _admission_times(RateWindow(r, window=1), 5, dep, rpm=2, tpm=None)

    times = run(valkey_url, body)
    # Windows of 1 s open at the first admission: 2 + 2 + 1 requests in three windows.
    assert times[1] < 0.5
    assert 0.95 <= times[2] <= times[3] < 1.5
    assert 1.95 <= times[4] < 2.6


def test_tpm_counts_estimated_tokens_and_lets_an_oversized_request_run_alone(
    valkey_url: str,  # noqa: F811
) -> None:
    dep, big = _name("dep"), _name("dep")

    async def body(r: Redis) -> tuple[list[float], float, float]:
        rw = RateWindow(r, window=1)
        times = await _admission_times(rw, 3, dep, rpm=100, tpm=100, est_tokens=40)
        first_big = await rw.try_turn(big, None, 100, est_tokens=500)
        second_big = await rw.try_turn(big, None, 100, est_tokens=1)
        return times, first_big, second_big

    times, first_big, second_big = run(valkey_url, body)
    assert times[1] < 0.5  # 40 + 40 fit in 100 tokens...
    assert times[2] >= 0.95  # ...the third waits for the next window
    assert first_big == 0.0
    assert 0.5 < second_big <= 1.0


def test_no_rpm_or_tpm_means_no_wait(valkey_url: str) -> None:  # noqa: F811
    dep = _name("dep")

    async def body(r: Redis) -> list[float]:
        return await _admission_times(RateWindow(r), 20, dep, rpm=None, tpm=None)

    assert run(valkey_url, body)[-1] < 0.5


def test_the_slots_of_a_dead_worker_process_are_freed_at_once(valkey_url: str) -> None:  # noqa: F811
    import redis as sync_redis

    from batchgate.routing.reclaim import free_slots_of, slot_holders

    scope = f"vendor-{uuid.uuid4().hex[:6]}"

    async def hold(r: Redis) -> int:
        dead, live = Slots(r, owner="host:111"), Slots(r, owner="host:222")
        for _ in range(3):
            await dead.acquire(scope, 4, ttl=600)  # killed while calling: never released
        await live.acquire(scope, 4, ttl=600)
        return await live.in_use(scope)

    assert run(valkey_url, hold) == 4  # the vendor's limit is used up
    client = sync_redis.Redis.from_url(valkey_url)
    try:
        assert {"host:111", "host:222"} <= slot_holders(client)
        assert free_slots_of(client, {"host:111"}) == 3
        assert "host:111" not in slot_holders(client)
    finally:
        client.close()

    async def after(r: Redis) -> int:
        return await Slots(r).in_use(scope)

    assert run(valkey_url, after) == 1  # long before the 600 s TTL; the live holder's kept
