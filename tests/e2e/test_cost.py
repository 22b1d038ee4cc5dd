"""Exact cost end to end: line costs against genai-prices, totals, and the budget cap."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from genai_prices import Usage as GPUsage
from genai_prices import calc_price

from tests.e2e.harness import chat_lines, prompt_digest, sim_config, sim_ledger, write_jsonl

pytestmark = pytest.mark.e2e


def test_line_costs_match_genai_prices_and_sum_to_the_batch_total(
    make_simulator, make_system, tmp_path: Path
) -> None:
    sim = make_simulator({"default": {"latency_ms": 2}})
    system = make_system(
        sim_config(
            sim.base_url,
            {
                "gpt": "openai/gpt-4o-mini",
                "claude": "anthropic/claude-3-5-haiku-latest",
                "gemini": "gemini/gemini-2.0-flash",
            },
        ),
        reconcile_interval=0.5,
    )
    lines = (
        chat_lines(10, "gpt", "g") + chat_lines(10, "claude", "c") + chat_lines(10, "gemini", "m")
    )
    batch = system.submit(write_jsonl(tmp_path / "in.jsonl", lines))
    done = system.wait(batch["id"], timeout=120)
    assert done["request_counts"]["completed"] == 30, system.logs()
    out = system.download(done["output_file_id"], "out.jsonl")
    vendors = {
        "gpt": ("openai", "gpt-4o-mini"),
        "claude": ("anthropic", "claude-3-5-haiku-latest"),
        "gemini": ("google", "gemini-2.0-flash"),
    }
    total = Decimal(0)
    for line in out:
        meta = line["batchgate"]
        provider, model = vendors[meta["model"]]
        u = meta["usage"]
        expected = calc_price(
            GPUsage(
                input_tokens=u["input_tokens"],
                output_tokens=u["output_tokens"],
                cache_read_tokens=u["cache_read_tokens"] or None,
                cache_write_tokens=u["cache_write_tokens"] or None,
            ),
            model_ref=model,
            provider_id=provider,
        ).total_price
        assert u["input_tokens"] > 0 and u["output_tokens"] > 0
        assert abs(Decimal(meta["cost_usd"]) - Decimal(str(expected))) <= Decimal("1e-9")
        total += Decimal(meta["cost_usd"])
    assert total == Decimal(done["cost_usd"])  # lines sum exactly to the batch total
    models = done["batchgate"]["models"]
    assert set(models) == {"gpt", "claude", "gemini"}
    assert sum(Decimal(m["cost_usd"]) for m in models.values()) == total


def test_budget_cap_stops_new_calls_and_names_the_lines_not_run(
    make_simulator, make_system, tmp_path: Path
) -> None:
    sim = make_simulator({"default": {"latency_ms": 50}})
    config = sim_config(sim.base_url, {"gpt": "openai/gpt-4o-mini"})
    config["batchgate_settings"] = {"vendors": {"openai": {"max_concurrency": 4}}}
    system = make_system(config, reconcile_interval=0.5)
    lines = chat_lines(200, "gpt")
    # gpt-4o-mini: $0.15/M input, $0.60/M output; max_tokens 16 → at most ~1.2e-5 USD a line.
    cap = Decimal("0.0002")
    batch = system.submit(write_jsonl(tmp_path / "in.jsonl", lines), max_cost_usd=str(cap))
    done = system.wait(batch["id"], timeout=120)
    assert done["status"] == "completed", system.logs()
    spent = Decimal(done["cost_usd"])
    assert 0 < spent <= cap
    out = system.download(done["output_file_id"], "out.jsonl")
    err = system.download(done["error_file_id"], "err.jsonl")
    assert len(out) + len(err) == 200 and len(out) >= 5
    assert all(e["error"]["code"] == "budget_exceeded" for e in err)
    assert done["batchgate"]["budget_exceeded_lines"] == len(err)
    called = {e["prompt_sha256"] for e in sim_ledger(sim.base_url)}
    by_id = {x["custom_id"]: prompt_digest(x["body"]["messages"][-1]["content"]) for x in lines}
    # Exactly the lines reported as not run made no vendor call; every line that ran did.
    assert {by_id[e["custom_id"]] for e in err}.isdisjoint(called)
    assert {by_id[o["custom_id"]] for o in out} == called
