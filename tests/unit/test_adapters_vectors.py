"""Every recorded vendor payload in tests/vectors/ parsed by the adapter it belongs to.

Out of scope here (batch-file formats, read by ingest/finalize and the batch API, not by an
adapter): openai_batch/*.json and anthropic_batch/*.json, listed in OUT_OF_SCOPE below.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from batchgate import errors
from batchgate.providers.base import ENDPOINT_CHAT, ENDPOINT_EMBEDDINGS, Completion, Target
from batchgate.providers.registry import get_adapter
from tests.unit.test_responses_vectors import RESPONSES_VECTORS

VECTORS = Path(__file__).resolve().parents[1] / "vectors"

OUT_OF_SCOPE = {
    "openai_batch/batch_object.json",
    "openai_batch/error_line_expired.json",
    "openai_batch/error_line_http_400_response_only.json",
    "openai_batch/file_object.json",
    "openai_batch/input_line.json",
    "openai_batch/output_line_success.json",
    "anthropic_batch/batch_object_in_progress.json",
    "anthropic_batch/results_line_succeeded.json",
}

# Vector folder → adapter name in the registry.
ADAPTER_OF = {
    "openai": "openai",
    "azure": "azure",
    "anthropic": "anthropic",
    "gemini": "gemini",
    "openai_compatible": "compatible",
}


@dataclass(frozen=True)
class Ok:
    """A 2xx the adapter turns into an OpenAI body."""

    usage: tuple[int, int, int, int]  # input (whole prompt), output, cache read, cache write
    text: str | None = None
    finish: str | None = None
    tool: tuple[str, dict[str, Any]] | None = None  # name, decoded arguments
    embeddings: int | None = None  # number of floats in data[0], or -1 for a base64 string
    model: str | None = None
    id: str | None = None


@dataclass(frozen=True)
class Err:
    """A response the adapter classifies as an error (non-2xx, or a 2xx in disguise)."""

    cls: type[errors.ProviderError]
    retry_after: float | None = None
    request_id: str | None = None
    usage: tuple[int, int] | None = None  # input, output carried by the error
    extra: dict[str, Any] = field(default_factory=dict)


EXPECTED: dict[str, Ok | Err] = {
    "openai/chat_completion_success.json": Ok(
        (24, 8, 0, 0), "The capital of France is Paris.", "stop", model="gpt-4o-2024-08-06"
    ),
    "openai/chat_completion_cached_prompt.json": Ok((4020, 4, 4012, 0), "OK", "stop"),
    "openai/chat_completion_tool_call.json": Ok(
        (68, 12, 0, 0), None, "tool_calls", tool=("get_user_country", {})
    ),
    "openai/embeddings_success_base64.json": Ok((4, 0, 0, 0), embeddings=-1),
    "openai/chat_model_not_found_404.json": Err(errors.NotFound),
    "openai/embeddings_model_not_found_404.json": Err(errors.NotFound),
    "openai/error_rate_limit_429.json": Err(errors.RateLimited, retry_after=8.64),
    "openai/error_insufficient_quota_429.json": Err(errors.QuotaExceeded),
    "openai/error_context_length_exceeded_400.json": Err(errors.ContextWindowExceeded),
    "openai/error_invalid_api_key_401.json": Err(errors.AuthenticationError),
    "openai_compatible/openrouter_rate_limit_429.json": Err(
        errors.RateLimited, extra={"code": "429", "message_has": "temporarily rate-limited"}
    ),
    "azure/chat_completion_success.json": Ok(
        (14, 9, 0, 0), "The capital of France is **Paris**.", "stop", model="gpt-4o-2024-11-20"
    ),
    "azure/error_content_filter_400.json": Err(errors.ContentFiltered),
    "anthropic/message_success_cache_tokens.json": Ok(
        (3 + 1111 + 418, 33, 1111, 418),
        "Python is a beginner-friendly, versatile programming language widely used for web "
        "development, data science, machine learning, automation, and scientific computing.",
        "stop",
        model="claude-sonnet-4-5-20250929",
        id="msg_01KPaKTJSqAKoZri7Ujrny58",
    ),
    "anthropic/message_tool_use.json": Ok(
        (497, 56, 0, 0),
        None,
        "tool_calls",
        tool=("final_result", {"city": "Mexico City", "country": "Mexico"}),
    ),
    "anthropic/error_invalid_request_400.json": Err(
        errors.InvalidRequest, request_id="req_011Ca7jT9AHpgXgdv8igm4z9"
    ),
    "anthropic/error_not_found_404.json": Err(errors.NotFound),
    "anthropic/error_overloaded_529.json": Err(
        errors.Overloaded, request_id="req_01RCc7MbLyQNtGKzBTv8VCep"
    ),
    "anthropic/error_overloaded_529_with_request_id.json": Err(
        errors.Overloaded, request_id="req_011CZTGFbArQvnRwr6evz8ca"
    ),
    "anthropic/error_rate_limit_429.json": Err(errors.RateLimited),
    # No retry-after recorded: the wait comes from the *-reset timestamp against `date` (1 s).
    "anthropic/error_rate_limit_429_headers_only.json": Err(
        errors.RateLimited, retry_after=1.0, request_id="req_01T5fCVnYdf9X5ZW6KayReBK"
    ),
    "anthropic/error_prompt_too_long_400.json": Err(errors.ContextWindowExceeded),
    "anthropic/error_authentication_401.json": Err(errors.AuthenticationError),
    "gemini/generate_content_success.json": Ok(
        (9, 9 + 34, 0, 0),
        "Hello! How can I help you today?",
        "stop",
        model="gemini-2.5-flash",
        id="bzlXaa_EE_aHqtsPi_zw8Ao",
    ),
    "gemini/generate_content_function_call.json": Ok(
        (47, 8, 0, 0),
        None,
        "tool_calls",
        tool=("final_result", {"city": "Mexico City", "country": "Mexico"}),
    ),
    "gemini/generate_content_max_tokens.json": Ok(
        (15, 5, 0, 0), "The capital of France is", "length"
    ),
    "gemini/generate_content_blocked_safety.json": Err(errors.ContentFiltered, usage=(14, 0)),
    "gemini/batch_embed_contents_success.json": Ok((0, 0, 0, 0), embeddings=768),
    "gemini/vertex_embed_content_success.json": Ok((11, 0, 0, 0), embeddings=3072),
    "gemini/error_not_found_404.json": Err(errors.NotFound),
    "gemini/error_overloaded_503.json": Err(errors.Overloaded),
    "gemini/error_resource_exhausted_429.json": Err(errors.RateLimited),
}

TARGET_KEY = "sk-test-vector-key-000000"


def _load(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


def _target(adapter: str) -> Target:
    return Target(vendor=adapter, model="test-model", api_base="https://x", api_key=TARGET_KEY)


def _endpoint(name: str) -> str:
    return ENDPOINT_EMBEDDINGS if "embed" in Path(name).name else ENDPOINT_CHAT


def _parse(name: str) -> Completion | errors.ProviderError:
    """What the adapter makes of one vector: a Completion, or the error it returns/raises."""
    vector = _load(name)
    adapter = get_adapter(ADAPTER_OF[name.split("/")[0]])
    status, headers, body = vector["status"], vector["headers"], vector["body"]
    if 200 <= status < 300:
        try:
            return adapter.parse_response(_endpoint(name), body, headers, _target(adapter.vendor))
        except errors.ProviderError as exc:
            return exc
    return adapter.parse_error(status, headers, body)


def test_every_vendor_vector_is_covered() -> None:
    on_disk = {p.relative_to(VECTORS).as_posix() for p in VECTORS.rglob("*.json")}
    missing = on_disk - set(EXPECTED) - OUT_OF_SCOPE - RESPONSES_VECTORS
    assert not missing, f"vectors without an expectation in this file: {sorted(missing)}"
    stale = (set(EXPECTED) | OUT_OF_SCOPE | RESPONSES_VECTORS) - on_disk
    assert not stale, f"expectations for vectors that no longer exist: {sorted(stale)}"
    assert not set(EXPECTED) & OUT_OF_SCOPE


@pytest.mark.parametrize("name", sorted(n for n, e in EXPECTED.items() if isinstance(e, Ok)))
def test_success_vector_becomes_openai_body(name: str) -> None:
    expected = EXPECTED[name]
    assert isinstance(expected, Ok)
    result = _parse(name)
    assert isinstance(result, Completion), result
    body, usage = result.body, result.usage
    assert (
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_tokens,
        usage.cache_write_tokens,
    ) == expected.usage
    assert body["usage"]["prompt_tokens"] == expected.usage[0]
    assert body["usage"]["total_tokens"] == expected.usage[0] + expected.usage[1]
    assert result.provider_model
    if expected.embeddings is not None:
        assert body["object"] == "list"
        item = body["data"][0]
        assert item["object"] == "embedding" and item["index"] == 0
        if expected.embeddings == -1:
            assert isinstance(item["embedding"], str)  # base64 kept as returned
        else:
            assert len(item["embedding"]) == expected.embeddings
            assert all(isinstance(x, float) for x in item["embedding"])
        return
    assert body["object"] == "chat.completion"
    assert isinstance(body["created"], int)
    if expected.model:
        assert body["model"] == expected.model == result.provider_model
    if expected.id:
        assert body["id"] == expected.id
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == expected.text
    assert choice["finish_reason"] == expected.finish
    if expected.tool:
        (call,) = choice["message"]["tool_calls"]
        assert call["type"] == "function" and call["id"]
        assert call["function"]["name"] == expected.tool[0]
        assert isinstance(call["function"]["arguments"], str)
        assert json.loads(call["function"]["arguments"]) == expected.tool[1]
    else:
        assert not choice["message"].get("tool_calls")


@pytest.mark.parametrize("name", sorted(n for n, e in EXPECTED.items() if isinstance(e, Err)))
def test_error_vector_is_classified(name: str) -> None:
    expected = EXPECTED[name]
    assert isinstance(expected, Err)
    err = _parse(name)
    assert type(err) is expected.cls, f"{name}: got {err!r}"
    assert err.kind == expected.cls.kind
    assert err.retry_after == expected.retry_after
    if expected.request_id:
        assert err.request_id == expected.request_id
    status = _load(name)["status"]
    assert err.status_code == status
    assert err.message and len(err.message) <= 500
    if expected.usage:
        assert err.usage is not None
        assert (err.usage.input_tokens, err.usage.output_tokens) == expected.usage
    if "code" in expected.extra:
        assert err.code == expected.extra["code"]
    if "message_has" in expected.extra:
        assert expected.extra["message_has"] in err.message


def test_openai_401_message_keeps_no_key_fragment() -> None:
    err = _parse("openai/error_invalid_api_key_401.json")
    assert "sk-VKMIs" not in err.message
    assert "Incorrect API key provided" in err.message


def test_gemini_retry_info_detail_sets_retry_after() -> None:
    vector = _load("gemini/error_resource_exhausted_429.json")
    body = vector["body"]
    body["error"]["details"].append(
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "31.5s"}
    )
    err = get_adapter("gemini").parse_error(429, {}, body)
    assert isinstance(err, errors.RateLimited)
    assert err.retry_after == 31.5


def test_anthropic_retry_after_header_wins_over_reset_timestamps() -> None:
    vector = _load("anthropic/error_rate_limit_429_headers_only.json")
    headers = {**vector["headers"], "retry-after": "7"}
    err = get_adapter("anthropic").parse_error(429, headers, None)
    assert err.retry_after == 7.0


def test_azure_success_ignores_filter_annotations() -> None:
    result = _parse("azure/chat_completion_success.json")
    assert isinstance(result, Completion)
    assert result.request_id == "1d93fae1-cb8e-4789-8fb6-d26577a3cb77"  # apim-request-id


def _gemini_403(message: str) -> dict[str, object]:
    return {"error": {"code": 403, "message": message, "status": "PERMISSION_DENIED"}}


def test_gemini_403_on_a_file_the_line_sent_is_the_lines_error() -> None:
    message = "You do not have permission to access the File abc123 or it may not exist."
    err = get_adapter("gemini").parse_error(403, {}, _gemini_403(message))
    assert isinstance(err, errors.VendorRefused)
    assert err.kind is errors.ErrorKind.vendor_refused


def test_gemini_403_about_the_key_is_still_an_authentication_error() -> None:
    message = "Your API key was reported as leaked. Please use another API key."
    err = get_adapter("gemini").parse_error(403, {}, _gemini_403(message))
    assert isinstance(err, errors.AuthenticationError)
