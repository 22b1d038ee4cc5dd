"""Anthropic Message Batches: request checks as Anthropic makes them, and the pure translations
(params → OpenAI chat body, chat.completion → message, line errors → Anthropic error types)."""

from __future__ import annotations

from typing import Any

import pytest

from batchgate.message_batches.convert import completion_to_message, error_object, params_to_chat
from batchgate.message_batches.parse import InvalidBatch, parse_requests
from batchgate.message_batches.views import processing_status, request_counts

MODELS = ["claude", "gpt"]


def req(cid: str = "r1", **params: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": "claude",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}],
    }
    base.update(params)
    return {"custom_id": cid, "params": {k: v for k, v in base.items() if v is not None}}


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"requests": []}, "requests:"),
        ({"requests": [req()], "extra": 1}, "extra:"),
        ({"requests": [req("has space")]}, "requests.0.custom_id"),
        ({"requests": [req("x" * 65)]}, "requests.0.custom_id"),
        ({"requests": [req("a"), req("a")]}, "requests.1.custom_id"),
        ({"requests": [req(max_tokens=None)]}, "requests.0.params.max_tokens: Field required"),
        ({"requests": [req(max_tokens=0)]}, "requests.0.params.max_tokens"),
        ({"requests": [req(model="nope")]}, "requests.0.params.model"),
        ({"requests": [req(messages=[])]}, "requests.0.params.messages"),
        ({"requests": [req(messages=[{"role": "system", "content": "x"}])]}, "messages.0.role"),
        ({"requests": [req(tools=[{"name": "t"}])]}, "requests.0.params.tools"),
        ({"requests": [req(stream=True)]}, "requests.0.params.stream"),
        ({"requests": [req(messages=[{"role": "user", "content": [{"type": "doc"}]}])]}, "type"),
    ],
)
def test_bad_batches_are_refused_naming_the_place(body: dict[str, Any], where: str) -> None:
    with pytest.raises(InvalidBatch) as exc:
        parse_requests(body, MODELS, 1000)
    assert where in str(exc.value)


def test_request_count_limit() -> None:
    with pytest.raises(InvalidBatch, match="at most 2"):
        parse_requests({"requests": [req("a"), req("b"), req("c")]}, MODELS, 2)


def test_params_become_an_openai_chat_body() -> None:
    chat = params_to_chat(
        {
            "model": "claude",
            "max_tokens": 9,
            "system": [{"type": "text", "text": "Be brief."}],
            "temperature": 0.2,
            "stop_sequences": ["END"],
            "metadata": {"user_id": "u1"},
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is this?"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "AA=="},
                        },
                    ],
                },
            ],
        }
    )
    assert chat == {
        "model": "claude",
        "max_tokens": 9,
        "temperature": 0.2,
        "stop": ["END"],
        "user": "u1",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
                ],
            },
        ],
    }


def test_a_chat_completion_becomes_an_anthropic_message() -> None:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi"},
                "finish_reason": "length",
            }
        ],
    }
    usage = {
        "input_tokens": 12,
        "output_tokens": 3,
        "cache_read_tokens": 2,
        "cache_write_tokens": 0,
    }
    assert completion_to_message(body, usage) == {
        "id": "msg_chatcmpl-1",
        "type": "message",
        "role": "assistant",
        "model": "gpt-4o-mini",
        "content": [{"type": "text", "text": "Hi"}],
        "stop_reason": "max_tokens",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 10,
            "output_tokens": 3,
            "cache_read_input_tokens": 2,
            "cache_creation_input_tokens": 0,
        },
    }


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("invalid_request", "invalid_request_error"),
        ("rate_limited", "rate_limit_error"),
        ("overloaded", "overloaded_error"),
        ("authentication", "authentication_error"),
        ("server_error", "api_error"),
        ("timeout", "api_error"),
    ],
)
def test_line_errors_map_to_anthropic_error_types(code: str, kind: str) -> None:
    assert error_object({"code": code, "message": "m"}) == {
        "type": "error",
        "error": {"type": kind, "message": "m"},
    }


def test_request_counts_always_sum_to_the_requests() -> None:
    states = {"succeeded": 2, "failed": 1, "running": 1, "queued": 3}
    assert request_counts(7, states, ended=False) == {
        "processing": 4,
        "succeeded": 2,
        "errored": 1,
        "canceled": 0,
        "expired": 0,
    }
    # Cancelled while its requests were being stored: the unstored ones are canceled.
    assert request_counts(5, {}, ended=True)["canceled"] == 5


def test_a_cancelled_batch_is_canceling_until_it_ends_also_while_finalizing() -> None:
    assert processing_status("in_progress") == "in_progress"
    assert processing_status("cancelling", True) == "canceling"
    # The cancel's finalize writes the files in `finalizing`: not `in_progress` again.
    assert processing_status("finalizing", True) == "canceling"
    assert processing_status("finalizing") == "in_progress"
    assert processing_status("cancelled", True) == "ended"
