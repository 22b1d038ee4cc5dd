"""The Responses API against recorded payloads: OpenAI's own `response` objects parsed natively,
recorded Anthropic and Gemini answers translated into `response` objects the `openai` SDK
accepts, and a recorded Responses request translated for every chat-only vendor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from anthropic.types.message_create_params import MessageCreateParamsNonStreaming
from openai.types.chat.completion_create_params import CompletionCreateParamsNonStreaming
from openai.types.responses import Response
from openai.types.responses.response_create_params import ResponseCreateParamsNonStreaming

from batchgate.providers.base import ENDPOINT_RESPONSES, Target
from batchgate.providers.registry import get_adapter
from tests.vendor_types import gemini_problems, problems

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
# Vectors of this file that test_adapters_vectors.py leaves to it.
RESPONSES_VECTORS = frozenset(
    {
        "openai/responses_success.json",
        "openai/responses_function_call.json",
        "openai/responses_request_tool_result.json",
    }
)


def _vector(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


def _target(vendor: str) -> Target:
    return Target(vendor=vendor, model="m-1", api_base="https://x", api_key="k")


def _parse(vendor: str, name: str) -> Any:
    vector = _vector(name)
    return get_adapter(vendor).parse_response(
        ENDPOINT_RESPONSES, vector["body"], vector["headers"], _target(vendor)
    )


@pytest.mark.parametrize(
    ("name", "usage", "text", "call"),
    [
        ("openai/responses_success.json", (32, 8), "The capital of France is Paris.", None),
        ("openai/responses_function_call.json", (256, 18), "", "get_capital"),
    ],
)
def test_openai_responses_are_read_natively(
    name: str, usage: tuple[int, int], text: str, call: str | None
) -> None:
    done = _parse("openai", name)
    assert done.body == _vector(name)["body"]  # passed through as recorded
    assert (done.usage.input_tokens, done.usage.output_tokens) == usage
    assert done.provider_model == "gpt-4o-2024-08-06"
    items = done.body["output"]
    assert [i["name"] for i in items if i["type"] == "function_call"] == ([call] if call else [])
    texts = [p["text"] for i in items if i["type"] == "message" for p in i["content"]]
    assert "".join(texts) == text


@pytest.mark.parametrize(
    ("vendor", "name", "expect"),
    [
        (
            "anthropic",
            "anthropic/message_success_cache_tokens.json",
            {"usage": (1532, 33, 1111, 0), "status": "completed", "starts": "Python is"},
        ),
        (
            "anthropic",
            "anthropic/message_tool_use.json",
            {"usage": (497, 56, 0, 0), "status": "completed", "call": "final_result"},
        ),
        (
            "gemini",
            "gemini/generate_content_success.json",
            {"usage": (9, 43, 0, 34), "status": "completed", "starts": "Hello!"},
        ),
        (
            "gemini",
            "gemini/generate_content_function_call.json",
            {"usage": (47, 8, 0, 0), "status": "completed", "call": "final_result"},
        ),
        (
            "gemini",
            "gemini/generate_content_max_tokens.json",
            {"usage": (15, 5, 0, 0), "status": "incomplete", "starts": "The capital"},
        ),
    ],
)
def test_recorded_chat_answers_become_sdk_responses(
    vendor: str, name: str, expect: dict[str, Any]
) -> None:
    response = Response.model_validate(_parse(vendor, name).body)
    assert response.status == expect["status"]
    if expect["status"] == "incomplete":
        assert response.incomplete_details is not None
        assert response.incomplete_details.reason == "max_output_tokens"
    usage = response.usage
    assert usage is not None
    assert (
        usage.input_tokens,
        usage.output_tokens,
        usage.input_tokens_details.cached_tokens,
        usage.output_tokens_details.reasoning_tokens,
    ) == expect["usage"]
    if "starts" in expect:
        assert response.output_text.startswith(expect["starts"])
    else:
        calls = [i for i in response.output if i.type == "function_call"]
        assert [c.name for c in calls] == [expect["call"]]
        assert json.loads(calls[0].arguments) == {"city": "Mexico City", "country": "Mexico"}


@pytest.mark.parametrize("vendor", ["openai", "azure", "anthropic", "gemini", "compatible"])
def test_a_recorded_responses_request_fits_every_vendor(vendor: str) -> None:
    body = _vector("openai/responses_request_tool_result.json")["body"]
    sent = dict(get_adapter(vendor).build_request(ENDPOINT_RESPONSES, body, _target(vendor)).json)
    if vendor == "anthropic":
        assert problems(sent, MessageCreateParamsNonStreaming) == []
        assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
        assert sent["messages"][1]["content"][0]["type"] == "tool_use"
        assert sent["messages"][2]["content"][0]["content"] == "Potato City"
    elif vendor == "gemini":
        assert gemini_problems(sent) == []
        assert [c["role"] for c in sent["contents"]] == ["user", "model", "user"]
        assert sent["contents"][2]["parts"][0]["functionResponse"]["name"] == "get_capital"
    elif vendor == "compatible":
        assert problems(sent, CompletionCreateParamsNonStreaming) == []
    else:
        assert problems(sent, ResponseCreateParamsNonStreaming) == []
        assert sent["input"] == body["input"] and sent["model"] == "m-1"
