"""The CLI against a running API: submit --wait with progress and the summary table, status,
list, download --errors, estimate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import chat_lines, read_jsonl, sim_config, write_jsonl

pytestmark = pytest.mark.e2e


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHGATE_")}
    env["COLUMNS"] = "160"
    return subprocess.run(
        [sys.executable, "-m", "batchgate", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_submit_wait_shows_progress_and_a_cost_table(
    make_simulator, make_system, tmp_path: Path
) -> None:
    sim = make_simulator(
        {"default": {"latency_ms": 20}, "models": {"gpt-flaky": {"fail_always": 503}}}
    )
    config = sim_config(
        sim.base_url,
        {
            "gpt": "openai/gpt-4o-mini",
            "flaky": "openai/gpt-flaky",
            "claude": "anthropic/claude-3-5-haiku-latest",
        },
        num_retries=0,
        fallbacks=[{"flaky": ["claude"]}],
    )
    system = make_system(config, reconcile_interval=0.5)
    api = f"http://127.0.0.1:{system.port}"
    lines = (
        chat_lines(40, "gpt")
        + chat_lines(5, "flaky", "fb")
        + chat_lines(3, "gpt", "bad", directive="#sim:fail=400")
    )
    path = write_jsonl(tmp_path / "in.jsonl", lines)
    out = tmp_path / "results.jsonl"
    proc = _cli("submit", str(path), "--wait", "-o", str(out), "--api-base", api, cwd=tmp_path)
    assert proc.returncode == 4, proc.stdout + proc.stderr  # completed, some lines failed
    text = proc.stdout
    assert "48/48" in text  # the progress line at its end
    assert "cost USD" in text and "gpt" in text and "claude" in text
    assert "failed 3" in text and "served by a fallback 5" in text, text
    results = read_jsonl(out)
    assert len(results) == 45
    failed = tmp_path / "results.errors.jsonl"
    assert f"3 failed lines written to {failed}" in text
    assert [x["custom_id"] for x in read_jsonl(failed)] == [f"bad-{i:05d}" for i in range(3)]
    batch_id = next(w for w in text.split() if w.startswith("batch_"))

    status = _cli("status", batch_id, "--json", "--api-base", api, cwd=tmp_path)
    assert json.loads(status.stdout)["request_counts"] == {
        "total": 48,
        "completed": 45,
        "failed": 3,
    }
    listed = _cli("list", "--api-base", api, cwd=tmp_path)
    assert batch_id in listed.stdout and "completed" in listed.stdout
    errors = tmp_path / "errors.jsonl"
    dl = _cli("download", batch_id, "--errors", "-o", str(errors), "--api-base", api, cwd=tmp_path)
    assert dl.returncode == 0 and len(read_jsonl(errors)) == 3
    missing = _cli("status", "batch_nope", "--api-base", api, cwd=tmp_path)
    assert missing.returncode == 1 and "404" in missing.stderr


def test_estimate_prices_a_file_offline(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    proc = _cli(
        "estimate",
        str(repo / "samples" / "eval.jsonl"),
        "--config",
        str(repo / "samples" / "config.real.yaml"),
        "--json",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["lines"] == 200
    assert 0 < float(result["cost_usd_low"]) < float(result["cost_usd_high"])
    bad = write_jsonl(
        tmp_path / "bad.jsonl",
        [
            {
                "custom_id": "a",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "nope", "messages": []},
            }
        ],
    )
    proc = _cli(
        "estimate", str(bad), "--config", str(repo / "samples" / "config.real.yaml"), cwd=tmp_path
    )
    assert proc.returncode == 1 and "line 1" in proc.stdout
