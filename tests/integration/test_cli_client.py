"""The client commands as a newcomer meets them, with their exact output: a stopped server, a
wrong key, a missing batch, a refused file, a running batch's download and live results.

The API runs in-process (uvicorn on a thread) with no workers, so batches stay `in_progress`
until cancelled; the CLI runs as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from batchgate.api.app import create_app
from batchgate.broker import free_port
from batchgate.client import Client
from batchgate.config import parse_config
from batchgate.settings import Settings
from tests.e2e.harness import chat_lines, wait_for, write_jsonl

pytestmark = pytest.mark.storage

KEY = "sk-master-cli-0123456789"


def cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BATCHGATE_")}
    clean.update({"COLUMNS": "80", **env})
    return subprocess.run(
        [sys.executable, "-m", "batchgate", *args],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def api(tmp_path: Path, clean_broker: str, database_url: str) -> Iterator[str]:
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
            ],
            "general_settings": {"master_key": KEY},
        }
    )
    settings = Settings(data_dir=tmp_path, redis_url=clean_broker, database_url=database_url)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, config), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, name="api", daemon=True)
    thread.start()
    wait_for(lambda: server.started, 30, "the API to listen")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


def _running_batch(api: str, tmp_path: Path, n: int = 3) -> str:
    with Client(api, KEY) as c:
        f = c.upload(write_jsonl(tmp_path / "in.jsonl", chat_lines(n, "m")))
        batch = c.create_batch(f["id"], "/v1/chat/completions")
        wait_for(lambda: c.batch(batch["id"])["status"] == "in_progress", 30, "ingest")
    return batch["id"]


def test_stopped_server_is_one_line_and_exit_1(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["status", "batch_x"], ["list"], ["results", "batch_x"], ["cancel", "batch_x"]):
        proc = cli(*args, "--api-base", url, cwd=tmp_path)
        assert proc.returncode == 1
        assert proc.stdout == ""
        assert proc.stderr == (
            f"error: cannot reach batchgate at {url}: connection refused; "
            "is `batchgate up` running?\n"
        ), args


def test_wrong_key_and_missing_batch_are_one_line(api: str, tmp_path: Path) -> None:
    no_key = cli("list", "--api-base", api, cwd=tmp_path)
    assert (no_key.returncode, no_key.stderr) == (
        1,
        "error: HTTP 401: Incorrect or missing API key.\n",
    )
    missing = cli("status", "batch_nope", "--api-base", api, "--api-key", KEY, cwd=tmp_path)
    assert (missing.returncode, missing.stderr) == (
        1,
        "error: HTTP 404: No such batch: 'batch_nope'\n",
    )
    by_env = cli("list", "--api-base", api, cwd=tmp_path, BATCHGATE_API_KEY=KEY)
    assert by_env.returncode == 0 and by_env.stdout.split() == [
        "ID",
        "STATUS",
        "DONE/TOTAL",
        "FAILED",
        "USD",
    ]


def test_refused_file_shows_its_line_errors_and_exits_3(api: str, tmp_path: Path) -> None:
    lines = [
        *chat_lines(2, "m"),
        {"custom_id": "x", "method": "POST", "url": "/v1/chat/completions"},
    ]
    path = write_jsonl(tmp_path / "bad.jsonl", lines)
    proc = cli("submit", str(path), "--wait", "--api-base", api, "--api-key", KEY, cwd=tmp_path)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "None" not in proc.stdout and "Traceback" not in proc.stderr
    assert ": the file was refused\n  line 3: " in proc.stdout


def test_running_batch_download_points_to_live_results(api: str, tmp_path: Path) -> None:
    batch_id = _running_batch(api, tmp_path)
    proc = cli("download", batch_id, "--api-base", api, "--api-key", KEY, cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.replace("\n", " ").strip() == (
        f"error: batch {batch_id} is in_progress: its files are written when it ends; "
        f"`batchgate results {batch_id}` shows the lines finished so far"
    )
    listed = cli("list", "--api-base", api, "--api-key", KEY, cwd=tmp_path)
    rows = listed.stdout.splitlines()
    assert all(len(r) <= 80 for r in rows) and rows[1].split() == [
        batch_id,
        "in_progress",
        "0/3",
        "0",
        "0.0000",
    ]


def test_results_follow_appends_each_line_once_and_exits_at_the_end(
    api: str, tmp_path: Path
) -> None:
    batch_id = _running_batch(api, tmp_path, n=4)
    out = tmp_path / "live.jsonl"
    args = ("results", batch_id, "--follow", "-o", str(out), "--api-base", api, "--api-key", KEY)
    follower = subprocess.Popen(
        [sys.executable, "-m", "batchgate", *args],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("BATCHGATE_")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with Client(api, KEY) as c:
            c.cancel(batch_id)
        _, err = follower.communicate(timeout=60)
    finally:
        if follower.poll() is None:
            follower.kill()
    assert follower.returncode == 0, err
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(x["batchgate"]["index"] for x in lines) == [0, 1, 2, 3]
    once = cli("results", batch_id, "--api-base", api, "--api-key", KEY, cwd=tmp_path)
    assert once.returncode == 0 and len(once.stdout.splitlines()) == 4


def test_submit_wait_exits_3_when_the_batch_is_cancelled(api: str, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", chat_lines(3, "m"))
    args = ("submit", str(path), "--wait", "--api-base", api, "--api-key", KEY)
    waiter = subprocess.Popen(
        [sys.executable, "-m", "batchgate", *args],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("BATCHGATE_")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with Client(api, KEY) as c:
            # No workers here: the batch waits in_progress until it is cancelled.
            listed = wait_for(lambda: c.batches()["data"], 60, "the submitted batch")
            c.cancel(listed[0]["id"])
        out, err = waiter.communicate(timeout=60)
    finally:
        if waiter.poll() is None:
            waiter.kill()
    assert waiter.returncode == 3, out + err
    assert "Traceback" not in err and "cancelled" in out + err


def test_submit_cache_flags_reach_the_batch(api: str, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", chat_lines(2, "m"))
    for flag, want in (("--cache", True), ("--no-cache", False), (None, False)):
        args = ["submit", str(path), "--api-base", api, "--api-key", KEY]
        done = cli(*args, *([flag] if flag else []), cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        batch_id = done.stdout.split()[1]  # "batch batch_... created (validating)"
        with Client(api, KEY) as c:
            assert c.batch(batch_id)["cache"] is want, flag  # no flag: the config's default
