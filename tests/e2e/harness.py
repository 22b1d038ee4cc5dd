"""A whole batchgate for end-to-end tests: the simulator over real HTTP, and real processes
(API, Celery workers per vendor, reconciler) started by the same Supervisor as `batchgate up`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from batchgate.broker import free_port
from batchgate.cli.demo import wait_healthy
from batchgate.client import Client
from batchgate.config import load_config
from batchgate.settings import Settings
from batchgate.supervisor import Supervisor

TERMINAL = {"completed", "failed", "expired", "cancelled"}


def chat_lines(
    n: int, model: str, prefix: str = "item", directive: str = ""
) -> list[dict[str, Any]]:
    return [
        {
            "custom_id": f"{prefix}-{i:05d}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": model,
                "messages": [
                    {"role": "user", "content": f"{prefix} number {i} {directive}".strip()}
                ],
                "max_tokens": 16,
            },
        }
        for i in range(n)
    ]


def write_jsonl(path: Path, lines: Iterable[dict[str, Any]]) -> Path:
    with open(path, "w") as fp:
        for line in lines:
            fp.write(json.dumps(line) + "\n")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path) as fp:
        return [json.loads(line) for line in fp if line.strip()]


def wait_for(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll a condition until it holds (a deadline, not a sleep standing in for an event)."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class System:
    root: Path
    config: dict[str, Any]
    redis_url: str
    database_url: str
    env: dict[str, str] = field(default_factory=dict)
    sup: Supervisor | None = None
    port: int = 0
    flower_port: int | None = None
    broker_url: str | None = None  # the Celery broker when it is not the Redis (RabbitMQ)

    def start(self) -> System:
        self.root.mkdir(parents=True, exist_ok=True)
        config_path = self.root / "config.yaml"
        config_path.write_text(yaml.safe_dump(self.config))
        settings = Settings(
            data_dir=self.root / "data",
            redis_url=self.redis_url,
            broker_url=self.broker_url,
            database_url=self.database_url,
            config=config_path,
        )
        self.port = free_port()
        self.sup = Supervisor(
            settings,
            load_config(config_path),
            config_path,
            port=self.port,
            flower_port=self.flower_port,
            log_dir=self.root / "logs",
            extra_env={f"BATCHGATE_{k.upper()}": str(v) for k, v in self.env.items()},
        )
        self.sup.start()
        import threading

        # As `batchgate up` does in its foreground loop: restart children that die.
        threading.Thread(target=self.sup.watch, name="supervisor", daemon=True).start()
        wait_healthy(self.client(), self.sup.config.vendors, timeout=90)
        return self

    def client(self) -> Client:
        return Client(f"http://127.0.0.1:{self.port}")

    def stop(self) -> None:
        if self.sup is not None:
            self.sup.stop()

    def logs(self) -> str:
        out = []
        for p in sorted((self.root / "logs").glob("*.log")):
            out.append(f"==== {p.name}\n{p.read_text(errors='replace')[-4000:]}")
        return "\n".join(out)

    def submit(
        self, path: Path, endpoint: str = "/v1/chat/completions", **extra: Any
    ) -> dict[str, Any]:
        with self.client() as c:
            f = c.upload(path)
            return c.create_batch(f["id"], endpoint, **extra)

    def wait(self, batch_id: str, timeout: float = 180) -> dict[str, Any]:
        with self.client() as c:
            return wait_for(
                lambda: (b := c.batch(batch_id))["status"] in TERMINAL and b,
                timeout,
                f"batch {batch_id}",
            )

    def download(self, file_id: str | None, name: str) -> list[dict[str, Any]]:
        if not file_id:
            return []
        dest = self.root / name
        with self.client() as c:
            c.download(file_id, dest)
        return read_jsonl(dest)


def sim_config(base_url: str, models: dict[str, str], **router: Any) -> dict[str, Any]:
    """A config whose aliases map to '<vendor>/<model>' served by the simulator."""
    model_list = []
    for alias, target in models.items():
        vendor = target.split("/", 1)[0]
        api_base = f"{base_url}/v1" if vendor == "openai" else base_url
        model_list.append(
            {
                "model_name": alias,
                "litellm_params": {"model": target, "api_base": api_base, "api_key": "sk-test-key"},
            }
        )
    return {"model_list": model_list, "router_settings": {"num_retries": 2, **router}}


def sim_ledger(base_url: str) -> list[dict[str, Any]]:
    import httpx

    data = httpx.get(f"{base_url}/_sim/ledger", timeout=30).json()
    return data["entries"] if isinstance(data, dict) else data


def sim_stats(base_url: str) -> dict[str, Any]:
    import httpx

    return httpx.get(f"{base_url}/_sim/stats", timeout=30).json()


def prompt_digest(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()
