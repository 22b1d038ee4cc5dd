"""Helpers every adapter shares to turn a vendor failure into a `batchgate.errors` class.

Holds: message sanitising (bounded, keys masked), retry hints (`retry-after`, `retry-after-ms`,
OpenAI `x-ratelimit-reset-*`, Anthropic `anthropic-ratelimit-*-reset`, "try again in Ns" in a
message), request ids from headers, and the status-code fallback classification.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

from batchgate.errors import (
    AuthenticationError,
    ContextWindowExceeded,
    InvalidRequest,
    NotFound,
    Overloaded,
    ProviderError,
    RateLimited,
    ServerError,
    Timeout,
    VendorRefused,
)
from batchgate.redaction import mask_keys

MAX_MESSAGE_CHARS = 500

_REQUEST_ID_HEADERS = ("x-request-id", "request-id", "apim-request-id", "x-ms-request-id")

_CONTEXT_WORDING = re.compile(
    r"prompt is too long|context[ _]length|context window|maximum context|"
    r"too many (?:input )?tokens|exceeds the maximum number of tokens|"
    r"input token count.*exceeds|input is too long|reduce the length of the messages|"
    r"exceeds? (?:the )?context limit",
    re.IGNORECASE,
)

# A 403 about something the line itself named (Gemini's PERMISSION_DENIED on a file URI: "You do
# not have permission to access the File x or it may not exist"), not about the credentials.
_REQUEST_REFUSAL = re.compile(
    r"permission to access (?:the )?(?:file|uri|resource|object|bucket|document)|"
    r"(?:file|uri|object)\b.*\b(?:may not exist|is not accessible)|gs://|/files/",
    re.IGNORECASE,
)

_MESSAGE_HINT = re.compile(
    r"(?:try again|retry)(?: after| in)\s+(\d+(?:\.\d+)?)\s*(ms|s\b|sec|seconds?)", re.IGNORECASE
)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def sanitize(text: object, secret: str | None = None, limit: int = MAX_MESSAGE_CHARS) -> str:
    """A vendor message safe to store: keys masked, whitespace collapsed, at most `limit` chars."""
    out = text if isinstance(text, str) else repr(text)
    out = " ".join(mask_keys(out, [secret] if secret else []).split())
    if len(out) > limit:
        out = out[: limit - 1] + "…"
    return out


def lower_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """Headers with lowercase names, so lookups work on plain dicts as on aiohttp's headers."""
    return {k.lower(): v for k, v in (headers or {}).items()}


def request_id_of(headers: Mapping[str, str] | None) -> str | None:
    h = lower_headers(headers)
    for name in _REQUEST_ID_HEADERS:
        if h.get(name):
            return h[name]
    return None


def _reference_time(h: Mapping[str, str], now: float | None) -> float:
    # Absolute reset times are measured against the server's own `date` header when present,
    # so a skewed local clock does not turn a 1 s wait into minutes (or into zero).
    if h.get("date"):
        try:
            return parsedate_to_datetime(h["date"]).timestamp()
        except (TypeError, ValueError, IndexError):
            pass
    return time.time() if now is None else now


def _seconds_until(value: str, ref: float) -> float | None:
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return max(0.0, when.timestamp() - ref)


def parse_duration(value: str) -> float | None:
    """Durations like OpenAI's `6m0s`, `20ms`, `1.5s` or Google's `30s`; None if not one."""
    value = value.strip()
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def retry_after(
    headers: Mapping[str, str] | None, message: str | None = None, *, now: float | None = None
) -> float | None:
    """Seconds the vendor asked us to wait, from the headers or the message; None if no hint."""
    h = lower_headers(headers)
    if (ms := h.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    if (value := h.get("retry-after")) is not None:
        try:
            return max(0.0, float(value))
        except ValueError:
            until = _seconds_until(value, _reference_time(h, now))
            if until is not None:
                return until
    # Per-limit reset hints: only the limits that are exhausted (or whose remaining count was
    # not sent) say how long this 429 lasts; take the longest of them.
    waits: list[float] = []
    for kind in ("requests", "tokens", "input-tokens", "output-tokens"):
        for prefix in ("x-ratelimit", "anthropic-ratelimit"):
            reset = h.get(f"{prefix}-reset-{kind}") or h.get(f"{prefix}-{kind}-reset")
            if not reset:
                continue
            remaining = h.get(f"{prefix}-remaining-{kind}") or h.get(f"{prefix}-{kind}-remaining")
            if remaining not in (None, "0"):
                continue
            wait = parse_duration(reset)
            if wait is None:
                wait = _seconds_until(reset, _reference_time(h, now))
            if wait is not None:
                waits.append(wait)
    if waits:
        return max(waits)
    if message and (m := _MESSAGE_HINT.search(message)):
        return float(m.group(1)) * (0.001 if m.group(2).lower() == "ms" else 1.0)
    return None


def refuses_the_request(status: int, message: str | None) -> bool:
    """A 403 that is this line's error (a file it may not read), not the deployment's."""
    return status == 403 and bool(message and _REQUEST_REFUSAL.search(message))


def looks_like_context_overflow(message: str | None) -> bool:
    return bool(message and _CONTEXT_WORDING.search(message))


def classify_status(
    status: int,
    message: str,
    *,
    code: str | None = None,
    retry_after: float | None = None,
    request_id: str | None = None,
) -> ProviderError:
    """The fallback classification by HTTP status alone, for bodies a vendor module cannot read."""
    cls: type[ProviderError]
    if status == 429:
        cls = RateLimited
    elif refuses_the_request(status, message):
        cls = VendorRefused
    elif status in (401, 403):
        cls = AuthenticationError
    elif status == 404:
        cls = NotFound
    elif status in (408, 504):
        cls = Timeout
    elif status in (503, 529):
        cls = Overloaded
    elif status >= 500 or status < 400:
        cls = ServerError
    elif looks_like_context_overflow(message):
        cls = ContextWindowExceeded
    else:
        cls = InvalidRequest
    return cls(
        sanitize(message or f"HTTP {status}"),
        status_code=status,
        code=code,
        retry_after=retry_after,
        request_id=request_id,
    )


def text_of_error(payload: Any) -> str:
    """A short description of a non-JSON error body (HTML from a proxy, plain text, nothing)."""
    if payload is None or payload == "":
        return "empty error body"
    return sanitize(payload, limit=200)


def code_str(value: Any) -> str | None:
    """Vendors put strings or integers (OpenRouter, Google) in `error.code`; keep a string."""
    if value is None or isinstance(value, dict | list):
        return None
    return str(value)


def malformed(vendor: str, detail: str, *, request_id: str | None = None) -> ServerError:
    """A 2xx whose body we cannot read: the vendor's fault, so retryable like a 5xx."""
    return ServerError(
        sanitize(f"malformed {vendor} response: {detail}"),
        code="malformed_response",
        request_id=request_id,
    )
