"""Anthropic wire objects of a batchgate batch: the `message_batch` and its result lines."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from batchgate.message_batches.convert import completion_to_message, error_object
from batchgate.store.answers import full_result

ID_PREFIX = "msgbatch_"
ENDED = ("completed", "failed", "expired", "cancelled")


def rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def processing_status(status: str, cancel_initiated: bool = False) -> str:
    if status in ENDED:
        return "ended"
    # A cancelled batch passes through `finalizing` too: it is still canceling, not running.
    return "canceling" if status == "cancelling" or cancel_initiated else "in_progress"


def request_counts(total: int, states: dict[str, int], ended: bool) -> dict[str, int]:
    """Anthropic's counts from item states, summing to the number of requests: requests with
    no item yet are `processing`, or `canceled` once the batch ended (cancelled while its
    requests were being stored)."""
    done = {
        "succeeded": states.get("succeeded", 0),
        "errored": states.get("failed", 0),
        "canceled": states.get("cancelled", 0),
        "expired": states.get("expired", 0),
    }
    rest = max(0, total - sum(done.values()))
    if ended:
        done["canceled"] += rest
        rest = 0
    return {"processing": rest, **done}


def batch_object(row: Any, total: int, states: dict[str, int], base_url: str) -> dict[str, Any]:
    ended = row.status in ENDED
    ended_at = row.completed_at or row.cancelled_at or row.expired_at or row.failed_at
    return {
        "id": row.id,
        "type": "message_batch",
        "processing_status": processing_status(row.status, row.cancelling_at is not None),
        "request_counts": request_counts(total, states, ended),
        "ended_at": rfc3339(ended_at) if ended else None,
        "created_at": rfc3339(row.created_at),
        "expires_at": rfc3339(row.expires_at),
        "archived_at": None,
        "cancel_initiated_at": rfc3339(row.cancelling_at),
        "results_url": f"{base_url}/v1/messages/batches/{row.id}/results" if ended else None,
    }


def result_line(row: Any) -> dict[str, Any]:
    """One request's result, from its item row."""
    if row.state == "succeeded":
        body = full_result(row.result_json, row.response_body)["body"]  # type: ignore[index]
        usage = {
            "input_tokens": row.input_tokens,
            "output_tokens": row.output_tokens,
            "cache_read_tokens": row.cache_read_tokens,
            "cache_write_tokens": row.cache_write_tokens,
        }
        result = {"type": "succeeded", "message": completion_to_message(body, usage)}
    elif row.state == "cancelled":
        result = {"type": "canceled"}
    elif row.state == "expired":
        result = {"type": "expired"}
    else:
        error = json.loads(row.error_json) if row.error_json else {}
        result = {"type": "errored", "error": error_object(error)}
    return {"custom_id": row.custom_id, "result": result}
