"""Slots across an empty restart of the coordination Redis (`routing/epoch.py`): the slots held
at the restart are registered again before any new one is granted, so the limit still holds."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis
from redis.asyncio import Redis

from batchgate import names
from batchgate.broker import start_valkey
from batchgate.routing.epoch import begin_epoch
from batchgate.routing.slots import Slots


def _grace_over(url: str) -> bool:
    client = redis.Redis.from_url(url)
    try:
        until = client.hget(names.SLOTS_EPOCH_KEY, "until")
        seconds, micros = client.time()
        return until is not None and seconds * 1000 + micros // 1000 >= int(until)
    finally:
        client.close()


async def _until(check, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def test_slots_held_across_an_empty_restart_still_count(tmp_path: Path) -> None:
    url, proc = start_valkey(tmp_path / "a", persist=False)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    begin_epoch(url)

    async def main() -> None:
        nonlocal proc
        holder_redis, other_redis = Redis.from_url(url), Redis.from_url(url)
        holder, other = Slots(holder_redis), Slots(other_redis)  # two worker processes
        try:
            first = await holder.acquire("vendor", 2, ttl=30)
            await holder.acquire("vendor", 2, ttl=30)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            _, proc = start_valkey(tmp_path / "b", port=port, persist=False)
            assert await other_redis.zcard(names.slots_key("vendor")) == 0  # forgotten
            # Another process asks first, before the holder has looked: it starts the grace.
            waiter = asyncio.create_task(other.acquire("vendor", 2, ttl=30))

            async def registered() -> bool:
                return await other_redis.zcard(names.slots_key("vendor")) == 2

            await _until(registered, 10, "the holder to register its slots again")
            await _until(lambda: asyncio.to_thread(_grace_over, url), 10, "the grace to end")
            # Both slots are held: the waiter gets none, past the grace...
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(asyncio.shield(waiter), 0.5)
            # ...until one is released.
            await holder.release("vendor", first)
            await asyncio.wait_for(waiter, 10)
            assert await other.in_use("vendor") == 2
        finally:
            await holder_redis.aclose()
            await other_redis.aclose()

    try:
        asyncio.run(main())
    finally:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)


def test_a_fresh_redis_grants_at_once_after_begin_epoch_and_after_a_grace_without(
    tmp_path: Path,
) -> None:
    url, proc = start_valkey(tmp_path / "a", persist=False)

    async def first_slot_seconds() -> float:
        client = Redis.from_url(url)
        try:
            start = time.monotonic()
            await Slots(client).acquire("vendor", 1, ttl=5)
            return time.monotonic() - start
        finally:
            await client.aclose()

    try:
        assert asyncio.run(first_slot_seconds()) >= 0.9  # unknown past: wait out the grace
        redis.Redis.from_url(url).flushdb()
        begin_epoch(url)
        assert asyncio.run(first_slot_seconds()) < 0.5
    finally:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
