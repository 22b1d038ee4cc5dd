"""The one settings object: environment (`BATCHGATE_*`) and CLI flags, read once per process."""

from __future__ import annotations

import socket
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BATCHGATE_", extra="ignore")

    # Where things live. With no URLs set, `batchgate up` starts embedded Valkey and uses SQLite
    # under data_dir, then passes the resulting URLs to every process it starts.
    data_dir: Path = Field(default=Path(".batchgate"))
    # Coordination state (slots, rate windows, cooldowns, budgets, the reconciler's leader lock):
    # redis://, rediss:// or sentinel://. Also the Celery broker unless broker_url is set.
    redis_url: str | None = None
    # The Celery broker when it is not that Redis: amqp:// (RabbitMQ), or another Redis.
    broker_url: str | None = None
    database_url: str | None = None
    # What this process calls its host in worker names, lease owners and /healthz (default: the
    # hostname; set it where hosts share one, as containers or network namespaces may).
    host_id: str = Field(default_factory=socket.gethostname)
    config: Path | None = None

    # Client side (CLI talking to a running API).
    api_base: str = "http://127.0.0.1:8000"
    api_key: str | None = None

    # Execution.
    lease_seconds: float = 60.0
    # PostgreSQL ends a writer's transaction idle this long (its host died holding row locks);
    # 0 sends no session options (for PgBouncer, which refuses them: set them on the server).
    db_idle_transaction_seconds: float = 60.0
    reconcile_interval: float = 5.0
    stale_enqueue_seconds: float = 30.0
    inline_backoff_max: float = 30.0
    # How long a task keeps claiming more of its batch's items as its own finish.
    refill_seconds: float = 60.0
    slot_ttl_margin: float = 10.0
    max_response_bytes: int = 16 * 1024 * 1024

    # Validation limits (OpenAI's defaults).
    max_lines: int = 50_000
    max_file_bytes: int = 200 * 1024 * 1024
    max_line_bytes: int = 10 * 1024 * 1024

    flower_basic_auth: str | None = None
    # Faults for the durability and chaos tests (batchgate.execution.faults); never in production.
    test_faults: str | None = None

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    def resolved_broker_url(self) -> str:
        url = self.broker_url or self.redis_url
        if not url:
            raise RuntimeError(
                "BATCHGATE_REDIS_URL is not set (batchgate up sets it for its children)"
            )
        return url

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'batchgate.db').resolve()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
