"""Per-batch budget caps, enforced across every worker process: spent + reserved ≤ cap.

Before a call, a worker reserves the request's high cost estimate; after it, the reservation is
swapped for the real cost. A call that would take spent + reservations over the cap is refused,
so the batch stops within one in-flight window of its cap and never above it. The hash is seeded
from the database's attempt ledger when missing (a broker restart loses it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from batchgate.names import budget_key

_RESERVE = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'spent', ARGV[3], 'reserved', 0)
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
if redis.call('HEXISTS', KEYS[1], 'stopped') == 1 then return 0 end
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent'))
local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved'))
if spent + reserved + tonumber(ARGV[2]) > tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'stopped', 1)
  return 0
end
redis.call('HINCRBY', KEYS[1], 'reserved', ARGV[2])
return 1
"""

_SETTLE = """
redis.call('HINCRBY', KEYS[1], 'reserved', -tonumber(ARGV[1]))
redis.call('HINCRBY', KEYS[1], 'spent', ARGV[2])
return 1
"""

KEY_TTL_SECONDS = 7 * 24 * 3600


class Budgets:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._reserve = redis.register_script(_RESERVE)
        self._settle = redis.register_script(_SETTLE)

    async def reserve(
        self,
        batch_id: str,
        cap_pusd: int,
        estimate_pusd: int,
        spent_so_far: Callable[[], Awaitable[int]],
    ) -> bool:
        """Reserve `estimate_pusd`; False (batch marked stopped) if it would cross the cap."""
        key = budget_key(batch_id)
        seed = 0
        if not await self._redis.exists(key):
            seed = await spent_so_far()
        ok = await self._reserve(keys=[key], args=[cap_pusd, estimate_pusd, seed, KEY_TTL_SECONDS])
        return bool(ok)

    async def settle(self, batch_id: str, estimate_pusd: int, actual_pusd: int) -> None:
        await self._settle(keys=[budget_key(batch_id)], args=[estimate_pusd, actual_pusd])
