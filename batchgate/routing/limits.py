"""Limits shared by every worker process and host, kept in Redis.

- `Slots` (from `slots.py`) — counting semaphores: a vendor's `max_concurrency`, a deployment's
  `max_parallel_requests`. Hold one only for the duration of a call, never through a backoff.
- `RateWindow` — a deployment's `rpm` and `tpm`.
- `Cooldowns` — deployments taken out of rotation after repeated failures, or paused.

Every check-and-update is one Lua script, so it is atomic across processes, and every expiry is
kept by the Redis server (`TIME` inside a script, or key TTLs), so the clocks of the worker
hosts never matter. Key names come from `batchgate.names`. Each class wraps a
`redis.asyncio.Redis` client owned by the worker process.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

from redis.asyncio import Redis

from batchgate import names
from batchgate.routing.slots import Slots, _ms

__all__ = ["Cooldowns", "RateWindow", "Slots"]


# -- rpm / tpm --------------------------------------------------------------------------------

# KEYS: the rpm counter, the tpm counter. ARGV: rpm, tpm (0 = no limit), tokens, window_ms.
# Returns 0 when the request was admitted (and counted), else the ms until the window that
# blocks it closes.
_RATE = """
local limits = {tonumber(ARGV[1]), tonumber(ARGV[2])}
local costs = {1, tonumber(ARGV[3])}
local window = tonumber(ARGV[4])
local wait = 0
for i = 1, 2 do
  if limits[i] > 0 then
    local used = tonumber(redis.call('GET', KEYS[i]) or '0')
    -- a request larger than the whole budget still runs, alone in a fresh window
    if used > 0 and used + costs[i] > limits[i] then
      local left = redis.call('PTTL', KEYS[i])
      if left < 0 then left = window end
      if left > wait then wait = left end
    end
  end
end
if wait > 0 then
  return wait
end
for i = 1, 2 do
  if limits[i] > 0 then
    redis.call('INCRBY', KEYS[i], costs[i])
    if redis.call('PTTL', KEYS[i]) == -1 then
      redis.call('PEXPIRE', KEYS[i], window)
    end
  end
end
return 0
"""


class RateWindow:
    """A deployment's requests and estimated tokens per window (rpm, tpm), across all workers.

    Window semantics: fixed windows that open with the first admitted request and last `window`
    seconds (the counter key's TTL, kept by the Redis server). Within one window at most `rpm`
    requests and `tpm` estimated tokens are admitted; rpm and tpm windows open independently.
    As with any fixed window, two adjacent windows can admit up to twice the limit within one
    `window` span around their boundary. A request estimated above the whole `tpm` still runs,
    alone in a fresh window, rather than waiting forever.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        window: int = 60,
        jitter: float = 0.025,
        rng: random.Random | None = None,
    ) -> None:
        if window < 1:
            raise ValueError("window must be at least 1 second")
        self._window = window
        self._jitter = jitter
        self._rng = rng or random.Random()
        self._script = redis.register_script(_RATE)

    async def try_turn(
        self, deployment_id: str, rpm: int | None, tpm: int | None, est_tokens: int = 0
    ) -> float:
        """Take a turn if the request fits now: 0.0 if admitted, else seconds until it may."""
        if not rpm and not tpm:
            return 0.0
        keys = [
            names.rate_key(deployment_id, "rpm", self._window),
            names.rate_key(deployment_id, "tpm", self._window),
        ]
        args = [rpm or 0, tpm or 0, max(est_tokens, 0), self._window * 1000]
        return int(await self._script(keys=keys, args=args)) / 1000

    async def wait_turn(
        self, deployment_id: str, rpm: int | None, tpm: int | None, est_tokens: int = 0
    ) -> float:
        """Wait until the request fits the deployment's windows, and count it; seconds waited.

        Call it before taking a slot: waiting here must not hold vendor capacity.
        """
        waited = 0.0
        while (left := await self.try_turn(deployment_id, rpm, tpm, est_tokens)) > 0:
            # Everyone blocked on a window wakes as it closes; jitter spreads the stampede.
            delay = left + self._rng.uniform(0.0, self._jitter)
            await asyncio.sleep(delay)
            waited += delay
        return waited


# -- cooldowns --------------------------------------------------------------------------------

# KEYS: failure counter, cooldown flag. ARGV: allowed_fails, window_ms, cooldown_ms.
# LiteLLM semantics: `allowed_fails` failures are tolerated, the next one starts the cooldown.
_FAIL = """
local n = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if n <= tonumber(ARGV[1]) then
  return 0
end
redis.call('DEL', KEYS[1])
local ms = tonumber(ARGV[3])
if redis.call('PTTL', KEYS[2]) < ms then  -- never shortens a longer pause
  redis.call('SET', KEYS[2], 'failures', 'PX', ms)
end
return 1
"""

# KEYS: cooldown flag. ARGV: ms, reason.
_PAUSE = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[1])
end
return 1
"""


class Cooldowns:
    """Deployments out of rotation for a while, shared by all workers (a key with a TTL each)."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._fail = redis.register_script(_FAIL)
        self._pause = redis.register_script(_PAUSE)

    async def record_failure(
        self, deployment_id: str, allowed_fails: int, window: float, cooldown_time: float
    ) -> bool:
        """Count a failure; True if it put the deployment into cooldown for `cooldown_time` s.

        The failure count lives `window` seconds from the first failure counted. The
        `allowed_fails + 1`-th failure within it starts the cooldown (as in LiteLLM, whose
        `allowed_fails` this is) and resets the count.
        """
        if cooldown_time <= 0:
            return False
        keys = [names.failures_key(deployment_id), names.cooldown_key(deployment_id)]
        args = [allowed_fails, _ms(window), _ms(cooldown_time)]
        return bool(await self._fail(keys=keys, args=args))

    async def record_success(self, deployment_id: str) -> None:
        """Forget counted failures: cooldown then needs `allowed_fails + 1` in a row again."""
        await self._redis.delete(names.failures_key(deployment_id))

    async def pause(self, deployment_id: str, seconds: float, reason: str = "paused") -> None:
        """Take a deployment out of rotation for `seconds` (bad credentials); never shortens."""
        await self._pause(keys=[names.cooldown_key(deployment_id)], args=[_ms(seconds), reason])

    async def resume(self, deployment_id: str) -> None:
        """End a cooldown or pause now (an operator fixed the key)."""
        await self._redis.delete(
            names.cooldown_key(deployment_id),
            names.failures_key(deployment_id),
            names.probe_key(deployment_id),
            names.probing_key(deployment_id),
        )

    async def cooling(self, deployment_ids: Sequence[str]) -> set[str]:
        """The deployments among `deployment_ids` out of rotation now (cooling down, or paused
        and waiting for their probe call: `probes.py`), in one round trip."""
        if not deployment_ids:
            return set()
        keys = [names.cooldown_key(d) for d in deployment_ids]
        keys += [names.probe_key(d) for d in deployment_ids]
        values = await self._redis.mget(keys)
        n = len(deployment_ids)
        return {
            d
            for d, cool, probe in zip(deployment_ids, values[:n], values[n:], strict=True)
            if cool is not None or probe is not None
        }
