"""Lines of OpenAI batch input files, for tests that build files by hand."""

from __future__ import annotations

import json
from typing import Any

CHAT = "/v1/chat/completions"
EMB = "/v1/embeddings"
RESPONSES = "/v1/responses"
COMPLETIONS = "/v1/completions"
MODERATIONS = "/v1/moderations"


def chat(cid: str = "r1", **body: Any) -> dict[str, Any]:
    """A chat request line; `body` keys (model too) override the defaults."""
    base: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    base.update(body)
    return {"custom_id": cid, "method": "POST", "url": CHAT, "body": base}


def emb(cid: str = "e1", **body: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"model": "text-embedding-3-small", "input": "hello"}
    base.update(body)
    return {"custom_id": cid, "method": "POST", "url": EMB, "body": base}


def resp(cid: str = "p1", **body: Any) -> dict[str, Any]:
    """A /v1/responses request line."""
    base: dict[str, Any] = {"model": "gpt-4o-mini", "input": "hi"}
    base.update(body)
    return {"custom_id": cid, "method": "POST", "url": RESPONSES, "body": base}


def compl(cid: str = "c1", **body: Any) -> dict[str, Any]:
    """A /v1/completions request line."""
    base: dict[str, Any] = {"model": "gpt-4o-mini", "prompt": "Say hi"}
    base.update(body)
    return {"custom_id": cid, "method": "POST", "url": COMPLETIONS, "body": base}


def mod(cid: str = "m1", **body: Any) -> dict[str, Any]:
    """A /v1/moderations request line."""
    base: dict[str, Any] = {"model": "omni-moderation-latest", "input": "hello"}
    base.update(body)
    return {"custom_id": cid, "method": "POST", "url": MODERATIONS, "body": base}


def line(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


def jsonl(*items: Any) -> bytes:
    """Join lines; objects are encoded, bytes are taken as they are."""
    return b"".join((item if isinstance(item, bytes) else line(item)) + b"\n" for item in items)


def without(obj: dict[str, Any], key: str, inner: bool = False) -> dict[str, Any]:
    """A deep copy of a line with `key` removed (from its body if `inner`)."""
    obj = json.loads(json.dumps(obj))
    del (obj["body"] if inner else obj)[key]
    return obj
