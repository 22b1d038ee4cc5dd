"""`rediss://` with the CA in the URL: coordination clients (blocking and asyncio), the leader
lock, and the Celery broker (send, queue depth) against a TLS-only Redis."""

from __future__ import annotations

import asyncio
from pathlib import Path

from batchgate.coordination import LeaderLock, connect, connect_async
from batchgate.queueing import enqueue, make_celery, queue_depths
from batchgate.settings import Settings
from tests.tls_redis import tls_redis


def test_coordination_and_broker_over_rediss_with_the_ca_in_the_url(tmp_path: Path) -> None:
    with tls_redis(tmp_path / "tls") as tls:
        lock = LeaderLock(connect(tls.url), "reconciler", ttl_s=5, holder="a")
        assert lock.hold() and lock.current() == "a"

        async def many() -> int:
            client = connect_async(tls.url, max_connections=16)
            try:
                # Sixteen connections at once (BLPOP holds each): one SSL context among them.
                await asyncio.gather(
                    *(client.blpop(f"nothing-{i}", timeout=0.2) for i in range(16))
                )
                pool = client.connection_pool
                conns = [*pool._available_connections, *pool._in_use_connections]  # type: ignore[attr-defined]
                assert len(conns) == 16
                return len({id(c.ssl_context) for c in conns})
            finally:
                await client.aclose()

        assert asyncio.run(many()) == 1

        app = make_celery(Settings(redis_url=tls.url))
        assert enqueue(app, "batch_tls", "openai", [1, 2, 3], chunk_size=2) == 2
        assert queue_depths(app, ["openai"]) == {"openai": 2}
