"""Strict validation through the real API: every malformed file is refused, with its error code
and line number, before anything is stored or sent: no item row, no broker message."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from batchgate.api.app import create_app
from batchgate.config import parse_config
from batchgate.settings import Settings
from batchgate.store.items import ITEM
from tests import batch_lines
from tests.batch_lines import CHAT, EMB, jsonl, line, without
from tests.e2e.harness import wait_for

pytestmark = pytest.mark.storage

MAX_LINE_BYTES = 8 * 1024
MAX_LINES = 5
MAX_FILE_BYTES = 32 * 1024


# The API tests' config serves models "m" (chat) and "e" (embeddings).
chat = partial(batch_lines.chat, model="m")
emb = partial(batch_lines.emb, model="e")

OK = line(chat("ok"))  # a valid line to put around the bad one
BODY = b'"body":{"model":"m","messages":[{"role":"user","content":"hi"}]}'
DEEP = (
    b'{"custom_id":"r1","method":"POST","url":"/v1/chat/completions",'
    + BODY[:-1]
    + (b',"x":' + b"[" * 70 + b"]" * 70 + b"}}")
)
HUGE_INT = line(chat("r1", max_tokens=0))[:-2] + b',"seed":' + b"9" * 5000 + b"}}"

# (id, file bytes, batch endpoint, expected (code, line) pairs)
REFUSED_LINES: list[tuple[str, bytes, str, list[tuple[str, int | None]]]] = [
    ("not_json", jsonl(OK, b"this is not json"), CHAT, [("invalid_json", 2)]),
    ("not_an_object", jsonl(OK, b'["custom_id", "r2"]'), CHAT, [("not_an_object", 2)]),
    ("a_string_line", jsonl(b'"hello"'), CHAT, [("not_an_object", 1)]),
    (
        "nan",
        jsonl(OK, line(chat("r2"))[:-2] + b',"temperature":NaN}}'),
        CHAT,
        [("nan_not_allowed", 2)],
    ),
    (
        "infinity",
        jsonl(line(chat("r1"))[:-2] + b',"temperature":-Infinity}}'),
        CHAT,
        [("nan_not_allowed", 1)],
    ),
    (
        "float_overflow",
        jsonl(line(chat("r1"))[:-2] + b',"temperature":1e400}}'),
        CHAT,
        [("number_too_large", 1)],
    ),
    (
        "duplicate_key",
        jsonl(
            OK,
            b'{"custom_id":"a","custom_id":"b","method":"POST",'
            b'"url":"/v1/chat/completions",' + BODY + b"}",
        ),
        CHAT,
        [("duplicate_key", 2)],
    ),
    ("invalid_utf8", jsonl(OK, OK.replace(b'"ok"', b'"r\xff2"')), CHAT, [("invalid_utf8", 2)]),
    (
        "utf16_file",
        "\n".join(json.dumps(chat(f"r{i}")) for i in (1, 2)).encode("utf-16"),
        CHAT,
        [("invalid_utf8", 1)],
    ),
    ("utf8_bom", b"\xef\xbb\xbf" + jsonl(chat("r1"), chat("r2")), CHAT, [("bom", 1)]),
    (
        "missing_custom_id",
        jsonl(OK, without(chat("r2"), "custom_id")),
        CHAT,
        [("missing_custom_id", 2)],
    ),
    ("custom_id_not_a_string", jsonl(chat(7)), CHAT, [("invalid_custom_id", 1)]),  # type: ignore[arg-type]
    ("custom_id_with_newline", jsonl(chat("a\u2028b")), CHAT, [("invalid_custom_id", 1)]),
    ("empty_custom_id", jsonl(OK, chat("")), CHAT, [("invalid_custom_id", 2)]),
    (
        "duplicate_custom_id",
        jsonl(chat("a"), chat("b"), chat("a")),
        CHAT,
        [("duplicate_custom_id", 3)],
    ),
    ("wrong_method", jsonl(OK, {**chat("r2"), "method": "GET"}), CHAT, [("invalid_method", 2)]),
    ("missing_method", jsonl(without(chat("r1"), "method")), CHAT, [("invalid_method", 1)]),
    (
        "wrong_url",
        jsonl(OK, {**chat("r2"), "url": "/v1/images/generations"}),
        CHAT,
        [("invalid_url", 2)],
    ),
    ("url_differs_from_batch", jsonl(emb("e1")), CHAT, [("mismatched_url", 1)]),
    ("urls_differ_in_file", jsonl(chat("r1"), emb("e2")), CHAT, [("mismatched_url", 2)]),
    ("unknown_top_level_field", jsonl({**chat("r1"), "extra": 1}), CHAT, [("unknown_field", 1)]),
    ("missing_body", jsonl(OK, without(chat("r2"), "body")), CHAT, [("missing_body", 2)]),
    ("body_not_an_object", jsonl({**chat("r1"), "body": "hi"}), CHAT, [("invalid_body", 1)]),
    (
        "missing_model",
        jsonl(OK, without(chat("r2"), "model", inner=True)),
        CHAT,
        [("missing_model", 2)],
    ),
    ("unknown_model", jsonl(OK, chat("r2", model="gpt-nope")), CHAT, [("unknown_model", 2)]),
    ("model_not_a_string", jsonl(chat("r1", model=["m"])), CHAT, [("invalid_body", 1)]),
    (
        "chat_body_on_embeddings",
        jsonl({**chat("r1", model="e"), "url": EMB}),
        EMB,
        [("invalid_body", 1)],
    ),
    (
        "embeddings_body_on_chat",
        jsonl({**emb("e1", model="m"), "url": CHAT}),
        CHAT,
        [("invalid_body", 1)],
    ),
    ("empty_messages", jsonl(chat("r1", messages=[])), CHAT, [("invalid_body", 1)]),
    (
        "bad_role",
        jsonl(chat("r1", messages=[{"role": "robot", "content": "x"}])),
        CHAT,
        [("invalid_body", 1)],
    ),
    ("empty_embedding_input", jsonl(emb("e1", input=[])), EMB, [("invalid_body", 1)]),
    ("n_is_2", jsonl(OK, chat("r2", n=2)), CHAT, [("invalid_body", 2)]),
    ("max_tokens_too_large", jsonl(chat("r1", max_tokens=10**9)), CHAT, [("invalid_body", 1)]),
    ("max_tokens_is_a_bool", jsonl(chat("r1", max_tokens=True)), CHAT, [("invalid_body", 1)]),
    ("stream_true", jsonl(chat("r1", stream=True)), CHAT, [("invalid_body", 1)]),
    ("blank_line", jsonl(chat("r1"), b"", chat("r2")), CHAT, [("blank_line", 2)]),
    ("whitespace_line", jsonl(chat("r1"), b"  \t", chat("r2")), CHAT, [("blank_line", 2)]),
    (
        "only_blank_lines",
        b"\n\n\n",
        CHAT,
        [("blank_line", 1), ("blank_line", 2), ("blank_line", 3), ("empty_file", None)],
    ),
    (
        "line_too_long",
        jsonl(OK, chat("r2", messages=[{"role": "user", "content": "x" * MAX_LINE_BYTES}])),
        CHAT,
        [("line_too_long", 2)],
    ),
    (
        "too_many_lines",
        jsonl(*(chat(f"r{i}") for i in range(MAX_LINES + 1))),
        CHAT,
        [("too_many_lines", MAX_LINES + 1)],
    ),
    ("trailing_garbage", jsonl(OK, line(chat("r2")) + b" xyz"), CHAT, [("invalid_json", 2)]),
    (
        "two_objects_on_a_line",
        jsonl(line(chat("r1")) + line(chat("r2"))),
        CHAT,
        [("invalid_json", 1)],
    ),
    ("truncated_last_line", jsonl(OK) + line(chat("r2"))[:-5], CHAT, [("invalid_json", 2)]),
    ("deep_nesting", jsonl(OK, DEEP), CHAT, [("nesting_too_deep", 2)]),
    ("huge_int", jsonl(OK, HUGE_INT), CHAT, [("number_too_large", 2)]),
    (
        "lone_surrogate",
        jsonl(OK, OK.replace(b'"hi"', b'"\\ud800"').replace(b'"ok"', b'"r2"')),
        CHAT,
        [("invalid_surrogate", 2)],
    ),
    (
        "nul_character",
        jsonl(OK, OK.replace(b'"hi"', b'"a\\u0000b"').replace(b'"ok"', b'"r2"')),
        CHAT,
        [("nul_character", 2)],
    ),
    ("raw_control_character", jsonl(OK.replace(b'"hi"', b'"a\x01b"')), CHAT, [("invalid_json", 1)]),
]

# (id, file bytes, status at upload, error code)
REFUSED_UPLOADS: list[tuple[str, bytes, int, str]] = [
    ("empty_file", b"", 400, "empty_file"),
    (
        "over_max_file_bytes",
        jsonl(
            *(chat(f"r{i}", messages=[{"role": "user", "content": "x" * 7000}]) for i in range(5))
        ),
        413,
        "file_too_large",
    ),
]


@pytest.fixture
def api(tmp_path: Path, clean_broker: str, database_url: str) -> Iterator[TestClient]:
    config = parse_config(
        {
            "model_list": [
                {
                    "model_name": "m",
                    "litellm_params": {
                        "model": "openai/gpt-4o-mini",
                        "api_base": "http://127.0.0.1:9/v1",
                    },
                },
                {
                    "model_name": "e",
                    "litellm_params": {
                        "model": "openai/text-embedding-3-small",
                        "api_base": "http://127.0.0.1:9/v1",
                    },
                },
            ]
        }
    )
    settings = Settings(
        data_dir=tmp_path,
        redis_url=clean_broker,
        database_url=database_url,
        max_line_bytes=MAX_LINE_BYTES,
        max_lines=MAX_LINES,
        max_file_bytes=MAX_FILE_BYTES,
    )
    with TestClient(create_app(settings, config)) as client:
        yield client


def upload(api: TestClient, data: bytes) -> Any:
    return api.post("/v1/files", files={"file": ("in.jsonl", data)}, data={"purpose": "batch"})


def settled(api: TestClient, batch_id: str) -> dict[str, Any]:
    """The batch once ingest (a background thread) has decided."""
    return wait_for(
        lambda: (b := api.get(f"/v1/batches/{batch_id}").json())["status"] != "validating" and b,
        30,
        f"ingest of {batch_id}",
    )


def assert_nothing_ran(api: TestClient, broker: str, batch_id: str | None = None) -> None:
    r = redis.Redis.from_url(broker)
    try:
        assert r.llen("openai") == 0, "a message reached the vendor queue"
        assert not [k for k in r.scan_iter() if r.type(k) == b"list"], "some queue has messages"
    finally:
        r.close()
    with api.app.state.engine.connect() as conn:  # type: ignore[attr-defined]
        query = select(func.count()).select_from(ITEM)
        if batch_id:
            query = query.where(ITEM.c.batch_id == batch_id)
        assert conn.execute(query).scalar_one() == 0, "item rows were stored"


def test_table_is_big_enough() -> None:
    assert len(REFUSED_LINES) + len(REFUSED_UPLOADS) >= 25
    assert len({case[0] for case in REFUSED_LINES}) == len(REFUSED_LINES)


@pytest.mark.parametrize(
    ("data", "endpoint", "expected"),
    [pytest.param(data, ep, exp, id=name) for name, data, ep, exp in REFUSED_LINES],
)
def test_malformed_file_fails_the_batch_with_line_numbers_and_runs_nothing(
    api: TestClient,
    clean_broker: str,
    data: bytes,
    endpoint: str,
    expected: list[tuple[str, int | None]],
) -> None:
    resp = upload(api, data)
    assert resp.status_code == 200, resp.text  # the upload itself is only stored
    batch = api.post(
        "/v1/batches",
        json={"input_file_id": resp.json()["id"], "endpoint": endpoint, "completion_window": "24h"},
    )
    assert batch.status_code == 200, batch.text
    assert batch.json()["status"] in ("validating", "failed")  # ingest may already be done
    done = settled(api, batch.json()["id"])
    assert done["status"] == "failed", done
    assert done["failed_at"] and done["in_progress_at"] is None
    assert done["output_file_id"] is None and done["error_file_id"] is None
    assert done["request_counts"] == {"total": 0, "completed": 0, "failed": 0}
    errors = done["errors"]
    assert errors["object"] == "list"
    got = [(e["code"], e["line"]) for e in errors["data"]]
    assert got == expected, errors["data"]
    assert all(e["message"] for e in errors["data"])
    assert_nothing_ran(api, clean_broker, done["id"])


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [pytest.param(data, status, code, id=name) for name, data, status, code in REFUSED_UPLOADS],
)
def test_file_refused_at_upload(
    api: TestClient, clean_broker: str, data: bytes, status: int, code: str
) -> None:
    resp = upload(api, data)
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == code
    assert resp.json()["error"]["type"] == "invalid_request_error"
    assert api.get("/v1/files").json()["data"] == []  # nothing half-stored
    assert list((Path(api.app.state.settings.files_dir)).iterdir()) == []  # type: ignore[attr-defined]
    assert_nothing_ran(api, clean_broker)


def test_body_far_over_the_cap_is_refused_before_it_is_read(
    api: TestClient, clean_broker: str
) -> None:
    big = b"x" * (MAX_FILE_BYTES + 2 * 1024 * 1024)
    resp = upload(api, big)
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "file_too_large"
    assert_nothing_ran(api, clean_broker)


def test_unknown_model_override_is_refused_at_create(api: TestClient, clean_broker: str) -> None:
    fid = upload(api, jsonl(chat("r1"))).json()["id"]
    resp = api.post(
        "/v1/batches", json={"input_file_id": fid, "endpoint": CHAT, "model": "gpt-nope"}
    )
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "model_not_found"
    assert api.get("/v1/batches").json()["data"] == []
    assert_nothing_ran(api, clean_broker)


def test_a_valid_file_does_reach_the_queue(api: TestClient, clean_broker: str) -> None:
    """The control: the same path with a good file stores items and sends one message."""
    fid = upload(api, jsonl(chat("r1"), chat("r2"))).json()["id"]
    batch = api.post("/v1/batches", json={"input_file_id": fid, "endpoint": CHAT}).json()
    done = settled(api, batch["id"])
    assert done["status"] == "in_progress" and done["request_counts"]["total"] == 2
    r = redis.Redis.from_url(clean_broker)
    assert wait_for(lambda: r.llen("openai") == 1, 10, "the message")
    r.close()
