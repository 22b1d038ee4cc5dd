"""A batchgate spread over network-namespace hosts: host A runs the simulator, the API and the
reconciler; the other hosts run worker groups. PostgreSQL and Redis are reached over the virtual
network (through the root namespace's forwarders). Used by the multihost test and benchmark."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import yaml

from batchgate.broker import free_port
from tests.e2e.harness import chat_lines, wait_for
from tests.multihost.netns import Host, Network

KEY = "sk-multihost"


class Cluster:
    def __init__(
        self,
        net: Network,
        root: Path,
        database_url: str,
        redis_url: str,
        *,
        limit: int,
        latency_ms: float,
        worker_hosts: int = 2,
        quick_failover: bool = True,
        worker_concurrency: int = 2,
    ) -> None:
        self.net, self.root = net, root
        self.worker_concurrency = worker_concurrency
        self.roles: list[tuple[str, int]] = []  # (host/name, pid) of every process started
        self.a = net.add_host("a")
        self.workers = [net.add_host(chr(ord("b") + i)) for i in range(worker_hosts)]
        pg_port = int(database_url.rsplit(":", 1)[1].split("/", 1)[0])
        pg = net.forward(free_port(), pg_port)
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
            "batchgate_settings": {"vendors": {"openai": {"max_concurrency": limit}}},
        }
        (root / "config.yaml").write_text(yaml.safe_dump(config))
        (root / "sim.yaml").write_text(yaml.safe_dump({"default": {"latency_ms": latency_ms}}))
        self.env = {
            **os.environ,
            "BATCHGATE_REDIS_URL": redis_url,
            "BATCHGATE_DATABASE_URL": f"postgresql://root@{pg}/{db_name}",
            "BATCHGATE_CONFIG": str(root / "config.yaml"),
            "BATCHGATE_DATA_DIR": str(root / "data"),
        }
        if quick_failover:  # the failover test's; a benchmark runs on the defaults
            self.env.update(
                {
                    # A dead host's leases lapse quickly, so the test does not wait a minute.
                    "BATCHGATE_LEASE_SECONDS": "8",
                    # A host cut off mid-transaction keeps its PostgreSQL session (and row
                    # locks) open: the server ends it this soon, instead of the default minute.
                    "BATCHGATE_DB_IDLE_TRANSACTION_SECONDS": "3",
                    "BATCHGATE_RECONCILE_INTERVAL": "1",
                    "BATCHGATE_STALE_ENQUEUE_SECONDS": "3",
                }
            )

    def run(self, host: Host, name: str, *args: str) -> None:
        env = {**self.env, "BATCHGATE_HOST_ID": f"host-{host.name}"}
        argv = [sys.executable, "-m", "batchgate", *args]
        proc = host.start(argv, env, self.root / f"{name}.log")
        self.roles.append((f"{host.name}/{name.split('-')[0]}", proc.pid))

    def start_workers(self, host: Host) -> None:
        self.run(host, f"worker-{host.name}", "worker", "--vendor", "openai",
                 "--concurrency", str(self.worker_concurrency), "--loglevel", "INFO")  # fmt: skip

    def start(self) -> None:
        self.run(self.a, "simulator", "simulate", "--host", self.a.address, "--port", "8099",
                 "--config", str(self.root / "sim.yaml"))  # fmt: skip
        self.run(self.a, "api", "serve", "--host", self.a.address, "--port", "8000")
        self.run(self.a, "reconciler", "reconciler")
        for host in self.workers:
            self.start_workers(host)
        self.wait_hosts({f"host-{h.name}" for h in self.workers})

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
