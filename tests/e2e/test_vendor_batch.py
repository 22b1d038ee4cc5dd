"""The vendor batch lane end to end (issue 15): real API, workers and reconciler processes, real
Redis and database, the simulator's OpenAI Batch and Anthropic Message Batches APIs over HTTP."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from genai_prices import Usage as GPUsage
from genai_prices import calc_price

from tests.e2e.harness import (
    chat_lines,
    prompt_digest,
    sim_config,
    sim_ledger,
    wait_for,
    write_jsonl,
)

pytestmark = pytest.mark.e2e


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHGATE_")}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "batchgate", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


MODELS = {"gpt": "openai/gpt-4o-mini", "claude": "anthropic/claude-haiku-4-5"}
PRICED = {"gpt": ("openai", "gpt-4o-mini"), "claude": ("anthropic", "claude-haiku-4-5")}
ONLINE_ROUTES = {"/v1/chat/completions", "/v1/messages"}


def lane_config(base_url: str, **vendor_batch: Any) -> dict[str, Any]:
    config = sim_config(base_url, MODELS)
    config["batchgate_settings"] = {
        "vendor_batch": {"poll_interval": 0.5, "max_poll_interval": 1.0, **vendor_batch}
    }
    return config


def mixed_lines(n: int) -> list[dict[str, Any]]:
    """n lines of each model, interleaved: input order is not model order."""
    gpt, claude = chat_lines(n, "gpt", "g"), chat_lines(n, "claude", "c")
    return [line for pair in zip(gpt, claude, strict=True) for line in pair]


def prompt_of(line: dict[str, Any]) -> str:
    return prompt_digest(line["body"]["messages"][-1]["content"])


def sim_jobs(base_url: str) -> list[dict[str, Any]]:
    return httpx.get(f"{base_url}/_sim/batch_jobs", timeout=30).json()["jobs"]


def expected_cost(meta: dict[str, Any]) -> Decimal:
    provider, model = PRICED[meta["model"]]
    u = meta["usage"]
    context = {"processing": "batch"} if meta["lane"] == "vendor_batch" else None
    return Decimal(
        str(
            calc_price(
                GPUsage(
                    input_tokens=u["input_tokens"],
                    output_tokens=u["output_tokens"],
                    cache_read_tokens=u["cache_read_tokens"] or None,
                    cache_write_tokens=u["cache_write_tokens"] or None,
                ),
                model_ref=model,
                provider_id=provider,
                price_context=context,
            ).total_price
        )
    )


def test_lines_go_to_vendor_batches_first_and_only_failed_or_expired_ones_run_online(
    make_simulator, make_system, tmp_path: Path
) -> None:
    sim = make_simulator(
        {
            "models": {
                "gpt-4o-mini": {"batch_fail_rate": 0.15, "batch_delay_s": 1.0},
                "claude-haiku-4-5": {"batch_expire_rate": 0.15, "batch_delay_s": 1.0},
            }
        }
    )
    system = make_system(lane_config(sim.base_url), reconcile_interval=0.5)
    lines = mixed_lines(40)
    path = write_jsonl(tmp_path / "in.jsonl", lines)
    api = f"http://127.0.0.1:{system.port}"
    proc = cli("submit", str(path), "--vendor-batch", "--wait", "--api-base", api, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr + system.logs()
    assert "80/80" in proc.stdout and "vendor batch lane" in proc.stdout, proc.stdout
    batch_id = next(w for w in proc.stdout.split() if w.startswith("batch_"))
    done = system.wait(batch_id)
    assert done["status"] == "completed" and done["vendor_batch"] is True
    assert done["request_counts"] == {"total": 80, "completed": 80, "failed": 0}
    out = system.download(done["output_file_id"], "out.jsonl")
    assert [line["custom_id"] for line in out] == [line["custom_id"] for line in lines]

    # Every line was first offered to its vendor's batch API, in one job per model here.
    jobs = sim_jobs(sim.base_url)
    offered = [p for job in jobs for p in job["prompts"]]
    assert sorted(offered) == sorted(prompt_of(line) for line in lines)
    assert {job["vendor"] for job in jobs} == {"openai", "anthropic"}
    not_served = {
        p
        for job in jobs
        for p, outcome in zip(job["prompts"], job["outcomes"], strict=True)
        if outcome != "ok"
    }
    kinds = {job["vendor"]: {o for o in job["outcomes"] if o != "ok"} for job in jobs}
    assert kinds == {"openai": {"failed"}, "anthropic": {"expired"}}, kinds

    # Only those were called online, once each (no online faults here).
    online = [e["prompt_sha256"] for e in sim_ledger(sim.base_url) if e["route"] in ONLINE_ROUTES]
    assert sorted(online) == sorted(not_served)

    by_prompt = {prompt_of(line): line["custom_id"] for line in lines}
    online_ids = {by_prompt[p] for p in not_served}
    for line in out:
        meta = line["batchgate"]
        assert meta["lane"] == ("online" if line["custom_id"] in online_ids else "vendor_batch")
        assert abs(Decimal(meta["cost_usd"]) - expected_cost(meta)) <= Decimal("1e-9"), meta
    lanes = done["batchgate"]["lanes"]
    assert lanes["vendor_batch"]["lines"] == 80 - len(online_ids)
    assert lanes["online"]["lines"] == len(online_ids)
    assert Decimal(lanes["vendor_batch_saving_usd"]) > 0
    total = sum(Decimal(line["batchgate"]["cost_usd"]) for line in out)
    assert total == Decimal(done["cost_usd"])


def test_a_job_past_the_deadline_margin_is_cancelled_and_its_lines_finish_online(
    make_simulator, make_system, tmp_path: Path
) -> None:
    sim = make_simulator({"models": {"gpt-4o-mini": {"batch_delay_s": 3600}}})
    # A 2-minute window and a margin of 100 s: the job is cancelled 20 s in.
    system = make_system(lane_config(sim.base_url, deadline_margin=100), reconcile_interval=0.5)
    lines = chat_lines(12, "gpt", "g")
    # The openai SDK as the client: the lane is asked for through `extra_body`.
    sdk = openai.OpenAI(base_url=f"http://127.0.0.1:{system.port}/v1", api_key="x", max_retries=0)
    f = sdk.files.create(file=write_jsonl(tmp_path / "in.jsonl", lines), purpose="batch")
    created = sdk.batches.create(
        input_file_id=f.id,
        endpoint="/v1/chat/completions",
        completion_window="120s",  # type: ignore[arg-type]
        extra_body={"vendor_batch": True},
    )
    batch = {"id": created.id}
    with system.client() as c:
        running = wait_for(
            lambda: (
                (b := c.batch(batch["id"]))["batchgate"].get("waiting_on_vendor") == 12
                and b["batchgate"]["vendor_jobs"][0]["status"] == "submitted"
                and b
            ),
            60,
            "a vendor job",
        )
    job = running["batchgate"]["vendor_jobs"][0]
    assert job["vendor"] == "openai" and job["waiting"] == 12 and job["vendor_job_id"]
    api = f"http://127.0.0.1:{system.port}"
    status = cli("status", batch["id"], "--api-base", api, cwd=tmp_path)
    assert "vendor batch jobs" in status.stdout and job["vendor_job_id"] in status.stdout
    done = system.wait(batch["id"], timeout=120)
    assert done["status"] == "completed", system.logs()
    assert done["request_counts"]["completed"] == 12
    jobs = sim_jobs(sim.base_url)
    assert len(jobs) == 1 and jobs[0]["cancelled"] is True
    out = system.download(done["output_file_id"], "out.jsonl")
    assert [line["custom_id"] for line in out] == [line["custom_id"] for line in lines]
    assert {line["batchgate"]["lane"] for line in out} == {"online"}
    online = [e for e in sim_ledger(sim.base_url) if e["route"] in ONLINE_ROUTES]
    assert len(online) == 12
    assert done["batchgate"]["vendor_jobs"][0]["status"] == "ingested"


def test_killed_worker_and_reconciler_resume_vendor_jobs_without_resubmitting(
    make_simulator, make_system, tmp_path: Path
) -> None:
    sim = make_simulator(
        {
            "models": {
                "gpt-4o-mini": {"batch_fail_rate": 0.15, "batch_delay_s": 12.0},
                "claude-haiku-4-5": {"batch_expire_rate": 0.15, "batch_delay_s": 12.0},
            }
        }
    )
    # The reconciler also dies once between a vendor accepting a job and recording its id.
    system = make_system(
        lane_config(sim.base_url, recover_after=1),
        reconcile_interval=0.5,
        test_faults="crash_after_vendor_submit",
    )
    lines = mixed_lines(40)
    batch = system.submit(write_jsonl(tmp_path / "in.jsonl", lines), vendor_batch=True)
    reconciler = next(c for c in system.sup.children if c.name == "reconciler")
    with system.client() as c:
        wait_for(
            lambda: (
                [j["status"] for j in c.batch(batch["id"])["batchgate"]["vendor_jobs"]]
                == ["submitted", "submitted"]
            ),
            60,
            "both jobs submitted",
        )
    assert reconciler.restarts >= 1  # the injected crash happened, and it came back
    assert len(sim_jobs(sim.base_url)) == 2
    # Now, with both jobs running at the vendor, SIGKILL the worker and the reconciler.
    for name in ("worker-openai", "worker-anthropic", "reconciler"):
        child = next(c for c in system.sup.children if c.name == name)
        os.killpg(child.proc.pid, signal.SIGKILL)
    done = system.wait(batch["id"], timeout=180)
    assert done["status"] == "completed", system.logs()
    assert done["request_counts"] == {"total": 80, "completed": 80, "failed": 0}
    out = system.download(done["output_file_id"], "out.jsonl")
    assert [line["custom_id"] for line in out] == [line["custom_id"] for line in lines]
    jobs = sim_jobs(sim.base_url)
    assert len(jobs) == 2  # resumed, never resubmitted
    offered = [p for job in jobs for p in job["prompts"]]
    assert sorted(offered) == sorted(prompt_of(line) for line in lines)
    not_served = {
        p
        for job in jobs
        for p, outcome in zip(job["prompts"], job["outcomes"], strict=True)
        if outcome != "ok"
    }
    online = [e["prompt_sha256"] for e in sim_ledger(sim.base_url) if e["route"] in ONLINE_ROUTES]
    assert sorted(online) == sorted(not_served)
    assert [j["status"] for j in done["batchgate"]["vendor_jobs"]] == ["ingested", "ingested"]


@pytest.mark.parametrize(
    ("target", "provider", "online_route"),
    [
        ("azure/gpt-4o-mini", "azure", "/openai/deployments/"),
        ("gemini/gemini-2.5-flash", "google", ":generateContent"),
    ],
)
def test_azure_and_gemini_lines_go_to_their_batch_apis_and_failed_ones_run_online(
    make_simulator, make_system, tmp_path: Path, target: str, provider: str, online_route: str
) -> None:
    model = target.split("/", 1)[1]
    sim = make_simulator({"models": {model: {"batch_fail_rate": 0.2, "batch_delay_s": 0.5}}})
    config = sim_config(sim.base_url, {"m": target})
    config["batchgate_settings"] = {"vendor_batch": {"poll_interval": 0.5, "max_poll_interval": 1}}
    system = make_system(config, reconcile_interval=0.5)
    lines = chat_lines(20, "m", "a")
    batch = system.submit(write_jsonl(tmp_path / "in.jsonl", lines), vendor_batch=True)
    done = system.wait(batch["id"], timeout=120)
    assert done["request_counts"] == {"total": 20, "completed": 20, "failed": 0}, system.logs()
    [job] = sim_jobs(sim.base_url)
    assert job["vendor"] == target.split("/")[0] and len(job["prompts"]) == 20
    failed = {p for p, o in zip(job["prompts"], job["outcomes"], strict=True) if o != "ok"}
    assert failed and len(failed) < 20
    online = [e["prompt_sha256"] for e in sim_ledger(sim.base_url) if online_route in e["route"]]
    assert sorted(online) == sorted(failed)
    out = system.download(done["output_file_id"], "out.jsonl")
    assert [line["custom_id"] for line in out] == [line["custom_id"] for line in lines]
    for line in out:
        meta = line["batchgate"]
        assert meta["lane"] == (
            "online" if prompt_of_line(line, lines) in failed else "vendor_batch"
        )
        u = meta["usage"]
        context = {"processing": "batch"} if meta["lane"] == "vendor_batch" else None
        expected = calc_price(
            GPUsage(input_tokens=u["input_tokens"], output_tokens=u["output_tokens"]),
            model_ref=model,
            provider_id=provider,
            price_context=context,
        ).total_price
        assert abs(Decimal(meta["cost_usd"]) - Decimal(str(expected))) <= Decimal("1e-9")


def prompt_of_line(out_line: dict[str, Any], lines: list[dict[str, Any]]) -> str:
    [line] = [x for x in lines if x["custom_id"] == out_line["custom_id"]]
    return prompt_of(line)


def test_jobs_are_split_at_the_limits_and_capped_in_flight_per_vendor(
    make_simulator, make_system, tmp_path: Path
) -> None:
    sim = make_simulator(
        {
            "models": {
                "gpt-4o-mini": {"batch_delay_s": 1.0},
                "claude-haiku-4-5": {"batch_delay_s": 1.0},
            }
        }
    )
    limits = {
        "max_requests": {"openai": 10},
        "max_bytes": {"anthropic": 1200},  # about 3 lines of these
        "max_jobs_in_flight": {"openai": 1},
    }
    system = make_system(lane_config(sim.base_url, **limits), reconcile_interval=0.5)
    lines = chat_lines(25, "gpt", "g") + chat_lines(7, "claude", "c")
    batch = system.submit(write_jsonl(tmp_path / "in.jsonl", lines), vendor_batch=True)
    done = system.wait(batch["id"], timeout=180)
    assert done["request_counts"]["completed"] == 32, system.logs()
    jobs = sim_jobs(sim.base_url)
    gpt = [j for j in jobs if j["vendor"] == "openai"]
    claude = [j for j in jobs if j["vendor"] == "anthropic"]
    assert [len(j["prompts"]) for j in gpt] == [10, 10, 5]
    # One OpenAI job in flight at a time: each was created after the one before it ended.
    for before, after in itertools.pairwise(gpt):
        assert after["created_at"] >= before["ended_at"]
    assert len(claude) >= 3 and all(len(j["prompts"]) <= 3 for j in claude)
    assert sum(len(j["prompts"]) for j in claude) == 7
    out = system.download(done["output_file_id"], "out.jsonl")
    assert [line["custom_id"] for line in out] == [line["custom_id"] for line in lines]
    assert {line["batchgate"]["lane"] for line in out} == {"vendor_batch"}
