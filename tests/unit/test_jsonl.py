"""jsonl: line splitting on bytes, the strict decoder, the compact encoder."""

from __future__ import annotations

import io
import json
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchgate.jsonl import (
    MAX_DEPTH,
    JSONLineError,
    LineTooLong,
    dumps,
    dumps_line,
    iter_lines,
    scan_lines,
    strict_loads,
)


def lines(data: bytes, *, max_line_bytes: int = 1000, block_size: int = 65536) -> list:
    return list(iter_lines(io.BytesIO(data), max_line_bytes=max_line_bytes, block_size=block_size))


class ChunkedStream(io.RawIOBase):
    """A non-seekable stream that produces `total` bytes of `fill` then `after`, generated on
    demand; records the largest read it was asked for."""

    def __init__(self, total: int, fill: bytes = b"x", after: bytes = b"") -> None:
        self.left = total
        self.fill = fill
        self.after = after
        self.largest_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # type: ignore[no-untyped-def]
        self.largest_read = max(self.largest_read, len(buf))
        if self.left > 0:
            n = min(len(buf), self.left)
            buf[:n] = self.fill * n
            self.left -= n
            return n
        n = min(len(buf), len(self.after))
        buf[:n] = self.after[:n]
        self.after = self.after[n:]
        return n


# --- line splitting -------------------------------------------------------------------------


def test_lf_and_crlf_lines_lose_their_terminators() -> None:
    assert lines(b'{"a":1}\r\n{"b":2}\n{"c":3}\r\n') == [
        (1, b'{"a":1}'),
        (2, b'{"b":2}'),
        (3, b'{"c":3}'),
    ]


def test_last_line_without_newline_is_a_line() -> None:
    assert lines(b"one\ntwo") == [(1, b"one"), (2, b"two")]


def test_final_newline_does_not_add_an_empty_line() -> None:
    assert lines(b"one\n") == [(1, b"one")]
    assert lines(b"") == []


def test_blank_and_whitespace_lines_are_yielded() -> None:
    assert lines(b"a\n\n  \r\n\t\nb") == [(1, b"a"), (2, b""), (3, b"  "), (4, b"\t"), (5, b"b")]


def test_only_a_trailing_cr_is_stripped() -> None:
    assert lines(b"a\rb\r\r\n") == [(1, b"a\rb\r")]


@pytest.mark.parametrize("sep", ["\u2028", "\u2029", "\x85", "\x1c", "\x1d", "\x1e", "\x0b"])
def test_unicode_line_separators_inside_a_string_stay_in_one_line(sep: str) -> None:
    raw = json.dumps({"text": f"a{sep}b"}, ensure_ascii=False).encode() + b"\n{}\n"
    assert f"a{sep}b".splitlines() != [f"a{sep}b"]  # the trap being guarded against
    got = lines(raw)
    assert len(got) == 2
    assert strict_loads(got[0][1]) == {"text": f"a{sep}b"}


@pytest.mark.parametrize("block_size", [1, 2, 3, 5, 7, 8, 64])
def test_block_boundaries_do_not_change_the_lines(block_size: int) -> None:
    data = b'{"a":"x"}\r\n\n{"b":[1,2,3]}\nlast \xe2\x80\xa8 line\r\n\r\ntail'
    expected = lines(data, block_size=1 << 16)
    assert lines(data, block_size=block_size) == expected
    assert [n for n, _ in expected] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("block_size", [1, 3, 4, 16])
def test_long_line_cap_is_exact_across_blocks(block_size: int) -> None:
    data = b"1234\n12345\n1234\r\n12345\r\n123456"
    got = lines(data, max_line_bytes=4, block_size=block_size)
    assert got == [
        (1, b"1234"),
        (2, LineTooLong(2, 5)),
        (3, b"1234"),  # the \r does not count against the cap
        (4, LineTooLong(4, 6)),
        (5, LineTooLong(5, 6)),
    ]


def test_scan_lines_reports_the_offset_after_each_line() -> None:
    data = b"ab\r\n\ncd"
    got = list(scan_lines(io.BytesIO(data), max_line_bytes=10, block_size=3))
    assert got == [(1, b"ab", 4), (2, b"", 5), (3, b"cd", 7)]


def test_long_line_is_skipped_without_being_buffered() -> None:
    stream = ChunkedStream(20 * 1024 * 1024, after=b'\n{"ok":true}\n')
    tracemalloc.start()
    try:
        got = list(iter_lines(stream, max_line_bytes=1024, block_size=64 * 1024))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got == [(1, LineTooLong(1, 20 * 1024 * 1024)), (2, b'{"ok":true}')]
    assert peak < 2 * 1024 * 1024  # a 20 MB line, never held
    assert stream.largest_read <= 64 * 1024


def test_a_text_mode_file_is_refused() -> None:
    with pytest.raises(TypeError, match="binary"):
        list(iter_lines(io.StringIO("{}\n"), max_line_bytes=10))


# --- strict_loads ---------------------------------------------------------------------------


def test_strict_loads_parses_ordinary_json() -> None:
    data = b' {"a": [1, 2.5, -0, true, null, "\\u00e9\\ud83d\\ude00"], "b": {}} '
    assert strict_loads(data) == {"a": [1, 2.5, 0, True, None, "\u00e9\U0001f600"], "b": {}}


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b'{"a":"\xff"}', "invalid_utf8"),
        (b'{"a":"\xed\xa0\x80"}', "invalid_utf8"),  # a surrogate encoded in UTF-8
        (b'\xc0\xaf{"a":1}', "invalid_utf8"),  # overlong encoding
        ('{"a":1}'.encode("utf-16"), "invalid_utf8"),
        (b'\xef\xbb\xbf{"a":1}', "bom"),
        (b'{"a":NaN}', "nan_not_allowed"),
        (b'{"a":Infinity}', "nan_not_allowed"),
        (b'{"a":-Infinity}', "nan_not_allowed"),
        (b'{"a":1e400}', "number_too_large"),
        (b'{"a":-1' + b"0" * 400 + b".5}", "number_too_large"),
        (b'{"a":' + b"9" * 5000 + b"}", "number_too_large"),
        (b'{"a":1,"a":2}', "duplicate_key"),
        (b'{"x":{"b":1,"b":1}}', "duplicate_key"),
        (b'{"a":"\\ud800"}', "invalid_surrogate"),
        (b'{"a":"\\udfff x"}', "invalid_surrogate"),
        (b'{"\\ud800":1}', "invalid_surrogate"),
        (b'{"a":"\\u0000"}', "nul_character"),
        (b'{"a\\u0000":1}', "nul_character"),
        (b"[" * 100_000, "nesting_too_deep"),
        (b"[" * 100_000 + b"]" * 100_000, "nesting_too_deep"),
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "nesting_too_deep"),
        (b'{"a":1}x', "invalid_json"),
        (b'{"a":1}{"b":2}', "invalid_json"),
        (b'{"a":1} {"b":2}', "invalid_json"),
        (b"{'a':1}", "invalid_json"),
        (b'{"a":1,}', "invalid_json"),
        (b'{"a":1} // note', "invalid_json"),
        (b'{"a":"x\x01y"}', "invalid_json"),
        (b'{"a":"line\nbreak"}', "invalid_json"),
        (b"", "invalid_json"),
        (b"   ", "invalid_json"),
        (b"\x00", "invalid_json"),
        (b'{"a":01}', "invalid_json"),
    ],
)
def test_strict_loads_rejects_with_a_stable_code(data: bytes, code: str) -> None:
    with pytest.raises(JSONLineError) as info:
        strict_loads(data)
    assert info.value.code == code
    assert info.value.message


def test_nesting_up_to_the_cap_is_accepted() -> None:
    data = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    value = strict_loads(data)
    for _ in range(MAX_DEPTH - 1):
        value = value[0]
    assert value == []


def test_escaped_backslash_before_u0000_is_not_a_nul() -> None:
    assert strict_loads(b'{"a":"\\\\u0000"}') == {"a": "\\u0000"}


def test_valid_surrogate_pairs_are_accepted() -> None:
    assert strict_loads(b'"\\ud83d\\ude00"') == "\U0001f600"


def test_trailing_data_message_is_readable() -> None:
    with pytest.raises(JSONLineError, match="trailing data"):
        strict_loads(b'{"a":1} 2')


def test_invalid_utf8_message_names_the_byte() -> None:
    with pytest.raises(JSONLineError, match="0xff at byte 7"):
        strict_loads(b'{"a":"\xff"}')


def test_bom_message_says_bom() -> None:
    with pytest.raises(JSONLineError, match="BOM"):
        strict_loads(b"\xef\xbb\xbf{}")


# --- dumps ----------------------------------------------------------------------------------


def test_dumps_is_compact_utf8_without_ascii_escapes() -> None:
    assert dumps({"a": [1, "é"], "b": None}) == '{"a":[1,"é"],"b":null}'.encode()
    assert dumps_line({"a": 1}) == b'{"a":1}\n'


def test_dumps_refuses_nan() -> None:
    with pytest.raises(ValueError):
        dumps({"a": float("nan")})


def test_dumps_escapes_unicode_line_separators() -> None:
    value = {"t": "a\u2028b\u2029c\x85d"}
    out = dumps(value)
    assert len(out.decode().splitlines()) == 1
    assert strict_loads(out) == value


# What strict_loads accepts in strings: any character but NUL and lone surrogates.
safe_text = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)))
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | safe_text,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(safe_text, children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=300)
@given(json_values)
def test_dumps_then_strict_loads_round_trips(value: object) -> None:
    data = dumps(value)
    assert b"\n" not in data
    assert strict_loads(data) == value


@settings(max_examples=500)
@given(
    st.binary(max_size=200)
    | json_values.map(dumps).flatmap(
        lambda d: st.tuples(st.integers(0, len(d)), st.binary(max_size=4)).map(
            lambda cut: d[: cut[0]] + cut[1] + d[cut[0] :]
        )
    )
)
def test_strict_loads_raises_only_jsonlineerror(data: bytes) -> None:
    try:
        value = strict_loads(data)
    except JSONLineError as exc:
        assert exc.code in {
            "invalid_utf8",
            "bom",
            "invalid_json",
            "nan_not_allowed",
            "duplicate_key",
            "invalid_surrogate",
            "nul_character",
            "number_too_large",
            "nesting_too_deep",
        }
    else:
        # Whatever is accepted can be written back as UTF-8 JSON and read again unchanged.
        assert strict_loads(dumps(value)) == value
