"""Shared fixtures: a real broker (embedded Valkey, or BATCHGATE_TEST_REDIS_URL) and a real
database (SQLite in a temp dir, or a fresh database on BATCHGATE_TEST_DATABASE_URL)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from batchgate.broker import start_valkey
from batchgate.routing.epoch import begin_epoch

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


@pytest.fixture(scope="session")
def amqp_broker() -> Iterator[str | None]:
    """With BATCHGATE_TEST_BROKER_URL=amqp://..., end-to-end systems use that RabbitMQ as their
    Celery broker (Redis still coordinates), in a virtual host of their own when rabbitmqctl is
    at hand, deleted at the end."""
    url = os.environ.get("BATCHGATE_TEST_BROKER_URL")
    if not url:
        yield None
        return
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        yield url
        return
    vhost = f"bg_{uuid.uuid4().hex[:12]}"
    parts = urlsplit(url)
    user = parts.username or "guest"
    subprocess.run([ctl, "-q", "add_vhost", vhost], check=True, capture_output=True)
    subprocess.run(
        [ctl, "-q", "set_permissions", "-p", vhost, user, ".*", ".*", ".*"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"{parts.scheme}://{parts.netloc}/{vhost}"
    finally:
        subprocess.run([ctl, "-q", "delete_vhost", vhost], capture_output=True)


def purge_amqp_queues(url: str, queues: list[str]) -> None:
    """Empty the named queues (vendor queues and the control queue) before a test."""
    from kombu import Connection

    with Connection(url) as conn:
        for name in queues:
            channel = conn.channel()
            with contextlib.suppress(Exception):  # not declared yet: nothing to purge
                channel.queue_purge(name)
            with contextlib.suppress(Exception):
                channel.close()


@pytest.fixture
def clean_broker(broker_url: str) -> str:
    """The broker with no leftover queues or slots from an earlier test."""
    client = redis.Redis.from_url(broker_url)
    client.flushdb()
    client.close()
    begin_epoch(broker_url)  # no worker runs yet: its first slots wait out no restart grace
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
