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


def install(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return ErrorJSON(
            error_body(exc.message, exc.type, exc.code, exc.param),
            status_code=exc.status,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        param = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
        return ErrorJSON(
            error_body(
                f"{param}: {first.get('msg')}" if param else str(first.get("msg")),
                "invalid_request_error",
                "invalid_request",
                param or None,
            ),
            status_code=400,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return ErrorJSON(
            error_body(str(exc.detail), kind),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # Never echo internals (they may hold paths, SQL or vendor text).
        return ErrorJSON(error_body("internal error", "server_error"), status_code=500)
