"""Errors as JSON in OpenAI's error shape, with the right status codes."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type = status, message, type
        self.code, self.param, self.headers = code, param, headers


class ErrorJSON(JSONResponse):
    """ASCII-escaped JSON: an error may quote client input, which can hold lone surrogates that
    UTF-8 cannot encode; rendering an error must never fail."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def error_body(
    message: str, type: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


MAX_ID_CHARS = 200


def not_found(what: str, ident: str) -> APIError:
    shown = ident if len(ident) <= MAX_ID_CHARS else ident[:MAX_ID_CHARS] + "..."
    return APIError(404, f"No such {what}: {shown!r}", code="not_found")


def lookup_key(what: str, ident: str) -> str:
    """An id from a client, fit to put in a query: one no id can equal is a 404 right away
    (PostgreSQL refuses NUL in text, and nothing is gained by sending megabytes to the DB)."""
    if not ident or len(ident) > MAX_ID_CHARS or "\x00" in ident:
        raise not_found(what, ident)
    return ident


# Routes answered in Anthropic's error shape (the Message Batches API), by status code.
ANTHROPIC_PATHS = "/v1/messages/"
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def _reply(
    request: Request,
    status: int,
    message: str,
    type: str,
    code: str | None = None,
    param: str | None = None,
    headers: Any = None,
) -> JSONResponse:
    if request.url.path.startswith(ANTHROPIC_PATHS):
        kind = _ANTHROPIC_TYPES.get(status, "api_error")
        body = {"type": "error", "error": {"type": kind, "message": message}}
        return ErrorJSON(body, status_code=status, headers=headers)
    return ErrorJSON(error_body(message, type, code, param), status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return _reply(request, exc.status, exc.message, exc.type, exc.code, exc.param, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        param = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
        message = f"{param}: {first.get('msg')}" if param else str(first.get("msg"))
        return _reply(
            request, 400, message, "invalid_request_error", "invalid_request", param or None
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        headers = getattr(exc, "headers", None)
        return _reply(request, exc.status_code, str(exc.detail), kind, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Never echo internals (they may hold paths, SQL or vendor text).
        return _reply(request, 500, "internal error", "server_error")
