"""Auth pauses that end with one probe call, shared by all workers through Redis.

A 401/403 about the credentials pauses the deployment (the `cooldown` key, as any cooldown) and
marks it as waiting for a probe. When the pause ends the deployment stays out of rotation until
one item, and only one across every worker, has made a call on it: a success (or any error that
is not about the credentials) puts it back for everyone; another auth error pauses it again,
twice as long (up to `MAX_PAUSE`). So one bad line costs others a short pause and one call,
never a long bench, and a really revoked key costs one call per pause, not one per line.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis

from batchgate import names
from batchgate.routing.slots import _ms

FIRST_PAUSE = 5.0
MAX_PAUSE = 300.0
# How long a probe mark outlives its pause: nobody probing within this means nobody needs it.
PROBE_GRACE = 3600.0
# How often a line waiting on a probe in flight looks again.
PROBE_POLL = 0.25

# KEYS: cooldown, probe, probing. ARGV: first_ms, max_ms, grace_ms, after_probe (0/1).
# The pause doubles only when a probe failed: concurrent auth errors of calls already in flight
# keep the current length.
_PAUSE = """
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local ms = tonumber(ARGV[1])
if last > 0 then
  ms = last
  if ARGV[4] == '1' then ms = math.min(last * 2, tonumber(ARGV[2])) end
end
if redis.call('PTTL', KEYS[1]) < ms then
  redis.call('SET', KEYS[1], 'auth', 'PX', ms)
end
redis.call('SET', KEYS[2], ms, 'PX', ms + tonumber(ARGV[3]))
if ARGV[4] == '1' then redis.call('DEL', KEYS[3]) end
return ms
"""

# KEYS: (cooldown, probe, probing) per deployment. ARGV: probing ttl ms.
# Returns the 1-based index of the deployment this caller is to probe, 0 if none.
_TRY = """
for i = 1, #KEYS, 3 do
  if redis.call('EXISTS', KEYS[i]) == 0 and redis.call('EXISTS', KEYS[i + 1]) == 1 then
    if redis.call('SET', KEYS[i + 2], '1', 'NX', 'PX', ARGV[1]) then
      return (i + 2) / 3
    end
  end
end
return 0
"""


class Probes:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._pause = redis.register_script(_PAUSE)
        self._try = redis.register_script(_TRY)

    async def pause(self, deployment_id: str, *, after_probe: bool = False) -> float:
        """Pause a deployment whose credentials were refused; seconds paused."""
        keys = [
            names.cooldown_key(deployment_id),
            names.probe_key(deployment_id),
            names.probing_key(deployment_id),
        ]
        args = [_ms(FIRST_PAUSE), _ms(MAX_PAUSE), _ms(PROBE_GRACE), int(after_probe)]
        return int(await self._pause(keys=keys, args=args)) / 1000

    async def try_probe(self, deployment_ids: Sequence[str], call_ttl: float) -> str | None:
        """The deployment this caller is to probe now (its pause is over and nobody else is
        probing it), or None."""
        keys: list[str] = []
        for d in deployment_ids:
            keys += [names.cooldown_key(d), names.probe_key(d), names.probing_key(d)]
        if not keys:
            return None
        won = int(await self._try(keys=keys, args=[_ms(call_ttl)]))
        return deployment_ids[won - 1] if won else None

    async def back(self, deployment_id: str) -> None:
        """The credentials work (a probe, or any call, was not refused): back in rotation."""
        await self._redis.delete(names.probe_key(deployment_id), names.probing_key(deployment_id))

    async def release(self, deployment_id: str) -> None:
        """The prober made no call after all (batch cancelled, budget): another may probe."""
        await self._redis.delete(names.probing_key(deployment_id))

    async def wait_hint(self, deployment_ids: Sequence[str]) -> float:
        """Seconds until one of these deployments may be called again, as far as Redis knows:
        the shortest pause left, or a short poll while only probes are pending."""
        if not deployment_ids:
            return 0.0
        pipe = self._redis.pipeline(transaction=False)
        for d in deployment_ids:
            pipe.pttl(names.cooldown_key(d))
        left = [ms / 1000 for ms in await pipe.execute() if ms > 0]
        return min(left) if left else PROBE_POLL
