"""Every queue name, task name and Redis key, defined once."""

from __future__ import annotations

KEY_PREFIX = "bg"

TASK_RUN_CHUNK = "batchgate.run_chunk"


def chunk_label(batch_id: str, vendor: str, size: int) -> str:
    """The name a chunk's task shows in Flower and worker logs (Celery's `shadow` name): what a
    person needs to find their batch, and never a prompt or a key."""
    return f"run_chunk {vendor} {batch_id} ×{size}"


# The control queue carries finalize work; each vendor has its own queue named after it.
CONTROL_QUEUE = "batchgate"


def vendor_queue(vendor: str) -> str:
    return vendor


def slots_key(scope: str) -> str:
    """Sorted set of held call slots for a vendor or deployment; score = expiry (server time)."""
    return f"{KEY_PREFIX}:slots:{scope}"


# Which life of the coordination Redis this is (a hash: id, and the end of its restart grace).
SLOTS_EPOCH_KEY = f"{KEY_PREFIX}:slots-epoch"


def rate_key(deployment_id: str, kind: str, window: int) -> str:
    """Per-minute request (rpm) or token (tpm) counter of a deployment."""
    return f"{KEY_PREFIX}:rate:{deployment_id}:{kind}:{window}"


def cooldown_key(deployment_id: str) -> str:
    return f"{KEY_PREFIX}:cooldown:{deployment_id}"


def failures_key(deployment_id: str) -> str:
    return f"{KEY_PREFIX}:fails:{deployment_id}"


def budget_key(batch_id: str) -> str:
    """Hash of a batch's spend and in-flight reservations, in picodollars."""
    return f"{KEY_PREFIX}:budget:{batch_id}"


def probe_key(deployment_id: str) -> str:
    """Set while a paused deployment waits for its one probe call; holds the pause length (ms)."""
    return f"{KEY_PREFIX}:probe:{deployment_id}"


def probing_key(deployment_id: str) -> str:
    """Held by the one item making the probe call, for as long as that call may last."""
    return f"{KEY_PREFIX}:probing:{deployment_id}"


def alive_key(worker_id: str) -> str:
    """Set (with a short TTL) by a worker process while it holds leases: gone means dead."""
    return f"{KEY_PREFIX}:alive:{worker_id}"


def leader_key(role: str) -> str:
    """Who leads a role that runs in several replicas (the reconciler); expires unless renewed."""
    return f"{KEY_PREFIX}:leader:{role}"
