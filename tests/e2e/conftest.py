"""Fixtures for end-to-end tests: the simulator on a free port, and a System factory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from batchgate.names import CONTROL_QUEUE, vendor_queue
from tests.conftest import purge_amqp_queues
from tests.e2e.harness import System


@pytest.fixture
def simulator() -> Iterator[Any]:
    from batchgate.simulator import start_in_thread

    sim = start_in_thread()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def make_simulator() -> Iterator[Callable[[dict[str, Any]], Any]]:
    from batchgate.simulator import Behaviour, start_in_thread

    started: list[Any] = []

    def factory(behaviour: dict[str, Any]) -> Any:
        sim = start_in_thread(Behaviour.from_dict(behaviour))
        started.append(sim)
        return sim

    try:
        yield factory
    finally:
        for sim in started:
            sim.stop()


@pytest.fixture
def make_system(
    tmp_path: Path, clean_broker: str, database_url: str, amqp_broker: str | None
) -> Iterator[Callable[..., System]]:
    started: list[System] = []

    def factory(config: dict[str, Any], flower_port: int | None = None, **env: Any) -> System:
        if amqp_broker:
            vendors = {m["litellm_params"]["model"].split("/")[0] for m in config["model_list"]}
            purge_amqp_queues(amqp_broker, [CONTROL_QUEUE, *map(vendor_queue, vendors)])
        system = System(
            tmp_path / f"sys{len(started)}",
            config,
            clean_broker,
            database_url,
            env=env,
            flower_port=flower_port,
            broker_url=amqp_broker,
        )
        started.append(system)
        return system.start()

    try:
        yield factory
    finally:
        for s in started:
            s.stop()
