"""`Runtime.cooling`: the items starting while the cooldown cache is stale share one Redis read."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchgate.config import parse_config
from batchgate.execution.runtime import Runtime
from batchgate.settings import Settings
from batchgate.store.db import make_engine


class CountingCooldowns:
    """Stands in for `routing.limits.Cooldowns`: counts reads, answers when released."""

    def __init__(self) -> None:
        self.reads = 0
        self.release = asyncio.Event()
        self.fail = False

    async def cooling(self, deployment_ids: list[str]) -> set[str]:
        self.reads += 1
        await self.release.wait()
        if self.fail:
            raise ConnectionError("redis away")
        return {deployment_ids[0]}


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path}/bg.db",
        redis_url="redis://127.0.0.1:1/0",  # never contacted: the cooldowns are replaced
    )
    runtime = Runtime(
        settings, parse_config({"model_list": []}), make_engine(settings.database_url)
    )
    runtime.cooldowns = CountingCooldowns()  # type: ignore[assignment]
    yield runtime
    runtime.close()


def test_items_starting_together_share_one_read(rt: Runtime) -> None:
    async def main() -> list[set[str]]:
        waiters = [asyncio.ensure_future(rt.cooling(["a", "b"])) for _ in range(50)]
        await asyncio.sleep(0)  # every waiter is now waiting on the one read
        rt.cooldowns.release.set()  # type: ignore[attr-defined]
        return await asyncio.gather(*waiters)

    assert rt.run(main()) == [{"a"}] * 50
    assert rt.cooldowns.reads == 1  # type: ignore[attr-defined]
    assert rt.run(rt.cooling(["a", "b"])) == {"a"}  # fresh: from the cache
    assert rt.cooldowns.reads == 1  # type: ignore[attr-defined]


def test_a_failed_read_reaches_every_waiter_and_is_not_kept(rt: Runtime) -> None:
    cooldowns: CountingCooldowns = rt.cooldowns  # type: ignore[assignment]
    cooldowns.fail = True

    async def main() -> list[object]:
        waiters = [asyncio.ensure_future(rt.cooling(["a"])) for _ in range(3)]
        await asyncio.sleep(0)
        cooldowns.release.set()
        return await asyncio.gather(*waiters, return_exceptions=True)

    assert all(isinstance(r, ConnectionError) for r in rt.run(main()))
    cooldowns.fail = False
    assert rt.run(rt.cooling(["a"])) == {"a"}
    assert cooldowns.reads == 2


def test_forgetting_starts_a_new_read_even_while_one_is_on_its_way(rt: Runtime) -> None:
    cooldowns: CountingCooldowns = rt.cooldowns  # type: ignore[assignment]

    async def main() -> None:
        first = asyncio.ensure_future(rt.cooling(["a"]))
        await asyncio.sleep(0)
        rt.forget_cooling()  # e.g. a probe just brought a deployment back
        second = asyncio.ensure_future(rt.cooling(["a"]))
        await asyncio.sleep(0)
        cooldowns.release.set()
        await asyncio.gather(first, second)

    rt.run(main())
    assert cooldowns.reads == 2
