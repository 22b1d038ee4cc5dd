"""Take back, at once, the call slots a dead worker process held in Redis.

A slot's token starts with its holder's process id (`batchgate.routing.slots`); once the
reconciler knows a process is dead (`batchgate.pipeline.reconcile.DeathWatch`), its slots are
removed instead of blocking the vendor's limit until their TTL (the call deadline) runs out.
"""

from __future__ import annotations

import redis

from batchgate import names

# KEYS: slot sets. ARGV: token prefixes of dead processes. Returns how many slots were freed.
_FREE = """
local freed = 0
for _, key in ipairs(KEYS) do
  for _, member in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    for _, prefix in ipairs(ARGV) do
      if string.sub(member, 1, #prefix) == prefix then
        redis.call('ZREM', key, member)
        freed = freed + 1
        break
      end
    end
  end
end
return freed
"""


def slot_holders(client: redis.Redis) -> set[str]:
    """The worker processes holding a call slot now. A worker may die holding slots and no
    lease (or after its leases lapsed and were released): the reconciler watches these too."""
    holders: set[str] = set()
    for key in client.scan_iter(match=names.slots_key("*"), count=1000):
        for member in client.zrange(key, 0, -1):
            holders.add(member.decode().split("|", 1)[0])
    return holders


def free_slots_of(client: redis.Redis, workers: set[str]) -> int:
    """Remove every slot held by the given worker processes; returns how many."""
    if not workers:
        return 0
    keys = [k.decode() for k in client.scan_iter(match=names.slots_key("*"), count=1000)]
    if not keys:
        return 0
    return int(client.eval(_FREE, len(keys), *keys, *(f"{w}|" for w in sorted(workers))))
