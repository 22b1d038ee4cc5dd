"""The API's edges: errors in OpenAI's shape with the right status codes, the files resource
(list, paginate, delete, streamed content), cancel rules and the upload cap on streamed bodies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from batchgate.api.app import create_app
from batchgate.config import parse_config
from batchgate.settings import Settings
from tests.e2e.harness import chat_lines, wait_for
from tests.integration.conftest import MAX_FILE_BYTES

pytestmark = pytest.mark.storage

CHAT = "/v1/chat/completions"


def good_file(n: int = 2) -> bytes:
    return "".join(json.dumps(x) + "\n" for x in chat_lines(n, "m")).encode()


def upload(api: TestClient, data: bytes, name: str = "in.jsonl") -> dict[str, Any]:
    resp = api.post("/v1/files", files={"file": (name, data)}, data={"purpose": "batch"})
    assert resp.status_code == 200, resp.text
    return resp.json()


def create(api: TestClient, file_id: str, **extra: Any) -> dict[str, Any]:
    resp = api.post("/v1/batches", json={"input_file_id": file_id, "endpoint": CHAT, **extra})
    assert resp.status_code == 200, resp.text
    return resp.json()


def settled(api: TestClient, batch_id: str) -> dict[str, Any]:
    return wait_for(
        lambda: (b := api.get(f"/v1/batches/{batch_id}").json())["status"] != "validating" and b,
        30,
        "ingest",
    )


def assert_error(resp: Any, status: int, code: str | None = None, param: str | None = None) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert body["error"]["type"] == "invalid_request_error"
    if code is not None:
        assert body["error"]["code"] == code, body
    if param is not None:
        assert body["error"]["param"] == param, body


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/v1/batches/batch_nope"),
        ("post", "/v1/batches/batch_nope/cancel"),
        ("get", "/v1/files/file-nope"),
        ("get", "/v1/files/file-nope/content"),
        ("delete", "/v1/files/file-nope"),
        ("get", "/v1/batches?after=batch_nope"),
        ("get", "/v1/files?after=file-nope"),
        ("get", "/v1/batches/" + "x" * 5000),
        ("get", "/v1/files/a%00b"),
    ],
)
def test_unknown_ids_are_404_in_openai_shape(api: TestClient, method: str, path: str) -> None:
    assert_error(getattr(api, method)(path), 404, "not_found")


def test_bad_json_body_is_400(api: TestClient) -> None:
    resp = api.post(
        "/v1/batches", content=b'{"input_file_id": ', headers={"content-type": "application/json"}
    )
    assert_error(resp, 400, "invalid_request")
    assert_error(api.post("/v1/batches", json=["not", "an", "object"]), 400)
    assert_error(api.post("/v1/batches", json={"endpoint": CHAT}), 400, param="input_file_id")


def test_wrong_endpoint_value_is_400(api: TestClient) -> None:
    fid = upload(api, good_file())["id"]
    resp = api.post(
        "/v1/batches", json={"input_file_id": fid, "endpoint": "/v1/images/generations"}
    )
    assert_error(resp, 400, "invalid_request", param="endpoint")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("completion_window", "forever"),
        ("completion_window", "0h"),
        ("completion_window", "99999999h"),  # past a 32-bit expires_at on PostgreSQL
        ("metadata", {f"k{i}": "v" for i in range(17)}),
        ("metadata", {"k": "v" * 513}),
        ("metadata", {"k": 1}),
        ("max_cost_usd", -1),
        ("max_cost_usd", "NaN"),
        ("max_cost_usd", "1e400"),
        ("input_file_id", "file-\u0000"),
        ("model", ""),
        ("fallbacks", ["m"] * 17),
    ],
)
def test_out_of_range_create_fields_are_400(api: TestClient, field: str, value: Any) -> None:
    fid = upload(api, good_file())["id"]
    body = {"input_file_id": fid, "endpoint": CHAT, field: value}
    assert_error(api.post("/v1/batches", json=body), 400)
    assert api.get("/v1/batches").json()["data"] == []


def test_lone_surrogate_in_metadata_is_400_not_500(api: TestClient) -> None:
    fid = upload(api, good_file())["id"]
    raw = (
        '{"input_file_id": "' + fid + '", "endpoint": "' + CHAT + '", "metadata": {"k": "\\ud800"}}'
    ).encode()
    resp = api.post("/v1/batches", content=raw, headers={"content-type": "application/json"})
    assert_error(resp, 400)


def test_unknown_input_file_is_404(api: TestClient) -> None:
    resp = api.post("/v1/batches", json={"input_file_id": "file-nope", "endpoint": CHAT})
    assert_error(resp, 404, "not_found", param="input_file_id")


def test_unknown_model_or_fallback_is_400(api: TestClient) -> None:
    fid = upload(api, good_file())["id"]
    for extra, param in (({"model": "nope"}, "model"), ({"fallbacks": ["m", "nope"]}, "fallbacks")):
        resp = api.post("/v1/batches", json={"input_file_id": fid, "endpoint": CHAT, **extra})
        assert_error(resp, 400, "model_not_found", param=param)


def test_output_file_is_not_a_batch_input(api: TestClient) -> None:
    fid = upload(api, good_file())["id"]
    batch = settled(api, create(api, fid)["id"])
    api.post(f"/v1/batches/{batch['id']}/cancel")
    done = settled(api, batch["id"])
    out = done["output_file_id"] or done["error_file_id"]
    assert out
    resp = api.post("/v1/batches", json={"input_file_id": out, "endpoint": CHAT})
    assert_error(resp, 400, param="input_file_id")


def test_cancel_of_a_finished_batch_is_409(api: TestClient) -> None:
    failed = settled(api, create(api, upload(api, b"not json\n")["id"])["id"])
    assert failed["status"] == "failed"
    assert_error(api.post(f"/v1/batches/{failed['id']}/cancel"), 409, "batch_not_cancellable")
    fid = upload(api, good_file())["id"]
    running = settled(api, create(api, fid)["id"])
    assert running["status"] == "in_progress"
    first = api.post(f"/v1/batches/{running['id']}/cancel")
    assert first.status_code == 200 and first.json()["status"] in ("cancelling", "cancelled")
    done = wait_for(
        lambda: (
            (b := api.get(f"/v1/batches/{running['id']}").json())["status"] == "cancelled" and b
        ),
        30,
        "cancelled",
    )
    assert done["request_counts"] == {"total": 2, "completed": 0, "failed": 2}
    # Cancelling again answers with the cancelled batch, as a retried request expects.
    again = api.post(f"/v1/batches/{running['id']}/cancel")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"


def test_cancel_of_a_completed_batch_is_409(api: TestClient) -> None:
    from sqlalchemy import update

    from batchgate.store.items import BATCH

    batch = settled(api, create(api, upload(api, good_file())["id"])["id"])
    with api.app.state.engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(
            update(BATCH)
            .where(BATCH.c.id == batch["id"])
            .values(status="completed", completed_at=batch["created_at"])
        )
    resp = api.post(f"/v1/batches/{batch['id']}/cancel")
    assert_error(resp, 409, "batch_not_cancellable")
    assert "completed" in resp.json()["error"]["message"]


FILE_PART = ("in.jsonl", b"{}\n")


@pytest.mark.parametrize(
    ("parts", "param"),
    [
        ({"file": FILE_PART}, "purpose"),  # upload without purpose
        ({"purpose": (None, "nonsense"), "file": FILE_PART}, "purpose"),
        ({"purpose": (None, "batch")}, "file"),
        ({"purpose": (None, "batch"), "file": (None, "text, not a file")}, "file"),
        ({"purpose": (None, "batch"), "other": (None, "x"), "file": FILE_PART}, "other"),
    ],
    ids=["no_purpose", "wrong_purpose", "no_file", "file_not_a_file", "unknown_field"],
)
def test_bad_upload_form_is_400(api: TestClient, parts: dict[str, Any], param: str) -> None:
    resp = api.post("/v1/files", files=parts)  # always multipart/form-data
    assert_error(resp, 400, param=param)
    assert api.get("/v1/files").json()["data"] == []


def test_upload_that_is_not_multipart_is_400(api: TestClient) -> None:
    assert_error(api.post("/v1/files", json={"purpose": "batch", "file": "x"}), 400)
    assert_error(
        api.post("/v1/files", content=b"x", headers={"content-type": "multipart/form-data"}), 400
    )  # no boundary


def test_missing_key_is_401_when_keys_are_configured(
    tmp_path: Path, clean_broker: str, database_url: str
) -> None:
    config = parse_config({"model_list": [], "general_settings": {"master_key": "sk-m-0123456789"}})
    settings = Settings(data_dir=tmp_path, redis_url=clean_broker, database_url=database_url)
    with TestClient(create_app(settings, config)) as api:
        resp = api.get("/v1/batches")
        assert_error(resp, 401, "invalid_api_key")
        assert resp.headers["www-authenticate"] == "Bearer"
        ok = api.get("/v1/batches", headers={"Authorization": "Bearer sk-m-0123456789"})
        assert ok.status_code == 200


def test_unknown_route_and_method_are_errors_in_openai_shape(api: TestClient) -> None:
    assert_error(api.get("/v1/nothing-here"), 404)
    resp = api.put("/v1/files")
    assert_error(resp, 405)
    assert resp.headers["allow"]


# --- files ---------------------------------------------------------------------------------


def test_files_list_retrieve_and_delete(api: TestClient) -> None:
    a = upload(api, good_file(1), "a.jsonl")
    b = upload(api, good_file(2), "b.jsonl")
    c = upload(api, good_file(3), "c.jsonl")
    assert a["object"] == "file" and a["purpose"] == "batch" and a["filename"] == "a.jsonl"
    assert a["bytes"] == len(good_file(1)) and a["status"] == "processed"
    listed = api.get("/v1/files").json()
    assert listed["object"] == "list" and listed["has_more"] is False
    newest_first = [f["id"] for f in listed["data"]]
    assert sorted(newest_first) == sorted([a["id"], b["id"], c["id"]])
    # Newest first; ids break ties within a second (they are random, not time-ordered).
    keys = [(f["created_at"], f["id"]) for f in listed["data"]]
    assert keys == sorted(keys, reverse=True)
    assert api.get(f"/v1/files/{b['id']}").json() == b
    # cursor pagination, both orders
    page = api.get("/v1/files", params={"limit": 2}).json()
    assert [f["id"] for f in page["data"]] == newest_first[:2] and page["has_more"] is True
    rest = api.get("/v1/files", params={"limit": 2, "after": page["last_id"]}).json()
    assert [f["id"] for f in rest["data"]] == newest_first[2:] and rest["has_more"] is False
    asc = api.get("/v1/files", params={"order": "asc"}).json()
    assert [f["id"] for f in asc["data"]] == newest_first[::-1]
    assert api.get("/v1/files", params={"purpose": "batch_output"}).json()["data"] == []
    assert_error(api.get("/v1/files", params={"purpose": "nonsense"}), 400)
    assert_error(api.get("/v1/files", params={"limit": 0}), 400, param="limit")
    # delete
    gone = api.delete(f"/v1/files/{b['id']}")
    assert gone.status_code == 200
    assert gone.json() == {"id": b["id"], "object": "file", "deleted": True}
    assert [f["id"] for f in api.get("/v1/files").json()["data"]] == [
        i for i in newest_first if i != b["id"]
    ]
    assert_error(api.get(f"/v1/files/{b['id']}"), 404, "not_found")
    assert_error(api.get(f"/v1/files/{b['id']}/content"), 404, "not_found")
    assert_error(api.delete(f"/v1/files/{b['id']}"), 404, "not_found")
    files_dir = api.app.state.settings.files_dir  # type: ignore[attr-defined]
    assert sorted(p.name for p in Path(files_dir).iterdir()) == sorted([a["id"], c["id"]])


def test_client_filename_is_metadata_only(api: TestClient, tmp_path: Path) -> None:
    f = upload(api, good_file(), "../../etc/pa\x00ss\nwd.jsonl")
    assert "\x00" not in f["filename"] and "\n" not in f["filename"]
    files_dir = Path(api.app.state.settings.files_dir)  # type: ignore[attr-defined]
    assert [p.name for p in files_dir.iterdir()] == [f["id"]]


def test_file_content_streams_the_exact_bytes(api: TestClient) -> None:
    data = good_file(1) * 1 + b"".join(
        json.dumps(
            {
                "custom_id": f"r{i}",
                "method": "POST",
                "url": CHAT,
                "body": {"model": "m", "messages": [{"role": "user", "content": "y" * 500}]},
            }
        ).encode()
        + b"\n"
        for i in range(100)
    )
    assert len(data) < MAX_FILE_BYTES
    fid = upload(api, data)["id"]
    with api.stream("GET", f"/v1/files/{fid}/content") as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "application/octet-stream"
        assert resp.headers["content-length"] == str(len(data))
        chunks = list(resp.iter_bytes())
    assert b"".join(chunks) == data


def test_output_files_are_listed_and_downloadable(api: TestClient) -> None:
    fid = upload(api, good_file(3))["id"]
    batch = settled(api, create(api, fid, metadata={"run": "misc"})["id"])
    api.post(f"/v1/batches/{batch['id']}/cancel")
    done = wait_for(
        lambda: (b := api.get(f"/v1/batches/{batch['id']}").json())["status"] == "cancelled" and b,
        30,
        "cancelled",
    )
    assert done["metadata"] == {"run": "misc"}
    err = api.get(f"/v1/files/{done['error_file_id']}").json()
    assert err["purpose"] == "batch_output"
    lines = api.get(f"/v1/files/{err['id']}/content").content.decode().splitlines()
    assert [json.loads(x)["custom_id"] for x in lines] == [f"item-{i:05d}" for i in range(3)]
    outputs = api.get("/v1/files", params={"purpose": "batch_output"}).json()["data"]
    assert err["id"] in {f["id"] for f in outputs}


def test_deleting_a_file_a_validating_batch_reads_is_409(api: TestClient) -> None:
    from sqlalchemy import update

    from batchgate.store.items import BATCH

    fid = upload(api, good_file())["id"]
    batch = settled(api, create(api, fid)["id"])
    with api.app.state.engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(update(BATCH).where(BATCH.c.id == batch["id"]).values(status="validating"))
    assert_error(api.delete(f"/v1/files/{fid}"), 409, "file_in_use")
    with api.app.state.engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(update(BATCH).where(BATCH.c.id == batch["id"]).values(status="in_progress"))
    assert api.delete(f"/v1/files/{fid}").status_code == 200


def test_streamed_upload_over_the_cap_is_413(api: TestClient) -> None:
    """A chunked body (no content-length) is counted as it arrives."""
    boundary = "bgboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="big.jsonl"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()

    def body() -> Iterator[bytes]:
        yield head
        for _ in range(3 * 1024):  # 3 MiB, past the cap plus the multipart allowance
            yield b"x" * 1024
        yield f"\r\n--{boundary}--\r\n".encode()

    resp = api.post(
        "/v1/files",
        content=body(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert_error(resp, 413, "file_too_large")
    assert api.get("/v1/files").json()["data"] == []


# --- batches -------------------------------------------------------------------------------


def test_batch_object_has_openai_fields(api: TestClient) -> None:
    fid = upload(api, good_file(2))["id"]
    batch = create(
        api, fid, metadata={"team": "eval"}, max_cost_usd="1.50", completion_window="24h"
    )
    for key in (
        "id",
        "object",
        "endpoint",
        "errors",
        "input_file_id",
        "completion_window",
        "status",
        "output_file_id",
        "error_file_id",
        "created_at",
        "in_progress_at",
        "expires_at",
        "finalizing_at",
        "completed_at",
        "failed_at",
        "expired_at",
        "cancelling_at",
        "cancelled_at",
        "request_counts",
        "metadata",
        "usage",
    ):
        assert key in batch, key
    assert batch["object"] == "batch" and batch["metadata"] == {"team": "eval"}
    assert batch["max_cost_usd"] == "1.5"
    assert batch["expires_at"] - batch["created_at"] == 24 * 3600
    ready = settled(api, batch["id"])
    assert ready["status"] == "in_progress" and ready["request_counts"]["total"] == 2


def test_batches_list_paginates_newest_first(api: TestClient) -> None:
    fid = upload(api, good_file(1))["id"]
    ids = [create(api, fid)["id"] for _ in range(3)]
    full = api.get("/v1/batches").json()["data"]
    keys = [(b["created_at"], b["id"]) for b in full]
    assert keys == sorted(keys, reverse=True) and sorted(ids) == sorted(b["id"] for b in full)
    newest_first = [b["id"] for b in full]
    page = api.get("/v1/batches", params={"limit": 2}).json()
    assert page["object"] == "list" and page["has_more"] is True
    assert [b["id"] for b in page["data"]] == newest_first[:2]
    assert page["first_id"] == newest_first[0] and page["last_id"] == newest_first[1]
    rest = api.get("/v1/batches", params={"limit": 2, "after": page["last_id"]}).json()
    assert [b["id"] for b in rest["data"]] == newest_first[2:] and rest["has_more"] is False
    assert_error(api.get("/v1/batches", params={"limit": 101}), 400, param="limit")


def test_openapi_schema_documents_errors_and_multipart(api: TestClient) -> None:
    schema = api.get("/openapi.json").json()
    upload_op = schema["paths"]["/v1/files"]["post"]
    assert "multipart/form-data" in upload_op["requestBody"]["content"]
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            assert "422" not in op["responses"], (method, path)
    assert set(upload_op["responses"]) >= {"200", "400", "401", "413"}
    cancel = schema["paths"]["/v1/batches/{batch_id}/cancel"]["post"]
    assert set(cancel["responses"]) >= {"200", "401", "404", "409"}
    content = schema["paths"]["/v1/files/{file_id}/content"]["get"]["responses"]
    assert "application/octet-stream" in content["200"]["content"]
    assert "application/json" in content["404"]["content"]


def test_dry_run_prices_the_file_and_creates_nothing(tmp_path, clean_broker, database_url) -> None:  # type: ignore[no-untyped-def]
    config = parse_config(
        {
            "model_list": [
                {
                    "model_name": "gpt",
                    "litellm_params": {
                        "model": "openai/gpt-4o-mini",
                        "api_base": "http://127.0.0.1:9/v1",
                    },
                }
            ]
        }
    )
    lines = [
        {
            "custom_id": f"c{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": "gpt",
                "messages": [{"role": "user", "content": "x" * 400}],
                "max_tokens": 100,
            },
        }
        for i in range(10)
    ]
    data = "".join(json.dumps(x) + "\n" for x in lines).encode()
    with TestClient(
        create_app(
            Settings(data_dir=tmp_path, redis_url=clean_broker, database_url=database_url), config
        )
    ) as api:
        fid = api.post(
            "/v1/files", files={"file": ("a.jsonl", data)}, data={"purpose": "batch"}
        ).json()["id"]
        resp = api.post(
            "/v1/batches",
            json={
                "input_file_id": fid,
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
                "dry_run": True,
            },
        )
        assert resp.status_code == 200, resp.text
        est = resp.json()
        assert est["object"] == "batch.estimate" and est["lines"] == 10
        gpt = est["models"]["gpt"]
        assert gpt["lines"] == 10 and gpt["max_output_tokens"] == 1000
        assert 0 < float(est["cost_usd_low"]) < float(est["cost_usd_high"])
        assert api.get("/v1/batches").json()["data"] == []
        bad_line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}
        bad_line["body"] = {"model": "gpt"}  # no messages
        bad = json.dumps(bad_line).encode() + b"\n"
        fid2 = api.post(
            "/v1/files", files={"file": ("b.jsonl", bad)}, data={"purpose": "batch"}
        ).json()["id"]
        refused = api.post(
            "/v1/batches",
            json={"input_file_id": fid2, "endpoint": "/v1/chat/completions", "dry_run": True},
        )
        assert refused.status_code == 200 and refused.json()["lines"] == 0
        assert refused.json()["errors"]["data"][0]["line"] == 1
    assert redis.Redis.from_url(clean_broker).llen("openai") == 0
