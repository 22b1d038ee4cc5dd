"""Redis for coordination across processes and hosts: connections from a `redis://`, `rediss://`
or `sentinel://` URL, and the leader lock that replicas of one role (the reconciler) take turns
with. Slots, rate windows, cooldowns and budgets use these connections (`routing/`).

A Sentinel URL lists the sentinels as Celery spells them, with the master's name as a query:
`sentinel://:PASSWORD@host1:26379/0;sentinel://host2:26379?master_name=mymaster`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.connection import RedisSSLContext, SSLConnection, parse_url
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.sentinel import Sentinel

from batchgate.names import leader_key

DEFAULT_MASTER = "mymaster"


@dataclass(frozen=True)
class SentinelTarget:
    hosts: list[tuple[str, int]]
    master_name: str
    db: int = 0
    password: str | None = None


def parse_sentinel(url: str) -> SentinelTarget:
    hosts: list[tuple[str, int]] = []
    master, db, password = DEFAULT_MASTER, 0, None
    for part in url.split(";"):
        u = urlsplit(part.strip())
        if u.scheme != "sentinel" or not u.hostname:
            raise ValueError(f"not a sentinel:// URL part: {part!r}")
        hosts.append((u.hostname, u.port or 26379))
        password = u.password or password
        if u.path.strip("/"):
            db = int(u.path.strip("/"))
        master = parse_qs(u.query).get("master_name", [master])[0]
    return SentinelTarget(hosts, master, db, password)


def sentinel_transport_options(url: str) -> dict[str, object]:
    """Celery/kombu's broker_transport_options for a sentinel:// broker URL."""
    target = parse_sentinel(url)
    options: dict[str, object] = {"master_name": target.master_name}
    if target.password:
        options["sentinel_kwargs"] = {"password": target.password}
    return options


def celery_broker_url(url: str) -> str:
    """The URL as kombu takes it: the master's name travels in the transport options."""
    if not url.startswith("sentinel://"):
        return url
    return ";".join(part.split("?", 1)[0] for part in url.split(";"))


def connect(url: str) -> redis.Redis:
    """A blocking client (the reconciler, the API, tests)."""
    if url.startswith("sentinel://"):
        t = parse_sentinel(url)
        sentinel = Sentinel(t.hosts, sentinel_kwargs={"password": t.password}, password=t.password)
        return sentinel.master_for(t.master_name, db=t.db)
    return redis.Redis.from_url(url)


def connect_async(url: str, max_connections: int = 32) -> aioredis.Redis:
    """An asyncio client for a worker's event loop; waiters queue for a connection past the cap
    instead of failing."""
    if url.startswith("sentinel://"):
        t = parse_sentinel(url)
        sentinel = AsyncSentinel(
            t.hosts, sentinel_kwargs={"password": t.password}, password=t.password
        )
        return sentinel.master_for(t.master_name, db=t.db)
    options = parse_url(url)
    if options.get("connection_class") is SSLConnection:  # rediss://
        options["connection_class"] = _shared_context_ssl_connection()
    pool = aioredis.BlockingConnectionPool(max_connections=max_connections, timeout=None, **options)
    return aioredis.Redis(connection_pool=pool)


def _shared_context_ssl_connection() -> type[SSLConnection]:
    """An SSL connection class whose connections (one pool's, all alike) share one SSLContext.
    redis-py builds a context per connection, loading the system's CA store each time (over
    100 ms of CPU, on the event loop): a worker opening its pool's connections at once blocked
    its loop past the 5 s connect timeout, and its items were handed back and called again."""
    shared: list[RedisSSLContext] = []

    class SharedContextSSLConnection(SSLConnection):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            if not shared:
                shared.append(self.ssl_context)
            self.ssl_context = shared[0]

    return SharedContextSSLConnection


# Take the lock if free, or keep it if this holder has it; else say who holds it.
_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass
class LeaderLock:
    """One holder at a time per role, across hosts. The holder renews it every round; if it dies
    the lock lapses after `ttl_s` and another replica takes over. Work done under it must stay
    safe if two ever overlap (a paused holder): the reconciler's writes are conditional updates,
    so the lock removes wasted work and races, not correctness."""

    client: redis.Redis
    role: str
    ttl_s: float
    holder: str = field(default_factory=lambda: uuid.uuid4().hex)  # unique per replica

    def hold(self) -> bool:
        """Take or renew the lock; False while another replica holds it."""
        ms = max(1, int(self.ttl_s * 1000))
        return bool(self.client.eval(_ACQUIRE, 1, leader_key(self.role), self.holder, ms))

    def release(self) -> None:
        self.client.eval(_RELEASE, 1, leader_key(self.role), self.holder)

    def current(self) -> str | None:
        value = self.client.get(leader_key(self.role))
        return value.decode() if value else None
