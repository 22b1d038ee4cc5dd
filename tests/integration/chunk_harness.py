"""A `ChunkRun` in this process against real parts: the simulator over HTTP in a thread, a real
Valkey (or Redis) for slots and budgets, a real database. Shared by the chunk-level tests."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
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

LIMIT = 8


@pytest.fixture
def sim() -> Iterator[RunningSimulator]:
    with start_in_thread({"default": {"latency_ms": 50}}) as s:
        yield s


def make_runtime(
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    sim: RunningSimulator,
    **settings: Any,
) -> Runtime:
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
    settings = Settings(
        data_dir=tmp_path, database_url=database_url, redis_url=redis_url, **settings
    )
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
    return make_runtime(tmp_path, database_url, valkey_url, sim)


def new_batch(
    rt: Runtime, prompts: list[str], max_cost_usd: Decimal | None = None, cache: bool = False
) -> tuple[str, list[int]]:
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
        rt.engine,
        BatchRequest(
            tenant="t",
            input_file_id=fid,
            endpoint="/v1/chat/completions",
            max_cost_usd=max_cost_usd,
            cache=cache,
        ),
    )
    chunks: list[list[int]] = []

    def enqueue(batch_id: str, vendor: str, ids: list[int]) -> int:
        chunks.append(ids)  # no broker here: the test hands the first chunk to a ChunkRun
        return len(ids)

    ingest(rt.engine, rt.settings, rt.config, files, batch.id, enqueue)
    return batch.id, [i for chunk in chunks for i in chunk]


def run_chunk(rt: Runtime, batch_id: str, ids: list[int]) -> Any:
    try:
        return rt.run(ChunkRun(rt, "openai", lambda *a: None).run(batch_id, ids))
    finally:
        rt.close()
