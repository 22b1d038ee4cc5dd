"""Make the upgrade fixture: a data dir written by release 0.1.0 (commit 1744a66), with batches in
every state, for `tests/e2e/test_release_upgrade.py`.

Run it with the OLD code first on the path (its own worktree), once per backend:

    git worktree add --detach /tmp/rel 1744a66
    cd tests/data/release-0.1.0
    PYTHONPATH=/tmp/rel python make_fixture.py --out sqlite
    PYTHONPATH=/tmp/rel python make_fixture.py --out postgresql \
        --database-url postgresql://root@127.0.0.1:5432/test

It runs the real system (API, workers, reconciler, simulator) to make `completed`, `failed`,
`cancelled` and `expired` batches, then stops the workers and uses the API alone to leave batches
`in_progress` (lines never run), `validating` (the API died mid-ingest), `cancelling` (workers died
holding leases) and `finalizing` (the finalizer died). Where a state can only come from a crash,
the rows are edited the way that crash leaves them. Unfinished batches get an `expires_at` in
2038 so the fixture does not age. It writes, beside the data, `expected.json`: what
release 0.1.0's API served for each batch and each file (sha256 of the content), and each batch's
items and attempts as stored.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from batchgate.broker import start_valkey
from batchgate.cli.demo import wait_healthy
from batchgate.client import Client
from batchgate.config import load_config
from batchgate.settings import Settings
from batchgate.simulator import Behaviour, start_in_thread
from batchgate.store.db import make_engine
from batchgate.supervisor import Supervisor

MASTER_KEY = "sk-master-fixture"
TEAM_KEY = "sk-team-a-fixture"
# As far away as the INTEGER columns of release 0.1.0 reach on PostgreSQL (January 2038).
FAR_AWAY = 2**31 - 1 - 86400
SIM_URL_PLACEHOLDER = "http://simulator.invalid"
TERMINAL = {"completed", "failed", "expired", "cancelled"}


SIMULATOR = {
    "seed": 7,
    "default": {"latency_ms": 20},
    "models": {"gpt-4o-mini": {"errors": {"500": 0.3}}},
}


def config(sim_url: str) -> dict[str, Any]:
    """Also the config the upgrade test runs with (same names and keys, its own simulator)."""
    return {
        "model_list": [
            {
                "model_name": "gpt-4o-mini",
                "litellm_params": {
                    "model": "openai/gpt-4o-mini",
                    "api_base": f"{sim_url}/v1",
                    "api_key": "sk-sim",
                },
            },
            {
                "model_name": "claude-haiku",
                "litellm_params": {
                    "model": "anthropic/claude-3-5-haiku-latest",
                    "api_base": sim_url,
                    "api_key": "sk-ant-sim",
                },
            },
        ],
        "router_settings": {"num_retries": 1, "fallbacks": [{"gpt-4o-mini": ["claude-haiku"]}]},
        "general_settings": {"master_key": MASTER_KEY},
        "batchgate_settings": {
            "tenants": [{"name": "team-a", "api_key": TEAM_KEY}],
            "vendors": {"openai": {"max_concurrency": 4}},
        },
    }


def lines(prefix: str, n: int, directive: str = "", model: str = "gpt-4o-mini") -> list[str]:
    out = []
    for i in range(n):
        text = f"{prefix} question {i} {directive}".strip()
        body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 16}
        line = {"custom_id": f"{prefix}-{i:03d}", "method": "POST", "url": "/v1/chat/completions"}
        out.append(json.dumps({**line, "body": body}))
    return out


def submit(c: Client, work: Path, name: str, rows: list[str], **extra: Any) -> dict[str, Any]:
    path = work / f"{name}.jsonl"
    path.write_text("\n".join(rows) + "\n")
    f = c.upload(path)
    return c.create_batch(f["id"], "/v1/chat/completions", metadata={"fixture": name}, **extra)


def wait(c: Client, batch_id: str, states: set[str], timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        b = c.batch(batch_id)
        if b["status"] in states:
            return b
        if time.monotonic() > deadline:
            raise TimeoutError(f"{batch_id} stuck in {b['status']}")
        time.sleep(0.2)


def sql(engine: Any, statement: str, **params: Any) -> None:
    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(text(statement), params)


def run_live(settings: Settings, cfg_path: Path, work: Path, sim_url: str) -> dict[str, str]:
    """Batches the real system drives to an end: completed, failed, cancelled, expired."""
    from batchgate.broker import free_port

    port = free_port()
    sup = Supervisor(settings, load_config(cfg_path), cfg_path, port=port, log_dir=work / "logs")
    sup.start()
    made: dict[str, str] = {}
    try:
        base = f"http://127.0.0.1:{port}"
        master, team = Client(base, MASTER_KEY), Client(base, TEAM_KEY)
        wait_healthy(master, sup.config.vendors, timeout=90)
        # cancelled while slow lines were in flight: a few lines done, the rest cancelled
        slow = lines("quick", 3) + lines("slow", 30, "#sim:sleep=2000")
        made["cancelled"] = submit(master, work, "cancelled", slow)["id"]
        deadline = time.monotonic() + 30
        while master.batch(made["cancelled"])["request_counts"]["completed"] < 1:
            if time.monotonic() > deadline:
                raise TimeoutError("no line of the cancelled batch finished")
            time.sleep(0.05)
        master.cancel(made["cancelled"])
        # completed: the simulator fails 30% of gpt calls, so some lines fall back to claude;
        # one line is refused outright (400) and ends in the error file.
        rows = lines("done", 20) + lines("bad", 1, "#sim:fail=400")
        made["completed"] = submit(master, work, "completed", rows)["id"]
        # the same under another tenant, finished too
        made["completed_team"] = submit(team, work, "completed_team", lines("team", 6))["id"]
        # failed: the file has a line that is not JSON
        bad = [*lines("v", 2), "{not json"]
        made["failed"] = submit(master, work, "failed", bad)["id"]
        # expired: slow lines, then the window is made to end (the clock cannot be waited out)
        late = lines("late", 10, "#sim:sleep=1500")
        made["expired"] = submit(master, work, "expired", late)["id"]
        # finished now, made `finalizing` below as if the finalizer had died
        made["finalizing"] = submit(master, work, "finalizing", lines("fin", 5))["id"]
        engine = make_engine(settings.resolved_database_url())
        sql(
            engine,
            "UPDATE batch SET expires_at = :t WHERE id = :id",
            t=int(time.time()) - 1,
            id=made["expired"],
        )
        for key in ("completed", "failed", "cancelled", "expired", "finalizing"):
            wait(master, made[key], TERMINAL)
        wait(team, made["completed_team"], TERMINAL)
    finally:
        sup.stop()
    return made


def freeze_unfinished(settings: Settings, cfg_path: Path, work: Path, made: dict[str, str]) -> None:
    """Batches left unfinished, as a crash or a stop leaves them (no worker runs now)."""
    from fastapi.testclient import TestClient

    from batchgate.api.app import create_app

    cfg = load_config(cfg_path)
    app = create_app(settings, cfg)
    with TestClient(app) as http:
        http.headers["Authorization"] = f"Bearer {MASTER_KEY}"

        def create(name: str, rows: list[str]) -> str:
            path = work / f"{name}.jsonl"
            path.write_text("\n".join(rows) + "\n")
            with open(path, "rb") as fp:
                f = http.post(
                    "/v1/files", files={"file": (path.name, fp)}, data={"purpose": "batch"}
                )
            body = {
                "input_file_id": f.json()["id"],
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
                "metadata": {"fixture": name},
                "fallbacks": ["claude-haiku"],
            }
            b = http.post("/v1/batches", json=body).json()
            deadline = time.monotonic() + 30
            while http.get(f"/v1/batches/{b['id']}").json()["status"] == "validating":
                if time.monotonic() > deadline:
                    raise TimeoutError(name)
                time.sleep(0.05)
            return b["id"]

        made["in_progress"] = create("in_progress", lines("todo", 12))
        made["validating"] = create("validating", lines("ingest", 7))
        made["cancelling"] = create("cancelling", lines("halt", 8))
    engine = make_engine(settings.resolved_database_url())
    now = time.time()
    for key in ("in_progress", "validating", "cancelling"):
        sql(
            engine,
            "UPDATE batch SET expires_at = :t WHERE id = :id",
            t=FAR_AWAY,
            id=made[key],
        )
    # validating: the API died mid-ingest; ingest is one transaction, so no item was kept
    sql(engine, "DELETE FROM item WHERE batch_id = :id", id=made["validating"])
    sql(
        engine,
        "UPDATE batch SET status = 'validating', in_progress_at = NULL, total = 0, "
        "created_at = created_at - 3600 WHERE id = :id",
        id=made["validating"],
    )
    # cancelling: cancel came while two workers held leases, then the workers died
    sql(
        engine,
        "UPDATE batch SET status = 'cancelling', cancelling_at = :t WHERE id = :id",
        t=int(now),
        id=made["cancelling"],
    )
    sql(
        engine,
        "UPDATE item SET state = 'running', lease_owner = 'dead-worker', "
        "lease_until = :t, claims = 1 WHERE batch_id = :id AND idx < 2",
        t=now - 3600,
        id=made["cancelling"],
    )
    from batchgate.pipeline.lifecycle import CANCELLED_ERROR

    sql(
        engine,
        "UPDATE item SET state = 'cancelled', error_json = :e, finished_at = :t "
        "WHERE batch_id = :id AND idx >= 2",
        e=CANCELLED_ERROR,
        t=now,
        id=made["cancelling"],
    )
    # finalizing: every line done, the finalizer died before writing the files
    fid = made["finalizing"]
    with engine.begin() as conn:
        from sqlalchemy import text

        old = conn.execute(
            text("SELECT output_file_id, error_file_id FROM batch WHERE id = :id"), {"id": fid}
        ).one()
        for file_id in old:
            if file_id:
                path = conn.execute(
                    text("SELECT path FROM file WHERE id = :f"), {"f": file_id}
                ).scalar_one()
                (settings.files_dir / path).unlink()
                conn.execute(text("DELETE FROM file WHERE id = :f"), {"f": file_id})
        conn.execute(
            text(
                "UPDATE batch SET status = 'finalizing', finalizing_at = :t, completed_at = NULL, "
                "output_file_id = NULL, error_file_id = NULL, summary_json = NULL, "
                "completed_count = 0, failed_count = 0, expires_at = :far WHERE id = :id"
            ),
            {"t": int(now) - 3600, "far": FAR_AWAY, "id": fid},
        )


def record(settings: Settings, made: dict[str, str]) -> dict[str, Any]:
    """What release 0.1.0 served and stored, for the upgrade test to compare against."""
    from fastapi.testclient import TestClient
    from sqlalchemy import text

    from batchgate.api.app import create_app

    cfg = load_config(settings.config)  # type: ignore[arg-type]
    engine = make_engine(settings.resolved_database_url())
    out: dict[str, Any] = {"release": "0.1.0", "commit": "1744a66", "batches": {}}
    with TestClient(create_app(settings, cfg)) as http:
        for key, batch_id in made.items():
            key_for = TEAM_KEY if key == "completed_team" else MASTER_KEY
            http.headers["Authorization"] = f"Bearer {key_for}"
            batch = http.get(f"/v1/batches/{batch_id}").json()
            files = {}
            for field in ("input_file_id", "output_file_id", "error_file_id"):
                if batch.get(field):
                    content = http.get(f"/v1/files/{batch[field]}/content").content
                    files[field] = hashlib.sha256(content).hexdigest()
            with engine.connect() as conn:
                items = [
                    list(r)
                    for r in conn.execute(
                        text(
                            "SELECT idx, custom_id, state, cost_pusd, attempts, "
                            "result_json IS NOT NULL FROM item WHERE batch_id = :b ORDER BY idx"
                        ),
                        {"b": batch_id},
                    )
                ]
                attempts = [
                    list(r)
                    for r in conn.execute(
                        text(
                            "SELECT item_id, vendor, status, cost_pusd, duplicate FROM attempt "
                            "WHERE batch_id = :b ORDER BY id"
                        ),
                        {"b": batch_id},
                    )
                ]
            out["batches"][key] = {
                "id": batch_id,
                "api_key": key_for,
                "object": batch,
                "file_sha256": files,
                "items": items,
                "attempts": attempts,
            }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--database-url", default=None, help="PostgreSQL base URL (default: SQLite)")
    args = ap.parse_args()
    out: Path = args.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    work = Path(tempfile.mkdtemp(prefix="bg-fixture-"))
    data = work / "data"
    pg_name = None
    database_url = None
    if args.database_url:
        import psycopg

        pg_name = f"bg_fixture_{int(time.time())}"
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{pg_name}"')
        database_url = args.database_url.rsplit("/", 1)[0] + "/" + pg_name
    sim = start_in_thread(Behaviour.from_dict(SIMULATOR))
    redis_url, valkey = start_valkey(work / "broker")
    try:
        cfg_path = work / "config.yaml"
        cfg_path.write_text(yaml.safe_dump(config(sim.base_url)))
        settings = Settings(
            data_dir=data, redis_url=redis_url, database_url=database_url, config=cfg_path
        )
        try:
            made = run_live(settings, cfg_path, work, sim.base_url)
        except Exception:
            for log in sorted((work / "logs").glob("*.log")):
                print(f"==== {log.name}\n{log.read_text(errors='replace')[-3000:]}")
            raise
        freeze_unfinished(settings, cfg_path, work, made)
        expected = record(settings, made)
        out.mkdir(parents=True)
        shutil.copytree(settings.files_dir, out / "files")
        if database_url is None:
            import sqlite3

            # A consistent copy through SQLite's backup API, as one file with no WAL beside it.
            src, dst = sqlite3.connect(data / "batchgate.db"), sqlite3.connect(out / "batchgate.db")
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")
            src.close()
            dst.close()
        else:
            dump = subprocess.run(
                ["pg_dump", "--inserts", "--no-owner", "--no-privileges", database_url],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            (out / "dump.sql").write_text(dump)
        # The config and simulator it ran with; the test points the config at its own simulator.
        (out / "config.yaml").write_text(yaml.safe_dump(config(SIM_URL_PLACEHOLDER)))
        (out / "simulator.json").write_text(json.dumps(SIMULATOR, indent=1) + "\n")
        (out / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
        print(f"fixture written to {out}: {', '.join(f'{k}={v}' for k, v in made.items())}")
    finally:
        sim.stop()
        valkey.terminate()
        valkey.wait(10)
        if pg_name:
            import psycopg

            with psycopg.connect(args.database_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
