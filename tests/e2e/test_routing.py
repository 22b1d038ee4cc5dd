"""Routing with real workers and the simulator: the global limit, fallback chains across vendors,
retry-after."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import pytest

from tests.e2e.harness import (
    chat_lines,
    prompt_digest,
    sim_config,
    sim_ledger,
    sim_stats,
    write_jsonl,
)

pytestmark = pytest.mark.e2e

FAST = {"reconcile_interval": 0.5}


def test_vendor_limit_8_holds_across_worker_processes(
    make_simulator, make_system, tmp_path: Path
) -> None:
    sim = make_simulator({"default": {"latency_ms": 100}})
    config = sim_config(sim.base_url, {"m": "openai/gpt-4o-mini"})
    config["batchgate_settings"] = {
        "vendors": {"openai": {"max_concurrency": 8, "worker_concurrency": 2}}
    }
    system = make_system(config, **FAST)
    batch = system.submit(write_jsonl(tmp_path / "in.jsonl", chat_lines(400, "m")))
    done = system.wait(batch["id"], timeout=180)
    assert done["request_counts"]["completed"] == 400, system.logs()
    peak = sim_stats(sim.base_url)["models"]["gpt-4o-mini"]["peak_in_flight"]
    assert 6 <= peak <= 8


def test_always_500_falls_back_to_anthropic_then_gemini(
    make_simulator, make_system, tmp_path: Path
) -> None:
    sim = make_simulator(
        {
            "default": {"latency_ms": 5},
            "models": {
                "gpt-broken": {"fail_always": 500},
                "claude-broken": {"fail_always": "overloaded"},
            },
        }
    )
    config = sim_config(
        sim.base_url,
        {
            "primary": "openai/gpt-broken",
            "claude": "anthropic/claude-broken",
            "gemini": "gemini/gemini-2.0-flash",
        },
        num_retries=1,
        fallbacks=[{"primary": ["claude", "gemini"]}],
    )
    system = make_system(config, **FAST)
    lines = chat_lines(30, "primary")
    batch = system.submit(write_jsonl(tmp_path / "in.jsonl", lines))
    done = system.wait(batch["id"], timeout=180)
    assert done["request_counts"] == {"total": 30, "completed": 30, "failed": 0}, system.logs()
    out = system.download(done["output_file_id"], "out.jsonl")
    assert [x["custom_id"] for x in out] == [x["custom_id"] for x in lines]
    for line in out:
        assert line["batchgate"]["model"] == "gemini"
        assert line["batchgate"]["tried"] == ["primary", "claude"]
        assert 1 <= line["batchgate"]["attempts"] <= 5
        assert line["response"]["body"]["object"] == "chat.completion"
    calls: dict[str, Counter[str]] = defaultdict(Counter)
    for entry in sim_ledger(sim.base_url):
        calls[entry["prompt_sha256"]][entry["model"]] += 1
    assert len(calls) == 30
    for per_model in calls.values():
        # At most num_retries + 1 calls on each failing model (fewer once a cooldown skips it),
        # exactly one on the model that answers.
        assert per_model["gpt-broken"] <= 2 and per_model["claude-broken"] <= 2
        assert per_model["gemini-2.0-flash"] == 1
        assert set(per_model) <= {"gpt-broken", "claude-broken", "gemini-2.0-flash"}
    total = Counter(e["model"] for e in sim_ledger(sim.base_url))
    assert total["gpt-broken"] >= 3  # the primary really was tried before falling back


def test_429_retry_after_is_honoured(make_simulator, make_system, tmp_path: Path) -> None:
    sim = make_simulator(
        {"default": {"latency_ms": 5, "fail_first_n": {"rate_limit": 1}, "retry_after_s": 1.0}}
    )
    system = make_system(
        sim_config(sim.base_url, {"m": "openai/gpt-4o-mini"}, num_retries=2), **FAST
    )
    lines = chat_lines(20, "m")
    batch = system.submit(write_jsonl(tmp_path / "in.jsonl", lines))
    done = system.wait(batch["id"], timeout=120)
    assert done["request_counts"]["completed"] == 20, system.logs()
    by_prompt: dict[str, list[dict]] = defaultdict(list)
    for entry in sim_ledger(sim.base_url):
        by_prompt[entry["prompt_sha256"]].append(entry)
    assert set(by_prompt) == {prompt_digest(x["body"]["messages"][-1]["content"]) for x in lines}
    for entries in by_prompt.values():
        first, second = sorted(entries, key=lambda e: e["t_start"])
        assert first["status"] == 429 and second["status"] == 200
        assert second["t_start"] - first["t_end"] >= 1.0  # never sooner than retry-after
