"""Per-batch budget caps, enforced across every worker process: spent + reserved ≤ cap.

Holding its vendor slot, just before a call, a worker reserves the request's cost with the output
tokens the call can really produce (the line's cap, the adapter's default, or the model's own
limit); after it, the reservation is swapped for the real cost, always (the runner settles in a
`finally`). A call that would take spent + reservations over the cap is refused, so spend stays at
or under the cap as long as each reservation bounds its call.

A reservation lapses on its own at its call's deadline (plus a margin): a worker killed mid-call
never settles, and its reservation must not hold the batch back. The hash is seeded from the
database's attempt ledger when missing (a broker restart without persistence loses it). A settle
Redis refuses is kept and sent with the next one.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from batchgate.names import budget_key

log = logging.getLogger(__name__)

# KEYS: the batch's hash (spent, reserved, stopped, r:<id> = amount), the zset of reservation
# ids by lapse time. Lapsed reservations are dropped before anything else is decided.
_DROP_LAPSED = """
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for _, rid in ipairs(lapsed) do
  local amount = redis.call('HGET', KEYS[1], 'r:' .. rid)
  if amount then
    redis.call('HINCRBY', KEYS[1], 'reserved', -tonumber(amount))
    redis.call('HDEL', KEYS[1], 'r:' .. rid)
  end
  redis.call('ZREM', KEYS[2], rid)
end
"""

# ARGV: now, cap, estimate, seed, key ttl, reservation id, lapses at
_RESERVE = (
    """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'spent', ARGV[4], 'reserved', 0)
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
"""
    + _DROP_LAPSED
    + """
if redis.call('HEXISTS', KEYS[1], 'stopped') == 1 then return 0 end
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent'))
local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved'))
if spent + reserved + tonumber(ARGV[3]) > tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'stopped', 1)
  return 0
end
redis.call('HINCRBY', KEYS[1], 'reserved', ARGV[3])
redis.call('HSET', KEYS[1], 'r:' .. ARGV[6], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[7], ARGV[6])
redis.call('EXPIRE', KEYS[2], ARGV[5])
return 1
"""
)

# ARGV: now, reservation id, actual cost. A hash lost with the broker is left missing: the next
# reserve seeds it from the ledger, which has (or will have) this call's attempt row.
_SETTLE = (
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
"""
    + _DROP_LAPSED
    + """
local amount = redis.call('HGET', KEYS[1], 'r:' .. ARGV[2])
if amount then
  redis.call('HINCRBY', KEYS[1], 'reserved', -tonumber(amount))
  redis.call('HDEL', KEYS[1], 'r:' .. ARGV[2])
  redis.call('ZREM', KEYS[2], ARGV[2])
end
redis.call('HINCRBY', KEYS[1], 'spent', ARGV[3])
return 1
"""
)

KEY_TTL_SECONDS = 7 * 24 * 3600


def _keys(batch_id: str) -> list[str]:
    key = budget_key(batch_id)
    return [key, f"{key}:reservations"]


class Budgets:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._reserve = redis.register_script(_RESERVE)
        self._settle = redis.register_script(_SETTLE)
        self._owed: list[tuple[str, str, int]] = []  # settles Redis refused, sent again later

    async def reserve(
        self,
        batch_id: str,
        cap_pusd: int,
        estimate_pusd: int,
        spent_so_far: Callable[[], Awaitable[int]],
        lapse_seconds: float,
    ) -> str | None:
        """Reserve `estimate_pusd` for `lapse_seconds` at most; returns the reservation's id, or
        None (batch marked stopped) if it would cross the cap."""
        keys = _keys(batch_id)
        seed = 0
        if not await self._redis.exists(keys[0]):
            seed = await spent_so_far()
        rid = uuid.uuid4().hex[:16]
        now = time.time()
        args = [now, cap_pusd, estimate_pusd, seed, KEY_TTL_SECONDS, rid, now + lapse_seconds]
        ok = await self._reserve(keys=keys, args=args)
        return rid if ok else None

    async def settle(self, batch_id: str, reservation: str, actual_pusd: int) -> None:
        """Swap a reservation for the real cost. Never raises: what Redis refuses is owed."""
        self._owed.append((batch_id, reservation, actual_pusd))
        while self._owed:
            owed = self._owed.pop(0)  # taken before the await: concurrent settles never send twice
            try:
                await self._settle(keys=_keys(owed[0]), args=[time.time(), owed[1], owed[2]])
            except RedisError as exc:
                self._owed.insert(0, owed)
                log.warning("%d budget settles failed, kept: %s", len(self._owed), exc)
                return

    @property
    def owed(self) -> int:
        """Settles not yet accepted by Redis."""
        return len(self._owed)
