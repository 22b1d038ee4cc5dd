"""One worker's `ChunkRun` in this process against real parts: the simulator over HTTP, a real
Valkey for the slots, a real database. Checks how a chunk keeps the vendor busy: it claims the
rest of its batch as items finish, and items waiting out a retry-after do not hold that up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batchgate.config import parse_config
from batchgate.execution.runner import ChunkRun
from batchgate.execution.runtime import Runtime
from batchgate.filestore import FileStore
from batchgate.pipeline.ingest import BatchRequest, create_batch, ingest
from batchgate.settings import Settings
from batchgate.simulator.server import RunningSimulator, start_in_thread
from batchgate.store import migrate
from batchgate.store.db import make_engine
from tests.integration.stored_files import upload
from tests.integration.valkey_fixture import valkey_url  # noqa: F401  (a pytest fixture)

pytestmark = pytest.mark.storage

LIMIT = 8


@pytest.fixture
def sim() -> Iterator[RunningSimulator]:
    with start_in_thread({"default": {"latency_ms": 50}}) as s:
        yield s


def _runtime(tmp_path: Path, database_url: str, redis_url: str, sim: RunningSimulator) -> Runtime:
    config = parse_config(
        {
            "model_list": [
                {
                    "model_name": "m",
                    "litellm_params": {
                        "model": "openai/gpt-4o-mini",
                        "api_base": sim.base_url + "/v1",
                        "api_key": "sk-test",
                    },
                }
            ],
            "router_settings": {"num_retries": 2},
            "batchgate_settings": {
                "vendors": {"openai": {"max_concurrency": LIMIT, "chunk_size": LIMIT}}
            },
        }
    )
    settings = Settings(data_dir=tmp_path, database_url=database_url, redis_url=redis_url)
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    return Runtime(settings, config, engine)


@pytest.fixture
def rt(
    tmp_path: Path,
    database_url: str,
    valkey_url: str,  # noqa: F811
    sim: RunningSimulator,
) -> Runtime:
    return _runtime(tmp_path, database_url, valkey_url, sim)


def _batch(rt: Runtime, prompts: list[str]) -> tuple[str, list[int]]:
    """Ingest one line per prompt; returns the batch id and item ids in input order."""
    files = FileStore(rt.settings.files_dir)
    lines = [
        {
            "custom_id": f"c{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "m", "messages": [{"role": "user", "content": p}]},
        }
        for i, p in enumerate(prompts)
    ]
    fid = upload(rt.engine, files, lines)
    batch = create_batch(
        rt.engine, BatchRequest(tenant="t", input_file_id=fid, endpoint="/v1/chat/completions")
    )
    chunks: list[list[int]] = []

    def enqueue(batch_id: str, vendor: str, ids: list[int]) -> int:
        chunks.append(ids)  # no broker here: the test hands the first chunk to a ChunkRun
        return len(ids)

    ingest(rt.engine, rt.settings, rt.config, files, batch.id, enqueue)
    return batch.id, [i for chunk in chunks for i in chunk]


def _run(rt: Runtime, batch_id: str, ids: list[int]) -> Any:
    try:
        return rt.run(ChunkRun(rt, "openai", lambda *a: None).run(batch_id, ids))
    finally:
        rt.run(rt.client("openai").close())
        rt.run(rt.redis.aclose())
        rt.loop.close()
        rt.engine.dispose()


def test_a_chunk_claims_the_rest_of_its_batch_as_items_finish(
    rt: Runtime,
    sim: RunningSimulator,
) -> None:
    batch_id, ids = _batch(rt, [f"hello {i}" for i in range(40)])
    report = _run(rt, batch_id, ids[:LIMIT])  # the message carried the first chunk only
    assert report.claimed == 40 and report.succeeded == 40
    assert sim.stats()["total"]["calls"] == 40


def test_items_waiting_out_a_retry_after_do_not_hold_up_the_rest(
    rt: Runtime,
    sim: RunningSimulator,
) -> None:
    limited = [f"slow down {i} #sim:fail=429:first=1:retry-after=1" for i in range(LIMIT)]
    batch_id, ids = _batch(rt, [*limited, *(f"hello {i}" for i in range(32))])
    report = _run(rt, batch_id, ids[:LIMIT])  # the whole chunk is told to wait a second
    assert report.succeeded == 40

    ledger = sim.ledger()
    first_429 = min(e["t_end"] for e in ledger if e["status"] == 429)
    while_waiting = [e for e in ledger if e["status"] == 200 and e["t_start"] < first_429 + 0.9]
    # The chunk claimed and ran the other 32 lines while its first 8 waited out the second.
    assert len(while_waiting) == 32
    assert sum(1 for e in ledger if e["status"] == 429) == LIMIT


def test_a_model_with_one_deployment_stays_in_rotation_through_failures(
    rt: Runtime,
    sim: RunningSimulator,
) -> None:
    # Every line fails its first call with a 500. Cooling the model's only deployment down
    # after a few of them would end the remaining lines as failed; LiteLLM's default retries.
    batch_id, ids = _batch(rt, [f"flaky {i} #sim:fail=500:first=1" for i in range(12)])
    report = _run(rt, batch_id, ids[:LIMIT])
    assert report.succeeded == 12 and report.failed == 0
    assert sum(1 for e in sim.ledger() if e["status"] == 500) == 12


def test_outcomes_the_database_refuses_for_a_while_are_written_later(
    tmp_path: Path,
    database_url: str,
    valkey_url: str,  # noqa: F811
    sim: RunningSimulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As when another process holds SQLite's write lock past the busy timeout: the first
    # writes of outcomes fail; the recorder keeps them and writes them once it can.
    import sqlite3

    from sqlalchemy import func, select
    from sqlalchemy.exc import OperationalError

    import batchgate.execution.recorder as recorder
    from batchgate.store.items import ATTEMPT, ITEM

    refusals = {"left": 3}
    real_apply = recorder.apply

    def busy_then_apply(*args: Any) -> Any:
        if refusals["left"]:
            refusals["left"] -= 1
            locked = sqlite3.OperationalError("database is locked")
            raise OperationalError("UPDATE item", {}, locked)
        return real_apply(*args)

    monkeypatch.setattr(recorder, "apply", busy_then_apply)
    monkeypatch.setattr(recorder, "RETRY_SECONDS", 0.01)
    rt = _runtime(tmp_path, database_url, valkey_url, sim)
    engine = make_engine(database_url)
    batch_id, ids = _batch(rt, [f"hello {i}" for i in range(20)])
    report = _run(rt, batch_id, ids[:LIMIT])
    assert refusals["left"] == 0 and report.succeeded == 20
    with engine.connect() as conn:
        states = conn.execute(
            select(ITEM.c.state, func.count()).where(ITEM.c.batch_id == batch_id).group_by("state")
        ).all()
        attempts = conn.execute(
            select(func.count()).select_from(ATTEMPT).where(ATTEMPT.c.batch_id == batch_id)
        ).scalar_one()
    engine.dispose()
    assert dict(states) == {"succeeded": 20}
    assert attempts == 20  # each written once, none lost, none doubled
