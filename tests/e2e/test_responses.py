"""A `/v1/responses` batch with real workers and the simulator: native Responses calls on OpenAI,
Messages calls on Anthropic, one Responses object per output line either way."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from openai.types.responses import Response

from tests.e2e.harness import prompt_digest, sim_config, sim_ledger, write_jsonl

pytestmark = pytest.mark.e2e


def _line(i: int, alias: str, **extra: Any) -> dict[str, Any]:
    body = {"model": alias, "input": f"question {i}", "max_output_tokens": 32, **extra}
    return {"custom_id": f"r-{i:02d}", "method": "POST", "url": "/v1/responses", "body": body}


def test_responses_batch_split_over_openai_and_anthropic(
    make_simulator, make_system, tmp_path: Path
) -> None:
    sim = make_simulator({"default": {"latency_ms": 5}})
    config = sim_config(
        sim.base_url,
        {"gpt": "openai/gpt-4o-mini", "claude": "anthropic/claude-3-5-haiku-latest"},
        fallbacks=[{"claude": ["gpt"]}],
    )
    system = make_system(config, reconcile_interval=0.5)
    lines = [_line(i, "gpt" if i % 2 else "claude") for i in range(20)]
    # A built-in tool cannot be honoured over Anthropic's Messages API: these fall back to gpt.
    lines += [_line(i, "claude", tools=[{"type": "web_search"}]) for i in (20, 21)]
    batch = system.submit(write_jsonl(tmp_path / "in.jsonl", lines), "/v1/responses")
    done = system.wait(batch["id"], timeout=120)
    assert done["request_counts"] == {"total": 22, "completed": 22, "failed": 0}, system.logs()

    routes: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for entry in sim_ledger(sim.base_url):
        routes[entry["prompt_sha256"]].append((entry["model"], entry["route"]))
    out = system.download(done["output_file_id"], "out.jsonl")
    assert [x["custom_id"] for x in out] == [x["custom_id"] for x in lines]
    for i, line in enumerate(out):
        response = Response.model_validate(line["response"]["body"])
        meta = line["batchgate"]
        assert response.output_text == f"echo: question {i}"
        assert response.usage is not None
        assert response.usage.input_tokens == meta["usage"]["input_tokens"] > 0
        assert response.usage.output_tokens == meta["usage"]["output_tokens"] > 0
        assert Decimal(meta["cost_usd"]) > 0
        calls = routes[prompt_digest(f"question {i}")]
        if i % 2 == 0 and i < 20:
            assert (meta["vendor"], meta["tried"]) == ("anthropic", [])
            assert calls == [("claude-3-5-haiku-latest", "/v1/messages")]
        else:
            assert (meta["vendor"], meta["model"]) == ("openai", "gpt")
            assert meta["tried"] == ([] if i < 20 else ["claude"])
            assert calls == [("gpt-4o-mini", "/v1/responses")]
