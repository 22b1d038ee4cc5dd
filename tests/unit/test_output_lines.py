"""Output lines built as text are exactly the JSON of the line as an object, as finalize wrote it
before (`json.dumps(line, ensure_ascii=False)`), for rows of both storage shapes: the body in
`response_body`, or (rows of older releases) inside `result_json`."""

from __future__ import annotations

import json
from typing import Any

import pytest

from batchgate.money import usd_str
from batchgate.pipeline.output_lines import LineWriter
from batchgate.store.answers import LINE_COLUMNS, body_text, full_result, result_text


def _object_line(row: dict[str, Any], reasks: int) -> dict[str, Any]:
    """The line as an object: the dict finalize built and encoded per line before issue 19."""
    result = full_result(row["result_json"], row["response_body"])
    error = json.loads(row["error_json"]) if row["error_json"] else None
    meta = {
        "index": row["idx"],
        "model": row["alias"],
        "vendor": row["vendor"],
        "deployment": row["served_deployment"],
        "provider_model": result.get("provider_model") if result else None,
        "attempts": row["attempts"],
        "reasks": reasks,
        "tried": json.loads(row["tried_json"]),
        "usage": {
            k: row[k]
            for k in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
        },
        "cost_usd": usd_str(row["cost_pusd"]),
        "unpriced": bool(row["unpriced"]),
        "cached": bool(row["cached"]),
        "lane": ((result or error or {}).get("lane")) or "online",
    }
    line: dict[str, Any] = {"id": f"batch_req_{row['id']:012d}", "custom_id": row["custom_id"]}
    if row["state"] == "succeeded" and result is not None:
        line["response"] = {
            "status_code": result.get("status_code", 200),
            "request_id": result.get("request_id"),
            "body": result["body"],
        }
        line["error"] = None
    else:
        error = error or {"code": row["state"], "message": f"request {row['state']}"}
        line["response"] = None
        if error.get("status_code"):
            line["response"] = {
                "status_code": error["status_code"],
                "request_id": error.get("request_id"),
                "body": {
                    "error": {
                        "message": error["message"],
                        "type": error["code"],
                        "code": error.get("vendor_code"),
                    }
                },
            }
        line["error"] = {"code": error["code"], "message": error["message"]}
    line["batchgate"] = meta
    return line


BODY = {
    "id": "chatcmpl-1",
    "choices": [{"message": {"role": "assistant", "content": 'Grüße — 你好 "q" \\ \n 🎉'}}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
    "n": 1.5,
    "none": None,
}
ANSWER = {
    "status_code": 200,
    "request_id": "req_1",
    "body": BODY,
    "provider_model": "gpt-4o-mini-2024-07-18",
    "usage": {"input_tokens": 3, "output_tokens": 5},
}


def _row(**kw: Any) -> dict[str, Any]:
    row = {
        "id": 42,
        "idx": 7,
        "custom_id": 'req-ü-"7"',
        "state": "succeeded",
        "alias": "m1",
        "vendor": "openai",
        "served_deployment": "dép-1",
        "attempts": 2,
        "tried_json": json.dumps(["dép-0", "dép-1"]),
        "input_tokens": 3,
        "output_tokens": 5,
        "cache_read_tokens": 0,
        "cache_write_tokens": 1,
        "cost_pusd": 30_150_000,
        "unpriced": 0,
        "cached": False,
        "result_json": result_text(ANSWER),
        "response_body": body_text(ANSWER),
        "error_json": None,
    }
    row.update(kw)
    return row


FAILED = {"code": "bad_request", "message": "nope ✗", "status_code": 400, "vendor_code": "x"}
CASES = {
    "succeeded": _row(),
    "succeeded, stored before response_body": _row(
        result_json=json.dumps(ANSWER), response_body=None
    ),
    "succeeded in the vendor batch lane, cached, unpriced": _row(
        result_json=result_text({**ANSWER, "lane": "vendor_batch"}), unpriced=True, cached=1
    ),
    "succeeded without status code or provider model": _row(
        result_json=result_text({"body": BODY}), served_deployment=None, tried_json="[]"
    ),
    "failed with a vendor answer": _row(
        state="failed", result_json=None, response_body=None, error_json=json.dumps(FAILED)
    ),
    "failed without one": _row(
        state="failed",
        result_json=None,
        response_body=None,
        error_json=json.dumps({"code": "timeout", "message": "t", "lane": "vendor_batch"}),
    ),
    "expired with no error": _row(state="expired", result_json=None, response_body=None),
    "succeeded with no answer": _row(result_json=None, response_body=None),
    "cost of zero and of whole dollars": _row(cost_pusd=0, input_tokens=12 * 10**12),
    "large cost": _row(cost_pusd=1_234_567_890_123_456),
    "an answer only json reads (NaN, a huge integer)": _row(
        result_json=result_text({**ANSWER, "usage": {"x": float("nan"), "y": 2**70}})
    ),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("reasks", [0, 3])
def test_a_line_is_the_json_of_the_line_object_byte_for_byte(name: str, reasks: int) -> None:
    row = CASES[name]
    text = LineWriter().line(tuple(row[c.name] for c in LINE_COLUMNS), reasks)
    want = json.dumps(_object_line(row, reasks), ensure_ascii=False) + "\n"
    assert text == want


def test_the_body_is_spliced_as_stored_not_re_encoded() -> None:
    stored = '{"id":"compact",  "x": [1,2]}'  # not how json.dumps would spell it
    row = _row(response_body=stored)
    text = LineWriter().line(tuple(row[c.name] for c in LINE_COLUMNS))
    assert f'"body": {stored}}}, "error": null' in text
    assert json.loads(text)["response"]["body"] == {"id": "compact", "x": [1, 2]}


def test_an_answer_is_stored_as_its_body_and_the_rest() -> None:
    assert body_text(ANSWER) == json.dumps(BODY, ensure_ascii=False)
    assert "body" not in json.loads(result_text(ANSWER) or "")
    assert full_result(result_text(ANSWER), body_text(ANSWER)) == ANSWER
    assert full_result(json.dumps(ANSWER), None) == ANSWER  # a row from before the split
    assert body_text({"status_code": 500}) is None and body_text(None) is None


def test_a_body_with_a_lone_surrogate_is_stored_escaped() -> None:
    answer = {"body": json.loads('{"t": "\\ud800 ok"}')}
    text = body_text(answer) or ""
    text.encode("utf-8")  # storable
    assert json.loads(text) == answer["body"]


@pytest.mark.parametrize("name", list(CASES))
def test_a_line_from_the_body_read_as_bytes_is_the_line_in_utf8(name: str) -> None:
    """Finalize reads the body as its UTF-8 bytes (`store.answers.line_rows`) and writes bytes."""
    row = CASES[name]
    text = LineWriter().line(tuple(row[c.name] for c in LINE_COLUMNS), 2)
    body = row["response_body"]
    as_read = {**row, "response_body": None if body is None else body.encode("utf-8")}
    line = LineWriter().encoded(tuple(as_read[c.name] for c in LINE_COLUMNS), 2)
    assert isinstance(line, bytes) and line == text.encode("utf-8")
