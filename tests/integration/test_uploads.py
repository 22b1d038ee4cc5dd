"""OpenAI's Uploads API: the SDK's `upload_file_chunked` sends a file larger than one request
may carry, in parts, and gets back an ordinary File; byte counts and MD5 are checked, cancel and
expiry end an upload."""

from __future__ import annotations

import hashlib
from pathlib import Path

import openai
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from batchgate.pipeline.retention import sweep_expired_uploads
from batchgate.store.uploads import UPLOAD
from tests.integration.conftest import MAX_FILE_BYTES
from tests.integration.test_api_misc import assert_error, good_file

pytestmark = pytest.mark.storage


def sdk(api: TestClient) -> openai.OpenAI:
    # The test client is an httpx.Client: the SDK talks to the app in process.
    return openai.OpenAI(api_key="unused", base_url="http://testserver/v1", http_client=api)


def test_sdk_chunked_upload_beyond_one_requests_cap(api: TestClient, tmp_path: Path) -> None:
    data = good_file(1) * (3 * MAX_FILE_BYTES // len(good_file(1)))
    assert len(data) > 2 * MAX_FILE_BYTES  # no single request could carry it
    path = tmp_path / "big.jsonl"
    path.write_bytes(data)
    upload = sdk(api).uploads.upload_file_chunked(
        file=path,
        mime_type="application/jsonl",
        purpose="batch",
        part_size=MAX_FILE_BYTES // 2,
        md5=hashlib.md5(data).hexdigest(),
    )
    assert upload.status == "completed" and upload.file is not None
    assert upload.file.bytes == len(data) and upload.file.filename == "big.jsonl"
    assert upload.file.purpose == "batch"
    assert api.get(f"/v1/files/{upload.file.id}/content").content == data
    # The parts are gone from disk: only the assembled file is left.
    files_dir = Path(api.app.state.settings.files_dir)  # type: ignore[attr-defined]
    assert [p.name for p in files_dir.iterdir()] == [upload.file.id]


def start(api: TestClient, size: int, **extra: object) -> str:
    resp = api.post(
        "/v1/uploads",
        json={
            "bytes": size,
            "filename": "x.jsonl",
            "mime_type": "application/jsonl",
            "purpose": "batch",
            **extra,
        },
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "pending" and resp.json()["file"] is None
    return str(resp.json()["id"])


def part(api: TestClient, upload_id: str, data: bytes) -> str:
    resp = api.post(f"/v1/uploads/{upload_id}/parts", files={"data": ("blob", data)})
    assert resp.status_code == 200, resp.text
    assert resp.json()["object"] == "upload.part"
    return str(resp.json()["id"])


def test_parts_join_in_the_order_given_and_counts_are_checked(api: TestClient) -> None:
    uid = start(api, 6, expires_after={"anchor": "created_at", "seconds": 3600})
    a, b = part(api, uid, b"abc"), part(api, uid, b"def")
    assert_error(api.post(f"/v1/uploads/{uid}/complete", json={"part_ids": [a]}), 400)
    assert_error(api.post(f"/v1/uploads/{uid}/complete", json={"part_ids": [a, a]}), 400)
    bad_md5 = {"part_ids": [b, a], "md5": "0" * 32}
    assert_error(api.post(f"/v1/uploads/{uid}/complete", json=bad_md5), 400, param="md5")
    done = api.post(f"/v1/uploads/{uid}/complete", json={"part_ids": [b, a]}).json()
    assert done["status"] == "completed"
    assert done["file"]["expires_at"] == done["file"]["created_at"] + 3600
    assert api.get(f"/v1/files/{done['file']['id']}/content").content == b"defabc"
    again = api.post(f"/v1/uploads/{uid}/parts", files={"data": ("blob", b"x")})
    assert_error(again, 400, "upload_not_pending")


def test_cancel_and_expiry_end_an_upload(api: TestClient) -> None:
    uid = start(api, 3)
    part(api, uid, b"abc")
    cancelled = api.post(f"/v1/uploads/{uid}/cancel").json()
    assert cancelled["status"] == "cancelled"
    assert_error(api.post(f"/v1/uploads/{uid}/complete", json={"part_ids": ["part_x"]}), 400)
    late = start(api, 3)
    with api.app.state.engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(update(UPLOAD).where(UPLOAD.c.id == late).values(expires_at=0))
    resp = api.post(f"/v1/uploads/{late}/parts", files={"data": ("blob", b"abc")})
    assert_error(resp, 400, "upload_not_pending")
    assert "expired" in resp.json()["error"]["message"]
    assert_error(api.post("/v1/uploads/upload_nope/cancel"), 404, "not_found")
    # The sweep clears an expired upload's parts from disk.
    stale = start(api, 3)
    part(api, stale, b"abc")
    st = api.app.state  # type: ignore[attr-defined]
    with st.engine.begin() as conn:
        conn.execute(update(UPLOAD).where(UPLOAD.c.id == stale).values(expires_at=0))
    assert sweep_expired_uploads(st.engine, st.files) == 2  # `late` and `stale`
    assert list(Path(st.settings.files_dir).iterdir()) == []
