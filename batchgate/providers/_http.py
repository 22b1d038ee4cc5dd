"""Sending one vendor call: the pooled client, the per-attempt deadline, the byte cap, and the
classification of every transport failure into `batchgate.errors`.

Build one client per worker process with `make_client` (inside the event loop that will use it,
since the aiohttp session binds to its loop) and pass it to every `send`.

The client is an aiohttp session, not httpx on `httpx_aiohttp`'s transport: the httpx layer cost
3.2x the CPU per call of aiohttp alone (324 vs 101 µs, `benchmarks/transport.py`), a quarter
of a worker's CPU per line. httpx stays the HTTP client of the CLI and the tests.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from batchgate.errors import (
    InvalidRequest,
    ProviderError,
    ServerError,
    Timeout,
    UnsupportedParameter,
)
from batchgate.providers import _errors
from batchgate.providers.base import Adapter, Completion, HttpRequest, Target

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 16 * 1024 * 1024
# Error bodies are only read for their message; a proxy's multi-megabyte HTML page is cut here.
ERROR_BODY_BYTES = 64 * 1024

# The per-attempt deadline in `send` is the real cap on a call. These guard the phases the
# deadline cannot see apart. `read` is long because a non-streamed completion sends its headers
# only once the whole answer is generated.
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 600.0
KEEPALIVE_SECONDS = 30.0
READ_CHUNK = 64 * 1024


def make_client(max_connections: int) -> aiohttp.ClientSession:
    """A pooled session sized for `max_connections` calls at once. Call it inside the event loop
    that will use it; close it with `await client.close()`."""
    connector = aiohttp.TCPConnector(
        limit=max(1, max_connections),
        limit_per_host=0,  # one vendor host takes the whole pool
        keepalive_timeout=KEEPALIVE_SECONDS,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(
            total=None, sock_connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT
        ),
        # Vendors authenticate by header; cookies would only leak state between items.
        cookie_jar=aiohttp.DummyCookieJar(),
        # Proxies from the environment are not supported yet.
        trust_env=False,
        raise_for_status=False,
        auto_decompress=True,
    )


async def send(
    adapter: Adapter,
    client: aiohttp.ClientSession,
    endpoint: str,
    body: Mapping[str, Any],
    target: Target,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Completion:
    """One attempt: build the vendor request, send it, and return the OpenAI-shaped Completion.

    Raises only `batchgate.errors.ProviderError` subclasses: UnsupportedParameter and
    InvalidRequest before anything is sent, Timeout when the whole exchange (connect to last
    byte) exceeds `target.deadline`, ServerError for broken connections, truncated, oversized or
    malformed bodies, and the adapter's classification of any non-2xx response.
    """
    if endpoint not in adapter.endpoints:
        raise UnsupportedParameter(
            f"{adapter.vendor} does not serve {endpoint}", code="unsupported_endpoint"
        )
    try:
        request = adapter.build_request(endpoint, body, target)
    except ProviderError as exc:
        raise _scrub(exc, target) from None
    except (TypeError, KeyError, AttributeError, ValueError) as exc:
        # A body whose shape the vendor module did not expect: the item's fault, not the vendor's.
        raise InvalidRequest(
            f"request body cannot be translated for {adapter.vendor}: {type(exc).__name__}",
            code="untranslatable_request",
        ) from None
    content = _encode(request)
    deadline = asyncio.timeout(target.deadline)
    try:
        async with deadline:
            status, headers, raw, truncated = await _exchange(client, request, content, max_bytes)
    except ProviderError as exc:
        raise _scrub(exc, target) from None
    except Exception as exc:  # whatever aiohttp or the OS raised: classify it here
        err = _transport_error(exc, request, target, expired=deadline.expired())
        raise _scrub(err, target) from None

    request_id = _errors.request_id_of(headers)
    if 200 <= status < 300:
        return _success(adapter, endpoint, raw, headers, target, status, request_id)
    payload = _error_payload(raw, truncated)
    try:
        err = adapter.parse_error(status, headers, payload)
    except Exception as exc:  # a vendor module tripping on a strange body must not hide the status
        log.debug("%s parse_error failed: %s", adapter.vendor, type(exc).__name__)
        err = _errors.classify_status(
            status,
            _errors.text_of_error(payload),
            retry_after=_errors.retry_after(headers),
        )
    err.status_code = err.status_code or status
    err.request_id = err.request_id or request_id
    raise _scrub(err, target)


def _encode(request: HttpRequest) -> bytes:
    """Compact UTF-8 JSON. orjson first (a fifth of json's cost); json for what orjson refuses
    (integers past 64 bits) and to refuse what neither may send. Bodies passed strict parsing, so
    orjson never meets the NaN it would write as null."""
    try:
        return orjson.dumps(request.json)
    except TypeError:
        pass
    try:
        text = json.dumps(request.json, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"request body cannot be sent as JSON: {exc}") from None
    return text.encode()


def _decode(raw: bytes) -> Any:
    """JSON of a response body: orjson, or json for what only json reads (NaN, UTF-16, integers
    past 64 bits). Raises ValueError."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def _one_line(raw: bytes) -> str | None:
    """The body's text, fit to store and splice into a JSONL line, or None. Literal CR and LF
    can only be whitespace between tokens in valid JSON (inside strings they are escapes), so
    a pretty-printed body becomes one line by turning them into spaces."""
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    if "\n" in text or "\r" in text:
        text = text.translate(_NEWLINES)
    return text if text.startswith("{") else None


_NEWLINES = {10: 32, 13: 32}


async def _exchange(
    client: aiohttp.ClientSession, request: HttpRequest, content: bytes, max_bytes: int
) -> tuple[int, Mapping[str, str], bytes, bool]:
    """(status, headers, body bytes, cut short) of one exchange, reading at most the cap."""
    headers = {"Content-Type": "application/json", **request.headers}
    async with client.request(
        request.method, request.url, headers=headers, data=content, allow_redirects=False
    ) as r:
        ok = 200 <= r.status < 300
        limit = max_bytes if ok else ERROR_BODY_BYTES
        if ok and r.content_length is not None and r.content_length > max_bytes:
            raise _too_large(max_bytes, _errors.request_id_of(r.headers))
        buf = bytearray()
        async for chunk in r.content.iter_chunked(READ_CHUNK):
            buf += chunk
            if len(buf) > limit:
                if ok:
                    raise _too_large(max_bytes, _errors.request_id_of(r.headers))
                return r.status, r.headers, bytes(buf[:limit]), True
        return r.status, r.headers, bytes(buf), False


def _too_large(max_bytes: int, request_id: str | None) -> ServerError:
    return ServerError(
        f"response body over the {max_bytes} byte cap", code="response_too_large",
        request_id=request_id,
    )  # fmt: skip


def _success(
    adapter: Adapter,
    endpoint: str,
    raw: bytes,
    headers: Mapping[str, str],
    target: Target,
    status: int,
    request_id: str | None,
) -> Completion:
    try:
        payload = _decode(raw)
    except ValueError:
        err = _errors.malformed(adapter.vendor, "body is not valid JSON", request_id=request_id)
        raise _scrub(err, target, status) from None
    if not isinstance(payload, dict):
        err = _errors.malformed(adapter.vendor, "body is not a JSON object", request_id=request_id)
        raise _scrub(err, target, status)
    try:
        completion = adapter.parse_response(endpoint, payload, headers, target)
    except ProviderError as exc:
        exc.request_id = exc.request_id or request_id
        raise _scrub(exc, target, status) from None
    except Exception as exc:  # wrong shape the vendor module did not check for
        detail = f"unexpected shape ({type(exc).__name__})"
        raise _scrub(
            _errors.malformed(adapter.vendor, detail, request_id=request_id), target, status
        ) from None
    completion.status_code = status
    completion.request_id = completion.request_id or request_id
    if completion.body is payload or completion.body == payload:
        completion.raw = _one_line(raw)
    return completion


def _error_payload(raw: bytes, truncated: bool) -> Any:
    """The parsed JSON error body, else its text, else None (what `parse_error` expects)."""
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace")
    if not truncated:
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def _describe(exc: BaseException) -> str:
    # The deepest cause says the most ("Connect call failed", "Connection reset by peer").
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _transport_error(
    exc: Exception, request: HttpRequest, target: Target, *, expired: bool
) -> ProviderError:
    host = urlsplit(request.url).hostname or "?"
    what = _describe(exc)
    if expired:
        return Timeout(
            f"no complete response from {host} within the {target.deadline:g}s attempt deadline",
            code="deadline_exceeded",
        )
    if isinstance(exc, aiohttp.ServerTimeoutError | TimeoutError):
        return Timeout(f"timed out talking to {host}: {what}", code="transport_timeout")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ServerError(f"cannot connect to {host}: {what}", code="connect_error")
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return ServerError(
            f"malformed response from {host}: connection closed mid-response ({what})",
            code="truncated_response",
        )
    if isinstance(exc, aiohttp.InvalidURL):
        return InvalidRequest(f"bad api_base for {target.vendor}: {what}", code="bad_api_base")
    if isinstance(exc, aiohttp.ClientError | OSError):
        return ServerError(f"connection to {host} failed: {what}", code="connection_error")
    return ServerError(f"unexpected failure calling {host}: {type(exc).__name__}")


def _scrub(err: ProviderError, target: Target, status: int | None = None) -> ProviderError:
    """Mask the target's own key (and key-shaped text) in the message; fill the status."""
    err.message = _errors.sanitize(err.message, target.api_key)
    err.args = (err.message,)
    if status is not None and err.status_code is None:
        err.status_code = status
    return err
