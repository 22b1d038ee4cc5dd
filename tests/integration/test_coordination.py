"""Coordination on a real Redis: the reconciler's leader lock across replicas, and Sentinel URLs
for both the coordination client and the Celery broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from batchgate.broker import free_port, start_valkey, valkey_binary
from batchgate.coordination import LeaderLock, connect, parse_sentinel
from batchgate.names import leader_key
from batchgate.queueing import enqueue, make_celery, queue_depths
from batchgate.settings import Settings
from tests.conftest import REPO
from tests.e2e.harness import wait_for


def test_one_replica_leads_and_another_takes_over_when_it_stops_renewing(
    clean_broker: str,
) -> None:
    client = redis.Redis.from_url(clean_broker)
    a = LeaderLock(client, "reconciler", ttl_s=0.5, holder="a")
    b = LeaderLock(client, "reconciler", ttl_s=0.5, holder="b")
    assert a.hold() and not b.hold()
    assert a.hold() and a.current() == "a"  # renewing keeps it
    wait_for(b.hold, 5, "b to take over after a stopped renewing", interval=0.05)
    assert not a.hold() and b.current() == "b"
    b.release()
    assert a.hold()


def test_reconciler_processes_take_turns_and_fail_over(
    clean_broker: str, database_url: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "BATCHGATE_REDIS_URL": clean_broker,
        "BATCHGATE_DATABASE_URL": database_url,
        "BATCHGATE_CONFIG": str(REPO / "samples" / "config.simulator.yaml"),
        "BATCHGATE_RECONCILE_INTERVAL": "0.3",
    }
    client = redis.Redis.from_url(clean_broker)
    procs = {}
    for name in ("zone-a", "zone-b"):
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "batchgate", "reconciler"],
            env={**env, "BATCHGATE_HOST_ID": name},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        leader = wait_for(lambda: client.get(leader_key("reconciler")), 60, "a leader").decode()
        first = leader.split(":")[0]
        other = "zone-b" if first == "zone-a" else "zone-a"
        os.killpg(procs[first].pid, signal.SIGKILL)  # no release: the lock must lapse
        t0 = time.monotonic()
        wait_for(
            lambda: (v := client.get(leader_key("reconciler"))) and v.decode().startswith(other),
            30,
            "the other replica to lead",
        )
        assert time.monotonic() - t0 < 10  # within the lock's TTL (5 s) and a round or two
        assert procs[other].poll() is None
    finally:
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
            p.wait(30)


@pytest.fixture
def sentinel(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A Valkey master and one Sentinel watching it, both on loopback."""
    master_url, master = start_valkey(tmp_path / "master", persist=False)
    master_port = int(master_url.rsplit(":", 1)[1].split("/")[0])
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 {master_port} 1\n"
    )
    proc = subprocess.Popen(
        [valkey_binary(), str(conf), "--sentinel"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"sentinel://127.0.0.1:{port}/2?master_name=mymaster"

    def ready() -> bool:
        try:
            return bool(redis.Redis(port=port).sentinel_get_master_addr_by_name("mymaster"))
        except redis.RedisError:
            return False

    try:
        wait_for(ready, 30, "the sentinel to know its master", interval=0.1)
        yield url, master_url
    finally:
        proc.kill()
        proc.wait()
        master.kill()
        master.wait()


def test_sentinel_url_reaches_the_master_for_coordination_and_the_broker(sentinel) -> None:  # type: ignore[no-untyped-def]
    url, master_url = sentinel
    target = parse_sentinel(url)
    assert target.master_name == "mymaster" and target.db == 2
    coordination = connect(url)
    coordination.set("bg:probe", "1")
    direct = redis.Redis.from_url(master_url.rsplit("/", 1)[0] + "/2")
    assert direct.get("bg:probe") == b"1"  # the sentinel led to the master, db 2

    app = make_celery(Settings(redis_url=url))
    assert enqueue(app, "batch_x", "openai", [1, 2, 3], 2) == 2
    assert queue_depths(app, ["openai"]) == {"openai": 2}
    assert direct.llen("openai") == 2  # the messages are on the master
