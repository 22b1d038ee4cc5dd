"""Live results: a running batch's finished lines, tailed with a cursor, add up to its files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import TERMINAL, chat_lines, sim_config, wait_for, write_jsonl

pytestmark = pytest.mark.e2e


def _get(
    api: str, batch_id: str, since: str | None = None
) -> tuple[list[dict[str, Any]], str, str]:
    params = {"since": since} if since else None
    resp = httpx.get(f"{api}/v1/batches/{batch_id}/results", params=params, timeout=30)
    assert resp.status_code == 200, resp.text
    lines = [json.loads(x) for x in resp.text.splitlines()]
    return lines, resp.headers["batchgate-cursor"], resp.headers["batchgate-batch-status"]


def test_running_batch_results_tail_once_each_and_equal_the_files(
    make_system, simulator, tmp_path: Path
) -> None:
    config = sim_config(simulator.base_url, {"gpt": "openai/gpt-4o-mini"}, num_retries=0)
    system = make_system(config, reconcile_interval=0.5)
    api = f"http://127.0.0.1:{system.port}"
    fast = chat_lines(20, "gpt", "fast")
    bad = chat_lines(3, "gpt", "bad", directive="#sim:fail=400")
    slow = chat_lines(6, "gpt", "slow", directive="#sim:sleep=3000")
    batch = system.submit(write_jsonl(tmp_path / "in.jsonl", fast + slow + bad))

    # While the slow lines run, every line already finished is there, failed ones included.
    def early() -> tuple[list[dict[str, Any]], str, str] | None:
        got = _get(api, batch["id"])
        return got if len(got[0]) >= len(fast) + len(bad) else None

    seen, cursor, status = wait_for(early, 60, "the fast and failed lines")
    assert status == "in_progress", "the slow lines should still be running"
    assert sorted(x["custom_id"] for x in seen) == sorted(x["custom_id"] for x in fast + bad)
    order = [x["custom_id"] for x in fast + slow + bad]
    for line in seen:
        assert order[line["batchgate"]["index"]] == line["custom_id"]
    assert {x["custom_id"] for x in seen if x["error"]} == {x["custom_id"] for x in bad}

    # Tailing from the cursor: each remaining line exactly once, then a terminal status.
    tailed = list(seen)
    state = {"cursor": cursor, "status": status}

    def tail() -> bool:
        more, state["cursor"], state["status"] = _get(api, batch["id"], state["cursor"])
        tailed.extend(more)
        return state["status"] in TERMINAL

    wait_for(tail, 60, "the batch to end while tailing")
    ids = [x["custom_id"] for x in tailed]
    assert sorted(ids) == sorted(order) and len(ids) == len(set(ids))
    assert _get(api, batch["id"], state["cursor"])[0] == []  # nothing after the end

    done = system.wait(batch["id"])
    files = system.download(done["output_file_id"], "out.jsonl") + system.download(
        done["error_file_id"], "err.jsonl"
    )
    assert len(files) == len(order)
    assert sorted(files, key=_custom_id) == sorted(tailed, key=_custom_id)


def _custom_id(line: dict[str, Any]) -> str:
    return line["custom_id"]
