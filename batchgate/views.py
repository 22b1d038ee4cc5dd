"""Wire objects: OpenAI-shaped file and batch objects, with batchgate's extensions."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy.engine import Connection

from batchgate.money import usd_str
from batchgate.store.cache import cache_savings
from batchgate.store.items import state_counts
from batchgate.store.progress import fallback_lines, spend
from batchgate.store.vendor_jobs import batch_jobs


def file_object(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "file",
        "bytes": row.bytes,
        "created_at": row.created_at,
        "expires_at": row.expires_at,
        "filename": row.filename,
        "purpose": row.purpose,
        "status": row.status,
        "status_details": None,
    }


_LIVE_CACHE: dict[str, tuple[float, float, dict[str, Any]]] = {}
_LIVE_CACHE_MAX = 1024


def _live_cached(conn: Connection, batch_id: str) -> dict[str, Any]:
    """Progress of a running batch, recomputed at most every max(1 s, 3 × its cost): its
    aggregates walk the batch's rows, and clients poll; a huge batch must not cost a CPU."""
    now = time.monotonic()
    hit = _LIVE_CACHE.get(batch_id)
    if hit is not None and now - hit[0] < hit[1]:
        return hit[2]
    value = _live(conn, batch_id)
    took = time.monotonic() - now
    if len(_LIVE_CACHE) >= _LIVE_CACHE_MAX:
        _LIVE_CACHE.clear()
    _LIVE_CACHE[batch_id] = (now, max(1.0, 3 * took), value)
    return value


def _live(conn: Connection, batch_id: str) -> dict[str, Any]:
    counts = state_counts(conn, batch_id)
    spent = spend(conn, batch_id)
    fallbacks = fallback_lines(conn, batch_id)
    hits, saved = cache_savings(conn, batch_id)
    return {
        "counts": counts,
        "cost_usd": usd_str(spent.cost_pusd),
        "usage": {
            "input_tokens": spent.input_tokens,
            "output_tokens": spent.output_tokens,
            "cached_tokens": spent.cache_read_tokens,
            "total_tokens": spent.input_tokens + spent.output_tokens,
        },
        "fallback_lines": fallbacks,
        "cache_hits": hits,
        "cache_saved_usd": usd_str(saved),
    }


def batch_object(conn: Connection, row: Any) -> dict[str, Any]:
    summary = json.loads(row.summary_json) if row.summary_json else None
    if summary is None:
        live = _live_cached(conn, row.id)
        counts = live["counts"]
        done = counts.get("succeeded", 0)
        failed = sum(counts.get(s, 0) for s in ("failed", "cancelled", "expired"))
        usage, cost = live["usage"], live["cost_usd"]
        extra = {
            "queued": counts.get("queued", 0),
            "in_flight": counts.get("running", 0),
            "waiting_on_vendor": counts.get("vendor", 0),
            "fallback_lines": live["fallback_lines"],
            "cache_hits": live["cache_hits"],
            "cache_saved_usd": live["cache_saved_usd"],
            "models": None,
        }
    else:
        done, failed = row.completed_count, row.failed_count
        usage, cost = summary["usage"], summary["cost_usd"]
        extra = {
            "queued": 0,
            "in_flight": 0,
            "fallback_lines": summary["fallback_lines"],
            "budget_exceeded_lines": summary.get("budget_exceeded_lines", 0),
            # batches summarised before the cache existed had none
            "cache_hits": summary.get("cache_hits", 0),
            "cache_saved_usd": summary.get("cache_saved_usd", "0"),
            "duplicate_calls": summary["duplicate_calls"],
            "lost_calls": summary["lost_calls"],
            "duplicate_spend_usd": summary["duplicate_spend_usd"],
            "unpriced": summary["unpriced"],
            "models": summary["models"],
            "lanes": summary.get("lanes"),
        }
    if row.vendor_batch:
        extra["vendor_jobs"] = batch_jobs(conn, row.id)
    return {
        "id": row.id,
        "object": "batch",
        "endpoint": row.endpoint,
        "model": row.model_override,
        "errors": json.loads(row.errors_json) if row.errors_json else None,
        "input_file_id": row.input_file_id,
        "completion_window": row.completion_window,
        "status": row.status,
        "output_file_id": row.output_file_id,
        "error_file_id": row.error_file_id,
        "created_at": row.created_at,
        "in_progress_at": row.in_progress_at,
        "expires_at": row.expires_at,
        "finalizing_at": row.finalizing_at,
        "completed_at": row.completed_at,
        "failed_at": row.failed_at,
        "expired_at": row.expired_at,
        "cancelling_at": row.cancelling_at,
        "cancelled_at": row.cancelled_at,
        "request_counts": {"total": row.total, "completed": done, "failed": failed},
        "metadata": json.loads(row.metadata_json) if row.metadata_json else None,
        "usage": {
            "input_tokens": usage["input_tokens"],
            "input_tokens_details": {"cached_tokens": usage["cached_tokens"]},
            "output_tokens": usage["output_tokens"],
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage["total_tokens"],
        },
        "cost_usd": cost,
        "max_cost_usd": row.max_cost_usd,
        "fallbacks": json.loads(row.fallbacks_json),
        "validate_output": bool(row.validate_output),
        "cache": bool(row.cache),
        "vendor_batch": bool(row.vendor_batch),
        "batchgate": extra,
    }
