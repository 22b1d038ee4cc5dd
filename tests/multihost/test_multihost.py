"""Three hosts on one machine (network namespaces): host A runs the API, the reconciler and the
simulator; hosts B and C each run an OpenAI worker group. All reach PostgreSQL and Redis over the
virtual network. One vendor limit holds across hosts, host B dies mid-batch (SIGKILL of all its
processes, link cut), host C finishes, and B rejoins with no operator action."""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from batchgate import names
from batchgate.broker import start_valkey
from tests.conftest import _pg_database, _pg_drop
from tests.e2e.harness import TERMINAL, wait_for
from tests.multihost.cluster import Cluster
from tests.multihost.netns import Network, unavailable

pytestmark = pytest.mark.multihost

LIMIT = 16
LINES = 3000
DEFAULT_PG = "postgresql://root@127.0.0.1:5432/test"


def _postgres_base() -> str | None:
    url = os.environ.get("BATCHGATE_TEST_DATABASE_URL") or DEFAULT_PG
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error:
        return None
    return url


@pytest.fixture
def network() -> Any:
    why = unavailable()
    if why:
        pytest.skip(f"multihost test not run: {why}")
    net = Network()
    try:
        yield net
    finally:
        net.close()


@pytest.fixture
def postgres() -> Any:
    base = _postgres_base()
    if base is None:
        pytest.skip("multihost test not run: no PostgreSQL (set BATCHGATE_TEST_DATABASE_URL)")
    url, name = _pg_database(base)
    try:
        yield url
    finally:
        _pg_drop(base, name)


def test_three_hosts_one_limit_a_host_dies_and_rejoins(
    network: Network, postgres: str, tmp_path: Path
) -> None:
    # Redis listens on the virtual network itself; PostgreSQL is reached through a forwarder.
    redis_url, valkey = start_valkey(tmp_path / "redis", bind=network.gateway)
    try:
        _run(network, postgres, tmp_path, redis_url)
    except TimeoutError as e:  # what each process said is the only clue to where it stuck
        raise AssertionError(f"{e}\n{_slots(redis_url)}\n{_logs(tmp_path)}") from e
    finally:
        valkey.kill()
        valkey.wait()


def _run(network: Network, postgres: str, tmp_path: Path, redis_url: str) -> None:
    cluster = Cluster(network, tmp_path, postgres, redis_url, limit=LIMIT, latency_ms=50)
    b, c = cluster.workers
    cluster.start()
    t0 = time.monotonic()
    batch_id, ids = cluster.submit(LINES, "mh")
    wait_for(lambda: cluster.batch(batch_id)["request_counts"]["completed"] >= LINES // 3,
             180, "a third of the batch")  # fmt: skip
    served_by_b_before = {e["prompt_sha256"] for e in cluster.ledger()
                          if e["client"] == b.address}  # fmt: skip
    b.cut()  # a power cut: the link goes first, so no FIN or RST ever leaves host B
    b.kill_all()
    killed_at = time.monotonic() - t0
    done = wait_for(lambda: (bt := cluster.batch(batch_id))["status"] in TERMINAL and bt,
                    150, "the batch to end on host C")  # fmt: skip
    seconds = time.monotonic() - t0
    assert done["status"] == "completed", _logs(tmp_path)
    lines = cluster.results(done)
    assert Counter(x["custom_id"] for x in lines) == Counter(ids)  # each line exactly once
    assert [x["custom_id"] for x in lines] == ids  # in input order, all succeeded
    ledger = cluster.ledger()
    by_host = Counter(e["client"] for e in ledger if e["status"] == 200)
    assert by_host[b.address] > 0 and by_host[c.address] > 0
    assert set(by_host) <= {b.address, c.address}
    peak = cluster.peak()
    assert peak <= LIMIT
    calls = Counter(e["prompt_sha256"] for e in ledger)
    repeated = {digest for digest, n in calls.items() if n > 1}
    # A line called twice was one host B held when it died: its first call came from B.
    first_from = {}
    for e in ledger:
        first_from.setdefault(e["prompt_sha256"], e["client"])
    assert all(first_from[d] == b.address for d in repeated)
    served_b, served_c = by_host[b.address], by_host[c.address]
    print(
        f"\nmultihost: {LINES} lines, limit {LIMIT}: {seconds:.1f}s (host B killed at "
        f"{killed_at:.1f}s), peak in flight {peak}, lines served by B {served_b} / C "
        f"{served_c}, duplicate calls {len(repeated)} (B had served "
        f"{len(served_by_b_before)} before it died)"
    )

    # Host B comes back: its link and its workers, nothing else is touched.
    b.restore()
    cluster.start_workers(b)
    cluster.wait_hosts({"host-b", "host-c"})
    c.kill_all()  # so the next batch can only be served by the rejoined host
    t1 = time.monotonic()
    again, again_ids = cluster.submit(40, "back")
    end = wait_for(lambda: (bt := cluster.batch(again))["status"] in TERMINAL and bt,
                   90, "a batch after host B rejoined")  # fmt: skip
    print(f"multihost: after host B rejoined, 40 lines took {time.monotonic() - t1:.1f}s")
    assert end["status"] == "completed", _logs(tmp_path)
    assert [x["custom_id"] for x in cluster.results(end)] == again_ids
    later = [e for e in cluster.ledger() if e["seq"] >= len(ledger)]
    assert later and {e["client"] for e in later} == {b.address}


def _slots(redis_url: str) -> str:
    """Who holds the vendor's call slots (a token starts with its holder's worker id)."""
    client = redis.Redis.from_url(redis_url)
    try:
        return "\n".join(
            f"==== slots {key.decode()}: {client.zrange(key, 0, -1, withscores=True)}"
            for key in client.scan_iter(match=names.slots_key("*"))
        )
    finally:
        client.close()


def _logs(root: Path) -> str:
    return "\n".join(
        f"==== {p.name}\n{p.read_text(errors='replace')[-3000:]}"
        for p in sorted(root.glob("*.log"))
    )
