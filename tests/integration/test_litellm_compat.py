"""What LiteLLM proxy clients send, answered as LiteLLM's proxy and OpenAI do: routes without
`/v1`, `custom_llm_provider` anywhere, every file purpose, expiry and the retention sweep,
`x-request-id`, download headers and ranges, `/v1/models`, and the cancel rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from batchgate.pipeline.retention import sweep_expired_files
from batchgate.store.items import BATCH, ITEM
from tests.e2e.harness import wait_for
from tests.integration.test_api_misc import (
    CHAT,
    assert_error,
    create,
    good_file,
    settled,
    upload,
)

pytestmark = pytest.mark.storage

PURPOSES = ["assistants", "batch", "evals", "fine-tune", "user_data", "vision"]


def test_every_route_also_answers_without_v1(api: TestClient) -> None:
    resp = api.post("/files", files={"file": ("a.jsonl", good_file())}, data={"purpose": "batch"})
    assert resp.status_code == 200, resp.text
    fid = resp.json()["id"]
    assert api.get(f"/files/{fid}").json()["id"] == fid
    assert api.get(f"/files/{fid}/content").content == good_file()
    assert [f["id"] for f in api.get("/files").json()["data"]] == [fid]
    batch = api.post(
        "/batches", json={"input_file_id": fid, "endpoint": "/chat/completions"}
    ).json()
    assert batch["endpoint"] == CHAT
    assert api.get(f"/batches/{batch['id']}").json()["id"] == batch["id"]
    assert api.get("/batches").json()["data"][0]["id"] == batch["id"]
    assert api.post(f"/batches/{batch['id']}/cancel").status_code == 200
    assert api.get("/models").json()["data"][0]["id"] == "m"
    assert api.delete(f"/files/{fid}").json()["deleted"] is True


def test_custom_llm_provider_is_accepted_wherever_litellm_sends_it(api: TestClient) -> None:
    resp = api.post(
        "/v1/files",
        files={"file": ("a.jsonl", good_file())},
        data={"purpose": "batch", "custom_llm_provider": "azure"},
    )
    assert resp.status_code == 200, resp.text
    fid = resp.json()["id"]
    batch = create(api, fid, custom_llm_provider="openai")
    hint = {"custom-llm-provider": "azure"}
    q = {"custom_llm_provider": "azure"}
    bid = batch["id"]
    assert api.get(f"/v1/batches/{bid}", params=q, headers=hint).status_code == 200
    # The OpenAI SDK's extra_body on a GET goes into a JSON body: ignored, not refused.
    got = api.request("GET", f"/v1/batches/{bid}", json={"custom_llm_provider": "openai"})
    assert got.status_code == 200
    assert api.get("/v1/batches", params=q, headers=hint).status_code == 200
    assert api.get(f"/v1/files/{fid}/content", params=q).status_code == 200
    cancelled = api.post(f"/v1/batches/{bid}/cancel", json={"custom_llm_provider": "openai"})
    assert cancelled.status_code == 200


def test_every_openai_purpose_is_stored_and_only_batch_feeds_a_batch(api: TestClient) -> None:
    ids = {}
    for purpose in PURPOSES:
        resp = api.post(
            "/v1/files",
            files={"file": ("x.jsonl", b'{"prompt": "Hello", "completion": "Hi"}')},
            data={"purpose": purpose},
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["purpose"] == purpose
        ids[purpose] = resp.json()["id"]
    for purpose, fid in ids.items():
        assert api.get(f"/v1/files/{fid}").json()["purpose"] == purpose
        listed = api.get("/v1/files", params={"purpose": purpose}).json()["data"]
        assert [f["id"] for f in listed] == [fid]
    resp = api.post("/v1/batches", json={"input_file_id": ids["fine-tune"], "endpoint": CHAT})
    assert_error(resp, 400, param="input_file_id")
    assert "batch" in resp.json()["error"]["message"]
    # Only batch files expire by default (30 days), as at OpenAI.
    assert api.get(f"/v1/files/{ids['fine-tune']}").json()["expires_at"] is None
    b = api.get(f"/v1/files/{ids['batch']}").json()
    assert b["expires_at"] == b["created_at"] + 30 * 24 * 3600


def test_expires_after_is_honoured_and_the_sweep_deletes_expired_files(api: TestClient) -> None:
    form = {"purpose": "batch", "expires_after[anchor]": "created_at"}
    keep = upload(api, good_file())
    resp = api.post(
        "/v1/files",
        files={"file": ("a.jsonl", good_file())},
        data={**form, "expires_after[seconds]": "3600"},
    )
    assert resp.status_code == 200, resp.text
    short = resp.json()
    assert short["expires_at"] == short["created_at"] + 3600
    for seconds in ("60", "2592001", "soon"):
        bad = api.post(
            "/v1/files",
            files={"file": ("a.jsonl", b"x")},
            data={**form, "expires_after[seconds]": seconds},
        )
        assert_error(bad, 400, param="expires_after[seconds]")
    st = api.app.state  # type: ignore[attr-defined]
    assert sweep_expired_files(st.engine, st.files, now=short["created_at"] + 3599) == 0
    assert sweep_expired_files(st.engine, st.files, now=short["created_at"] + 3600) == 1
    assert_error(api.get(f"/v1/files/{short['id']}"), 404, "not_found")
    assert not (Path(st.settings.files_dir) / short["id"]).exists()
    assert api.get(f"/v1/files/{keep['id']}").status_code == 200


def test_output_expires_after_dates_the_output_files(api: TestClient) -> None:
    fid = upload(api, good_file())["id"]
    for bad in ({"anchor": "created_at", "seconds": 10}, {"anchor": "now", "seconds": 3600}):
        resp = api.post(
            "/v1/batches",
            json={"input_file_id": fid, "endpoint": CHAT, "output_expires_after": bad},
        )
        assert_error(resp, 400)
    expiry = {"anchor": "created_at", "seconds": 7200}
    batch = settled(api, create(api, fid, output_expires_after=expiry)["id"])
    api.post(f"/v1/batches/{batch['id']}/cancel")
    done = settled_terminal(api, batch["id"])
    err = api.get(f"/v1/files/{done['error_file_id']}").json()
    assert err["expires_at"] == err["created_at"] + 7200


def test_unknown_create_fields_are_refused_like_unknown_upload_fields(api: TestClient) -> None:
    fid = upload(api, good_file())["id"]
    resp = api.post("/v1/batches", json={"input_file_id": fid, "endpoint": CHAT, "colour": "red"})
    assert_error(resp, 400, param="colour")


def test_every_response_carries_x_request_id(api: TestClient) -> None:
    ok = api.get("/v1/files")
    missing = api.get("/v1/files/file-nope")
    assert ok.headers["x-request-id"].startswith("req_")
    assert missing.status_code == 404 and missing.headers["x-request-id"].startswith("req_")
    assert ok.headers["x-request-id"] != missing.headers["x-request-id"]
    echoed = api.get("/v1/files", headers={"x-request-id": "client-abc-1"})
    assert echoed.headers["x-request-id"] == "client-abc-1"


def test_file_content_has_disposition_and_answers_ranges(api: TestClient) -> None:
    data = good_file(4)
    f = upload(api, data, "my data.jsonl")
    url = f"/v1/files/{f['id']}/content"
    whole = api.get(url)
    assert whole.headers["content-disposition"] == 'attachment; filename="my data.jsonl"'
    assert whole.headers["accept-ranges"] == "bytes"
    part = api.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == data[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
    assert part.headers["content-length"] == "10"
    rest = api.get(url, headers={"Range": "bytes=20-"})
    assert rest.status_code == 206 and data[:20] + rest.content == data
    tail = api.get(url, headers={"Range": "bytes=-5"})
    assert tail.status_code == 206 and tail.content == data[-5:]
    past = api.get(url, headers={"Range": f"bytes={len(data)}-"})
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{len(data)}"


def test_models_lists_the_configured_names(api: TestClient) -> None:
    listed = api.get("/v1/models").json()
    assert listed == {
        "object": "list",
        "data": [{"id": "m", "object": "model", "created": 0, "owned_by": "openai"}],
    }
    assert api.get("/v1/models/m").json()["id"] == "m"
    assert_error(api.get("/v1/models/nope"), 404, "not_found")


def test_a_cancel_too_late_to_stop_any_line_leaves_the_batch_completed(api: TestClient) -> None:
    batch = settled(api, create(api, upload(api, good_file(2))["id"])["id"])
    engine = api.app.state.engine  # type: ignore[attr-defined]
    with engine.begin() as conn:  # every line has already run when the cancel arrives
        conn.execute(
            update(ITEM)
            .where(ITEM.c.batch_id == batch["id"])
            .values(state="succeeded", result_json='{"status_code": 200, "body": {}}')
        )
    assert api.post(f"/v1/batches/{batch['id']}/cancel").status_code == 200
    done = settled_terminal(api, batch["id"])
    assert done["status"] == "completed"
    assert done["request_counts"] == {"total": 2, "completed": 2, "failed": 0}


def test_cancel_of_an_ended_batch_answers_as_openai(api: TestClient) -> None:
    batch = settled(api, create(api, upload(api, good_file())["id"])["id"])
    with api.app.state.engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(update(BATCH).where(BATCH.c.id == batch["id"]).values(status="completed"))
    resp = api.post(f"/v1/batches/{batch['id']}/cancel")
    assert_error(resp, 409, "batch_not_cancellable")
    assert resp.json()["error"]["message"] == "Cannot cancel a batch with status 'completed'."


def settled_terminal(api: TestClient, batch_id: str) -> dict[str, Any]:
    ended = ("completed", "cancelled", "failed", "expired")
    return wait_for(
        lambda: (b := api.get(f"/v1/batches/{batch_id}").json())["status"] in ended and b,
        30,
        "the batch to end",
    )


def test_request_fallbacks_are_kept_apart_from_leaving_them_out(api: TestClient) -> None:
    fid = upload(api, good_file())["id"]
    assert create(api, fid)["fallbacks"] is None  # the config's chains apply
    assert create(api, fid, fallbacks=[])["fallbacks"] == []  # no fallback at all
    assert create(api, fid, fallbacks=["m"])["fallbacks"] == ["m"]
