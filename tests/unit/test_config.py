"""LiteLLM proxy configs load unchanged; unknown keys warn; wrong types name the key."""

from __future__ import annotations

import logging
import re
from decimal import Decimal
from pathlib import Path

import pytest

from batchgate.config import load_config, parse_config
from batchgate.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_sample_configs_load() -> None:
    real = load_config(REPO / "samples" / "config.real.yaml")
    assert real.vendors == ["anthropic", "gemini", "openai"]
    assert real.chain("gpt-4o-mini") == ["gpt-4o-mini", "claude-haiku", "gemini-flash"]
    assert real.context_window_fallbacks["gpt-4o-mini"] == ("gemini-flash",)
    assert real.limits("openai").max_concurrency == 64
    dep = real.deployments_for("claude-haiku")[0]
    assert (dep.vendor, dep.adapter, dep.model, dep.max_parallel_requests) == (
        "anthropic",
        "anthropic",
        "claude-3-5-haiku-latest",
        32,
    )
    assert dep.api_key_ref == "os.environ/ANTHROPIC_API_KEY"
    for name in ("config.demo.yaml", "config.simulator.yaml"):
        assert load_config(REPO / "samples" / name).aliases


def test_the_simulator_sample_accepts_the_keys_the_simulator_config_sends() -> None:
    from batchgate.simulator import load_behaviour

    behaviour = load_behaviour(REPO / "samples" / "simulator.yaml")
    config = load_config(REPO / "samples" / "config.simulator.yaml")
    checked = 0
    for alias in config.aliases:
        for dep in config.deployments_for(alias):
            required = behaviour.required_keys(dep.vendor)
            assert required is None or dep.api_key() in required, (alias, dep.vendor)
            checked += required is not None
    assert checked  # the sample does require a key somewhere, and it is the one sent


def test_keys_resolve_from_the_environment_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = parse_config(
        {
            "model_list": [
                {
                    "model_name": "m",
                    "litellm_params": {"model": "openai/gpt-4o", "api_key": "os.environ/MY_KEY"},
                }
            ]
        }
    )
    dep = cfg.deployments[0]
    assert dep.api_key() is None
    monkeypatch.setenv("MY_KEY", "sk-later")
    assert dep.api_key() == "sk-later"
    assert "sk-later" not in repr(dep)


def test_litellm_proxy_config_with_extra_sections_loads(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    cfg = parse_config(
        {
            "model_list": [
                {
                    "model_name": "gpt",
                    "litellm_params": {
                        "model": "openai/gpt-4o",
                        "rpm": 100,
                        "tpm": 10000,
                        "input_cost_per_token": 1e-6,
                        "drop_params": True,
                    },
                    "model_info": {"id": "x"},
                },
                {
                    "model_name": "gpt",
                    "litellm_params": {
                        "model": "azure/my-deploy",
                        "api_base": "https://x.openai.azure.com",
                        "api_version": "2024-10-21",
                    },
                },
                {
                    "model_name": "local",
                    "litellm_params": {
                        "model": "hosted_vllm/llama",
                        "api_base": "http://h:8000/v1",
                    },
                },
            ],
            "litellm_settings": {"drop_params": True},
            "router_settings": {
                "num_retries": 4,
                "routing_strategy": "simple-shuffle",
                "mystery": 1,
            },
            "general_settings": {"master_key": "sk-1234"},
            "surprise": {"a": 1},
        }
    )
    assert [d.id for d in cfg.deployments_for("gpt")] == ["gpt#0", "gpt#1"]  # load-balanced pair
    assert cfg.deployments[0].input_cost_per_token == Decimal("0.000001")
    assert cfg.vendors_for("local") == ["hosted_vllm"]
    assert cfg.deployments[2].adapter == "compatible"
    assert cfg.num_retries == 4 and cfg.master_key() == "sk-1234"
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "surprise" in warned and "router_settings.mystery" in warned


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (
            {
                "model_list": [
                    {"model_name": "m", "litellm_params": {"model": "openai/x", "rpm": "lots"}}
                ]
            },
            "model_list.0.litellm_params.rpm",
        ),
        (
            {"model_list": [{"model_name": "m", "litellm_params": {"model": "nope/x"}}]},
            "unknown vendor prefix",
        ),
        (
            {"model_list": [{"model_name": "m", "litellm_params": {"model": "gpt-4o"}}]},
            "<vendor>/<model id>",
        ),
        ({"model_list": [{"model_name": "m", "litellm_params": {"model": "azure/x"}}]}, "api_base"),
        ({"router_settings": {"num_retries": -1}}, "router_settings.num_retries"),
        (
            {
                "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/x"}}],
                "router_settings": {"fallbacks": [{"m": ["ghost"]}]},
            },
            "ghost",
        ),
        (
            {"batchgate_settings": {"vendors": {"openai": {"max_concurrency": 0}}}},
            "batchgate_settings.vendors.openai.max_concurrency",
        ),
        ([1, 2], "mapping"),
    ],
)
def test_wrong_types_are_errors_that_name_the_key(data: object, needle: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        parse_config(data)  # type: ignore[arg-type]
    assert needle in str(info.value)


def test_unreadable_or_invalid_yaml_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_list: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def _two_models(router: dict[str, object]) -> dict[str, object]:
    return {
        "model_list": [
            {"model_name": "solo", "litellm_params": {"model": "openai/gpt-4o-mini"}},
            {"model_name": "pair", "litellm_params": {"model": "openai/gpt-4o"}},
            {"model_name": "pair", "litellm_params": {"model": "azure/gpt-4o", "api_base": "x"}},
        ],
        "router_settings": router,
    }


def test_a_single_deployment_is_not_cooled_down_unless_allowed_fails_is_set() -> None:
    # LiteLLM's default: benching a model's only deployment would fail every line without a
    # fallback, so only models with alternatives cool down (after 3 tolerated failures).
    default = parse_config(_two_models({}))
    assert default.allowed_fails_for("solo") is None
    assert default.allowed_fails_for("pair") == 3
    explicit = parse_config(_two_models({"allowed_fails": 5}))
    assert explicit.allowed_fails_for("solo") == 5
    assert explicit.allowed_fails_for("pair") == 5


def test_a_name_on_two_vendors_spreads_lines_by_their_limits() -> None:
    cfg = parse_config(
        {
            "model_list": [
                {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o-mini"}},
                {
                    "model_name": "gpt",
                    "litellm_params": {"model": "azure/eu", "api_base": "https://x.azure.com"},
                },
            ],
            "batchgate_settings": {
                "vendors": {"openai": {"max_concurrency": 4}, "azure": {"max_concurrency": 3}}
            },
        }
    )
    assert cfg.vendors_for("gpt") == ["openai", "azure"]
    picked = [cfg.vendor_for("gpt", i) for i in range(70)]
    assert picked.count("openai") == 40 and picked.count("azure") == 30
    assert picked[:7] == ["openai"] * 4 + ["azure"] * 3


def test_request_fallbacks_replace_the_configs_as_in_litellm() -> None:
    real = load_config(REPO / "samples" / "config.real.yaml")
    assert real.chain("gpt-4o-mini", None) == ["gpt-4o-mini", "claude-haiku", "gemini-flash"]
    assert real.chain("gpt-4o-mini", ["gemini-flash"]) == ["gpt-4o-mini", "gemini-flash"]
    assert real.chain("gpt-4o-mini", []) == ["gpt-4o-mini"]  # an empty list: no fallback
    assert real.chain("gpt-4o-mini", ["gpt-4o-mini", "claude-haiku"]) == [
        "gpt-4o-mini",
        "claude-haiku",
    ]


def _tenants(*entries: dict[str, str]) -> dict[str, object]:
    return {"batchgate_settings": {"tenants": list(entries)}}


@pytest.mark.parametrize(
    ("entries", "needle"),
    [
        ([{"name": "default", "api_key": "sk-a-000000"}], "'default' is reserved"),
        ([{"name": "admin", "api_key": "sk-a-000000"}], "'admin' is reserved"),
        ([{"name": "Team A", "api_key": "sk-a-000000"}], "tenants.0.name"),
        ([{"name": "", "api_key": "sk-a-000000"}], "tenants.0.name"),
        (
            [{"name": "a", "api_key": "sk-a-000000"}, {"name": "a", "api_key": "sk-b-000000"}],
            "tenant 'a' is listed twice",
        ),
        (
            [{"name": "a", "api_key": "sk-a-000000"}, {"name": "b", "api_key": "sk-a-000000"}],
            "tenants.1.api_key: the same key",
        ),
        ([{"name": "a", "api_key": "sk-a-000000", "max_cost_usd": "0"}], "max_cost_usd"),
    ],
)
def test_bad_tenants_are_refused(entries: list[dict[str, str]], needle: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(needle)):
        parse_config(_tenants(*entries))


def test_a_tenant_may_not_reuse_the_master_key() -> None:
    data = {**_tenants({"name": "a", "api_key": "sk-master-0000"})}
    data["general_settings"] = {"master_key": "sk-master-0000"}
    with pytest.raises(ConfigError, match="same key"):
        parse_config(data)
