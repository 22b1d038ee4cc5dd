"""Batch prices pinned next to online ones, the lane's settings, and the estimate of both."""

from __future__ import annotations

import io
import json
from decimal import Decimal

import pytest
from genai_prices import Usage as GPUsage
from genai_prices import calc_price

from batchgate.config import ConfigError, parse_config
from batchgate.pipeline.estimate import estimate_file
from batchgate.pricing import batch_key, cost_of, pin_prices
from batchgate.providers.base import Usage

CONFIG = {
    "model_list": [
        {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o-mini"}},
        {"model_name": "claude", "litellm_params": {"model": "anthropic/claude-haiku-4-5"}},
        {"model_name": "flash", "litellm_params": {"model": "gemini/gemini-2.5-flash"}},
        {
            "model_name": "local",
            "litellm_params": {
                "model": "hosted_vllm/llama",
                "api_base": "http://127.0.0.1:9",
                "input_cost_per_token": "0.000001",
                "output_cost_per_token": "0.000002",
            },
        },
    ],
}


@pytest.mark.parametrize(
    ("alias", "provider", "model"),
    [
        ("gpt", "openai", "gpt-4o-mini"),
        ("claude", "anthropic", "claude-haiku-4-5"),
        ("flash", "google", "gemini-2.5-flash"),
    ],
)
def test_batch_entries_price_usage_as_genai_prices_batch_context(alias, provider, model) -> None:
    config = parse_config(CONFIG)
    table = pin_prices(config.deployments, None, ["openai", "anthropic", "gemini"])
    dep = config.deployments_for(alias)[0]
    usage = Usage(input_tokens=12_345, output_tokens=678, cache_read_tokens=45)
    for key, context in ((dep.id, None), (batch_key(dep.id), {"processing": "batch"})):
        expected = calc_price(
            GPUsage(input_tokens=12_345, output_tokens=678, cache_read_tokens=45),
            model_ref=model,
            provider_id=provider,
            price_context=context,
        ).total_price
        assert abs(cost_of(usage, table.entry(key)) - Decimal(str(expected))) <= Decimal("1e-12")
    assert cost_of(usage, table.entry(batch_key(dep.id))) < cost_of(usage, table.entry(dep.id))
    # Estimates per alias see the online entries only.
    assert len(table.for_alias(alias)) == 1


def test_only_the_lanes_adapters_get_batch_entries() -> None:
    config = parse_config(CONFIG)
    table = pin_prices(config.deployments, None, ["openai"])
    assert batch_key("gpt#0") in table and batch_key("claude#0") not in table


def test_vendor_batch_settings_parse_and_only_lower_the_vendor_limits() -> None:
    config = parse_config(
        {
            **CONFIG,
            "batchgate_settings": {
                "vendor_batch": {
                    "default": True,
                    "poll_interval": 2,
                    "max_poll_interval": 1,
                    "deadline_margin": 600,
                    "max_jobs_in_flight": {"openai": 3},
                    "max_requests": {"openai": 10, "anthropic": 10**9},
                    "max_bytes": {"anthropic": 1000},
                }
            },
        }
    )
    vb = config.vendor_batch
    assert vb.default and vb.deadline_margin == 600
    assert vb.max_poll_interval == 2  # never below poll_interval
    assert vb.job_limits("openai") == (10, 200 * 1024 * 1024)
    assert vb.job_limits("anthropic") == (100_000, 1000)
    assert vb.jobs_in_flight("openai") == 3 and vb.jobs_in_flight("anthropic") == 20
    assert vb.supports("gemini") and not vb.supports("compatible")
    assert not parse_config(CONFIG).vendor_batch.default


def test_vendor_batch_settings_refuse_a_negative_margin() -> None:
    with pytest.raises(ConfigError):
        parse_config({**CONFIG, "batchgate_settings": {"vendor_batch": {"deadline_margin": -1}}})


def test_estimate_shows_the_batch_price_next_to_the_online_price() -> None:
    lines = [
        {
            "custom_id": f"{m}-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": m, "messages": [{"role": "user", "content": "x" * 400}]},
        }
        for m in ("gpt", "local")
        for i in range(5)
    ]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    result = estimate_file(parse_config(CONFIG), lambda: io.BytesIO(data), None)
    online = Decimal(result["cost_usd_low"]), Decimal(result["cost_usd_high"])
    batched = (
        Decimal(result["vendor_batch_cost_usd_low"]),
        Decimal(result["vendor_batch_cost_usd_high"]),
    )
    assert batched[0] < online[0] and batched[1] < online[1]
    # The local server has no batch API: its lines cost the same in both.
    local = estimate_file(parse_config(CONFIG), lambda: io.BytesIO(data), None, model="local")
    assert local["vendor_batch_cost_usd_high"] == local["cost_usd_high"]
