"""Fixtures of the integration tests: the API app on a real database and broker (no workers),
and the chunk-level runtime with a simulator in a thread (`chunk_harness`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from batchgate.api.app import create_app
from batchgate.config import parse_config
from batchgate.filestore import FileStore
from batchgate.settings import Settings
from batchgate.store import migrate
from batchgate.store.db import make_engine
from tests.integration.chunk_harness import rt, sim  # noqa: F401  (pytest fixtures)

MAX_FILE_BYTES = 64 * 1024


@pytest.fixture
def env(tmp_path: Path, database_url: str):  # type: ignore[no-untyped-def]
    """A migrated store of one test: its settings, engine and file store (no broker)."""
    settings = Settings(data_dir=tmp_path, database_url=database_url)
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    yield settings, engine, FileStore(settings.files_dir)
    engine.dispose()


@pytest.fixture
def api(tmp_path: Path, clean_broker: str, database_url: str) -> Iterator[TestClient]:
    config = parse_config(
        {
            "model_list": [
                {
                    "model_name": "m",
                    "litellm_params": {
                        "model": "openai/gpt-4o-mini",
                        "api_base": "http://127.0.0.1:9/v1",
                    },
                }
            ]
        }
    )
    settings = Settings(
        data_dir=tmp_path,
        redis_url=clean_broker,
        database_url=database_url,
        max_file_bytes=MAX_FILE_BYTES,
    )
    with TestClient(create_app(settings, config)) as client:
        yield client
