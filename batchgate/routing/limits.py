"""Limits shared by every worker process and host, kept in Redis.

- `Slots` — counting semaphores: a vendor's `max_concurrency`, a deployment's
  `max_parallel_requests`. Hold one only for the duration of a call, never through a backoff.
- `RateWindow` — a deployment's `rpm` and `tpm`.
- `Cooldowns` — deployments taken out of rotation after repeated failures, or paused.

Every check-and-update is one Lua script, so it is atomic across processes, and every expiry is
computed from the Redis server's clock (`TIME` inside the script, or key TTLs), so the clocks of
the worker hosts never matter. Key names come from `batchgate.names`. Each class wraps a
`redis.asyncio.Redis` client owned by the worker process; use one instance per client and loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
from collections.abc import AsyncIterator, Coroutine, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from batchgate import names

# -- slots ------------------------------------------------------------------------------------

# KEYS: one sorted set per scope (member = token, score = expiry in server ms).
# ARGV: ttl_ms, token, then the limit of each key in KEYS order.
# All scopes or none: taking a vendor slot while waiting for a deployment slot would idle the
# vendor slot, and holding one while waiting for another is how semaphores deadlock.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if redis.call('ZCARD', key) >= tonumber(ARGV[i + 2]) then
    return 0
  end
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + ttl, ARGV[2])
  -- the set outlives its longest slot only, so an idle scope leaves nothing behind
  if redis.call('PTTL', key) < ttl then
    redis.call('PEXPIRE', key, ttl)
  end
end
return 1
"""

# KEYS: the scopes' sorted sets. ARGV: ttl_ms, token. Returns how many slots were extended;
# a slot already expired is gone (its room may be taken) and is not revived.
_REFRESH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local n = 0
for _, key in ipairs(KEYS) do
  local score = redis.call('ZSCORE', key, ARGV[2])
  if score and tonumber(score) > now then
    redis.call('ZADD', key, 'XX', now + ttl, ARGV[2])
    if redis.call('PTTL', key) < ttl then
      redis.call('PEXPIRE', key, ttl)
    end
    n = n + 1
  end
end
return n
"""

_IN_USE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
"""


@dataclass(eq=False)
class _Gate:
    """Local waiting room for one set of scopes in this process."""

    loop: asyncio.AbstractEventLoop
    # Holder = the one coroutine polling Redis; the rest queue on it in FIFO order.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Set by a local release: a slot just freed, so the poller should try now.
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    queued: int = 0  # coroutines waiting in or on the lock


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class Slots:
    """Global counting semaphores with per-slot expiry, one per scope (vendor or deployment).

    A slot is a member of `names.slots_key(scope)` whose score is its expiry in server time, so
    a slot of a SIGKILLed worker frees itself after `ttl`. Waiting costs Redis little: per
    process and set of scopes only one coroutine polls (backing off from `min_poll` to
    `max_poll`), the others queue behind it in FIFO order, and a release in this process wakes
    the poller at once. Waiters in other processes notice within `max_poll`.
    """

    def __init__(self, redis: Redis, *, min_poll: float = 0.001, max_poll: float = 0.025) -> None:
        self._redis = redis
        self._min_poll = min_poll
        self._max_poll = max_poll
        self._acquire = redis.register_script(_ACQUIRE)
        self._refresh = redis.register_script(_REFRESH)
        self._in_use = redis.register_script(_IN_USE)
        self._gates: dict[tuple[str, ...], _Gate] = {}
        self._gates_of_scope: dict[str, list[tuple[str, ...]]] = {}
        self._cleanups: set[asyncio.Task[Any]] = set()

    # Single scope.

    async def acquire(self, scope: str, limit: int, ttl: float) -> str:
        """Wait for a slot of `scope` (at most `limit` held at once); return its token."""
        return await self.acquire_all([(scope, limit)], ttl)

    async def release(self, scope: str, token: str) -> None:
        await self.release_all([scope], token)

    async def refresh(self, scope: str, token: str, ttl: float) -> bool:
        """Push the slot's expiry to `ttl` from now; False if it had already expired."""
        return await self.refresh_all([scope], token, ttl)

    def hold(self, scope: str, limit: int, ttl: float) -> contextlib.AbstractAsyncContextManager[str]:
        """`async with slots.hold("openai", 64, ttl=150):` — a slot for the body's duration."""
        return self.hold_all([(scope, limit)], ttl)

    async def in_use(self, scope: str) -> int:
        """Slots of `scope` held now, across all processes (expired ones not counted)."""
        return int(await self._in_use(keys=[names.slots_key(scope)]))

    # Several scopes at once (vendor + deployment): all or nothing, one token for all.

    @asynccontextmanager
    async def hold_all(self, limits: Iterable[tuple[str, int]], ttl: float) -> AsyncIterator[str]:
        scopes, caps = _normalise(limits)
        token = await self._acquire_scopes(scopes, caps, ttl)
        try:
            yield token
        except BaseException:
            # Cancelled or failed body: make sure the release finishes even if we are
            # cancelled again, or the slot stays taken until its TTL.
            await self._shielded(self._release_scopes(scopes, token))
            raise
        await self._release_scopes(scopes, token)

    async def acquire_all(self, limits: Iterable[tuple[str, int]], ttl: float) -> str:
        scopes, caps = _normalise(limits)
        return await self._acquire_scopes(scopes, caps, ttl)

    async def release_all(self, scopes: Iterable[str], token: str) -> None:
        await self._release_scopes(tuple(sorted(set(scopes))), token)

    async def refresh_all(self, scopes: Iterable[str], token: str, ttl: float) -> bool:
        keys = [names.slots_key(s) for s in sorted(set(scopes))]
        return int(await self._refresh(keys=keys, args=[_ms(ttl), token])) == len(keys)

    # Internals.

    async def _acquire_scopes(self, scopes: tuple[str, ...], caps: list[int], ttl: float) -> str:
        token = secrets.token_hex(8)
        keys = [names.slots_key(s) for s in scopes]
        args = [_ms(ttl), token, *caps]
        gate = self._gate(scopes)
        # Fast path: nobody here is waiting, so one attempt neither jumps the queue nor polls.
        if gate.queued == 0 and await self._try(keys, args):
            return token
        gate.queued += 1
        try:
            async with gate.lock:
                delay = self._min_poll
                while True:
                    gate.wake.clear()  # before the attempt: a release during it is not lost
                    if await self._try(keys, args):
                        return token
                    woken = await _wait(gate.wake, delay)
                    delay = self._min_poll if woken else min(delay * 2, self._max_poll)
        finally:
            gate.queued -= 1

    async def _try(self, keys: list[str], args: list[Any]) -> bool:
        try:
            return bool(await self._acquire(keys=keys, args=args))
        except BaseException:
            # The script may have run before the error or cancellation reached us: give the
            # token back instead of holding a slot nobody will release.
            await self._shielded(self._zrem(keys, args[1]))
            raise

    async def _release_scopes(self, scopes: tuple[str, ...], token: str) -> None:
        try:
            await self._zrem([names.slots_key(s) for s in scopes], token)
        finally:
            for scope in scopes:
                for gate_key in self._gates_of_scope.get(scope, ()):
                    self._gates[gate_key].wake.set()

    async def _zrem(self, keys: list[str], token: str) -> None:
        if len(keys) == 1:
            await self._redis.zrem(keys[0], token)
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.zrem(key, token)
            await pipe.execute()

    def _gate(self, scopes: tuple[str, ...]) -> _Gate:
        loop = asyncio.get_running_loop()
        gate = self._gates.get(scopes)
        if gate is None or gate.loop is not loop:  # asyncio primitives belong to one loop
            gate = self._gates[scopes] = _Gate(loop)
            for scope in scopes:
                keys = self._gates_of_scope.setdefault(scope, [])
                if scopes not in keys:
                    keys.append(scopes)
        return gate

    async def _shielded(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a cleanup to completion even if the caller is cancelled; never raise from it."""
        task = asyncio.ensure_future(coro)
        self._cleanups.add(task)  # keep a reference until done
        task.add_done_callback(self._cleanups.discard)
        with contextlib.suppress(BaseException):  # the slot TTL is the backstop
            await asyncio.shield(task)


def _normalise(limits: Iterable[tuple[str, int]]) -> tuple[tuple[str, ...], list[int]]:
    """Scopes in a fixed (sorted) order with their limits; a repeated scope keeps its lowest."""
    merged: dict[str, int] = {}
    for scope, limit in limits:
        if limit < 1:
            raise ValueError(f"slot limit of {scope!r} must be at least 1, got {limit}")
        merged[scope] = min(limit, merged.get(scope, limit))
    if not merged:
        raise ValueError("no scopes to acquire")
    scopes = tuple(sorted(merged))
    return scopes, [merged[s] for s in scopes]


async def _wait(event: asyncio.Event, timeout: float) -> bool:
    """Wait for `event` at most `timeout` seconds; True if it was set."""
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True


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
            names.cooldown_key(deployment_id), names.failures_key(deployment_id)
        )

    async def cooling(self, deployment_ids: Sequence[str]) -> set[str]:
        """The deployments among `deployment_ids` out of rotation now, in one round trip."""
        if not deployment_ids:
            return set()
        values = await self._redis.mget([names.cooldown_key(d) for d in deployment_ids])
        return {d for d, v in zip(deployment_ids, values, strict=True) if v is not None}
