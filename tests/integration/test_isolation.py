"""One line's failure decides nothing for other lines: a 401 costs them a short pause and one
probe call, never a failure without a call; a refusal specific to one vendor moves the line to
its next model. `ChunkRun` in this process against the simulator, real Valkey, real database."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from batchgate.config import parse_config
from batchgate.execution.runner import ChunkRun
from batchgate.execution.runtime import Runtime
from batchgate.filestore import FileStore
from batchgate.pipeline.ingest import BatchRequest, create_batch, ingest
from batchgate.routing import probes
from batchgate.settings import Settings
from batchgate.simulator.server import RunningSimulator, start_in_thread
from batchgate.store import migrate
from batchgate.store.db import make_engine
from batchgate.store.items import ITEM
from tests.integration.stored_files import upload
from tests.integration.valkey_fixture import valkey_url  # noqa: F401  (a pytest fixture)

pytestmark = pytest.mark.storage


@pytest.fixture
def sim() -> Iterator[RunningSimulator]:
    with start_in_thread({"default": {"latency_ms": 20}}) as s:
        yield s


@pytest.fixture
def rt(
    tmp_path: Path,
    database_url: str,
    valkey_url: str,  # noqa: F811
    sim: RunningSimulator,
) -> Iterator[Runtime]:
    import redis

    redis.Redis.from_url(valkey_url).delete(*_probe_keys())  # no pause left by an earlier test
    models: list[dict[str, Any]] = [
        {
            "model_name": "gpt",
            "litellm_params": {
                "model": "openai/gpt-4o-mini",
                "api_base": sim.base_url + "/v1",
                "api_key": "sk-test",
            },
        },
        {
            "model_name": "claude",
            "litellm_params": {
                "model": "anthropic/claude-3-5-haiku-latest",
                "api_base": sim.base_url,
                "api_key": "sk-ant-test",
            },
        },
    ]
    config = parse_config({"model_list": models, "router_settings": {"num_retries": 1}})
    settings = Settings(data_dir=tmp_path, database_url=database_url, redis_url=valkey_url)
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    runtime = Runtime(settings, config, engine)
    yield runtime
    runtime.close()


def _probe_keys() -> list[str]:
    from batchgate import names

    out = []
    for dep in ("gpt#0", "claude#0"):
        out += [names.cooldown_key(dep), names.probe_key(dep), names.probing_key(dep)]
    return out


def _batch(rt: Runtime, bodies: list[dict[str, Any]], fallbacks: tuple[str, ...] = ()) -> list[int]:
    files = FileStore(rt.settings.files_dir)
    lines = [
        {"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions", "body": b}
        for i, b in enumerate(bodies)
    ]
    fid = upload(rt.engine, files, lines)
    batch = create_batch(
        rt.engine,
        BatchRequest(
            tenant="t", input_file_id=fid, endpoint="/v1/chat/completions", fallbacks=fallbacks
        ),
    )
    ids: list[int] = []

    def enqueue(batch_id: str, vendor: str, chunk: list[int]) -> int:
        ids.extend(chunk)  # no broker here: the test hands the items to a ChunkRun
        return len(chunk)

    ingest(rt.engine, rt.settings, rt.config, files, batch.id, enqueue)
    return ids


def _chat(model: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def _run(rt: Runtime, vendor: str, ids: list[int], rerouted: list[Any] | None = None) -> Any:
    def enqueue(*args: Any) -> None:
        if rerouted is not None:
            rerouted.append(args)

    return rt.run(ChunkRun(rt, vendor, enqueue).run("", ids))


def _items(rt: Runtime, ids: list[int]) -> list[Any]:
    with rt.engine.connect() as conn:
        return list(conn.execute(select(ITEM).where(ITEM.c.id.in_(ids)).order_by(ITEM.c.idx)))


def test_one_lines_401_costs_other_lines_a_short_pause_and_one_probe(
    rt: Runtime, sim: RunningSimulator
) -> None:
    bad = _batch(rt, [_chat("gpt", "bad key for this line #sim:fail=401")])
    assert _run(rt, "openai", bad).failed == 1
    started = time.monotonic()
    others = _batch(rt, [_chat("gpt", f"another tenant {i}") for i in range(50)])
    report = _run(rt, "openai", others)
    took = time.monotonic() - started
    assert report.succeeded == 50 and report.failed == 0
    assert all(row.attempts == 1 for row in _items(rt, others))  # none ended without a call
    assert took < probes.FIRST_PAUSE + 5
    ok = sorted((e for e in sim.ledger() if e["status"] == 200), key=lambda e: e["t_start"])
    assert len(ok) == 50
    # The first call after the pause was alone: the probe; the rest followed its answer.
    assert sum(1 for e in ok if e["t_start"] < ok[0]["t_end"]) == 1


def test_a_failed_probe_pauses_again_and_longer(rt: Runtime) -> None:
    async def scenario() -> tuple[Any, ...]:
        p = rt.probes
        first = await p.pause("gpt#0")
        during = await p.try_probe(["gpt#0"], 30)
        await rt.cooldowns.resume("gpt#0")  # as if the pause had run out...
        await p.pause("gpt#0")  # ...with the probe mark of the same pause kept
        await rt.redis.delete("bg:cooldown:gpt#0")
        winner = await p.try_probe(["gpt#0"], 30)
        second_caller = await p.try_probe(["gpt#0"], 30)
        cooling = await rt.cooldowns.cooling(["gpt#0"])
        again = await p.pause("gpt#0", after_probe=True)
        return first, during, winner, second_caller, cooling, again

    first, during, winner, second_caller, cooling, again = rt.run(scenario())
    assert first == probes.FIRST_PAUSE and during is None
    assert winner == "gpt#0" and second_caller is None  # one probe at a time, across workers
    assert cooling == {"gpt#0"}  # out of rotation while the probe is pending
    assert again == 2 * probes.FIRST_PAUSE


def test_a_parameter_one_vendor_refuses_moves_the_line_to_its_next_model(rt: Runtime) -> None:
    # Anthropic takes temperature 0..1 only; OpenAI serves 1.5.
    ids = _batch(rt, [_chat("claude", "warm", temperature=1.5)], fallbacks=("gpt",))
    rerouted: list[Any] = []
    report = _run(rt, "anthropic", ids, rerouted)
    assert report.failed == 0 and report.rerouted == 1
    (row,) = _items(rt, ids)
    assert row.state == "queued" and row.alias == "gpt" and row.vendor == "openai"
    assert rerouted and rerouted[0][1] == "openai"
