"""Serve every OpenAI route without its `/v1` prefix too, as LiteLLM's proxy does.

LiteLLM proxy clients are configured with `base_url=http://host:4000` (no `/v1`), so the OpenAI
SDK asks for `/files`, `/batches`, ... The path is rewritten before routing, so one route serves
both spellings and the OpenAPI schema lists each route once.
"""

from __future__ import annotations

from typing import Any

# First path segments of the OpenAI-shaped resources batchgate serves.
RESOURCES = frozenset({"files", "batches", "models", "uploads", "messages"})


def prefixed(path: str) -> str:
    """`/files/x` → `/v1/files/x`; any other path unchanged."""
    first = path[1:].split("/", 1)[0]
    return "/v1" + path if first in RESOURCES else path


class Unprefixed:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path = prefixed(scope["path"])
            if path != scope["path"]:
                scope = {**scope, "path": path, "raw_path": path.encode("utf-8")}
        await self.app(scope, receive, send)
