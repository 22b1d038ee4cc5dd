"""A planted provider key appears nowhere: broker, Celery events, Flower, logs, database, files."""

from __future__ import annotations

import base64
import threading
from pathlib import Path

import httpx
import pytest
import redis
from celery.events import EventReceiver
from sqlalchemy import MetaData, create_engine, select

from batchgate.broker import free_port
from batchgate.store.db import normalise_url
from tests.e2e.harness import chat_lines, sim_config, wait_for, write_jsonl

pytestmark = pytest.mark.e2e

SENTINEL = "sk-SENTINEL-9f8e7d6c5b4a39281706"


def _forms(secret: str) -> list[bytes]:
    raw = secret.encode()
    return [raw, base64.b64encode(raw), base64.b64encode(raw)[:-4]]


def _scan(blob: bytes) -> bool:
    return any(f in blob for f in _forms(SENTINEL))


def test_sentinel_provider_key_is_nowhere(
    make_simulator, make_system, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENTINEL_OPENAI_KEY", SENTINEL)
    # The simulator accepts only the sentinel: every success proves the key really was sent.
    sim = make_simulator({"default": {"latency_ms": 5}, "auth": {"openai": [SENTINEL]}})
    config = sim_config(sim.base_url, {"m": "openai/gpt-4o-mini"}, num_retries=1)
    config["model_list"][0]["litellm_params"]["api_key"] = "os.environ/SENTINEL_OPENAI_KEY"
    flower_port = free_port()

    events: list[bytes] = []
    stop = threading.Event()

    def capture(broker_url: str) -> None:
        from celery import Celery

        app = Celery(broker=broker_url)
        with app.connection() as conn:
            recv = EventReceiver(
                conn, handlers={"*": lambda e: events.append(repr(e).encode())}, app=app
            )
            for _ in recv.consume(limit=None, timeout=None, wakeup=False):
                if stop.is_set():
                    break

    system = make_system(config, flower_port=flower_port, flower_basic_auth="ops:pw-123456")
    broker = system.broker_url or system.redis_url  # events travel on the Celery broker
    threading.Thread(target=capture, args=(broker,), daemon=True).start()
    lines = (
        chat_lines(20, "m", "ok")
        + chat_lines(5, "m", "auth", directive="#sim:fail=401")
        + chat_lines(5, "m", "boom", directive="#sim:fail=500")
        + chat_lines(5, "m", "bad", directive="#sim:fail=400")
    )
    batch = system.submit(write_jsonl(tmp_path / "in.jsonl", lines))
    done = system.wait(batch["id"], timeout=180)
    assert done["status"] == "completed", system.logs()
    assert done["request_counts"]["failed"] >= 10  # failing calls really happened
    out = system.download(done["output_file_id"], "out.jsonl")
    err = system.download(done["error_file_id"], "err.jsonl")
    assert len(out) == 20 and len(err) == 15
    wait_for(lambda: len(events) > 0, 30, "celery events")
    stop.set()

    # Broker: every key, every value (queues, unacked, kombu bindings, slots, budgets).
    r = redis.Redis.from_url(system.redis_url)
    for key in r.scan_iter("*"):
        assert not _scan(key), key
        dumped = r.dump(key) or b""
        assert not _scan(dumped), key
    # Celery events as workers sent them, and Flower's view of the tasks.
    assert not any(_scan(e) for e in events)
    flower = httpx.get(
        f"http://127.0.0.1:{flower_port}/api/tasks", auth=("ops", "pw-123456"), timeout=10
    )
    assert flower.status_code == 200 and not _scan(flower.content)
    # Logs of every process, and everything under the data dir (database, files, broker data).
    for path in system.root.rglob("*"):
        if path.is_file():
            assert not _scan(path.read_bytes()), path
    # The database through SQL too (PostgreSQL keeps its files elsewhere).
    engine = create_engine(normalise_url(system.database_url))
    meta = MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(select(table)):
                assert not _scan(repr(tuple(row)).encode()), table.name
    engine.dispose()
