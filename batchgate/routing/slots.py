"""Global call slots: counting semaphores in Redis shared by every worker process and host.

A scope is a vendor name (its `max_concurrency`) or a deployment id (its
`max_parallel_requests`). Its slots are the members of the sorted set `names.slots_key(scope)`:
member = a token (the holder process's id, `|`, random hex), score = expiry in the Redis server's
milliseconds (`TIME` inside the script, so worker clocks never matter). Expired members are
dropped on every acquire, so the slot of a SIGKILLed worker frees itself after its TTL, or at
once when the reconciler learns of its death (`batchgate.routing.reclaim`).

Waiting is cheap for Redis: per process and set of scopes, one poll task asks for slots on
behalf of every local waiter in one script call (FIFO: the oldest waiters get the slots), backs
off from `min_poll` to `max_poll` while the scope is full, and is woken at once by a release in
this process. Releases are pipelined the same way. So a process needs a couple of Redis
connections for its slots however many coroutines wait, and a burst of N acquires costs one
round trip, not N.

A slot released while a local coroutine waits on the same terms is handed to that waiter
directly: it stays held in Redis, so the limit is kept, and the hand-over costs no round trip,
so a full vendor limit never idles between one call and the next. A slot is handed on only while
it is young (`HANDOFF_MAX_AGE`, and a small share of its TTL): then it goes back through Redis,
where other processes' waiters can take it, and the next holder starts with a fresh expiry.

If the coordination Redis restarts empty, the slots held then are registered again before any
new slot is granted (`routing/epoch.py`), so the limit holds across the restart too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import deque
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from redis.asyncio import Redis

from batchgate import names
from batchgate.routing import epoch as epochs
from batchgate.routing.epoch import EPOCH_PRELUDE

log = logging.getLogger(__name__)

# Most tokens asked for in one script call (Lua's unpack has a stack limit near 8000 values).
MAX_BATCH = 256
# A released slot is handed straight to a local waiter only within this many seconds of its
# acquisition and within this share of its TTL, so its expiry still covers the next holder.
HANDOFF_MAX_AGE = 1.0
HANDOFF_TTL_SHARE = 0.05

# KEYS: the epoch (`routing/epoch.py`), then one sorted set per scope. ARGV: grace_ms, a new
# epoch id, ttl_ms, the limit of each set in KEYS order, then the tokens of the waiters in FIFO
# order. Grants the first k tokens a slot in every scope, k as large as the fullest scope allows;
# returns {k, the epoch's id}. None during an epoch's grace. All scopes or none per token: holding
# a vendor slot while waiting for a deployment slot would idle it, and is how semaphores deadlock.
_ACQUIRE = (
    EPOCH_PRELUDE
    + """
if now < tonumber(epoch[2]) then
  return {0, epoch[1]}
end
local ttl = tonumber(ARGV[3])
local nkeys = #KEYS - 1
local k = #ARGV - 3 - nkeys
for i = 2, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  local room = tonumber(ARGV[i + 2]) - redis.call('ZCARD', KEYS[i])
  if room < k then k = room end
end
if k <= 0 then
  return {0, epoch[1]}
end
local members = {}
for j = 1, k do
  members[2 * j - 1] = now + ttl
  members[2 * j] = ARGV[3 + nkeys + j]
end
for i = 2, #KEYS do
  redis.call('ZADD', KEYS[i], unpack(members))
  -- the set outlives its longest slot only, so an idle scope leaves nothing behind
  if redis.call('PTTL', KEYS[i]) < ttl then
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
end
return {k, epoch[1]}
"""
)

# KEYS: the scopes' sets. ARGV: ttl_ms, token. Returns how many slots were extended; a slot
# already expired is gone (its room may be taken) and is not revived.
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


@dataclass(eq=False, slots=True)
class _Waiter:
    token: str
    future: asyncio.Future[str]


@dataclass(eq=False)
class _Gate:
    """The local queue for one (scopes, limits, ttl) combination, and its poll task."""

    scopes: tuple[str, ...]
    keys: list[str]
    args: list[int]  # ttl_ms, then the limits
    batch: int
    ttl: float  # seconds
    waiters: deque[_Waiter] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # a local release freed a slot
    task: asyncio.Task[None] | None = None


@dataclass(eq=False, slots=True)
class _Held:
    gate: _Gate
    handoff_until: float  # loop time by which it must go back to Redis rather than be handed on
    epoch: str  # the coordination Redis's epoch it was granted in


@dataclass(eq=False, slots=True)
class _Release:
    scopes: tuple[str, ...]
    token: str
    future: asyncio.Future[None] | None  # None: nobody waits for it


@dataclass(eq=False, slots=True)
class _Keeper:
    task: asyncio.Task[None]
    stop: asyncio.Event  # set by whoever ends it: the last release, or `aclose`


@dataclass(eq=False)
class _LoopState:
    """Everything bound to one event loop (asyncio primitives and tasks cannot cross loops)."""

    loop: asyncio.AbstractEventLoop
    gates: dict[tuple[object, ...], _Gate] = field(default_factory=dict)
    held: dict[str, _Held] = field(default_factory=dict)  # slots held in this loop, by token
    gates_of_scope: dict[str, list[_Gate]] = field(default_factory=dict)
    releases: list[_Release] = field(default_factory=list)
    flusher: asyncio.Task[None] | None = None
    keeper: _Keeper | None = None  # while slots are held: see `_keep`


class Slots:
    """Global counting semaphores with per-slot expiry; see the module docstring.

    `ttl` bounds how long a slot outlives a worker killed while holding it: use the call's
    deadline plus a margin, or `refresh` during longer calls.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        owner: str = "",
        min_poll: float = 0.001,
        max_poll: float = 0.025,
    ) -> None:
        self._redis = redis
        self._owner = owner  # the process id tokens start with, so its slots can be reclaimed
        self._min_poll = min_poll
        self._max_poll = max_poll
        self._acquire = redis.register_script(_ACQUIRE)
        self._refresh = redis.register_script(_REFRESH)
        self._in_use = redis.register_script(_IN_USE)
        self._current_epoch = redis.register_script(epochs.CURRENT)
        self._register = redis.register_script(epochs.REGISTER)
        self._state: _LoopState | None = None

    # One scope.

    async def acquire(self, scope: str, limit: int, ttl: float) -> str:
        """Wait for a slot of `scope` (at most `limit` held at once); return its token."""
        return await self.acquire_all([(scope, limit)], ttl)

    async def release(self, scope: str, token: str) -> None:
        await self.release_all([scope], token)

    async def refresh(self, scope: str, token: str, ttl: float) -> bool:
        """Move the slot's expiry to `ttl` from now; False if it had already expired."""
        return await self.refresh_all([scope], token, ttl)

    def hold(
        self, scope: str, limit: int, ttl: float
    ) -> contextlib.AbstractAsyncContextManager[str]:
        """`async with slots.hold("openai", 64, ttl=130):` — a slot for the body's duration."""
        return self.hold_all([(scope, limit)], ttl)

    async def in_use(self, scope: str) -> int:
        """Slots of `scope` held now, across all processes (expired ones not counted)."""
        return int(await self._in_use(keys=[names.slots_key(scope)]))

    # Several scopes at once (vendor + deployment): all or nothing, one token for all of them.

    @asynccontextmanager
    async def hold_all(self, limits: Iterable[tuple[str, int]], ttl: float) -> AsyncIterator[str]:
        """Hold a slot in every `(scope, limit)` for the body's duration; yields the token."""
        scopes, caps = _normalise(limits)
        token = await self._acquire_scopes(scopes, caps, ttl)
        try:
            yield token
        finally:
            # Queued to the release task, so it completes even if we are cancelled here.
            try:
                await self._release_scopes(scopes, token)
            except Exception:  # the TTL frees the slot; the call's outcome must not change
                log.warning("slot release failed for %s; it frees at its TTL", scopes)

    async def acquire_all(self, limits: Iterable[tuple[str, int]], ttl: float) -> str:
        scopes, caps = _normalise(limits)
        return await self._acquire_scopes(scopes, caps, ttl)

    async def release_all(self, scopes: Iterable[str], token: str) -> None:
        await self._release_scopes(tuple(sorted(set(scopes))), token)

    async def refresh_all(self, scopes: Iterable[str], token: str, ttl: float) -> bool:
        keys = [names.slots_key(s) for s in sorted(set(scopes))]
        return int(await self._refresh(keys=keys, args=[_ms(ttl), token])) == len(keys)

    # Acquiring.

    async def _acquire_scopes(self, scopes: tuple[str, ...], caps: list[int], ttl: float) -> str:
        state = self._loop_state()
        gate = self._gate(state, scopes, caps, _ms(ttl))
        waiter = _Waiter(f"{self._owner}|{secrets.token_hex(8)}", state.loop.create_future())
        gate.waiters.append(waiter)
        if gate.task is None:
            gate.task = state.loop.create_task(self._poll(state, gate))
        try:
            return await waiter.future
        except asyncio.CancelledError:
            # Granted just as we were cancelled: nobody will release it, so do it now. (A
            # hand-over grants another holder's token, so release what the future holds.)
            if waiter.future.done() and not waiter.future.cancelled():
                self._drop_or_hand_on(state, scopes, waiter.future.result())
            raise

    async def _poll(self, state: _LoopState, gate: _Gate) -> None:
        """Ask Redis for slots for the local waiters until none are left."""
        delay = self._min_poll
        try:
            while True:
                batch: list[_Waiter] = []
                while gate.waiters and len(batch) < gate.batch:
                    waiter = gate.waiters.popleft()
                    if not waiter.future.done():  # skip waiters that gave up
                        batch.append(waiter)
                if not batch:
                    return
                gate.wake.clear()  # before the attempt: a release during it is not missed
                try:
                    granted, epoch = await self._acquire(
                        keys=[names.SLOTS_EPOCH_KEY, *gate.keys],
                        args=[_GRACE_MS, epochs.new_id(), *gate.args, *(w.token for w in batch)],
                    )
                    granted, epoch = int(granted), _text(epoch)
                except BaseException as exc:
                    self._fail_waiters(state, gate, batch, exc)
                    if not isinstance(exc, Exception):
                        raise  # cancelled: the loop is shutting down
                    log.warning("slot poll for %s failed (%r); waiters got it", gate.scopes, exc)
                    return
                deadline = state.loop.time() + min(HANDOFF_MAX_AGE, gate.ttl * HANDOFF_TTL_SHARE)
                for waiter in batch[:granted]:
                    state.held[waiter.token] = _Held(gate, deadline, epoch)
                    if waiter.future.done():  # gave up while we were asking
                        self._drop_or_hand_on(state, gate.scopes, waiter.token)
                    else:
                        waiter.future.set_result(waiter.token)
                if granted and state.keeper is None:
                    stop = asyncio.Event()
                    state.keeper = _Keeper(state.loop.create_task(self._keep(state, stop)), stop)
                gate.waiters.extendleft(reversed(batch[granted:]))  # still first in line
                if granted == len(batch):
                    delay = self._min_poll
                    continue
                woken = await _wait(gate.wake, delay)
                delay = self._min_poll if woken else min(delay * 2, self._max_poll)
        finally:
            gate.task = None

    def _fail_waiters(
        self, state: _LoopState, gate: _Gate, batch: list[_Waiter], exc: BaseException
    ) -> None:
        # The script may have run before the error reached us: hand back every token asked
        # for, and give every waiter the error (it would have seen it calling Redis itself).
        for waiter in batch:
            self._queue_release(state, gate.scopes, waiter.token, wait=False)
        for waiter in [*batch, *gate.waiters]:
            if not waiter.future.done():
                if isinstance(exc, asyncio.CancelledError):
                    waiter.future.cancel()
                else:
                    waiter.future.set_exception(exc)
        gate.waiters.clear()

    # Releasing.

    async def _release_scopes(self, scopes: tuple[str, ...], token: str) -> None:
        state = self._loop_state()
        if self._hand_on(state, token):
            return
        future = self._queue_release(state, scopes, token, wait=True)
        assert future is not None
        if not state.held:  # the last slot of this loop: its keeper has nothing left to keep
            await self._stop_keeper(state)
        await future

    def _drop_or_hand_on(self, state: _LoopState, scopes: tuple[str, ...], token: str) -> None:
        if not self._hand_on(state, token):
            self._queue_release(state, scopes, token, wait=False)

    def _hand_on(self, state: _LoopState, token: str) -> bool:
        """Give a held slot to the oldest local waiter on the same terms, if it is young
        enough; True if it was handed on (it stays held in Redis, under the same token)."""
        entry = state.held.pop(token, None)
        if entry is None:
            return False
        if state.loop.time() > entry.handoff_until:
            return False
        while entry.gate.waiters:
            waiter = entry.gate.waiters.popleft()
            if not waiter.future.done():
                state.held[token] = entry
                waiter.future.set_result(token)
                return True
        return False

    def _queue_release(
        self, state: _LoopState, scopes: tuple[str, ...], token: str, *, wait: bool
    ) -> asyncio.Future[None] | None:
        future = state.loop.create_future() if wait else None
        state.releases.append(_Release(scopes, token, future))
        if state.flusher is None:
            state.flusher = state.loop.create_task(self._flush(state))
        return future

    async def _flush(self, state: _LoopState) -> None:
        """Send queued releases, pipelined, then wake the local pollers of those scopes."""
        try:
            while state.releases:
                batch, state.releases = state.releases[:MAX_BATCH], state.releases[MAX_BATCH:]
                # One ZREM per scope with all its tokens: encoding commands is what costs here.
                tokens: dict[str, list[str]] = {}
                for r in batch:
                    for scope in r.scopes:
                        tokens.setdefault(scope, []).append(r.token)
                error: BaseException | None = None
                try:
                    if len(tokens) == 1:
                        [(scope, members)] = tokens.items()
                        await self._redis.zrem(names.slots_key(scope), *members)
                    else:
                        async with self._redis.pipeline(transaction=False) as pipe:
                            for scope, members in tokens.items():
                                pipe.zrem(names.slots_key(scope), *members)
                            await pipe.execute()
                except Exception as exc:
                    error = exc
                for r in batch:
                    if r.future is not None and not r.future.done():
                        if error is None:
                            r.future.set_result(None)
                        else:
                            r.future.set_exception(error)
                for scope in tokens:
                    for gate in state.gates_of_scope.get(scope, ()):
                        gate.wake.set()
                if error is not None and all(r.future is None for r in batch):
                    log.warning("slot release failed (%s); slots free at their TTL", error)
        finally:
            state.flusher = None
            for r in state.releases:  # cancelled (loop shutdown): the TTLs will free them
                if r.future is not None and not r.future.done():
                    r.future.cancel()
            state.releases = []

    # Across a restart of the coordination Redis (`routing/epoch.py`).

    async def _keep(self, state: _LoopState, stop: asyncio.Event) -> None:
        """While this loop holds slots: find a new epoch of the coordination Redis and register
        the slots held since an earlier one again, within the new epoch's grace.

        Never cancelled: `stop` ends it between looks, so a registration in flight still hands
        back the slots released meanwhile (see `_register_stale`)."""
        try:
            while not await _wait(stop, epochs.KEEP_INTERVAL) and state.held:
                try:
                    await self._register_stale(state)
                except Exception as exc:  # Redis away: look again at the next interval
                    log.debug("slot epoch check failed: %r", exc)
        finally:
            if state.keeper is not None and state.keeper.stop is stop:
                state.keeper = None

    async def _stop_keeper(self, state: _LoopState) -> None:
        """End this loop's keeper and wait until it has; a slot granted meanwhile starts a new
        one. Without the wait, a loop stopped or closed right after would hold it pending."""
        keeper, state.keeper = state.keeper, None
        if keeper is not None:
            keeper.stop.set()
            await asyncio.wait([keeper.task])

    async def _register_stale(self, state: _LoopState) -> None:
        current = _text(
            await self._current_epoch(
                keys=[names.SLOTS_EPOCH_KEY], args=[_GRACE_MS, epochs.new_id()]
            )
        )
        stale: dict[_Gate, list[str]] = {}
        for token, held in state.held.items():
            if held.epoch != current:
                stale.setdefault(held.gate, []).append(token)
        for gate, tokens in stale.items():
            for i in range(0, len(tokens), MAX_BATCH):
                part = [t for t in tokens[i : i + MAX_BATCH] if t in state.held]
                if not part:
                    continue
                await self._register(keys=gate.keys, args=[gate.args[0], *part])
                for token in part:
                    if (held := state.held.get(token)) is not None:
                        held.epoch = current
                    else:  # released while we registered it: its release may have gone first
                        self._queue_release(state, gate.scopes, token, wait=False)
        if stale:
            log.warning(
                "coordination Redis restarted (epoch %s): registered %d held slots again",
                current,
                sum(map(len, stale.values())),
            )

    # Closing.

    async def aclose(self) -> None:
        """End the tasks this object runs in the current loop, before the loop closes (a task
        left pending there never runs its cleanup): the pollers, whose waiters are cancelled;
        the keeper; the release queue, sent first. Slots still held free at their TTL."""
        state = self._state
        if state is None or state.loop is not asyncio.get_running_loop():
            return
        polls = [g.task for g in state.gates.values() if g.task is not None]
        for poll in polls:
            poll.cancel()
        if polls:
            await asyncio.wait(polls)
        for gate in state.gates.values():
            for waiter in gate.waiters:
                waiter.future.cancel()
            gate.waiters.clear()
        await self._stop_keeper(state)
        # Last: a cancelled poll, and a keeper that registered a slot released meanwhile,
        # queue releases.
        if state.flusher is not None:
            await asyncio.wait([state.flusher])

    # Bookkeeping.

    def _loop_state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        if self._state is None or self._state.loop is not loop:
            self._state = _LoopState(loop)
        return self._state

    def _gate(
        self, state: _LoopState, scopes: tuple[str, ...], caps: list[int], ttl_ms: int
    ) -> _Gate:
        # Keyed by limits and ttl too, so a waiter is only ever granted on its own terms.
        key = (scopes, *caps, ttl_ms)
        gate = state.gates.get(key)
        if gate is None:
            gate = state.gates[key] = _Gate(
                scopes=scopes,
                keys=[names.slots_key(s) for s in scopes],
                args=[ttl_ms, *caps],
                batch=min(MAX_BATCH, *caps),
                ttl=ttl_ms / 1000,
            )
            for scope in scopes:
                state.gates_of_scope.setdefault(scope, []).append(gate)
        return gate


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


_GRACE_MS = _ms(epochs.RESTART_GRACE)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


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
