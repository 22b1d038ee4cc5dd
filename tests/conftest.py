"""Shared fixtures: a real broker (embedded Valkey, or BATCHGATE_TEST_REDIS_URL) and a real
database (SQLite in a temp dir, or a fresh database on BATCHGATE_TEST_DATABASE_URL)."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from batchgate.broker import start_valkey

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def broker_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("BATCHGATE_TEST_REDIS_URL")
    if url:
        yield url
        return
    url, proc = start_valkey(tmp_path_factory.mktemp("valkey"))
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def clean_broker(broker_url: str) -> str:
    """The broker with no leftover queues or slots from an earlier test."""
    client = redis.Redis.from_url(broker_url)
    client.flushdb()
    client.close()
    return broker_url


def _pg_database(base: str) -> tuple[str, str]:
    import psycopg

    name = f"bg_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(
        base.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
    ) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    head, _, _ = base.rpartition("/")
    return f"{head}/{name}", name


def _pg_drop(base: str, name: str) -> None:
    import psycopg

    with psycopg.connect(
        base.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    base = os.environ.get("BATCHGATE_TEST_DATABASE_URL")
    if not base:
        yield f"sqlite:///{tmp_path / 'batchgate.db'}"
        return
    url, name = _pg_database(base)
    try:
        yield url
    finally:
        _pg_drop(base, name)
