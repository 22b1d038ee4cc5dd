"""The served OpenAPI schema tells the truth: schemathesis drives every operation with generated
requests (valid and invalid) against the real app, a real database and the session broker, and
finds no 5xx, no undocumented status code, and no response that breaks the schema."""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from batchgate.api.app import create_app
from batchgate.config import parse_config
from batchgate.settings import Settings
from tests.e2e.harness import chat_lines

pytestmark = pytest.mark.storage

KEY = "sk-schema-test-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
SEEDED: dict[str, str] = {}  # ids that exist, so some requests reach the success paths


@pytest.fixture
def api_schema(tmp_path: Path, clean_broker: str, database_url: str) -> Any:
    config = parse_config(
        {
            "model_list": [{"model_name": "m", "litellm_params": {
                "model": "openai/gpt-4o-mini", "api_base": "http://127.0.0.1:9/v1"}}],
            "general_settings": {"master_key": KEY},
        }
    )
    settings_ = Settings(
        data_dir=tmp_path, redis_url=clean_broker, database_url=database_url,
        max_file_bytes=64 * 1024,
    )
    app = create_app(settings_, config)
    data = "".join(json.dumps(x) + "\n" for x in chat_lines(2, "m")).encode()
    with TestClient(app) as api:
        file = api.post("/v1/files", files={"file": ("in.jsonl", data)},
                        data={"purpose": "batch"}, headers=AUTH).json()
        batch = api.post("/v1/batches", json={"input_file_id": file["id"],
                                              "endpoint": "/v1/chat/completions"},
                         headers=AUTH).json()
    SEEDED.update(file_id=file["id"], batch_id=batch["id"])
    return schemathesis.openapi.from_asgi("/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


def _point_at_seeded(case: Any) -> None:
    """Half of the valid cases name objects that exist (chosen from the case's own content,
    so a failure replays), and so reach the 200 and 409 paths, not only the 404s."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return  # an invalid case must stay invalid
    if zlib.crc32(repr((case.path_parameters, case.query, case.body)).encode()) % 2:
        return
    params = dict(case.path_parameters or {})
    for name in ("file_id", "batch_id"):
        if name in params:
            params[name] = SEEDED[name]
    if params:
        case.path_parameters = params
    if isinstance(case.body, dict) and "input_file_id" in case.body:
        case.body = {**case.body, "input_file_id": SEEDED["file_id"]}
        case.body.pop("model", None)  # a drawn alias is unknown: a 400 a valid request can't get
        case.body.pop("fallbacks", None)


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_every_operation_conforms_to_the_served_schema(case: Any) -> None:
    _point_at_seeded(case)
    case.call_and_validate(headers=AUTH)
