"""validation: every refusal code with its line number, valid files, streaming."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from batchgate.validation import (
    ERROR_CODES,
    FilePass,
    InvalidBatchFile,
    Limits,
    RequestLine,
    iter_requests,
    validate_file,
)
from tests.batch_lines import CHAT, EMB, chat, emb, jsonl, line, without


def good(n: int, start: int = 1) -> list[dict[str, Any]]:
    return [chat(f"r{i}") for i in range(start, start + n)]


def with_top(obj: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**obj, **changes}


BIG_LINE = chat("r2", messages=[{"role": "user", "content": "x" * 300}])

# (id, file bytes, validate_file kwargs, expected [(code, line)] in order)
MALFORMED: list[tuple[str, bytes, dict[str, Any], list[tuple[str, int | None]]]] = [
    ("empty_file", b"", {}, [("empty_file", None)]),
    (
        "only_whitespace_lines",
        b"\n  \n\t\r\n",
        {},
        [("blank_line", 1), ("blank_line", 2), ("blank_line", 3), ("empty_file", None)],
    ),
    ("blank_line_between", jsonl(chat("a"), b"", chat("b")), {}, [("blank_line", 2)]),
    ("trailing_blank_line", jsonl(chat("a"), b"  "), {}, [("blank_line", 2)]),
    ("utf16_file", jsonl(chat()).decode().encode("utf-16"), {}, [("invalid_utf8", 1)]),
    (
        "invalid_utf8_on_line_7",
        jsonl(
            *good(6),
            b'{"custom_id":"r7","method":"POST","url":"/v1/chat/completions",'
            b'"body":{"model":"m","messages":[{"role":"user","content":"\xff"}]}}',
            *good(2, 8),
        ),
        {},
        [("invalid_utf8", 7)],
    ),
    ("utf8_bom", b"\xef\xbb\xbf" + jsonl(chat()), {}, [("bom", 1)]),
    ("top_level_array", jsonl(chat("a"), [chat("b")]), {}, [("not_an_object", 2)]),
    ("top_level_string", jsonl("hello"), {}, [("not_an_object", 1)]),
    ("top_level_number", jsonl(chat("a"), 42), {}, [("not_an_object", 2)]),
    ("top_level_null", jsonl(None), {}, [("not_an_object", 1)]),
    ("custom_id_missing", jsonl(without(chat(), "custom_id")), {}, [("missing_custom_id", 1)]),
    ("custom_id_empty", jsonl(chat("")), {}, [("invalid_custom_id", 1)]),
    ("custom_id_int", jsonl(with_top(chat(), custom_id=1)), {}, [("invalid_custom_id", 1)]),
    ("custom_id_too_long", jsonl(chat("x" * 513)), {}, [("invalid_custom_id", 1)]),
    ("custom_id_control_char", jsonl(chat("a\tb")), {}, [("invalid_custom_id", 1)]),
    (
        "duplicate_custom_id_3_and_9",
        jsonl(*good(2), chat("dup"), *good(5, 4), chat("dup")),
        {},
        [("duplicate_custom_id", 9)],
    ),
    ("method_get", jsonl(with_top(chat(), method="GET")), {}, [("invalid_method", 1)]),
    ("method_lowercase", jsonl(with_top(chat(), method="post")), {}, [("invalid_method", 1)]),
    (
        "url_unsupported",
        jsonl(with_top(chat(), url="/v1/images/edits")),
        {},
        [("invalid_url", 1)],
    ),
    ("mixed_endpoints", jsonl(chat("a"), emb("b")), {}, [("mismatched_url", 2)]),
    ("url_not_batch_endpoint", jsonl(chat()), {"endpoint": EMB}, [("mismatched_url", 1)]),
    ("endpoint_unsupported", jsonl(chat()), {"endpoint": "/v1/x"}, [("invalid_url", None)]),
    ("body_missing", jsonl(without(chat(), "body")), {}, [("missing_body", 1)]),
    ("body_not_object", jsonl(with_top(chat(), body=[1])), {}, [("invalid_body", 1)]),
    ("model_missing", jsonl(without(chat(), "model", inner=True)), {}, [("missing_model", 1)]),
    ("model_not_string", jsonl(chat(model=4)), {}, [("invalid_body", 1)]),
    (
        "model_unknown",
        jsonl(chat("a"), chat("b", model="gpt-9")),
        {"known_models": {"gpt-4o-mini"}},
        [("unknown_model", 2)],
    ),
    (
        "default_model_unknown",
        jsonl(*(without(c, "model", inner=True) for c in good(3))),
        {"known_models": {"gpt-4o-mini"}, "default_model": "nope"},
        [("unknown_model", 1)],
    ),
    ("messages_missing", jsonl(without(chat(), "messages", inner=True)), {}, [("invalid_body", 1)]),
    ("messages_empty", jsonl(chat(messages=[])), {}, [("invalid_body", 1)]),
    ("message_not_object", jsonl(chat(messages=["hi"])), {}, [("invalid_body", 1)]),
    (
        "bad_role",
        jsonl(chat(messages=[{"role": "bot", "content": "hi"}])),
        {},
        [("invalid_body", 1)],
    ),
    (
        "user_content_int",
        jsonl(chat(messages=[{"role": "user", "content": 5}])),
        {},
        [("invalid_body", 1)],
    ),
    (
        "user_content_null",
        jsonl(chat(messages=[{"role": "user", "content": None}])),
        {},
        [("invalid_body", 1)],
    ),
    ("max_tokens_10_to_9", jsonl(chat(max_tokens=10**9)), {}, [("invalid_body", 1)]),
    ("max_tokens_zero", jsonl(chat(max_tokens=0)), {}, [("invalid_body", 1)]),
    ("max_tokens_string", jsonl(chat(max_tokens="10")), {}, [("invalid_body", 1)]),
    ("max_tokens_bool", jsonl(chat(max_tokens=True)), {}, [("invalid_body", 1)]),
    ("max_completion_tokens_neg", jsonl(chat(max_completion_tokens=-1)), {}, [("invalid_body", 1)]),
    ("n_2", jsonl(chat(n=2)), {}, [("invalid_body", 1)]),
    ("stream_true", jsonl(chat(stream=True)), {}, [("invalid_body", 1)]),
    ("embeddings_empty_list", jsonl(emb(input=[])), {}, [("invalid_body", 1)]),
    ("embeddings_empty_string", jsonl(emb(input="")), {}, [("invalid_body", 1)]),
    ("embeddings_mixed_list", jsonl(emb(input=[1, "a"])), {}, [("invalid_body", 1)]),
    ("embeddings_empty_token_list", jsonl(emb(input=[[1], []])), {}, [("invalid_body", 1)]),
    ("embeddings_input_object", jsonl(emb(input={"a": 1})), {}, [("invalid_body", 1)]),
    ("unknown_top_field", jsonl(with_top(chat(), extra=1)), {}, [("unknown_field", 1)]),
    ("trailing_garbage", jsonl(chat("a"), line(chat("b")) + b"x"), {}, [("invalid_json", 2)]),
    ("two_objects_one_line", jsonl(line(chat("a")) + line(chat("b"))), {}, [("invalid_json", 1)]),
    ("comment", jsonl(line(chat()) + b" // note"), {}, [("invalid_json", 1)]),
    ("trailing_comma", jsonl(line(chat())[:-1] + b",}"), {}, [("invalid_json", 1)]),
    ("single_quotes", jsonl(b"{'custom_id': 'a'}"), {}, [("invalid_json", 1)]),
    (
        "raw_control_char",
        jsonl(
            line(chat(messages=[{"role": "user", "content": "a\x01b"}])).replace(
                b"\\u0001", b"\x01"
            )
        ),
        {},
        [("invalid_json", 1)],
    ),
    ("nesting_100k", jsonl(chat("a"), b"[" * 100_000), {}, [("nesting_too_deep", 2)]),
    (
        "int_5000_digits",
        jsonl(line(chat()).replace(b'"hi"}]', b'"hi"}],"seed":' + b"7" * 5000)),
        {},
        [("number_too_large", 1)],
    ),
    (
        "lone_surrogate",
        jsonl(line(chat()).replace(b'"hi"', b'"\\ud800"')),
        {},
        [("invalid_surrogate", 1)],
    ),
    ("nul_escape", jsonl(line(chat()).replace(b'"hi"', b'"a\\u0000"')), {}, [("nul_character", 1)]),
    (
        "nan",
        jsonl(
            chat("a"),
            line(chat("b", temperature=1)).replace(b'"temperature": 1', b'"temperature": NaN'),
        ),
        {},
        [("nan_not_allowed", 2)],
    ),
    (
        "infinity",
        jsonl(line(chat(temperature=1)).replace(b'"temperature": 1', b'"temperature": Infinity')),
        {},
        [("nan_not_allowed", 1)],
    ),
    (
        "duplicate_keys",
        jsonl(
            b'{"custom_id":"a","custom_id":"b","method":"POST","url":"/v1/embeddings",'
            b'"body":{"model":"m","input":"x"}}'
        ),
        {},
        [("duplicate_key", 1)],
    ),
    (
        "too_many_lines",
        jsonl(*good(5)),
        {"limits": Limits(max_lines=3)},
        [("too_many_lines", 4)],
    ),
    (
        "file_too_large",
        jsonl(*good(5)),
        {"limits": Limits(max_file_bytes=len(jsonl(*good(2))) + 10)},
        [("file_too_large", 3)],
    ),
    (
        "line_too_long",
        jsonl(chat("r1"), BIG_LINE, chat("r3")),
        {"limits": Limits(max_line_bytes=200)},
        [("line_too_long", 2)],
    ),
]


@pytest.mark.parametrize(
    ("data", "kwargs", "expected"),
    [pytest.param(d, k, e, id=name) for name, d, k, e in MALFORMED],
)
def test_malformed_file_is_refused_with_code_and_line(
    data: bytes, kwargs: dict[str, Any], expected: list[tuple[str, int | None]]
) -> None:
    report = validate_file(io.BytesIO(data), **kwargs)
    assert not report.ok
    assert [(e.code, e.line) for e in report.errors] == expected
    assert all(e.code in ERROR_CODES and e.message for e in report.errors)


def test_malformed_table_covers_every_code() -> None:
    covered = {code for *_, expected in MALFORMED for code, _ in expected}
    assert covered == ERROR_CODES
    assert len(MALFORMED) >= 30


def test_duplicate_custom_id_message_names_both_lines() -> None:
    data = jsonl(*good(2), chat("dup"), *good(5, 4), chat("dup"))
    (error,) = validate_file(io.BytesIO(data)).errors
    assert "line 3" in error.message and "line 9" in error.message


def test_mismatched_url_message_names_the_first_endpoint() -> None:
    (error,) = validate_file(io.BytesIO(jsonl(chat("a"), emb("b")))).errors
    assert CHAT in error.message and "line 1" in error.message


def test_invalid_utf8_on_line_7_names_only_line_7() -> None:
    lines = [line(c) for c in good(9)]
    lines[6] = lines[6].replace(b'"hi"', b'"h\xffi"')
    report = validate_file(io.BytesIO(jsonl(*lines)))
    assert [(e.line, e.code) for e in report.errors] == [(7, "invalid_utf8")]
    assert report.line_count == 9


def test_error_collection_stops_at_max_errors() -> None:
    data = jsonl(*([b"nope"] * 50))
    report = validate_file(io.BytesIO(data), limits=Limits(max_errors=3))
    assert [e.line for e in report.errors] == [1, 2, 3]
    assert report.line_count == 3


def test_file_too_large_stops_reading_at_the_limit() -> None:
    data = jsonl(*good(1000))
    stream = io.BytesIO(data)
    report = validate_file(stream, limits=Limits(max_file_bytes=1000))
    assert [e.code for e in report.errors] == ["file_too_large"]
    assert report.bytes <= 1001
    assert stream.tell() <= 1001


def test_a_line_exactly_at_the_line_limit_is_accepted() -> None:
    raw = line(chat())
    report = validate_file(io.BytesIO(raw + b"\r\n"), limits=Limits(max_line_bytes=len(raw)))
    assert report.ok, report.errors


# --- valid files ----------------------------------------------------------------------------


def chat_file_requests() -> list[dict[str, Any]]:
    return [
        chat("req-1", max_tokens=10, temperature=0.2, n=1),
        chat(
            "row 17 / doc#12",
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "rules"}]},
                {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "c1", "type": "function", "function": {}}],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "42"},
            ],
            max_completion_tokens=1_000_000,
            max_tokens=None,
        ),
        chat("日本語-ü-\U0001f600", messages=[{"role": "user", "content": "a\u2028b\x85c\x1cd"}]),
        chat("x" * 512),
        chat("7d0b6c1e-5a4e-4a51-9a59-0b5b7f6d2a11"),
    ]


def test_valid_chat_file_passes_and_iter_requests_matches() -> None:
    requests = chat_file_requests()
    data = jsonl(*requests)
    report = validate_file(io.BytesIO(data), known_models=["gpt-4o-mini"])
    assert report.ok, report.errors
    assert report.line_count == len(requests)
    assert report.endpoint == CHAT
    assert report.models == {"gpt-4o-mini": len(requests)}
    assert report.bytes == len(data)
    got = list(iter_requests(io.BytesIO(data)))
    assert got == [
        RequestLine(index=i, line=i + 1, custom_id=r["custom_id"], body=r["body"])
        for i, r in enumerate(requests)
    ]


def test_valid_embeddings_file_passes() -> None:
    requests = [
        emb("a"),
        emb("b", input=["one", "two"]),
        emb("c", input=[1, 2, 3]),
        emb("d", input=[[1, 2], [3]], dimensions=256),
    ]
    report = validate_file(io.BytesIO(jsonl(*requests)), endpoint=EMB)
    assert report.ok, report.errors
    assert report.endpoint == EMB
    assert [r.body for r in iter_requests(io.BytesIO(jsonl(*requests)))] == [
        r["body"] for r in requests
    ]


def test_crlf_without_final_newline_and_u2028_pass() -> None:
    requests = chat_file_requests()
    data = b"\r\n".join(line(r) for r in requests)
    assert "\u2028".encode() in data and not data.endswith(b"\n")
    report = validate_file(io.BytesIO(data))
    assert report.ok, report.errors
    assert report.line_count == len(requests)
    got = list(iter_requests(io.BytesIO(data)))
    assert [r.custom_id for r in got] == [r["custom_id"] for r in requests]
    assert got[2].body["messages"][0]["content"] == "a\u2028b\x85c\x1cd"


def test_default_model_fills_missing_models() -> None:
    requests = [without(c, "model", inner=True) for c in good(3)] + [chat("r9", model="other")]
    data = jsonl(*requests)
    report = validate_file(io.BytesIO(data), default_model="gpt-4o-mini", known_models=None)
    assert report.ok, report.errors
    assert report.models == {"gpt-4o-mini": 3, "other": 1}
    bodies = [r.body for r in iter_requests(io.BytesIO(data), default_model="gpt-4o-mini")]
    assert [b["model"] for b in bodies] == ["gpt-4o-mini"] * 3 + ["other"]
    assert "model" not in next(iter_requests(io.BytesIO(data))).body  # no default: as written


def test_custom_ids_are_compared_exactly() -> None:
    report = validate_file(io.BytesIO(jsonl(chat("Abc"), chat("abc"), chat("é"), chat("e\u0301"))))
    assert report.ok, report.errors


def test_iter_requests_refuses_a_line_that_does_not_validate() -> None:
    data = jsonl(chat("a"), b"[1]")
    it = iter_requests(io.BytesIO(data))
    assert next(it).custom_id == "a"
    with pytest.raises(InvalidBatchFile) as info:
        next(it)
    assert info.value.error.line == 2


# --- streaming ------------------------------------------------------------------------------


class GeneratedStream(io.RawIOBase):
    """A non-seekable stream whose bytes come from a generator, as an upload would."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.pending = b""
        self.largest_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # type: ignore[no-untyped-def]
        self.largest_read = max(self.largest_read, len(buf))
        while not self.pending:
            try:
                self.pending = next(self.chunks)
            except StopIteration:
                return 0
        n = min(len(buf), len(self.pending))
        buf[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


def test_200k_line_file_validates_from_a_non_seekable_stream() -> None:
    lines = 200_000
    template = (
        '{"custom_id":"e%d","method":"POST","url":"/v1/embeddings",'
        '"body":{"model":"text-embedding-3-small","input":"item %d"}}\n'
    )
    chunks = ((template % (i, i)).encode() for i in range(lines))
    stream = GeneratedStream(chunks)
    assert not stream.seekable()
    report = validate_file(stream, limits=Limits(max_lines=lines))
    assert report.ok, report.errors[:3]
    assert report.line_count == lines
    assert report.models == {"text-embedding-3-small": lines}
    assert stream.largest_read <= 64 * 1024  # read in blocks, never all at once


def test_urls_without_v1_mean_the_same_endpoint_as_litellm_writes_them() -> None:
    unprefixed = {**chat("b"), "url": "/chat/completions"}
    report = validate_file(io.BytesIO(jsonl(chat("a"), unprefixed)), endpoint=CHAT)
    assert report.ok, report.errors
    embeddings = {**emb("e"), "url": "/embeddings"}
    assert validate_file(io.BytesIO(jsonl(embeddings)), endpoint=EMB).ok
    legacy = {**chat("c"), "url": "/completions"}  # the legacy completions endpoint, unprefixed
    (error,) = validate_file(io.BytesIO(jsonl(legacy)), endpoint=CHAT).errors
    assert error.code == "mismatched_url"  # /v1/completions, not this file's chat endpoint
    (error,) = validate_file(io.BytesIO(jsonl({**chat("d"), "url": "/images/generations"}))).errors
    assert error.code == "invalid_url"


def test_file_pass_yields_requests_until_the_first_bad_line_and_reports_them_all() -> None:
    requests = good(5)
    data = jsonl(*requests[:3], with_top(chat("r9"), method="GET"), *requests[3:], chat("r2"))
    checked = FilePass(io.BytesIO(data))
    got = list(checked)
    assert [r.custom_id for r in got] == ["r1", "r2", "r3"]  # nothing after line 4
    assert [r.body for r in got] == [r["body"] for r in requests[:3]]
    assert checked.report == validate_file(io.BytesIO(data))
    assert [(e.code, e.line) for e in checked.report.errors] == [
        ("invalid_method", 4),
        ("duplicate_custom_id", 7),
    ]
    assert checked.bytes_read == len(data)


def test_file_pass_of_a_valid_file_yields_every_request_once() -> None:
    requests = chat_file_requests()
    data = jsonl(*requests)
    checked = FilePass(io.BytesIO(data))
    assert list(checked) == list(iter_requests(io.BytesIO(data)))
    assert checked.report is not None and checked.report.ok


@pytest.mark.parametrize(
    "raw",
    [
        b'{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[{"role":"user","content":"hi"}]}}',
        b' { "custom_id" : "a" , "method":"POST","url":"/v1/chat/completions",'
        b' "body" :\t{"model":"m","messages":[{"role":"user","content":"hi"}],'
        b' "x": "}\\"body\\": 1"} }\r',
        # "body" is not the last field, or the id looks like it: encoded anew
        b'{"body":{"model":"m","messages":[{"role":"user","content":"hi"}]},"custom_id":"a","method":"POST","url":"/v1/chat/completions"}',
        b'{"custom_id":"\\"body\\":","method":"POST","url":"/v1/chat/completions",'
        b'"body":{"model":"m","messages":[{"role":"user","content":"hi"}],"body":{"body":1}}}',
        b'{"custom_id":"body","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[{"role":"user","content":"hi"}]}}',
    ],
)
def test_body_json_is_the_body_as_written_or_encoded_anew(raw: bytes) -> None:
    checked = FilePass(io.BytesIO(raw + b"\n"))
    (request,) = checked
    assert checked.report is not None and checked.report.ok
    text = request.body_json()
    assert json.loads(text) == request.body
    if raw.rstrip().endswith(b"}}") or raw.rstrip().endswith(b"} }\r"):
        assert text.encode() in raw  # a slice of the line, not re-encoded


def test_body_json_is_not_a_nested_body_when_the_top_level_key_is_escaped() -> None:
    # The first plain "body" key of the line is inside the body, whose own key is an escape.
    raw = (
        b'{"custom_id":"a","method":"POST","url":"/v1/chat/completions",'
        b'"bod\\u0079":{"model":"m","messages":[{"role":"user","content":"hi"}],"body":{"x":1}}}'
    )
    (request,) = FilePass(io.BytesIO(raw + b"\n"))
    assert json.loads(request.body_json()) == request.body
    assert request.body["body"] == {"x": 1}


def test_a_default_model_is_encoded_into_the_body() -> None:
    data = jsonl(without(chat("a"), "model", inner=True))
    (request,) = FilePass(io.BytesIO(data), default_model="m9")
    assert json.loads(request.body_json())["model"] == "m9"
