"""Streaming, strict JSONL: a line splitter on bytes, a strict JSON decoder, and a compact encoder.

No batch semantics live here (see `validation`). The rules, and why they are stricter than the
standard library (research/reliability.md F8, F9):

- Lines are split on `\\n` only, never `str.splitlines()` (which also splits on U+2028, U+0085,
  `\\x1c`... inside a JSON string); a trailing `\\r` is dropped, so CRLF files work. The file is
  read in fixed-size blocks; an over-long line is skipped to its newline without being buffered.
- A line is decoded as strict UTF-8. A UTF-8 byte order mark is **rejected** (code `bom`), on
  any line: stripping it on line 1 only would make the raw file mean different things to
  different readers of the stored upload, and the fix for the user is one "save as UTF-8".
- `NaN`/`Infinity`/`-Infinity`, floats that overflow to infinity (`1e400`), duplicate object keys,
  lone surrogate escapes (`"\\ud800"`, which parse but cannot be written back as UTF-8), NUL
  characters (`"\\u0000"`, stored by SQLite but refused by PostgreSQL), integers over Python's
  4300-digit limit and nesting deeper than `MAX_DEPTH` are all rejected. Every failure, whatever
  the standard library raised, becomes one `JSONLineError(code, message)`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import orjson

__all__ = [
    "BLOCK_SIZE",
    "MAX_DEPTH",
    "JSONLineError",
    "LineTooLong",
    "dumps",
    "dumps_line",
    "iter_lines",
    "loads_stored",
    "scan_lines",
    "strict_loads",
]

BLOCK_SIZE = 1 << 16
# Fixed, so a line's acceptance never depends on how deep the caller's stack happens to be (the
# stdlib decoder only stops at the interpreter's recursion limit); generous for JSON schemas.
MAX_DEPTH = 64

_BOM = "\ufeff"
# Escapes that can produce a NUL or a lone surrogate. Matches inside `\\\\u0000` too: a false
# positive only costs a walk over the parsed value, which decides.
_RISKY_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
_SURROGATE = re.compile("[\ud800-\udfff]")


class JSONLineError(ValueError):
    """One line is not strict JSON. `code` is stable (see the module docstring); `message` is
    short and human-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"JSONLineError({self.code!r}, {self.message!r})"


@dataclass(frozen=True, slots=True)
class LineTooLong:
    """Yielded by `iter_lines` in place of a line over `max_line_bytes`. `size` counts the bytes
    before the newline (a trailing `\\r` included), or those read before the input ended."""

    line_no: int
    size: int


def scan_lines(
    fp: BinaryIO, *, max_line_bytes: int, block_size: int = BLOCK_SIZE
) -> Iterator[tuple[int, bytes | LineTooLong, int]]:
    """Like `iter_lines`, and also yields the byte offset just past each line (its `\\n`
    included), for callers that enforce a byte limit on the whole input."""
    if block_size < 1:
        raise ValueError("block_size must be positive")
    line_no = 0
    offset = 0  # bytes consumed through the end of the last yielded line
    parts: list[bytes] = []  # the current line's bytes from earlier blocks, while it may fit
    size = 0  # bytes of the current line seen so far, buffered or skipped
    skipping = False
    buffer_cap = max_line_bytes + 1  # room for a `\r` that will be dropped
    read = fp.read
    while True:
        block = read(block_size)
        if not block:
            break
        if not isinstance(block, bytes):
            if isinstance(block, str):
                raise TypeError("iter_lines needs a binary file (open it with 'rb')")
            block = bytes(block)
        # One C-level split per block is far cheaper than a find() loop per line.
        pieces = block.split(b"\n")
        tail = pieces.pop()
        for piece in pieces:
            line_no += 1
            if size:
                n = size + len(piece)
                offset += n + 1
                if skipping or n > buffer_cap:
                    yield line_no, LineTooLong(line_no, n), offset
                    parts.clear()
                    size = 0
                    skipping = False
                    continue
                parts.append(piece)
                piece = b"".join(parts)
                parts.clear()
                size = 0
            else:
                offset += len(piece) + 1
            n = len(piece)
            if piece.endswith(b"\r"):
                piece = piece[:-1]
            if len(piece) > max_line_bytes:
                yield line_no, LineTooLong(line_no, n), offset
            else:
                yield line_no, piece, offset
        if tail:
            size += len(tail)
            if not skipping:
                if size > buffer_cap:
                    skipping = True  # from here on only count: never hold the whole line
                    parts.clear()
                else:
                    parts.append(tail)
    if size:  # a last line without a newline
        line_no += 1
        offset += size
        if skipping:
            yield line_no, LineTooLong(line_no, size), offset
            return
        piece = b"".join(parts)
        if piece.endswith(b"\r"):
            piece = piece[:-1]
        if len(piece) > max_line_bytes:
            yield line_no, LineTooLong(line_no, size), offset
        else:
            yield line_no, piece, offset


def iter_lines(
    fp: BinaryIO, *, max_line_bytes: int, block_size: int = BLOCK_SIZE
) -> Iterator[tuple[int, bytes | LineTooLong]]:
    """Yield `(line_no, line)` for each line of a binary stream, `line_no` counting from 1.

    `line` has no `\\n` and no trailing `\\r`. Splits on `\\n` only. Blank lines are yielded (the
    caller decides what they mean); a last line without a newline is a line. A line longer than
    `max_line_bytes` is yielded as a `LineTooLong` marker instead of its bytes, and is skipped to
    its newline without being buffered. Reads `block_size` bytes at a time, never the whole file.
    """
    for line_no, line, _ in scan_lines(fp, max_line_bytes=max_line_bytes, block_size=block_size):
        yield line_no, line


def _reject_constant(name: str) -> Any:
    raise JSONLineError("nan_not_allowed", f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise JSONLineError("number_too_large", f"number {_preview(text)} overflows a float")
    return value


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise JSONLineError("duplicate_key", f"duplicate key {_preview(key)}")
            seen.add(key)
    return obj


# Built once: json.loads with hooks would build a new decoder per call.
_DECODER = json.JSONDecoder(
    object_pairs_hook=_object_without_duplicates,
    parse_constant=_reject_constant,
    parse_float=_finite_float,
)
_SCAN_ONCE = _DECODER.scan_once
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _preview(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _check_tree(value: Any, check_strings: bool) -> None:
    """Walk a parsed value (iteratively, so depth cannot overflow the stack)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is dict or kind is list:
            if depth > MAX_DEPTH:
                raise JSONLineError("nesting_too_deep", f"nesting deeper than {MAX_DEPTH} levels")
            if kind is dict:
                for key, child in item.items():
                    if check_strings:
                        _check_string(key)
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
        elif kind is str and check_strings:
            _check_string(item)


def _check_string(text: str) -> None:
    if "\x00" in text:
        raise JSONLineError("nul_character", "NUL character (\\u0000) in a string")
    if _SURROGATE.search(text):
        raise JSONLineError(
            "invalid_surrogate", "lone surrogate escape (\\ud800-\\udfff) in a string"
        )


def strict_loads(data: bytes) -> Any:
    """Parse one JSON value from `data` under the strict rules of this module.

    Raises `JSONLineError` and nothing else. Codes: `invalid_utf8`, `bom`, `invalid_json` (syntax,
    trailing data, raw control characters, anything unexpected), `nan_not_allowed`,
    `duplicate_key`, `invalid_surrogate`, `nul_character`, `number_too_large`, `nesting_too_deep`.
    Whitespace around the value is allowed; a second value after it is not.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raw = exc.object[exc.start : exc.start + 1]
        if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
            msg = "the file is UTF-16 (it starts with a UTF-16 byte order mark); use UTF-8"
        else:
            msg = f"invalid UTF-8 byte 0x{raw.hex()} at byte {exc.start + 1} of the line"
        raise JSONLineError("invalid_utf8", msg) from None
    except Exception as exc:  # a non-bytes argument
        raise JSONLineError("invalid_json", f"cannot decode: {type(exc).__name__}") from None
    if text.startswith(_BOM):
        raise JSONLineError("bom", "UTF-8 BOM (byte order mark) found; save the file without it")
    try:
        try:
            # The scanner itself, without decode()'s Python-level whitespace regexes; anything
            # unusual (surrounding whitespace, errors) takes decode() for its full checks.
            value, end = _SCAN_ONCE(text, 0)
            if end != len(text):
                value = _DECODER.decode(text)
        except StopIteration:
            value = _DECODER.decode(text)
        # NUL and lone surrogates only arise from escapes: raw NUL is refused by the decoder and
        # raw surrogates by the UTF-8 decode, so most lines skip the walk entirely.
        risky = "\\u" in text and _RISKY_ESCAPE.search(text) is not None
        if risky or text.count("[") + text.count("{") > MAX_DEPTH:
            _check_tree(value, risky)
        return value
    except JSONLineError:
        raise
    except json.JSONDecodeError as exc:
        msg = "trailing data after the JSON value" if exc.msg == "Extra data" else exc.msg
        raise JSONLineError("invalid_json", f"{msg} at column {exc.colno}") from None
    except RecursionError:
        raise JSONLineError("nesting_too_deep", f"nesting deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        if "digits" in str(exc):  # int() over sys.get_int_max_str_digits()
            raise JSONLineError("number_too_large", "integer with too many digits") from None
        raise JSONLineError("invalid_json", _preview(str(exc), 80)) from None
    except Exception as exc:  # MemoryError and anything else: never a 500 for bad input
        raise JSONLineError("invalid_json", f"cannot parse: {type(exc).__name__}") from None


def loads_stored(text: str | bytes) -> Any:
    """JSON that passed these rules on its way in (a stored body): orjson, a fraction of json's
    cost, falling back to json for what only json reads (integers past 64 bits)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON (`ensure_ascii=False`, no NaN). U+0085, U+2028 and U+2029 are written
    as escapes so that readers that split with `str.splitlines()` or JavaScript still see one
    line; that is safe because those characters can only occur inside JSON strings."""
    text = _ENCODER.encode(obj)
    if "\u2028" in text or "\u2029" in text or "\x85" in text:
        text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
        text = text.replace("\x85", "\\u0085")
    return text.encode("utf-8")


def dumps_line(obj: Any) -> bytes:
    """`dumps(obj)` followed by `\\n`: one JSONL line."""
    return dumps(obj) + b"\n"
