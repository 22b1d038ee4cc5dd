"""Pricing: pinned genai-prices / config prices, exact line costs, estimates before a run."""

from __future__ import annotations

import json
import logging
import socket
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import genai_prices
import pytest
from genai_prices import data_snapshot

from batchgate.config import Deployment, parse_config
from batchgate.pricing import (
    DEFAULT_MAX_OUTPUT_TOKENS,
    SOURCE_CONFIG,
    SOURCE_GENAI_PRICES,
    SOURCE_UNPRICED,
    Estimate,
    PriceEntry,
    PriceTable,
    cost_breakdown,
    cost_of,
    estimate_request,
    estimate_tokens,
    format_usd,
    pin_prices,
    price_entry,
)
from batchgate.providers.base import ENDPOINT_CHAT, ENDPOINT_EMBEDDINGS, Usage

AT = datetime(2025, 9, 1, 12, 0, tzinfo=UTC)
TOLERANCE = Decimal("1e-9")


def deployment(model: str, alias: str = "m", **params: Any) -> Deployment:
    """One deployment, built the way the config loader builds it."""
    litellm_params = {"model": model, "api_base": "http://127.0.0.1:9", **params}
    cfg = parse_config({"model_list": [{"model_name": alias, "litellm_params": litellm_params}]})
    return cfg.deployments[0]


def genai_total(usage: Usage, model_ref: str, provider_id: str) -> Decimal:
    # genai-prices' convention, spelled out: input_tokens is the whole prompt, cache reads and
    # writes included (it subtracts them itself); output_tokens includes reasoning.
    genai_usage = genai_prices.Usage(
        input_tokens=usage.input_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        output_tokens=usage.output_tokens,
    )
    calc = genai_prices.calc_price(
        genai_usage, model_ref, provider_id=provider_id, genai_request_timestamp=AT
    )
    return calc.total_price


USAGES = {
    "plain": Usage(input_tokens=1234, output_tokens=567),
    "cache_read": Usage(input_tokens=50_000, output_tokens=800, cache_read_tokens=32_768),
    "cache_read_and_write": Usage(
        input_tokens=90_000,
        output_tokens=2_000,
        cache_read_tokens=40_000,
        cache_write_tokens=30_000,
    ),
    "all_cached": Usage(input_tokens=4096, output_tokens=1, cache_read_tokens=4096),
    "large_prompt": Usage(input_tokens=350_000, output_tokens=9_000, cache_read_tokens=120_000),
}

MODELS = [
    ("openai/gpt-4o-mini", "openai", "gpt-4o-mini"),
    ("openai/text-embedding-3-small", "openai", "text-embedding-3-small"),
    ("azure/gpt-4o-mini", "azure", "gpt-4o-mini"),
    ("anthropic/claude-3-5-haiku-20241022", "anthropic", "claude-3-5-haiku-20241022"),
    ("anthropic/claude-sonnet-4-20250514", "anthropic", "claude-sonnet-4-20250514"),
    ("gemini/gemini-2.0-flash", "google", "gemini-2.0-flash"),
    ("gemini/gemini-2.5-flash", "google", "gemini-2.5-flash"),
    ("gemini/gemini-2.5-pro", "google", "gemini-2.5-pro"),
]


@pytest.mark.parametrize("usage_name", sorted(USAGES))
@pytest.mark.parametrize(("model", "provider_id", "model_ref"), MODELS)
def test_line_cost_matches_genai_prices_calc_price(
    model: str, provider_id: str, model_ref: str, usage_name: str
) -> None:
    usage = USAGES[usage_name]
    entry = price_entry(deployment(model), at=AT)
    assert entry.source == SOURCE_GENAI_PRICES
    assert entry.provider_id == provider_id

    ours = cost_of(usage, entry)
    theirs = genai_total(usage, model_ref, provider_id)
    assert isinstance(ours, Decimal)
    assert abs(ours - theirs) <= TOLERANCE, (ours, theirs)
    assert ours > 0


def test_line_cost_survives_the_json_round_trip_of_its_table() -> None:
    deps = [deployment(m, alias=f"a{i}") for i, (m, _, _) in enumerate(MODELS)]
    table = PriceTable.from_json(json.loads(json.dumps(pin_prices(deps, at=AT).to_json())))
    for dep, (_, provider_id, model_ref) in zip(deps, MODELS, strict=True):
        for usage in USAGES.values():
            expected = genai_total(usage, model_ref, provider_id)
            assert abs(cost_of(usage, table[dep.id]) - expected) <= TOLERANCE


def test_gpt_4o_mini_cost_is_exact_with_cached_input() -> None:
    entry = price_entry(deployment("openai/gpt-4o-mini"), at=AT)
    assert entry.input == Decimal("0.00000015")
    assert entry.cache_read == Decimal("0.000000075")
    assert entry.output == Decimal("0.0000006")
    usage = Usage(input_tokens=1000, output_tokens=200, cache_read_tokens=400)
    # 600 uncached * 0.15/M + 400 cached * 0.075/M + 200 out * 0.6/M
    assert cost_of(usage, entry) == Decimal("0.00024")
    parts = cost_breakdown(usage, entry)
    assert (parts.input, parts.cache_read, parts.output) == (
        Decimal("0.00009"),
        Decimal("0.00003"),
        Decimal("0.00012"),
    )


def test_anthropic_cache_writes_use_the_cache_write_price() -> None:
    entry = price_entry(deployment("anthropic/claude-3-5-haiku-latest"), at=AT)
    assert entry.cache_write == Decimal("0.000001")  # $1/MTok (5-minute write)
    usage = Usage(input_tokens=1000, cache_write_tokens=1000)
    assert cost_of(usage, entry) == Decimal("0.001")


def test_model_without_cache_price_bills_cached_tokens_as_input() -> None:
    entry = price_entry(deployment("openai/text-embedding-3-small"), at=AT)
    assert entry.cache_read == entry.input
    usage = Usage(input_tokens=1000, cache_read_tokens=500)
    assert cost_of(usage, entry) == 1000 * entry.input


def test_tier_applies_to_every_token_once_the_whole_prompt_crosses_it() -> None:
    entry = price_entry(deployment("gemini/gemini-2.5-pro"), at=AT)
    assert entry.tiers["input"][0].above == 200_000
    at_threshold = Usage(input_tokens=200_000, output_tokens=10, cache_read_tokens=150_000)
    above = Usage(input_tokens=200_001, output_tokens=10, cache_read_tokens=150_000)
    assert cost_of(at_threshold, entry) == genai_total(at_threshold, "gemini-2.5-pro", "google")
    assert cost_of(above, entry) == genai_total(above, "gemini-2.5-pro", "google")
    assert entry.rate("input", 200_001) == 2 * entry.rate("input", 200_000)


def test_gemini_models_prefix_is_ignored_for_the_lookup() -> None:
    entry = price_entry(deployment("gemini/models/gemini-2.0-flash"), at=AT)
    assert entry.source == SOURCE_GENAI_PRICES
    assert entry.model_id == "gemini-2.0-flash"


def test_config_prices_override_genai_prices() -> None:
    dep = deployment(
        "openai/gpt-4o-mini", input_cost_per_token="0.000001", output_cost_per_token="0.000002"
    )
    entry = price_entry(dep, at=AT)
    assert entry.source == SOURCE_CONFIG
    assert (entry.input, entry.output) == (Decimal("0.000001"), Decimal("0.000002"))
    # No cache price in the config: cached prompt tokens cost as much as the rest.
    usage = Usage(input_tokens=1000, output_tokens=100, cache_read_tokens=600)
    assert cost_of(usage, entry) == Decimal("0.0012")


def test_config_prices_price_a_self_hosted_model() -> None:
    dep = deployment(
        "hosted_vllm/meta-llama/Llama-3.1-8B",
        input_cost_per_token=1e-7,
        output_cost_per_token=2e-7,
    )
    entry = price_entry(dep, at=AT)
    assert entry.source == SOURCE_CONFIG
    assert cost_of(Usage(input_tokens=10, output_tokens=10), entry) == Decimal("0.000003")


def test_config_with_only_an_input_price_says_output_is_zero(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dep = deployment("hosted_vllm/llama", input_cost_per_token="0.0000001")
    with caplog.at_level(logging.WARNING):
        entry = price_entry(dep, at=AT)
    assert entry.source == SOURCE_CONFIG
    assert entry.output == 0
    assert "output_cost_per_token" in (entry.note or "")
    assert "output_cost_per_token" in caplog.text


@pytest.mark.parametrize(
    "model", ["openai/not-a-real-model-xyz", "azure/my-team-deployment", "hosted_vllm/llama"]
)
def test_unknown_model_is_priced_at_zero_and_flagged_unpriced(
    model: str, caplog: pytest.LogCaptureFixture
) -> None:
    dep = deployment(model, alias="mystery")
    with caplog.at_level(logging.WARNING):
        table = pin_prices([dep], at=AT)
    entry = table[dep.id]
    assert entry.source == SOURCE_UNPRICED
    assert entry.unpriced
    assert entry.note
    assert table.unpriced() == [dep.id]
    assert cost_of(Usage(input_tokens=1000, output_tokens=1000), entry) == 0
    assert dep.id in caplog.text


def test_price_table_json_round_trip_preserves_decimals_exactly() -> None:
    deps = [
        deployment("openai/gpt-4o-mini", alias="mini"),
        deployment("gemini/gemini-2.5-pro", alias="pro"),
        deployment("hosted_vllm/x", alias="cheap", input_cost_per_token="0.000000123456789012345"),
        deployment("hosted_vllm/y", alias="free"),
    ]
    table = pin_prices(deps, at=AT)
    text = json.dumps(table.to_json())
    back = PriceTable.from_json(json.loads(text))

    assert back == table
    assert back.pinned_at == AT
    for dep_id in table:
        for name in ("input", "output", "cache_read", "cache_write", "request"):
            ours, theirs = getattr(table[dep_id], name), getattr(back[dep_id], name)
            assert type(theirs) is Decimal
            assert theirs.as_tuple() == ours.as_tuple()
    assert back["cheap#0"].input == Decimal("0.000000123456789012345")
    # Money is never a JSON float.
    assert all(isinstance(v, str) for v in json.loads(text)["entries"]["mini#0"].values())


def test_price_table_from_json_refuses_floats() -> None:
    data = pin_prices([deployment("openai/gpt-4o-mini")], at=AT).to_json()
    data["entries"]["m#0"]["input"] = 1.5e-7
    with pytest.raises(ValueError, match="decimal string"):
        PriceTable.from_json(data)


def test_pinned_prices_do_not_change_when_config_prices_change() -> None:
    def config(price: str) -> list[Deployment]:
        entry = {
            "model_name": "llama",
            "litellm_params": {
                "model": "hosted_vllm/llama",
                "api_base": "http://127.0.0.1:9",
                "input_cost_per_token": price,
                "output_cost_per_token": price,
            },
        }
        return list(parse_config({"model_list": [entry]}).deployments)

    stored = json.dumps(pin_prices(config("0.000001"), at=AT).to_json())
    usage = Usage(input_tokens=1000, output_tokens=1000)
    before = cost_of(usage, PriceTable.from_json(json.loads(stored))["llama#0"])

    repinned = pin_prices(config("0.000005"), at=AT)  # the config was edited after pinning
    assert cost_of(usage, repinned["llama#0"]) == Decimal("0.010")
    assert cost_of(usage, PriceTable.from_json(json.loads(stored))["llama#0"]) == before
    assert before == Decimal("0.002")


def test_pinning_ignores_a_fetched_genai_prices_snapshot() -> None:
    # As if genai_prices.UpdatePrices had fetched an (empty) price list into the process.
    data_snapshot.set_custom_snapshot(data_snapshot.DataSnapshot([], from_auto_update=True))
    try:
        entry = price_entry(deployment("openai/gpt-4o-mini"), at=AT)
    finally:
        data_snapshot.set_custom_snapshot(None)
    assert entry.source == SOURCE_GENAI_PRICES
    assert entry.input == Decimal("0.00000015")


def test_pinning_and_costing_open_no_network_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("pricing tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    deps = [deployment(m, alias=f"a{i}") for i, (m, _, _) in enumerate(MODELS)]
    table = pin_prices(deps, at=AT)
    assert not table.unpriced()
    assert cost_of(USAGES["cache_read"], table["a0#0"]) > 0


def test_pin_prices_covers_every_deployment_once() -> None:
    cfg = parse_config(
        {
            "model_list": [
                {"model_name": "fast", "litellm_params": {"model": "openai/gpt-4o-mini"}},
                {"model_name": "fast", "litellm_params": {"model": "gemini/gemini-2.0-flash"}},
                {"model_name": "smart", "litellm_params": {"model": "anthropic/claude-sonnet-4-0"}},
            ],
            "router_settings": {"fallbacks": [{"fast": ["smart"]}]},
        }
    )
    chain_deployments = [d for alias in cfg.chain("fast") for d in cfg.deployments_for(alias)]
    table = pin_prices([*chain_deployments, *chain_deployments], at=AT)
    assert list(table) == ["fast#0", "fast#1", "smart#0"]
    assert [e.provider_id for e in table.for_alias("fast")] == ["openai", "google"]
    assert table.pinned_at == AT
    assert table.genai_prices_version == genai_prices.__version__


# --- estimates ---------------------------------------------------------------------------------


def chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": text}], **extra}


@pytest.fixture(scope="module")
def mini() -> PriceEntry:
    return price_entry(deployment("openai/gpt-4o-mini"), at=AT)


def test_estimate_input_tokens_are_about_a_quarter_of_the_characters() -> None:
    short = estimate_tokens(chat("x" * 400), ENDPOINT_CHAT)
    long = estimate_tokens(chat("x" * 4000), ENDPOINT_CHAT)
    assert long.input_tokens - short.input_tokens == 900
    assert 100 < short.input_tokens < 120  # 100 for the text, a little per message and request


def test_estimate_counts_text_parts_system_and_tools() -> None:
    plain = estimate_tokens(chat("hello " * 100), ENDPOINT_CHAT).input_tokens
    body = {
        "messages": [
            {"role": "system", "content": "be brief " * 50},
            {"role": "user", "content": [{"type": "text", "text": "hello " * 100}]},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
    }
    assert estimate_tokens(body, ENDPOINT_CHAT).input_tokens > plain + 100


def test_estimate_bounds_are_ordered_and_high_scales_with_max_tokens(mini: PriceEntry) -> None:
    low_100, high_100 = estimate_request(chat("hi there", max_tokens=100), ENDPOINT_CHAT, mini)
    low_1000, high_1000 = estimate_request(chat("hi there", max_tokens=1000), ENDPOINT_CHAT, mini)
    assert 0 < low_100 <= high_100
    assert low_100 == low_1000  # low assumes no output
    assert high_1000 - low_1000 == 1000 * mini.output
    assert high_100 - low_100 == 100 * mini.output


def test_estimate_prefers_max_completion_tokens_and_multiplies_by_n(mini: PriceEntry) -> None:
    body = chat("hi", max_tokens=10, max_completion_tokens=300, n=2)
    assert estimate_tokens(body, ENDPOINT_CHAT).max_output_tokens == 600


def test_estimate_without_a_cap_uses_the_default(mini: PriceEntry) -> None:
    tokens = estimate_tokens(chat("hi"), ENDPOINT_CHAT)
    assert tokens.max_output_tokens == DEFAULT_MAX_OUTPUT_TOKENS == 1024
    low, high = estimate_request(chat("hi"), ENDPOINT_CHAT, mini)
    assert high - low == 1024 * mini.output


def test_estimate_embeddings_have_no_output() -> None:
    entry = price_entry(deployment("openai/text-embedding-3-small"), at=AT)
    body = {"model": "e", "input": ["a" * 40, "b" * 80]}
    assert estimate_tokens(body, ENDPOINT_EMBEDDINGS).input_tokens == 30
    low, high = estimate_request(body, ENDPOINT_EMBEDDINGS, entry)
    assert low == high == 30 * entry.input
    token_ids = {"model": "e", "input": [[1, 2, 3], [4, 5]]}
    assert estimate_tokens(token_ids, ENDPOINT_EMBEDDINGS).input_tokens == 5


def test_estimate_of_an_unpriced_model_is_zero() -> None:
    entry = price_entry(deployment("hosted_vllm/llama"), at=AT)
    assert estimate_request(chat("hello", max_tokens=50), ENDPOINT_CHAT, entry) == (0, 0)


def test_estimate_aggregates_per_alias(mini: PriceEntry) -> None:
    haiku = price_entry(deployment("anthropic/claude-3-5-haiku-latest"), at=AT)
    unpriced = price_entry(deployment("hosted_vllm/llama"), at=AT)
    est = Estimate()
    a = est.add("mini", chat("one", max_tokens=10), ENDPOINT_CHAT, mini)
    b = est.add("mini", chat("two", max_tokens=20), ENDPOINT_CHAT, mini)
    est.add("both", chat("three", max_tokens=30), ENDPOINT_CHAT, [mini, haiku])
    est.add("local", chat("four"), ENDPOINT_CHAT, [unpriced])

    m = est.by_alias["mini"]
    assert (m.lines, m.max_output_tokens) == (2, 30)
    assert m.cost_low == a[0] + b[0] and m.cost_high == a[1] + b[1]
    assert m.input_tokens_est == 2 * estimate_tokens(chat("one"), ENDPOINT_CHAT).input_tokens
    assert not m.unpriced

    both = est.by_alias["both"]
    alone = [
        estimate_request(chat("three", max_tokens=30), ENDPOINT_CHAT, e) for e in (mini, haiku)
    ]
    assert both.cost_low == min(x[0] for x in alone)
    assert both.cost_high == max(x[1] for x in alone)

    assert est.by_alias["local"].unpriced
    assert est.lines == 4
    assert est.cost_low <= est.cost_high
    assert est.cost_high == sum((x.cost_high for x in est.by_alias.values()), Decimal(0))
    assert json.loads(json.dumps(est.to_json()))["by_alias"]["mini"]["lines"] == 2


def test_format_usd_quantises_only_for_display() -> None:
    assert format_usd(Decimal("0.00024")) == "$0.000240"
    assert format_usd(Decimal("1.23456789"), places=2) == "$1.23"


def test_a_deployment_missing_from_the_pinned_table_is_unpriced_not_repriced(
    caplog: pytest.LogCaptureFixture,
) -> None:
    table = pin_prices([deployment("openai/gpt-4o-mini", alias="mini")], at=AT)
    assert table.entry("mini#0") is table["mini#0"]
    with caplog.at_level(logging.WARNING):
        late = table.entry("added-later#0")
    assert late.unpriced
    assert cost_of(Usage(input_tokens=10, output_tokens=10), late) == 0
    assert "added-later#0" in caplog.text
    with pytest.raises(KeyError):
        table["added-later#0"]


def test_responses_completions_and_moderations_bodies_are_estimated() -> None:
    from batchgate.pricing import estimate_tokens

    text = "x" * 400  # 100 tokens of text
    chat = estimate_tokens(
        {"messages": [{"role": "user", "content": text}], "max_tokens": 7}, "/v1/chat/completions"
    )
    responses = estimate_tokens({"input": text, "max_output_tokens": 7}, "/v1/responses")
    items = estimate_tokens(
        {"input": [{"role": "user", "content": [{"type": "input_text", "text": text}]}]},
        "/v1/responses",
    )
    assert responses == chat
    assert items.input_tokens == chat.input_tokens
    completions = estimate_tokens({"prompt": text, "max_tokens": 7}, "/v1/completions")
    assert completions == chat
    moderation = estimate_tokens({"input": text}, "/v1/moderations")
    assert (moderation.input_tokens, moderation.max_output_tokens) == (100, 0)
