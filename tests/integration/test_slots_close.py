"""Nothing of the slots is left pending in a loop once its slots are released or its owner
closes: a keeper left sleeping there (`Slots._keep`) was destroyed with the loop ("Task was
destroyed but it is pending!"), its cleanup never run. Real Valkey; loops driven the way a
worker's `Runtime` drives its own (`run_until_complete`, then `close`)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from redis.asyncio import Redis

from batchgate.config import parse_config
from batchgate.execution import runtime as runtime_module
from batchgate.execution.runtime import Runtime
from batchgate.routing.slots import Slots
from batchgate.settings import Settings, get_settings
from batchgate.store.db import make_engine
from tests.integration.valkey_fixture import valkey_url  # noqa: F401  (a pytest fixture)

T = TypeVar("T")


def _pending(loop: asyncio.AbstractEventLoop) -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks(loop) if not t.done()]


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _in(loop: asyncio.AbstractEventLoop, url: str, body: Callable[[Slots], Awaitable[T]]) -> T:
    """Run `body` with a fresh client and `Slots` in `loop`, which stays open afterwards."""

    async def main() -> T:
        client = Redis.from_url(url)
        try:
            return await body(Slots(client))
        finally:
            await client.aclose()

    return loop.run_until_complete(main())


def test_the_last_release_ends_the_keeper(
    loop: asyncio.AbstractEventLoop,
    valkey_url: str,  # noqa: F811
) -> None:
    scope = f"vendor-{uuid.uuid4().hex[:8]}"

    async def body(slots: Slots) -> list[int]:
        seen = []
        for _ in range(3):
            async with slots.hold_all([(scope, 2), (f"{scope}-dep", 1)], ttl=30):
                seen.append(await slots.in_use(scope))  # the call: the keeper is looking now
        return [*seen, await slots.in_use(scope)]

    assert _in(loop, valkey_url, body) == [1, 1, 1, 0]
    assert _pending(loop) == []


def test_aclose_ends_the_keeper_of_slots_still_held(
    loop: asyncio.AbstractEventLoop,
    valkey_url: str,  # noqa: F811
) -> None:
    scope = f"vendor-{uuid.uuid4().hex[:8]}"

    async def body(slots: Slots) -> list[str]:
        await slots.acquire(scope, 2, ttl=30)  # its holder went away without releasing it
        others = [t for t in _pending(loop) if t is not asyncio.current_task()]
        kept = [t.get_coro().__qualname__ for t in others]
        await slots.aclose()
        return kept

    assert _in(loop, valkey_url, body) == ["Slots._keep"]  # there was a keeper to end
    assert _pending(loop) == []


def test_aclose_cancels_waiters_and_ends_the_poller(
    loop: asyncio.AbstractEventLoop,
    valkey_url: str,  # noqa: F811
) -> None:
    scope = f"vendor-{uuid.uuid4().hex[:8]}"

    async def body(slots: Slots) -> tuple[bool, int]:
        token = await slots.acquire(scope, 1, ttl=30)
        waiter = asyncio.ensure_future(slots.acquire(scope, 1, ttl=30))
        while not any(g.waiters for g in slots._state.gates.values()):  # type: ignore[union-attr]
            await asyncio.sleep(0)  # until it is queued behind the held slot
        await slots.aclose()
        await asyncio.wait([waiter])
        await slots.release(scope, token)
        return waiter.cancelled(), await slots.in_use(scope)

    assert _in(loop, valkey_url, body) == (True, 0)
    assert _pending(loop) == []


@pytest.fixture
def rt(tmp_path: Path, valkey_url: str) -> Iterator[Runtime]:  # noqa: F811
    settings = Settings(
        data_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/bg.db", redis_url=valkey_url
    )
    runtime = Runtime(
        settings, parse_config({"model_list": []}), make_engine(settings.database_url)
    )
    yield runtime
    if not runtime.loop.is_closed():  # the test failed before closing it
        runtime.close()


def test_a_closed_runtime_leaves_no_task_pending_in_its_loop(rt: Runtime) -> None:
    scope = f"vendor-{uuid.uuid4().hex[:8]}"
    # A chunk that ended with a slot still held (its release failed): the keeper runs on.
    rt.run(rt.slots.acquire(scope, 1, ttl=30))
    assert _pending(rt.loop) != []
    rt.close()
    assert rt.loop.is_closed()
    assert _pending(rt.loop) == []


def test_a_pool_process_closes_its_runtime_as_it_exits(
    rt: Runtime,
    valkey_url: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from celery.signals import worker_process_shutdown

    # Importing the tasks builds the Celery app from the settings (it connects to nothing).
    monkeypatch.setenv("BATCHGATE_REDIS_URL", valkey_url)
    get_settings.cache_clear()
    try:
        import workers.tasks  # noqa: F401  (connects the shutdown hook)
    finally:
        get_settings.cache_clear()
    monkeypatch.setattr(runtime_module, "_runtime", rt)
    rt.run(rt.slots.acquire(f"vendor-{uuid.uuid4().hex[:8]}", 1, ttl=30))
    worker_process_shutdown.send(sender=None, pid=rt.pid, exitcode=0)
    assert rt.loop.is_closed()
    assert _pending(rt.loop) == []
    assert runtime_module._runtime is None


def test_closing_does_not_wait_on_an_unanswering_redis(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A process exiting while Redis is blackholed: its slots' close would wait for the TCP
    # timeout (minutes). It gives up after CLOSE_SECONDS and still closes its loop.
    monkeypatch.setattr(runtime_module, "CLOSE_SECONDS", 0.2)
    hang = asyncio.Event()  # never set

    async def unanswered() -> None:
        await hang.wait()

    monkeypatch.setattr(rt.slots, "aclose", unanswered)
    with pytest.raises(TimeoutError):
        rt.close()
    assert rt.loop.is_closed()
