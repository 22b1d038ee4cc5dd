"""A budget reservation must bound the call it is for: it assumes the output cap the adapter
really sends (Anthropic's default of 4,096 when a line sets none), or the model's own output
limit when nothing is sent, never a typical-completion guess."""

from __future__ import annotations

from decimal import Decimal

from batchgate.config import parse_config
from batchgate.pricing import PriceEntry, estimate_request
from batchgate.providers.registry import get_adapter

ENTRY = PriceEntry(
    input=Decimal("0.000001"),
    output=Decimal("0.000002"),
    cache_read=Decimal(0),
    cache_write=Decimal(0),
    source="config",
)
LINE = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def test_anthropic_reserves_the_4096_tokens_it_sends_when_a_line_sets_no_cap() -> None:
    adapter = get_adapter("anthropic")
    assert adapter.output_cap(LINE) == 4096
    assert adapter.output_cap({**LINE, "max_tokens": 50}) == 50


def test_an_adapter_that_sends_no_cap_says_so() -> None:
    assert get_adapter("openai").output_cap(LINE) is None
    assert get_adapter("openai").output_cap({**LINE, "max_completion_tokens": 7}) == 7


def test_the_reservation_counts_every_output_token_the_call_may_produce() -> None:
    _, high = estimate_request(LINE, "/v1/chat/completions", ENTRY, output_cap=4096)
    _, guess = estimate_request(LINE, "/v1/chat/completions", ENTRY)
    assert high - guess == Decimal("0.000002") * (4096 - 1024)
    _, n3 = estimate_request({**LINE, "n": 3}, "/v1/chat/completions", ENTRY, output_cap=100)
    assert n3 - estimate_request(LINE, "/v1/chat/completions", ENTRY, output_cap=0)[1] == Decimal(
        "0.000002"
    ) * (3 * 100)


def test_a_deployment_names_its_models_output_limit_litellm_style() -> None:
    config = parse_config(
        {
            "model_list": [
                {
                    "model_name": "m",
                    "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "k"},
                    "model_info": {"max_output_tokens": 16384},
                }
            ]
        }
    )
    assert config.deployments[0].max_output_tokens == 16384
