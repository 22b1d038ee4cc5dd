"""How a batch opts in to the response cache: `cache` on create (the SDK's `extra_body`), and
the config's `cache.default` when it says nothing. (`submit --cache`: test_cli_client.py.)"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from batchgate.api.app import create_app
from batchgate.config import parse_config
from batchgate.errors import ConfigError
from batchgate.settings import Settings
from tests.e2e.harness import chat_lines

pytestmark = pytest.mark.storage


def _app(tmp_path: Path, broker: str, database_url: str, default: bool) -> TestClient:
    config = parse_config(
        {
            "model_list": [
                {
                    "model_name": "m",
                    "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": "http://x/v1"},
                }
            ],
            "batchgate_settings": {"cache": {"default": default}},
        }
    )
    settings = Settings(data_dir=tmp_path, redis_url=broker, database_url=database_url)
    return TestClient(create_app(settings, config))


@pytest.fixture
def caching_by_default(
    tmp_path: Path, clean_broker: str, database_url: str
) -> Iterator[TestClient]:
    with _app(tmp_path, clean_broker, database_url, default=True) as client:
        yield client


def _create(client: TestClient, **extra: object) -> dict:
    data = "".join(json.dumps(line) + "\n" for line in chat_lines(2, "m"))
    f = client.post(
        "/v1/files",
        files={"file": ("in.jsonl", io.BytesIO(data.encode()), "application/jsonl")},
        data={"purpose": "batch"},
    ).json()
    body = {"input_file_id": f["id"], "endpoint": "/v1/chat/completions", **extra}
    resp = client.post("/v1/batches", json=body)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_a_batch_that_says_nothing_takes_the_configs_default(
    caching_by_default: TestClient,
) -> None:
    assert _create(caching_by_default)["cache"] is True
    assert _create(caching_by_default, cache=False)["cache"] is False  # opts out
    assert caching_by_default.post("/v1/batches", json={"cache": "maybe"}).status_code == 400


def test_cache_with_the_vendor_batch_lane_is_refused_not_ignored(
    tmp_path: Path, clean_broker: str, database_url: str
) -> None:
    with _app(tmp_path, clean_broker, database_url, default=True) as client:
        data = "".join(json.dumps(line) + "\n" for line in chat_lines(2, "m"))
        f = client.post(
            "/v1/files",
            files={"file": ("in.jsonl", io.BytesIO(data.encode()), "application/jsonl")},
            data={"purpose": "batch"},
        ).json()
        body = {"input_file_id": f["id"], "endpoint": "/v1/chat/completions"}
        refused = client.post("/v1/batches", json={**body, "vendor_batch": True})
        assert refused.status_code == 400
        assert "cannot be combined" in refused.json()["error"]["message"]
        assert client.get("/v1/batches").json()["data"] == []
    both = {"cache": {"default": True}, "vendor_batch": {"default": True}}
    with pytest.raises(ConfigError, match="cannot both be true"):
        parse_config({"batchgate_settings": both})
