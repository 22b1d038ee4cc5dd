"""One model name load-balanced over OpenAI and Azure (LiteLLM's usual pair): each deployment's
calls hold its own vendor's limit and are recorded under its vendor, and both vendors serve."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select

from batchgate.store.models import Attempt
from tests.e2e.harness import chat_lines, sim_stats, write_jsonl

pytestmark = pytest.mark.e2e


def pair_config(base_url: str, **router: Any) -> dict[str, Any]:
    key = "sk-test-key"
    return {
        "model_list": [
            {
                "model_name": "gpt",
                "litellm_params": {
                    "model": "openai/gpt-4o-mini",
                    "api_base": f"{base_url}/v1",
                    "api_key": key,
                },
            },
            {
                "model_name": "gpt",
                "litellm_params": {
                    "model": "azure/gpt-4o-mini-eu",
                    "api_base": base_url,
                    "api_key": key,
                    "api_version": "2024-10-21",
                },
            },
        ],
        "router_settings": {"num_retries": 2, **router},
        "batchgate_settings": {
            "vendors": {"openai": {"max_concurrency": 4}, "azure": {"max_concurrency": 3}}
        },
    }


def test_openai_and_azure_deployments_each_hold_their_vendor_limit(
    make_simulator, make_system, database_url: str, tmp_path: Path
) -> None:
    sim = make_simulator({"default": {"latency_ms": 100}})
    system = make_system(pair_config(sim.base_url), reconcile_interval=0.5)
    batch = system.submit(write_jsonl(tmp_path / "in.jsonl", chat_lines(140, "gpt")))
    done = system.wait(batch["id"], timeout=180)
    assert done["request_counts"] == {"total": 140, "completed": 140, "failed": 0}, system.logs()

    models = sim_stats(sim.base_url)["models"]
    openai, azure = models["gpt-4o-mini"], models["gpt-4o-mini-eu"]
    assert openai["calls"] > 0 and azure["calls"] > 0  # the name spreads load over both
    assert openai["calls"] + azure["calls"] == 140
    assert 2 <= openai["peak_in_flight"] <= 4
    assert 2 <= azure["peak_in_flight"] <= 3

    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(select(Attempt.deployment_id, Attempt.vendor)).all()
    engine.dispose()
    assert Counter(rows) == {
        ("gpt#0", "openai"): openai["calls"],
        ("gpt#1", "azure"): azure["calls"],
    }
    out = system.download(done["output_file_id"], "out.jsonl")
    assert Counter(line["batchgate"]["vendor"] for line in out) == {
        "openai": openai["calls"],
        "azure": azure["calls"],
    }


def test_a_failing_azure_deployment_fails_over_to_openai(
    make_simulator, make_system, tmp_path: Path
) -> None:
    sim = make_simulator(
        {"default": {"latency_ms": 5}, "models": {"gpt-4o-mini-eu": {"fail_always": 500}}}
    )
    system = make_system(pair_config(sim.base_url, num_retries=1), reconcile_interval=0.5)
    batch = system.submit(write_jsonl(tmp_path / "in.jsonl", chat_lines(30, "gpt")))
    done = system.wait(batch["id"], timeout=180)
    assert done["request_counts"] == {"total": 30, "completed": 30, "failed": 0}, system.logs()
    out = system.download(done["output_file_id"], "out.jsonl")
    assert {line["batchgate"]["vendor"] for line in out} == {"openai"}
    assert sim_stats(sim.base_url)["models"]["gpt-4o-mini-eu"]["calls"] > 0
