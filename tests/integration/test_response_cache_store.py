"""The response cache table on the test database (SQLite here, PostgreSQL in CI): lookups honour
the TTL, the size bound evicts the oldest entries, a key written twice keeps the newer answer,
and `batchgate cache stats` / `clear` report and empty it, per tenant."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from batchgate.cli import app as cli
from batchgate.config import CacheSettings
from batchgate.pipeline.retention import sweep_response_cache
from batchgate.store import cache as store
from batchgate.store import migrate
from batchgate.store.db import make_engine

pytestmark = pytest.mark.storage

NOW = 1_800_000_000.0


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


def _row(key: str, at: float, tenant: str = "t", text: str = "hello") -> store.CacheRow:
    result = {"status_code": 200, "body": {"text": text}, "usage": {}}
    return store.CacheRow(key, tenant, "/v1/chat/completions", "gpt", json.dumps(result), at)


def _put(engine: Engine, rows: list[store.CacheRow]) -> None:
    with engine.begin() as conn:
        store.put(conn, rows)


def _keys(engine: Engine) -> set[str]:
    return set(store.find(engine, [f"k{i}" for i in range(100)], since=0.0))


def test_an_entry_past_its_ttl_is_not_served_and_is_swept(engine: Engine) -> None:
    _put(engine, [_row("k0", NOW - 100), _row("k1", NOW - 10)])
    ttl = CacheSettings(ttl_seconds=50)
    found = store.find(engine, ["k0", "k1"], since=NOW - ttl.ttl_seconds)
    assert set(found) == {"k1"}
    assert sweep_response_cache(engine, ttl, now=NOW) == 1
    assert _keys(engine) == {"k1"}


def test_the_size_bound_evicts_the_oldest_entries(engine: Engine) -> None:
    _put(engine, [_row(f"k{i}", NOW + i) for i in range(10)])
    removed = sweep_response_cache(engine, CacheSettings(max_entries=4), now=NOW + 10)
    assert removed == 6
    assert _keys(engine) == {"k6", "k7", "k8", "k9"}
    # Within the bound: nothing goes.
    assert sweep_response_cache(engine, CacheSettings(max_entries=4), now=NOW + 10) == 0


def test_a_key_written_again_keeps_the_newer_answer(engine: Engine) -> None:
    _put(engine, [_row("k0", NOW, text="old")])
    # Twice in one group too (two lines of one flush asking the same thing).
    _put(engine, [_row("k0", NOW + 2, text="newest"), _row("k0", NOW + 1, text="new")])
    tenant, result = store.find(engine, ["k0"], since=0.0)["k0"]
    assert tenant == "t" and json.loads(result)["body"] == {"text": "newest"}
    assert store.find(engine, ["k0"], since=NOW + 1.5)  # its age restarted


def test_stats_and_clear_from_the_cli(engine: Engine, database_url: str, tmp_path: Path) -> None:
    now = time.time()
    _put(
        engine,
        [_row("k0", now - 7200, "a"), _row("k1", now - 60, "a"), _row("k2", now - 30, "b")],
    )
    config = tmp_path / "config.yaml"
    config.write_text("batchgate_settings:\n  cache: {ttl_seconds: 3600, max_entries: 10}\n")
    runner = CliRunner()
    shown = runner.invoke(
        cli, ["cache", "stats", "--database-url", database_url, "--config", str(config)]
    )
    assert shown.exit_code == 0, shown.output
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in shown.output.splitlines()]
    rows = {c[0]: c[1:4] for c in cells if c}
    entry_bytes = len(_row("k0", 0).result_json)
    assert rows["a"] == ["2", str(2 * entry_bytes), "1"]  # 2 entries, 1 past the hour's TTL
    assert rows["b"] == ["1", str(entry_bytes), "0"]
    assert "ttl 3600s, at most 10 entries" in shown.output

    cleared = runner.invoke(
        cli, ["cache", "clear", "--tenant", "a", "--database-url", database_url]
    )
    assert cleared.exit_code == 0 and "cleared 2 cached answers of tenant a" in cleared.output
    assert _keys(engine) == {"k2"}
    cleared = runner.invoke(cli, ["cache", "clear", "--database-url", database_url])
    assert cleared.exit_code == 0 and "cleared 1 cached answers" in cleared.output
    assert _keys(engine) == set()
