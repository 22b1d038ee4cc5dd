"""An `x-request-id` on every response (as OpenAI and LiteLLM's proxy send), errors included.

A client's own `x-request-id` is echoed when it is short printable ASCII, so a caller can
correlate its logs with ours; otherwise a fresh id is made.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

HEADER = b"x-request-id"
_CLIENT_ID = re.compile(rb"^[\x21-\x7e]{1,128}$")


def request_id(headers: list[tuple[bytes, bytes]]) -> bytes:
    for name, value in headers:
        if name == HEADER and _CLIENT_ID.match(value):
            return value
    return b"req_" + uuid.uuid4().hex.encode("ascii")


class RequestId:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(scope.get("headers", []))

        async def with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != HEADER]
                message = {**message, "headers": [*headers, (HEADER, rid)]}
            await send(message)

        await self.app(scope, receive, with_id)
