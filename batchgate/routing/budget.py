"""Per-batch budget caps, enforced across every worker process: spent + reserved ≤ cap.

Before a call, a worker reserves the request's cost with the output tokens the call can really
produce (the line's cap, the adapter's default, or the model's own limit); after it, the
reservation is swapped for the real cost, always (the runner settles in a `finally`). A call that
would take spent + reservations over the cap is refused, so spend stays at or under the cap as
long as each reservation bounds its call. The hash is seeded from the database's attempt ledger
when missing (a broker restart loses it). A settle Redis refuses is kept and sent with the next
one, so a broker blip does not leave a reservation holding the batch back for the key's life.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

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

log = logging.getLogger(__name__)

KEY_TTL_SECONDS = 7 * 24 * 3600


class Budgets:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._reserve = redis.register_script(_RESERVE)
        self._settle = redis.register_script(_SETTLE)
        self._owed: list[tuple[str, int, int]] = []  # settles Redis refused, sent again later

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
        """Swap a reservation for the real cost. Never raises: what Redis refuses is owed."""
        self._owed.append((batch_id, estimate_pusd, actual_pusd))
        while self._owed:
            owed = self._owed.pop(0)  # taken before the await: concurrent settles never send twice
            try:
                await self._settle(keys=[budget_key(owed[0])], args=[owed[1], owed[2]])
            except RedisError as exc:
                self._owed.insert(0, owed)
                log.warning("%d budget settles failed, kept: %s", len(self._owed), exc)
                return

    @property
    def owed(self) -> int:
        """Settles not yet accepted by Redis."""
        return len(self._owed)
