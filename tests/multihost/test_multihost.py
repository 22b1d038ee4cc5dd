"""Three hosts on one machine (network namespaces): host A runs the API, the reconciler and the
simulator; hosts B and C each run an OpenAI worker group. All reach PostgreSQL and Redis over the
virtual network. One vendor limit holds across hosts, host B dies mid-batch (SIGKILL of all its
processes, link cut), host C finishes, and B rejoins with no operator action."""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml

from batchgate.broker import free_port, start_valkey
from tests.conftest import _pg_database, _pg_drop
from tests.e2e.harness import TERMINAL, chat_lines, wait_for
from tests.multihost.netns import Host, Network, unavailable

pytestmark = pytest.mark.multihost

LIMIT = 16
LINES = 3000
KEY = "sk-multihost"
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


class Cluster:
    def __init__(self, net: Network, root: Path, database_url: str, redis_port: int) -> None:
        self.net, self.root = net, root
        self.a, self.b, self.c = (net.add_host(n) for n in ("a", "b", "c"))
        pg_port = int(database_url.rsplit(":", 1)[1].split("/", 1)[0])
        pg = net.forward(free_port(), pg_port)
        rd = net.forward(free_port(), redis_port)
        db_name = database_url.rsplit("/", 1)[1]
        self.sim_url = f"http://{self.a.address}:8099"
        self.api = f"http://{self.a.address}:8000"
        config = {
            "model_list": [
                {
                    "model_name": "gpt",
                    "litellm_params": {
                        "model": "openai/gpt-4o-mini",
                        "api_base": f"{self.sim_url}/v1",
                        "api_key": "sk-sim",
                    },
                }
            ],
            "general_settings": {"master_key": KEY},
            "batchgate_settings": {"vendors": {"openai": {"max_concurrency": LIMIT}}},
        }
        (root / "config.yaml").write_text(yaml.safe_dump(config))
        (root / "sim.yaml").write_text(yaml.safe_dump({"default": {"latency_ms": 50}}))
        self.env = {
            **os.environ,
            "BATCHGATE_REDIS_URL": f"redis://{rd}/0",
            "BATCHGATE_DATABASE_URL": f"postgresql://root@{pg}/{db_name}",
            "BATCHGATE_CONFIG": str(root / "config.yaml"),
            "BATCHGATE_DATA_DIR": str(root / "data"),
            # A dead host's leases lapse quickly, so the test does not wait a minute for them.
            "BATCHGATE_LEASE_SECONDS": "4",
            "BATCHGATE_RECONCILE_INTERVAL": "1",
            "BATCHGATE_STALE_ENQUEUE_SECONDS": "3",
        }

    def run(self, host: Host, name: str, *args: str) -> None:
        env = {**self.env, "BATCHGATE_HOST_ID": f"host-{host.name}"}
        host.start([sys.executable, "-m", "batchgate", *args], env, self.root / f"{name}.log")

    def start_workers(self, host: Host) -> None:
        self.run(host, f"worker-{host.name}", "worker", "--vendor", "openai", "--concurrency", "2")

    def start(self) -> None:
        self.run(self.a, "simulator", "simulate", "--host", self.a.address, "--port", "8099",
                 "--config", str(self.root / "sim.yaml"))  # fmt: skip
        self.run(self.a, "api", "serve", "--host", self.a.address, "--port", "8000")
        self.run(self.a, "reconciler", "reconciler")
        self.start_workers(self.b)
        self.start_workers(self.c)
        self.wait_hosts({"host-b", "host-c"})

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.api, headers={"Authorization": f"Bearer {KEY}"},
                            timeout=30)  # fmt: skip

    def wait_hosts(self, hosts: set[str]) -> None:
        def ready() -> bool:
            try:
                health = httpx.get(f"{self.api}/healthz", timeout=5).json()
            except httpx.HTTPError:
                return False
            return hosts <= set(health["workers"]["hosts"])

        wait_for(ready, 120, f"workers on {sorted(hosts)}", interval=0.5)

    def submit(self, n: int, prefix: str) -> tuple[str, list[str]]:
        lines = chat_lines(n, "gpt", prefix=prefix)
        body = "".join(json.dumps(x) + "\n" for x in lines).encode()
        with self.http() as h:
            f = h.post("/v1/files", files={"file": ("in.jsonl", body)}, data={"purpose": "batch"})
            b = h.post("/v1/batches", json={"input_file_id": f.json()["id"],
                       "endpoint": "/v1/chat/completions", "completion_window": "24h"})  # fmt: skip
        return b.json()["id"], [x["custom_id"] for x in lines]

    def batch(self, batch_id: str) -> dict[str, Any]:
        with self.http() as h:
            return h.get(f"/v1/batches/{batch_id}").json()

    def results(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        with self.http() as h:
            for field in ("output_file_id", "error_file_id"):
                if batch.get(field):
                    text = h.get(f"/v1/files/{batch[field]}/content").text
                    out += [json.loads(x) for x in text.splitlines() if x.strip()]
        return out

    def ledger(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.sim_url}/_sim/ledger", timeout=30).json()["entries"]

    def peak(self) -> int:
        stats = httpx.get(f"{self.sim_url}/_sim/stats", timeout=30).json()
        return int(stats["total"]["peak_in_flight"])


def test_three_hosts_one_limit_a_host_dies_and_rejoins(
    network: Network, postgres: str, tmp_path: Path
) -> None:
    redis_url, valkey = start_valkey(tmp_path / "redis")
    try:
        cluster = Cluster(
            network, tmp_path, postgres, int(redis_url.rsplit(":", 1)[1].split("/")[0])
        )
        cluster.start()
        t0 = time.monotonic()
        batch_id, ids = cluster.submit(LINES, "mh")
        wait_for(lambda: cluster.batch(batch_id)["request_counts"]["completed"] >= LINES // 3,
                 180, "a third of the batch")  # fmt: skip
        served_by_b_before = {e["prompt_sha256"] for e in cluster.ledger()
                              if e["client"] == cluster.b.address}  # fmt: skip
        cluster.b.kill_all()
        cluster.b.cut()
        killed_at = time.monotonic() - t0
        done = wait_for(lambda: (b := cluster.batch(batch_id))["status"] in TERMINAL and b,
                        300, "the batch to end on host C")  # fmt: skip
        seconds = time.monotonic() - t0
        assert done["status"] == "completed", _logs(tmp_path)
        lines = cluster.results(done)
        assert Counter(x["custom_id"] for x in lines) == Counter(ids)  # each line exactly once
        assert [x["custom_id"] for x in lines] == ids  # in input order, all succeeded
        ledger = cluster.ledger()
        by_host = Counter(e["client"] for e in ledger if e["status"] == 200)
        assert by_host[cluster.b.address] > 0 and by_host[cluster.c.address] > 0
        assert set(by_host) <= {cluster.b.address, cluster.c.address}
        peak = cluster.peak()
        assert peak <= LIMIT
        calls = Counter(e["prompt_sha256"] for e in ledger)
        repeated = {digest for digest, n in calls.items() if n > 1}
        # A line called twice was one host B held when it died: its first call came from B.
        first_from = {}
        for e in ledger:
            first_from.setdefault(e["prompt_sha256"], e["client"])
        assert all(first_from[d] == cluster.b.address for d in repeated)
        served_b, served_c = by_host[cluster.b.address], by_host[cluster.c.address]
        print(
            f"\nmultihost: {LINES} lines, limit {LIMIT}: {seconds:.1f}s (host B killed at "
            f"{killed_at:.1f}s), peak in flight {peak}, lines served by B {served_b} / C "
            f"{served_c}, duplicate calls {len(repeated)} (B had served "
            f"{len(served_by_b_before)} before it died)"
        )

        # Host B comes back: its link and its workers, nothing else is touched.
        cluster.b.restore()
        cluster.start_workers(cluster.b)
        cluster.wait_hosts({"host-b", "host-c"})
        cluster.c.kill_all()  # so the next batch can only be served by the rejoined host
        again, again_ids = cluster.submit(40, "back")
        end = wait_for(lambda: (b := cluster.batch(again))["status"] in TERMINAL and b,
                       120, "a batch after host B rejoined")  # fmt: skip
        assert end["status"] == "completed", _logs(tmp_path)
        assert [x["custom_id"] for x in cluster.results(end)] == again_ids
        later = [e for e in cluster.ledger() if e["seq"] >= len(ledger)]
        assert later and {e["client"] for e in later} == {cluster.b.address}
    finally:
        valkey.kill()
        valkey.wait()


def _logs(root: Path) -> str:
    return "\n".join(
        f"==== {p.name}\n{p.read_text(errors='replace')[-3000:]}"
        for p in sorted(root.glob("*.log"))
    )
