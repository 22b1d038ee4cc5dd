"""How loaded each vendor is right now, read from Redis: call slots held and messages queued.

For people and scrapers (`/metrics`, `/ui`); the workers' own slot logic is `routing/slots.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis

from batchgate import names


@dataclass(frozen=True, slots=True)
class VendorLoad:
    in_flight: int  # call slots held now (unexpired)
    queued_messages: int  # task messages waiting on the vendor's queue


def vendor_load(client: redis.Redis, vendors: Sequence[str]) -> dict[str, VendorLoad]:
    """One round trip for every vendor. Raises redis.RedisError when Redis is unreachable."""
    seconds, micros = client.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000  # slot expiries are in Redis time
    pipe = client.pipeline(transaction=False)
    for vendor in vendors:
        pipe.zcount(names.slots_key(vendor), f"({now_ms}", "+inf")
        pipe.llen(names.vendor_queue(vendor))
    replies = pipe.execute()
    return {
        vendor: VendorLoad(int(replies[2 * i]), int(replies[2 * i + 1]))
        for i, vendor in enumerate(vendors)
    }
