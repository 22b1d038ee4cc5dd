"""The spine: real Celery worker processes, a real broker and database, HTTP to the simulator."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from batchgate.api.app import create_app
from batchgate.config import parse_config
from batchgate.settings import Settings
from tests.e2e.harness import chat_lines, sim_config, wait_for, write_jsonl

pytestmark = pytest.mark.e2e


def test_200_line_batch_runs_through_real_workers_in_input_order(
    make_system, simulator, tmp_path: Path
) -> None:
    system = make_system(sim_config(simulator.base_url, {"gpt-4o-mini": "openai/gpt-4o-mini"}))
    lines = chat_lines(200, "gpt-4o-mini")
    batch = system.submit(write_jsonl(tmp_path / "in.jsonl", lines))
    done = system.wait(batch["id"], timeout=120)
    assert done["status"] == "completed", system.logs()
    assert done["request_counts"] == {"total": 200, "completed": 200, "failed": 0}
    out = system.download(done["output_file_id"], "out.jsonl")
    assert [x["custom_id"] for x in out] == [x["custom_id"] for x in lines]
    assert all(x["response"]["status_code"] == 200 and x["error"] is None for x in out)
    first = out[0]["response"]["body"]
    assert first["object"] == "chat.completion" and first["choices"][0]["message"]["content"]
    assert (
        out[0]["batchgate"]["model"] == "gpt-4o-mini" and out[0]["batchgate"]["vendor"] == "openai"
    )
    stats = httpx.get(f"{simulator.base_url}/_sim/stats").json()
    assert stats["models"]["gpt-4o-mini"]["calls"] == 200  # one call per line, no duplicates


def test_task_messages_carry_ids_only(clean_broker: str, database_url: str, tmp_path: Path) -> None:
    """Read the raw broker message: no prompt text and no API key, only ids."""
    secret = "sk-SENTINEL-never-in-the-broker"
    config = parse_config(
        {
            "model_list": [
                {
                    "model_name": "m",
                    "litellm_params": {
                        "model": "openai/gpt-4o-mini",
                        "api_base": "http://127.0.0.1:9/v1",
                        "api_key": secret,
                    },
                }
            ]
        }
    )
    settings = Settings(data_dir=tmp_path, redis_url=clean_broker, database_url=database_url)
    prompt = "the secret prompt text 7f3a"
    path = write_jsonl(tmp_path / "in.jsonl", chat_lines(3, "m", prefix="p", directive=prompt))
    with TestClient(create_app(settings, config)) as api:
        fid = api.post(
            "/v1/files", files={"file": ("in.jsonl", path.read_bytes())}, data={"purpose": "batch"}
        ).json()["id"]
        batch = api.post(
            "/v1/batches",
            json={
                "input_file_id": fid,
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
            },
        ).json()
        r = redis.Redis.from_url(clean_broker)
        wait_for(lambda: r.llen("openai") > 0, 30, "the batch's message on the openai queue")
        assert api.get(f"/v1/batches/{batch['id']}").json()["status"] == "in_progress"
    raw = r.lrange("openai", 0, -1)
    assert len(raw) == 1
    envelope = json.loads(raw[0])
    body = base64.b64decode(envelope["body"]).decode()
    args, kwargs, _ = json.loads(body)
    assert args[0] == batch["id"] and args[1] == "openai" and len(args[2]) == 3
    assert all(isinstance(i, int) for i in args[2]) and kwargs == {}
    headers = envelope["headers"]
    assert headers["shadow"] == f"run_chunk openai {batch['id']} ×3"
    assert headers["argsrepr"] == f"({batch['id']!r}, 'openai', <3 item ids>)"
    everything = raw[0].decode() + body
    assert prompt not in everything and "p number" not in everything
    assert secret not in everything
