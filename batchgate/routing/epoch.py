"""Slots across a restart of the coordination Redis.

A Redis that restarts empty forgets the slots held at that moment while their calls are still in
flight, and would grant them again at once: the vendor would see up to twice its limit. So each
life of the coordination Redis is an epoch, the hash `names.SLOTS_EPOCH_KEY`: its id, and the
end of a grace period. The first script call that finds no epoch starts one, and no slot is
granted until its grace ends; meanwhile each process holding slots from an earlier epoch finds
the new id (its keeper looks every `KEEP_INTERVAL`) and registers those slots again. After the
grace the sets hold every slot still in use, and the limit counts them.

A Redis nobody has used yet needs no grace: whoever just started it empty, or flushed it, before
any worker ran, says so with `begin_epoch` (`batchgate up` for its embedded Valkey).
"""

from __future__ import annotations

import secrets
from contextlib import closing

from batchgate import names
from batchgate.coordination import connect

# Holders look for a new epoch this often, and the grace leaves them several looks to register.
KEEP_INTERVAL = 0.2
RESTART_GRACE = 1.0

# The Lua that starts an epoch if there is none (ARGV: grace_ms, a new id) and sets `now` and
# `epoch` ({id, end of grace}); the acquire and keep scripts begin with it.
EPOCH_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local epoch = redis.call('HMGET', KEYS[1], 'id', 'until')
if not epoch[1] then
  epoch = {ARGV[2], tostring(now + tonumber(ARGV[1]))}
  redis.call('HSET', KEYS[1], 'id', epoch[1], 'until', epoch[2])
end
"""

# KEYS: the epoch. ARGV: grace_ms, a new id. Returns the epoch's id.
CURRENT = EPOCH_PRELUDE + "return epoch[1]\n"

# KEYS: the slot sets of one set of scopes. ARGV: ttl_ms, then tokens held since an earlier
# epoch. Each is held again from now for its ttl, in every set, unless it already is.
REGISTER = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for _, key in ipairs(KEYS) do
  for j = 2, #ARGV do
    redis.call('ZADD', key, 'NX', now + ttl, ARGV[j])
  end
  if redis.call('PTTL', key) < ttl then
    redis.call('PEXPIRE', key, ttl)
  end
end
return #ARGV - 1
"""

_BEGIN = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'id', ARGV[1], 'until', 0)
end
return 1
"""


def new_id() -> str:
    return secrets.token_hex(8)


def begin_epoch(url: str) -> None:
    """Start an epoch with no grace on a coordination Redis that no worker has used since it
    started empty or was flushed (else a restart grace would delay the first slots)."""
    with closing(connect(url)) as client:
        client.eval(_BEGIN, 1, names.SLOTS_EPOCH_KEY, new_id())
