"""`send` against a real HTTP server on 127.0.0.1, plus the retry-hint and sanitising helpers.

Each test runs its own event loop (`asyncio.run`) with an aiohttp.web server started inside it
and stopped at the end; the behaviour under test is picked by the first path segment, which the
test puts into the target's api_base.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from batchgate import errors
from batchgate.providers._errors import retry_after, sanitize
from batchgate.providers._http import make_client, send
from batchgate.providers.base import ENDPOINT_CHAT, Completion, Target
from batchgate.providers.registry import get_adapter

KEY = "sk-proj-testkey-abcdefghijklmnop"
BODY = {"model": "alias", "messages": [{"role": "user", "content": "hi"}]}
COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-test",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}
ANTHROPIC_MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "model": "claude-test",
    "content": [{"type": "text", "text": "bonjour"}],
    "stop_reason": "end_turn",
    "usage": {"input_tokens": 5, "output_tokens": 2, "cache_read_input_tokens": 10},
}
# Pretty-printed, CRLF, a number json would write as 1.5 and an escape it would write as é.
PRETTY = (
    b'{\r\n  "id": "chatcmpl-2",\r\n  "object": "chat.completion",\r\n  "model": "gpt-test",'
    b'\n  "choices": [{"index": 0, "message": {"role": "assistant", "content": "caf\\u00e9\\n"},'
    b' "finish_reason": "stop"}],\n  "score": 1.50,\n'
    b'  "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}\n}\n'
)

seen: list[web.Request] = []


async def _trickle(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    resp.content_length = 1000
    await resp.prepare(request)
    for _ in range(100):  # headers at once, then one byte every 0.2 s: never finishes in time
        await resp.write(b" ")
        await asyncio.sleep(0.2)
    return resp


async def _truncated(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    resp.content_length = 1000
    await resp.prepare(request)
    await resp.write(b'{"id": "chatcmpl-1", "choi')
    assert request.transport is not None
    request.transport.close()  # hang up with 970 promised bytes unsent
    return resp


async def _chunked_big(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    resp.enable_chunked_encoding()  # no content-length: the cap must hold while streaming
    await resp.prepare(request)
    for _ in range(64):
        await resp.write(b" " * 1024)
    return resp


async def _handler(request: web.Request) -> web.StreamResponse:
    seen.append(request)
    mode = request.match_info["mode"]
    if mode == "ok":
        return web.json_response(COMPLETION, headers={"x-request-id": "req-42"})
    if mode == "pretty":
        return web.Response(body=PRETTY, content_type="application/json")
    if mode == "anthropic":
        return web.json_response(ANTHROPIC_MESSAGE, headers={"request-id": "req-a"})
    if mode == "trickle":
        return await _trickle(request)
    if mode == "truncated":
        return await _truncated(request)
    if mode == "big":
        return web.Response(body=b" " * 4096, content_type="application/json")
    if mode == "chunked-big":
        return await _chunked_big(request)
    if mode == "badjson":
        return web.Response(text='{"id": "x", oops', content_type="application/json")
    if mode == "wrongshape":
        return web.json_response({"id": "x", "object": "chat.completion"})
    if mode == "ratelimit":
        err = {"error": {"message": "Rate limit reached", "code": "rate_limit_exceeded"}}
        return web.json_response(err, status=429, headers={"retry-after": "3"})
    if mode == "echokey":
        auth = request.headers.get("Authorization", "")
        err = {"error": {"message": f"Bad key {auth} here", "code": "invalid_api_key"}}
        return web.json_response(err, status=401)
    if mode == "html502":
        return web.Response(text="<html>" + "x" * 200_000 + "</html>", status=502)
    raise web.HTTPNotFound()


@asynccontextmanager
async def serve() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/{mode}/v1/chat/completions", _handler)
    app.router.add_post("/{mode}/v1/messages", _handler)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def call(
    mode: str, *, vendor: str = "openai", deadline: float = 10.0, **kw: Any
) -> Completion | errors.ProviderError:
    """Run one `send` against a fresh server; return the Completion or the error it raised."""

    async def main() -> Completion | errors.ProviderError:
        async with serve() as base, make_client(4) as client:
            target = Target(vendor, "m-1", f"{base}/{mode}", api_key=KEY, deadline=deadline)
            try:
                return await send(get_adapter(vendor), client, ENDPOINT_CHAT, BODY, target, **kw)
            except errors.ProviderError as exc:
                return exc

    seen.clear()
    return asyncio.run(main())


def run(fn: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(fn())


def test_success_returns_completion_with_request_id() -> None:
    result = call("ok")
    assert isinstance(result, Completion)
    assert result.body["choices"][0]["message"]["content"] == "hello"
    assert (result.usage.input_tokens, result.usage.output_tokens) == (3, 1)
    assert (result.status_code, result.request_id, result.provider_model) == (
        200,
        "req-42",
        "gpt-test",
    )
    (request,) = seen
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["Content-Type"] == "application/json"


def test_anthropic_success_over_the_wire() -> None:
    result = call("anthropic", vendor="anthropic")
    assert isinstance(result, Completion)
    assert result.body["choices"][0]["message"]["content"] == "bonjour"
    assert result.usage.input_tokens == 15 and result.request_id == "req-a"
    assert seen[0].headers["x-api-key"] == KEY and seen[0].headers["anthropic-version"]


def test_a_body_passed_through_keeps_the_vendors_text_on_one_line() -> None:
    result = call("pretty")
    assert isinstance(result, Completion)
    assert result.raw is not None and "\n" not in result.raw and "\r" not in result.raw
    # The vendor's own spelling, not an encoding of the parsed body (which would say 1.5, é).
    assert '"score": 1.50' in result.raw and "caf\\u00e9\\n" in result.raw
    assert json.loads(result.raw) == result.body
    assert result.body["choices"][0]["message"]["content"] == "café\n"


def test_a_translated_body_has_no_raw_text() -> None:
    result = call("anthropic", vendor="anthropic")
    assert isinstance(result, Completion)
    assert result.raw is None  # the body is OpenAI-shaped now, not what Anthropic sent


def test_trickling_server_is_cut_off_at_the_deadline() -> None:
    started = time.monotonic()
    err = call("trickle", deadline=1.0)
    elapsed = time.monotonic() - started
    assert isinstance(err, errors.Timeout), err
    assert err.code == "deadline_exceeded"
    assert elapsed < 5.0  # the trickle alone would take 20 s


def test_oversized_body_is_server_error() -> None:
    err = call("big", max_bytes=1024)
    assert type(err) is errors.ServerError and err.code == "response_too_large"


def test_oversized_chunked_body_is_cut_while_streaming() -> None:
    err = call("chunked-big", max_bytes=8 * 1024)
    assert type(err) is errors.ServerError and err.code == "response_too_large"


def test_invalid_json_is_malformed_server_error() -> None:
    err = call("badjson")
    assert type(err) is errors.ServerError and "malformed" in err.message
    assert err.status_code == 200


def test_wrong_shape_2xx_is_malformed_server_error() -> None:
    err = call("wrongshape")
    assert type(err) is errors.ServerError and "malformed" in err.message


def test_truncated_body_is_malformed_server_error() -> None:
    err = call("truncated")
    assert type(err) is errors.ServerError, err
    assert "malformed" in err.message


def test_429_with_retry_after_is_rate_limited() -> None:
    err = call("ratelimit")
    assert type(err) is errors.RateLimited
    assert err.retry_after == 3.0 and err.status_code == 429


def test_echoed_key_is_masked_in_the_error_message() -> None:
    err = call("echokey")
    assert type(err) is errors.AuthenticationError
    assert KEY not in err.message and KEY not in str(err) and KEY not in repr(err)
    assert err.message.startswith("Bad key Bearer ") and "***" in err.message


def test_huge_html_error_body_is_bounded_server_error() -> None:
    err = call("html502")
    assert type(err) is errors.ServerError and err.status_code == 502
    assert len(err.message) <= 500


def test_connection_refused_is_classified() -> None:
    with socket.socket() as s:  # a port that was free a moment ago and has no listener now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def main() -> errors.ProviderError:
        async with make_client(2) as client:
            target = Target("openai", "m", f"http://127.0.0.1:{port}", api_key=KEY, deadline=5)
            with pytest.raises(errors.ProviderError) as info:
                await send(get_adapter("openai"), client, ENDPOINT_CHAT, BODY, target)
            return info.value

    err = run(main)
    assert type(err) is errors.ServerError and err.code == "connect_error"
    assert KEY not in err.message


def test_unsupported_parameter_is_raised_before_any_request() -> None:
    async def main() -> None:
        async with make_client(1) as client:
            # Nothing listens on port 9: reaching the network would be a ServerError instead.
            target = Target("anthropic", "m", "http://127.0.0.1:9", api_key=KEY)
            with pytest.raises(errors.UnsupportedParameter):
                await send(
                    get_adapter("anthropic"), client, ENDPOINT_CHAT, {**BODY, "n": 3}, target
                )

    run(main)


def test_client_pool_fits_max_connections() -> None:
    async def main() -> int:
        async with make_client(300) as client:
            return client.connector.limit  # type: ignore[union-attr]

    assert run(main) >= 300


# --- helpers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "message", "expected"),
    [
        ({"retry-after": "12"}, None, 12.0),
        ({"Retry-After-Ms": "1500", "retry-after": "9"}, None, 1.5),
        (
            {
                "retry-after": "Wed, 21 Oct 2015 07:28:30 GMT",
                "date": "Wed, 21 Oct 2015 07:28:00 GMT",
            },
            None,
            30.0,
        ),
        ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6m0s"}, None, 360),
        ({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "20ms"}, None, 0.02),
        ({"x-ratelimit-remaining-tokens": "5", "x-ratelimit-reset-tokens": "20s"}, None, None),
        ({}, "Please try again in 8.64s. Visit ...", 8.64),
        ({}, "Please try again in 250ms.", 0.25),
        ({}, "slow down", None),
    ],
)
def test_retry_after_hints(headers: dict[str, str], message: str | None, expected: Any) -> None:
    got = retry_after(headers, message)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "leaked"),
    [
        ("key sk-abcdefghijklmnopqrstuvwx rejected", "abcdefghijkl"),
        ("key sk-ant-api03-AAAAAAAAAAAAAAAAAAAA rejected", "api03-AAAA"),
        ("key AIzaSyA1234567890abcdefghijklmnop rejected", "SyA1234567"),
        ("header Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.abc rejected", "eyJhbGci"),
        ("GET https://h/v1/models?key=SECRETVALUE123&alt=json", "SECRETVALUE123"),
        ("key custom-key-format-XYZ-987654 rejected", "XYZ-987654"),
    ],
)
def test_sanitize_masks_keys(text: str, leaked: str) -> None:
    out = sanitize(text, secret="custom-key-format-XYZ-987654")
    assert leaked not in out
    assert out.split()[0] == text.split()[0]  # the words around the key survive


def test_sanitize_bounds_length() -> None:
    out = sanitize("word " * 1000)
    assert len(out) <= 500 and out.endswith("…")


def test_body_the_adapter_cannot_read_is_invalid_request() -> None:
    async def main() -> None:
        async with make_client(1) as client:
            target = Target("anthropic", "m", "http://127.0.0.1:9", api_key=KEY)
            body = {"messages": [{"role": "assistant", "tool_calls": "not-a-list"}]}
            with pytest.raises(errors.InvalidRequest):
                await send(get_adapter("anthropic"), client, ENDPOINT_CHAT, body, target)

    run(main)
