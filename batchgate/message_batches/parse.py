"""Anthropic-style validation of a `POST /v1/messages/batches` body, before anything is stored.

Each problem names its place the way Anthropic does (`requests.2.params.max_tokens: ...`). The
checks: custom_id pattern and uniqueness, params as the Messages API takes them (model a
configured name, `max_tokens` required, messages and system in a shape batchgate translates),
and the count limit. Parameters batchgate cannot carry to every vendor are refused, not dropped.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from batchgate.message_batches.convert import UnsupportedParams, params_to_chat

MAX_REQUESTS = 100_000
CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


class InvalidBatch(ValueError):
    """The whole batch is refused; the message names the first problem."""


@dataclass(frozen=True, slots=True)
class Line:
    custom_id: str
    chat: dict[str, Any]  # the OpenAI chat body the line runs as


def parse_requests(body: Any, models: Collection[str], max_requests: int) -> list[Line]:
    if not isinstance(body, dict):
        raise InvalidBatch("body: must be an object")
    unknown = sorted(k for k in body if k != "requests")
    if unknown:
        raise InvalidBatch(f"{unknown[0]}: Extra inputs are not permitted")
    requests = body.get("requests")
    if not isinstance(requests, list) or not requests:
        raise InvalidBatch("requests: must be a non-empty list")
    limit = min(MAX_REQUESTS, max_requests)
    if len(requests) > limit:
        raise InvalidBatch(f"requests: at most {limit:,} requests per batch")
    seen: dict[str, int] = {}
    lines = []
    for i, request in enumerate(requests):
        where = f"requests.{i}"
        if not isinstance(request, dict):
            raise InvalidBatch(f"{where}: must be an object")
        extra = sorted(k for k in request if k not in ("custom_id", "params"))
        if extra:
            raise InvalidBatch(f"{where}.{extra[0]}: Extra inputs are not permitted")
        cid = request.get("custom_id")
        if not isinstance(cid, str) or not CUSTOM_ID.match(cid):
            raise InvalidBatch(
                f"{where}.custom_id: must be 1 to 64 characters of letters, digits, '_' or '-'"
            )
        if cid in seen:
            raise InvalidBatch(
                f"{where}.custom_id: {cid!r} is already used by requests.{seen[cid]}; "
                "custom_id must be unique within a batch"
            )
        seen[cid] = i
        params = request.get("params")
        if not isinstance(params, dict):
            raise InvalidBatch(f"{where}.params: Field required (an object)")
        _check_params(params, f"{where}.params", models)
        try:
            chat = params_to_chat(params)
        except UnsupportedParams as exc:
            raise InvalidBatch(f"{where}.params.{exc}") from None
        lines.append(Line(cid, chat))
    return lines


def _check_params(params: dict[str, Any], where: str, models: Collection[str]) -> None:
    model = params.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidBatch(f"{where}.model: Field required")
    if model not in models:
        raise InvalidBatch(f"{where}.model: {model[:100]!r} is not a configured model name")
    max_tokens = params.get("max_tokens")
    if max_tokens is None:
        raise InvalidBatch(f"{where}.max_tokens: Field required")
    if type(max_tokens) is not int or max_tokens < 1:
        raise InvalidBatch(f"{where}.max_tokens: must be a positive integer")
    messages = params.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidBatch(f"{where}.messages: must be a non-empty list")
    for j, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise InvalidBatch(f"{where}.messages.{j}.role: must be 'user' or 'assistant'")
        content = message.get("content")
        if not isinstance(content, str | list) or not content:
            raise InvalidBatch(f"{where}.messages.{j}.content: must be a string or blocks")
    if params.get("stream") is True:
        raise InvalidBatch(f"{where}.stream: streaming is not supported in a batch")
