"""Tenant isolation and API keys: every route that takes an id answers 404 to another tenant."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from batchgate.api.app import create_app
from batchgate.api.auth import KeyRing
from batchgate.config import Config, parse_config
from batchgate.errors import ConfigError
from batchgate.settings import Settings
from tests.e2e.harness import chat_lines, wait_for

pytestmark = pytest.mark.storage

KEYS = {
    "admin": "sk-admin-0123456789",
    "a": "sk-tenant-a-0123456789",
    "b": "sk-tenant-b-0123456789",
}


@pytest.fixture
def api(tmp_path: Path, clean_broker: str, database_url: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TENANT_B_KEY", KEYS["b"])
    config = parse_config(
        {
            "model_list": [
                {
                    "model_name": "m",
                    "litellm_params": {
                        "model": "openai/gpt-4o-mini",
                        "api_base": "http://127.0.0.1:9/v1",
                    },
                }
            ],
            "general_settings": {"master_key": KEYS["admin"]},
            "batchgate_settings": {
                "tenants": [
                    {"name": "team-a", "api_key": KEYS["a"], "max_cost_usd": "5"},
                    {"name": "team-b", "api_key": "os.environ/TENANT_B_KEY"},
                ]
            },
        }
    )
    settings = Settings(data_dir=tmp_path, redis_url=clean_broker, database_url=database_url)
    with TestClient(create_app(settings, config)) as client:
        yield client


def _h(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[who]}"}


def _upload_and_create(api: TestClient, who: str) -> tuple[str, str]:
    data = "".join(json.dumps(x) + "\n" for x in chat_lines(2, "m")).encode()
    fid = api.post(
        "/v1/files", files={"file": ("x.jsonl", data)}, data={"purpose": "batch"}, headers=_h(who)
    ).json()["id"]
    batch = api.post(
        "/v1/batches",
        json={"input_file_id": fid, "endpoint": "/v1/chat/completions", "completion_window": "24h"},
        headers=_h(who),
    ).json()
    wait_for(
        lambda: (
            api.get(f"/v1/batches/{batch['id']}", headers=_h(who)).json()["status"] != "validating"
        ),
        30,
        "ingest",
    )
    return fid, batch["id"]


def test_missing_or_wrong_key_is_401_everywhere_but_healthz(api: TestClient) -> None:
    for method, path in [
        ("get", "/v1/files"),
        ("get", "/v1/batches"),
        ("post", "/v1/batches"),
        ("get", "/v1/files/file-x"),
        ("get", "/v1/batches/batch_x"),
        ("post", "/v1/batches/batch_x/cancel"),
        ("get", "/v1/batches/batch_x/results"),
        ("delete", "/v1/files/file-x"),
        ("get", "/v1/files/file-x/content"),
    ]:
        assert getattr(api, method)(path).status_code == 401, path
        resp = getattr(api, method)(path, headers={"Authorization": "Bearer sk-wrong-key-000000"})
        assert resp.status_code == 401 and resp.json()["error"]["code"] == "invalid_api_key", path
    assert api.get("/healthz").status_code in (200, 503)


def test_another_tenants_ids_are_404_on_every_route(api: TestClient) -> None:
    fid, bid = _upload_and_create(api, "a")
    assert api.get(f"/v1/files/{fid}", headers=_h("a")).status_code == 200
    checks = [
        api.get(f"/v1/files/{fid}", headers=_h("b")),
        api.get(f"/v1/files/{fid}/content", headers=_h("b")),
        api.delete(f"/v1/files/{fid}", headers=_h("b")),
        api.get(f"/v1/batches/{bid}", headers=_h("b")),
        api.post(f"/v1/batches/{bid}/cancel", headers=_h("b")),
        api.get(f"/v1/batches/{bid}/results", headers=_h("b")),
        api.get("/v1/batches", params={"after": bid}, headers=_h("b")),
        api.post(
            "/v1/batches",
            json={
                "input_file_id": fid,
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
            },
            headers=_h("b"),
        ),
        api.get(f"/v1/files/{fid}", headers=_h("admin")),  # the master key is its own tenant
    ]
    for resp in checks:
        assert resp.status_code == 404, resp.request.url
        assert resp.json()["error"]["type"] == "invalid_request_error"
    assert api.get("/v1/batches", headers=_h("b")).json()["data"] == []
    assert api.get("/v1/files", headers=_h("b")).json()["data"] == []
    # Nothing B did touched A's objects.
    assert api.get(f"/v1/batches/{bid}", headers=_h("a")).json()["status"] == "in_progress"
    assert api.get(f"/v1/files/{fid}/content", headers=_h("a")).status_code == 200


def test_live_results_of_a_cancelled_batch_tail_each_line_once(api: TestClient) -> None:
    _, bid = _upload_and_create(api, "a")
    first = api.get(f"/v1/batches/{bid}/results", headers=_h("a"))
    assert first.status_code == 200 and first.text == ""  # nothing finished: no vendor answers
    cursor = first.headers["batchgate-cursor"]
    assert first.headers["batchgate-batch-status"] == "in_progress"
    api.post(f"/v1/batches/{bid}/cancel", headers=_h("a"))
    tail = api.get(f"/v1/batches/{bid}/results", params={"since": cursor}, headers=_h("a"))
    lines = [json.loads(x) for x in tail.text.splitlines()]
    assert [(x["custom_id"], x["batchgate"]["index"]) for x in lines] == [
        ("item-00000", 0),
        ("item-00001", 1),
    ]
    assert all(x["error"]["code"] == "batch_cancelled" for x in lines)
    again = api.get(
        f"/v1/batches/{bid}/results",
        params={"since": tail.headers["batchgate-cursor"]},
        headers=_h("a"),
    )
    assert again.text == "" and again.headers["batchgate-batch-status"] == "cancelled"
    assert again.headers["batchgate-cursor"] == tail.headers["batchgate-cursor"]


def _create(api: TestClient, who: str, **extra: object) -> httpx.Response:
    data = "".join(json.dumps(x) + "\n" for x in chat_lines(2, "m")).encode()
    fid = api.post(
        "/v1/files", files={"file": ("x.jsonl", data)}, data={"purpose": "batch"}, headers=_h(who)
    ).json()["id"]
    body = {"input_file_id": fid, "endpoint": "/v1/chat/completions", **extra}
    return api.post("/v1/batches", json=body, headers=_h(who))


def test_a_tenants_max_cost_is_the_ceiling_and_default_of_its_batches(api: TestClient) -> None:
    over = _create(api, "a", max_cost_usd=6)
    assert over.status_code == 400
    assert over.json()["error"]["param"] == "max_cost_usd"
    assert _create(api, "a").json()["max_cost_usd"] == "5"
    assert _create(api, "a", max_cost_usd=2).json()["max_cost_usd"] == "2"
    # Another tenant's batches are not bound by team-a's limit.
    assert _create(api, "b", max_cost_usd=6).status_code == 200


def _keyring_config(tenants: list[dict[str, str]], master: str | None = None) -> Config:
    data: dict[str, object] = {"batchgate_settings": {"tenants": tenants}}
    if master:
        data["general_settings"] = {"master_key": master}
    return parse_config(data)


def test_a_key_variable_that_is_unset_refuses_to_build_the_key_ring(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BG_UNSET_MASTER", raising=False)
    with pytest.raises(ConfigError, match="BG_UNSET_MASTER is not set"):
        KeyRing(_keyring_config([], master="os.environ/BG_UNSET_MASTER"))
    monkeypatch.setenv("BG_EMPTY_TENANT", "")
    with pytest.raises(ConfigError, match=r"tenants\.0\.api_key: .*BG_EMPTY_TENANT"):
        KeyRing(_keyring_config([{"name": "t", "api_key": "os.environ/BG_EMPTY_TENANT"}]))


def test_two_tenants_resolving_to_one_key_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BG_KEY_ONE", "sk-same-key-000000")
    tenants = [
        {"name": "t1", "api_key": "os.environ/BG_KEY_ONE"},
        {"name": "t2", "api_key": "sk-same-key-000000"},
    ]
    with pytest.raises(ConfigError, match="same key"):
        KeyRing(_keyring_config(tenants))


def test_serve_refuses_to_start_naming_the_unset_variable(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("general_settings:\n  master_key: os.environ/BG_NEVER_SET_KEY\n")
    env = {k: v for k, v in os.environ.items() if k != "BG_NEVER_SET_KEY"}
    env["BATCHGATE_DATA_DIR"] = str(tmp_path)
    for host in ("127.0.0.1", "0.0.0.0"):
        proc = subprocess.run(
            [sys.executable, "-m", "batchgate", "serve", "--config", str(config), "--host", host],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2, proc.stderr
        assert "BG_NEVER_SET_KEY is not set" in proc.stderr
