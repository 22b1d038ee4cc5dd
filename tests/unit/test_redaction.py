"""Secrets are masked in logs however a process starts, with the same patterns everywhere."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from batchgate.providers._errors import sanitize
from batchgate.redaction import RedactingFilter

PLANTED = "plain-secret-0123456789"  # a configured key that looks like no known key format
SHAPED = [
    "sk-proj-abcdefghijklmnop",
    "sk-ant-api03-abcdefghijkl",
    "AIzaSyA1234567890abcdefgh",
    "https://x.example/v1?key=opaque-value-xyz",
    "Authorization: Bearer opaque.token.value",
]


def test_log_filter_and_vendor_messages_mask_the_same_key_shapes() -> None:
    flt = RedactingFilter()
    for text in SHAPED:
        secret = text.rsplit("=", 1)[-1].rsplit(" ", 1)[-1]
        assert secret not in flt.redact(text), text
        assert secret not in sanitize(text), text


def test_celery_started_worker_masks_keys_in_its_logs(tmp_path: Path) -> None:
    """`celery -A workers worker` sets up logging itself (no `batchgate` CLI in the way): the
    handlers it installs must carry the filter, with the config's own keys."""
    config = tmp_path / "config.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: m\n"
        "    litellm_params: {model: openai/gpt-4o-mini, api_key: os.environ/PLANTED_KEY}\n"
    )
    log = tmp_path / "worker.log"
    script = textwrap.dedent(
        f"""
        import logging
        from workers.celery import app
        # What `celery worker` does at start, before any task runs.
        app.log.setup_logging_subsystem(loglevel="INFO", logfile={str(log)!r})
        logging.getLogger("some.library").warning("calling with %s", {PLANTED!r})
        logging.getLogger("celery.task").warning("shaped %s", {SHAPED[0]!r})
        """
    )
    env = {
        **os.environ,
        "PLANTED_KEY": PLANTED,
        "BATCHGATE_CONFIG": str(config),
        "BATCHGATE_REDIS_URL": "redis://127.0.0.1:1/0",  # never connected to
    }
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)
    text = log.read_text()
    assert "calling with ***" in text
    assert PLANTED not in text
    assert SHAPED[0] not in text and "shaped sk-***" in text
