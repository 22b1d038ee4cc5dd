"""Structured outputs with real workers and the simulator: invalid JSON answers are paid,
re-asked on the same model, then fallen back from, until every line holds schema-valid JSON."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from tests.e2e.harness import prompt_digest, sim_config, sim_ledger, write_jsonl

pytestmark = pytest.mark.e2e

SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string"}},
    "required": ["label"],
    "additionalProperties": False,
}
MODELS = {
    "flaky": "openai/gpt-4o-mini",  # broken JSON on its first call of each line
    "liar": "anthropic/claude-3-5-haiku-latest",  # never valid JSON
    "gem": "gemini/gemini-2.0-flash",  # valid
    "stubborn": "anthropic/claude-3-5-haiku-latest",  # the liar without a fallback
}


def _line(i: int, alias: str) -> dict[str, Any]:
    fmt = {
        "type": "json_schema",
        "json_schema": {"name": "label", "schema": SCHEMA, "strict": True},
    }
    body = {
        "model": alias,
        "messages": [{"role": "user", "content": f"label item {i}"}],
        "max_tokens": 64,
        "response_format": fmt,
    }
    return {
        "custom_id": f"s-{i:02d}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": body,
    }


def test_invalid_json_is_re_asked_then_fallen_back_until_valid(
    make_simulator, make_system, tmp_path: Path
) -> None:
    sim = make_simulator(
        {
            "default": {"latency_ms": 5},
            "models": {
                "gpt-4o-mini": {"bad_json": "broken", "bad_json_first_n": 1},
                "claude-3-5-haiku-latest": {"bad_json": "invalid"},
            },
        }
    )
    config = sim_config(sim.base_url, MODELS, num_retries=1, fallbacks=[{"liar": ["gem"]}])
    system = make_system(config, reconcile_interval=0.5)
    lines = [_line(i, "flaky" if i < 6 else "liar" if i < 12 else "stubborn") for i in range(14)]
    batch = system.submit(write_jsonl(tmp_path / "in.jsonl", lines))
    done = system.wait(batch["id"], timeout=120)
    assert done["request_counts"] == {"total": 14, "completed": 12, "failed": 2}, system.logs()
    for line in system.download(done["error_file_id"], "err.jsonl"):
        # Nothing gave a valid answer: the line says why, with the first validation error.
        assert line["error"]["code"] == "invalid_output"
        assert "does not match the schema at (root)" in line["error"]["message"]
        assert (line["batchgate"]["attempts"], line["batchgate"]["reasks"]) == (2, 2)

    calls: dict[str, Counter[str]] = defaultdict(Counter)
    for entry in sim_ledger(sim.base_url):
        calls[entry["prompt_sha256"]][entry["model"]] += 1
    validator = Draft202012Validator(SCHEMA)
    for i, line in enumerate(system.download(done["output_file_id"], "out.jsonl")):
        content = line["response"]["body"]["choices"][0]["message"]["content"]
        assert validator.is_valid(json.loads(content)), content
        meta = line["batchgate"]
        per_model = calls[prompt_digest(f"label item {i}")]
        if i < 6:  # broken once, then valid on the re-ask
            assert per_model == {"gpt-4o-mini": 2}
            assert (meta["model"], meta["attempts"], meta["reasks"]) == ("flaky", 2, 1)
        else:  # num_retries + 1 invalid answers, then the fallback's valid one
            assert per_model == {"claude-3-5-haiku-latest": 2, "gemini-2.0-flash": 1}
            assert (meta["model"], meta["attempts"], meta["reasks"]) == ("gem", 3, 2)
            assert meta["tried"] == ["liar"]
    models = done["batchgate"]["models"]
    # The invalid answers were paid for and are on the books.
    assert models["liar"]["calls"] == 12 and models["liar"]["lines"] == 0
    assert Decimal(models["liar"]["cost_usd"]) > 0
    assert models["flaky"]["calls"] == 12 and models["stubborn"]["calls"] == 4
    total = sum(Decimal(m["cost_usd"]) for m in models.values())
    assert Decimal(done["cost_usd"]) == total


def test_validation_switched_off_delivers_the_answer_as_it_came(
    make_simulator, make_system, tmp_path: Path
) -> None:
    sim = make_simulator({"models": {"gpt-4o-mini": {"bad_json": "broken", "bad_json_first_n": 1}}})
    system = make_system(sim_config(sim.base_url, MODELS, num_retries=1), reconcile_interval=0.5)
    lines = [_line(i, "flaky") for i in range(3)]
    batch = system.submit(write_jsonl(tmp_path / "in.jsonl", lines), validate_output=False)
    assert batch["validate_output"] is False
    done = system.wait(batch["id"], timeout=120)
    assert done["request_counts"]["completed"] == 3, system.logs()
    for line in system.download(done["output_file_id"], "out.jsonl"):
        with pytest.raises(ValueError):
            json.loads(line["response"]["body"]["choices"][0]["message"]["content"])
        assert (line["batchgate"]["attempts"], line["batchgate"]["reasks"]) == (1, 0)
