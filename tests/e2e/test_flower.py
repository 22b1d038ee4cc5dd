"""Flower on the same broker, behind basic auth, shows the batch's tasks (ids only)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from batchgate.broker import free_port
from tests.e2e.harness import chat_lines, sim_config, wait_for, write_jsonl

pytestmark = pytest.mark.e2e


def test_flower_lists_batch_tasks_with_auth_and_refuses_without(
    make_simulator, make_system, tmp_path: Path
) -> None:
    sim = make_simulator({"default": {"latency_ms": 5}})
    port = free_port()
    system = make_system(
        sim_config(sim.base_url, {"m": "openai/gpt-4o-mini"}),
        flower_port=port,
        flower_basic_auth="ops:s3cret-flower",
    )
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: _up(base), 60, "flower to listen")
    prompt = "flower prompt text 91c2"
    batch = system.submit(write_jsonl(tmp_path / "in.jsonl", chat_lines(40, "m", directive=prompt)))
    done = system.wait(batch["id"], timeout=120)
    assert done["status"] == "completed"

    assert httpx.get(f"{base}/api/tasks", timeout=10).status_code == 401
    assert httpx.get(f"{base}/", timeout=10).status_code == 401
    assert httpx.get(f"{base}/tasks/datatable", timeout=10).status_code == 401
    auth = ("ops", "s3cret-flower")

    def tasks() -> dict:
        data = httpx.get(f"{base}/api/tasks", auth=auth, timeout=10).json()
        return {k: v for k, v in data.items() if batch["id"] in (v.get("args") or "")}

    found = wait_for(tasks, 30, "the batch's tasks in flower")
    # Named for people: vendor, batch and chunk size; the arguments summarised, never a prompt.
    assert all(t["name"].startswith(f"run_chunk openai {batch['id']} ×") for t in found.values()), (
        found
    )
    assert sum(int(t["name"].rsplit("×", 1)[1]) for t in found.values()) >= 40
    text = httpx.get(f"{base}/api/tasks", auth=auth, timeout=10).text
    assert prompt not in text and "sk-test-key" not in text


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthcheck", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
