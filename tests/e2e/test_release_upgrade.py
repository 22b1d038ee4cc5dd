"""Upgrading never loses a batch: a data dir written by release 0.1.0 (before migrations; see
`tests/data/release-0.1.0/make_fixture.py`) is opened by this code. Every batch, item, attempt and
file reads back as that release served it, and its unfinished batches resume and end."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import text

from batchgate.client import Client
from batchgate.store import migrate
from batchgate.store.db import make_engine
from tests.e2e.harness import TERMINAL, read_jsonl, wait_for
from tests.release_fixture import SIM_URL_PLACEHOLDER, expected, restore

pytestmark = pytest.mark.e2e

ITEMS = (
    "SELECT idx, custom_id, state, cost_pusd, attempts, result_json IS NOT NULL FROM item "
    "WHERE batch_id = :b ORDER BY idx"
)
ATTEMPTS = (
    "SELECT item_id, vendor, status, cost_pusd, duplicate FROM attempt WHERE batch_id = :b "
    "ORDER BY id"
)


def _rows(engine: Any, sql: str, batch_id: str) -> list[list[Any]]:
    with engine.connect() as conn:
        return [[_plain(v) for v in r] for r in conn.execute(text(sql), {"b": batch_id})]


def _plain(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value  # SQLite 0/1 vs PostgreSQL bool


def _sha(client: Client, file_id: str, dest: Path) -> str:
    client.download(file_id, dest)
    return hashlib.sha256(dest.read_bytes()).hexdigest()


def test_release_0_1_0_data_survives_the_upgrade_and_unfinished_batches_end(
    make_system, make_simulator, database_url: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "sys0" / "data"  # where make_system's first System keeps its data
    data_dir.mkdir(parents=True)
    src = restore(database_url, data_dir)
    want_batches = expected(src)
    engine = make_engine(database_url)
    before = migrate.state(engine)
    assert before.current is None and before.legacy  # made by create_all, not yet stamped

    sim = make_simulator(json.loads((src / "simulator.json").read_text()))
    config = yaml.safe_load(
        (src / "config.yaml").read_text().replace(SIM_URL_PLACEHOLDER, sim.base_url)
    )
    # The old broker is gone with its messages: the reconciler must find queued items soon.
    system = make_system(config, stale_enqueue_seconds=1, reconcile_interval=0.5)
    after = migrate.state(engine)
    assert after.current == after.head and after.known

    def client(key: str) -> Client:
        return Client(f"http://127.0.0.1:{system.port}", api_key=key)

    finished = {k: v for k, v in want_batches.items() if v["object"]["status"] in TERMINAL}
    assert set(finished) == {"completed", "completed_team", "failed", "cancelled", "expired"}
    for name, want in finished.items():
        with client(want["api_key"]) as c:
            got = c.batch(want["id"])
            # Every field the old release returned is unchanged (new fields may be added).
            assert _shaped_like(got, want["object"]) == want["object"], name
            for field, digest in want["file_sha256"].items():
                assert _sha(c, got[field], tmp_path / f"{name}-{field}") == digest, (name, field)
        assert _rows(engine, ITEMS, want["id"]) == want["items"], name
        assert _rows(engine, ATTEMPTS, want["id"]) == want["attempts"], name

    ends = {
        "in_progress": "completed",
        "validating": "completed",
        "finalizing": "completed",
        "cancelling": "cancelled",
    }
    for name, status in ends.items():
        want = want_batches[name]
        with client(want["api_key"]) as c:
            done = wait_for(
                lambda c=c, w=want: (b := c.batch(w["id"]))["status"] in TERMINAL and b,
                120,
                f"{name} batch to end",
            )
            assert done["status"] == status, (name, system.logs())
            assert c.batch(want["id"])["input_file_id"] == want["object"]["input_file_id"]
            assert (
                _sha(c, done["input_file_id"], tmp_path / f"{name}-in")
                == (want["file_sha256"]["input_file_id"])
            )
            lines = []
            for field in ("output_file_id", "error_file_id"):
                if done.get(field):
                    c.download(done[field], tmp_path / f"{name}-{field}")
                    lines += read_jsonl(tmp_path / f"{name}-{field}")
        inputs = read_jsonl(system.root / "data" / "files" / _path(engine, done["input_file_id"]))
        ids = [x["custom_id"] for x in inputs]
        assert sorted(x["custom_id"] for x in lines) == sorted(ids), name  # each line once
        if status == "completed":
            out = [x for x in lines if x["error"] is None]
            assert [x["custom_id"] for x in out] == ids, name  # every line served, input order
    # The finalizer died after every line was paid: finishing it made no new call.
    fin = want_batches["finalizing"]
    assert _rows(engine, ATTEMPTS, fin["id"]) == fin["attempts"]


def _path(engine: Any, file_id: str) -> str:
    with engine.connect() as conn:
        return conn.execute(text("SELECT path FROM file WHERE id = :f"), {"f": file_id}).scalar()


def _shaped_like(new: Any, old: Any) -> Any:
    """`new` cut down to the keys `old` has, at every depth of nested objects."""
    if isinstance(old, dict) and isinstance(new, dict):
        return {k: _shaped_like(new.get(k), v) for k, v in old.items()}
    return new
