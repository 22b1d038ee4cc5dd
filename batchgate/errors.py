"""The closed set of errors that routing acts on.

Adapters convert every vendor or transport failure into one of these at their boundary; nothing
above the adapter layer sees an aiohttp or vendor exception.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorKind(StrEnum):
    rate_limited = "rate_limited"
    quota_exceeded = "quota_exceeded"  # a 429 that means billing/quota: never retried, falls back
    overloaded = "overloaded"
    server_error = "server_error"
    timeout = "timeout"
    context_window_exceeded = "context_window_exceeded"
    content_filtered = "content_filtered"
    invalid_request = "invalid_request"
    # A parameter or endpoint this vendor cannot honour: another model of the chain may.
    unsupported_parameter = "unsupported_parameter"
    # A paid answer that is not the JSON the line asked for: asked again, then fallen back.
    invalid_output = "invalid_output"
    authentication = "authentication"
    not_found = "not_found"
    # This vendor refuses this request (a parameter it cannot honour, a file it may not read):
    # another model may serve it, and the deployment itself is healthy.
    vendor_refused = "vendor_refused"


class ProviderError(Exception):
    """A failed vendor call, classified. `message` is already sanitised (no keys, bounded)."""

    kind: ErrorKind = ErrorKind.server_error

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        request_id: str | None = None,
        usage: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.retry_after = retry_after
        self.request_id = request_id
        # Usage the vendor reported with the failure (Gemini's blocked responses): still charged.
        self.usage = usage

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind.value,
            "message": self.message,
            "status_code": self.status_code,
            "code": self.code,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status_code={self.status_code})"


class RateLimited(ProviderError):
    kind = ErrorKind.rate_limited


class QuotaExceeded(ProviderError):
    kind = ErrorKind.quota_exceeded


class Overloaded(ProviderError):
    kind = ErrorKind.overloaded


class ServerError(ProviderError):
    kind = ErrorKind.server_error


class Timeout(ProviderError):
    kind = ErrorKind.timeout


class ContextWindowExceeded(ProviderError):
    kind = ErrorKind.context_window_exceeded


class ContentFiltered(ProviderError):
    kind = ErrorKind.content_filtered


class InvalidRequest(ProviderError):
    kind = ErrorKind.invalid_request


class VendorRefused(ProviderError):
    """A refusal specific to this vendor and this line (e.g. a 403 on a file URI the line sent):
    the line moves to its next model; the deployment stays in rotation."""

    kind = ErrorKind.vendor_refused


class UnsupportedParameter(VendorRefused):
    """A parameter or endpoint the chosen vendor cannot honour: a reason to fall back, or the
    line's error when no model is left, never a silent drop."""

    kind = ErrorKind.unsupported_parameter


class InvalidOutput(ProviderError):
    """The vendor answered, and was paid (`usage`), but not with the JSON the line asked for."""

    kind = ErrorKind.invalid_output


class AuthenticationError(ProviderError):
    kind = ErrorKind.authentication


class NotFound(ProviderError):
    kind = ErrorKind.not_found


ERROR_CLASSES: dict[ErrorKind, type[ProviderError]] = {
    cls.kind: cls
    for cls in (
        RateLimited,
        QuotaExceeded,
        Overloaded,
        ServerError,
        Timeout,
        ContextWindowExceeded,
        ContentFiltered,
        InvalidRequest,
        UnsupportedParameter,
        InvalidOutput,
        AuthenticationError,
        NotFound,
        VendorRefused,
    )
}


class ConfigError(ValueError):
    """The operator's config or settings are wrong; the message names the key."""
