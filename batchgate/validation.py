"""Validation of an OpenAI Batch input file, entirely and before any paid call.

Holds the limits, the per-line error report, `validate_file` (one streaming pass that collects
errors with line numbers) and `iter_requests` (re-reads a file that validated and yields its
requests). Decoding rules (UTF-8, BOM, NaN, duplicate keys, NUL, surrogates...) are `jsonl`'s.

Rules chosen here, beyond OpenAI's own:

- Blank lines (empty or whitespace only) are errors (`blank_line`), wherever they are, so that a
  line number is always a request number; a file with no request line is `empty_file`.
- `custom_id`: a string of 1 to 512 characters without control characters (U+0000-U+001F,
  U+007F-U+009F) or line/paragraph separators (U+2028, U+2029). Ids are compared exactly (case
  and Unicode normalization matter) and are never used in paths.
- Top-level keys are exactly `custom_id`, `method` (`"POST"`), `url` and `body`. One endpoint
  per file, one of `body_checks.ENDPOINTS` (chat completions, embeddings, responses,
  completions, moderations); the body is checked for that endpoint by `body_checks`.
- Reading stops, with one error, at the first line past `max_lines` or the byte past
  `max_file_bytes`, and once `max_errors` errors are collected.

Error codes (stable): see `ERROR_CODES`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from batchgate.body_checks import ENDPOINTS, check_body
from batchgate.custom_ids import FirstLines
from batchgate.jsonl import JSONLineError, LineTooLong, scan_lines, strict_loads

__all__ = [
    "ENDPOINTS",
    "ERROR_CODES",
    "FilePass",
    "InvalidBatchFile",
    "Limits",
    "LineError",
    "Report",
    "RequestLine",
    "iter_requests",
    "validate_file",
]


def canonical_url(url: Any) -> Any:
    """A line's url as batchgate names it: LiteLLM proxy clients write `/chat/completions`
    without the `/v1` prefix (the proxy serves both), so those mean the same endpoint."""
    if isinstance(url, str) and "/v1" + url in ENDPOINTS:
        return "/v1" + url
    return url


ERROR_CODES = frozenset(
    {
        # from jsonl.strict_loads
        "invalid_utf8",
        "bom",
        "invalid_json",
        "nan_not_allowed",
        "duplicate_key",
        "invalid_surrogate",
        "nul_character",
        "number_too_large",
        "nesting_too_deep",
        # file level
        "empty_file",
        "file_too_large",
        "too_many_lines",
        "line_too_long",
        "blank_line",
        # request lines
        "not_an_object",
        "unknown_field",
        "missing_custom_id",
        "invalid_custom_id",
        "duplicate_custom_id",
        "invalid_method",
        "invalid_url",
        "mismatched_url",
        "missing_body",
        "missing_model",
        "unknown_model",
        "invalid_body",
    }
)

CUSTOM_ID_MAX_CHARS = 512
_CUSTOM_ID_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")  # also the start of a UTF-32 LE BOM
_TOP_KEYS = frozenset({"custom_id", "method", "url", "body"})


@dataclass(frozen=True, slots=True)
class LineError:
    """One problem; `line` is 1-based, or None for the file as a whole."""

    line: int | None
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Limits:
    """OpenAI's per-file limits by default."""

    max_lines: int = 50_000
    max_file_bytes: int = 200 * 1024 * 1024
    max_line_bytes: int = 10 * 1024 * 1024
    max_errors: int = 100


@dataclass(slots=True)
class Report:
    """The outcome of `validate_file`. `line_count` counts the physical lines read (all of them
    when the file is valid); `models` counts requests per effective model; `endpoint` is the
    batch endpoint, or the first line's url; `bytes` is the number of bytes read."""

    ok: bool
    line_count: int
    errors: list[LineError] = field(default_factory=list)
    models: dict[str, int] = field(default_factory=dict)
    endpoint: str | None = None
    bytes: int = 0


@dataclass(frozen=True, slots=True)
class RequestLine:
    """One request of a validated file: `index` from 0 in file order, `line` from 1; `raw`, the
    line's bytes as read when `body` is its last field (so its text can be sliced out)."""

    index: int
    line: int
    custom_id: str
    body: dict[str, Any]
    raw: bytes | None = field(default=None, compare=False, repr=False)

    def body_json(self) -> str:
        """The body as JSON text: as written in the file when it is the line's last field (no
        re-encoding: it was ~a third of the cost of storing a line), else encoded anew."""
        if self.raw is not None and (text := _last_body_text(self.raw.decode("utf-8"))):
            return text
        return json.dumps(self.body, ensure_ascii=False)


_JSON_SPACE = " \t\r\n"
_PLAIN_SCAN = json.JSONDecoder().scan_once  # the line passed strict_loads already


def _last_body_text(text: str) -> str | None:
    """The text of the `body` value of a valid request line whose last field is `body`: from
    the first `"body"` followed by a colon to the closing brace, or None.

    With no backslash before it, that `"body"` is the top-level key: the fields before the body
    are `custom_id`, `method` and `url`, whose values are strings, and without escapes every
    `"` there is a string's delimiter, so a `"body"` followed by a colon is one of their keys.
    Otherwise (an escape, perhaps a key spelled `"bod\\u0079"`), the head up to it is parsed
    with a stand-in value: if that gives the four fields, it was the top-level key."""
    at = text.find('"body"')
    while at >= 0:
        end = at + 6
        while end < len(text) and text[end] in _JSON_SPACE:
            end += 1
        if text.startswith(":", end):
            break
        at = text.find('"body"', end)
    else:
        return None
    if text.find("\\", 0, at) >= 0 and not _is_top_level_body(text[:at]):
        return None
    rest = text[end + 1 :].strip(_JSON_SPACE)
    if not rest.endswith("}"):
        return None
    return rest[:-1].rstrip(_JSON_SPACE)


def _is_top_level_body(head: str) -> bool:
    """Whether a `"body"` key after `head` (a line's text up to it) is the line's fourth field."""
    head += '"body":0}'
    try:
        value, end = _PLAIN_SCAN(head, 0)
    except (StopIteration, ValueError):
        return False
    return (
        end == len(head) and type(value) is dict and len(value) == 4 and list(value)[-1] == "body"
    )


class InvalidBatchFile(ValueError):
    """`iter_requests` met a line that `validate_file` would have refused."""

    def __init__(self, error: LineError) -> None:
        super().__init__(f"line {error.line}: {error.message}")
        self.error = error


class _CappedReader:
    """Reads at most `cap` bytes from `fp`, so a huge upload is never read past its limit."""

    def __init__(self, fp: BinaryIO, cap: int) -> None:
        self._fp = fp
        self._left = cap
        self.count = 0

    def read(self, size: int) -> bytes:
        if self._left <= 0:
            return b""
        data = self._fp.read(min(size, self._left))
        if data:
            self._left -= len(data)
            self.count += len(data)
        return data


def _too_long(marker: LineTooLong, limit: int) -> LineError:
    return LineError(
        marker.line_no,
        "line_too_long",
        f"line is {marker.size:,} bytes or more; the limit is {limit:,} bytes",
    )


class _Validator:
    """The state of one pass: seen custom_ids, the file's endpoint, model counts, errors."""

    def __init__(
        self,
        endpoint: str | None,
        known_models: Collection[str] | None,
        default_model: str | None,
    ) -> None:
        self.endpoint = endpoint
        self.endpoint_line: int | None = None  # the line that fixed the endpoint, if any
        self.known = frozenset(known_models) if known_models is not None else None
        self.default_model = default_model
        self.default_ok = default_model is not None and (
            self.known is None or default_model in self.known
        )
        self.default_reported = False
        self.seen = FirstLines()  # custom_id -> first line, ~35 bytes per id
        self.models: dict[str, int] = {}
        self.errors: list[LineError] = []
        self.requests = 0  # non-blank lines

    def add(self, line: int | None, code: str, message: str) -> None:
        self.errors.append(LineError(line, code, message))

    def check(self, line: int, data: bytes) -> dict[str, Any] | None:
        """Check one line; its request object if the line is valid, else None."""
        if not data.strip():
            self.add(line, "blank_line", "blank line (blank lines are not allowed)")
            return None
        self.requests += 1
        try:
            obj = strict_loads(data)
        except JSONLineError as exc:
            self.add(line, exc.code, exc.message)
            return None
        if type(obj) is not dict:
            self.add(line, "not_an_object", f"line is a JSON {_json_type(obj)}, not an object")
            return None
        before = len(self.errors)
        if len(obj) != 4 or obj.keys() != _TOP_KEYS:
            extra = sorted(k for k in obj if k not in _TOP_KEYS)
            if extra:
                names = ", ".join(repr(k[:40]) for k in extra[:5])
                self.add(line, "unknown_field", f"unknown top-level field(s): {names}")
        self._check_custom_id(line, obj)
        method = obj.get("method")
        if method != "POST":
            self.add(line, "invalid_method", f"method must be 'POST', not {_show(method)}")
        url = canonical_url(obj.get("url"))
        url_ok = self._check_url(line, url)
        if "body" not in obj:
            self.add(line, "missing_body", "body is missing")
            return None
        body = obj["body"]
        if type(body) is not dict:
            self.add(line, "invalid_body", "body must be an object")
            return None
        self._check_model(line, body)
        if url_ok and (problem := check_body(url, body)):
            self.add(line, "invalid_body", problem)
        return obj if len(self.errors) == before else None

    def _check_custom_id(self, line: int, obj: dict[str, Any]) -> None:
        if "custom_id" not in obj:
            self.add(line, "missing_custom_id", "custom_id is missing")
            return
        cid = obj["custom_id"]
        if type(cid) is not str:
            self.add(line, "invalid_custom_id", f"custom_id must be a string, not {_show(cid)}")
            return
        if not cid or len(cid) > CUSTOM_ID_MAX_CHARS or _CUSTOM_ID_FORBIDDEN.search(cid):
            self.add(
                line,
                "invalid_custom_id",
                f"custom_id must be 1 to {CUSTOM_ID_MAX_CHARS} characters without control "
                "characters or line separators",
            )
            return
        first = self.seen.first(cid, line)
        if first != line:
            self.add(
                line,
                "duplicate_custom_id",
                f"custom_id {cid[:80]!r} on line {line} was already used on line {first}",
            )

    def _check_url(self, line: int, url: Any) -> bool:
        if url not in ENDPOINTS:
            allowed = ", ".join(sorted(ENDPOINTS))
            self.add(line, "invalid_url", f"url must be one of {allowed}, not {_show(url)}")
            return False
        if self.endpoint is None:
            self.endpoint, self.endpoint_line = url, line
        elif url != self.endpoint:
            where = f"line {self.endpoint_line}" if self.endpoint_line else "the batch"
            self.add(
                line,
                "mismatched_url",
                f"url {url} differs from {self.endpoint} of {where}; one endpoint per file",
            )
            return False
        return True

    def _check_model(self, line: int, body: dict[str, Any]) -> None:
        model = body.get("model")
        if model is None:
            if self.default_model is None:
                self.add(line, "missing_model", "body.model is missing and no default was given")
                return
            if not self.default_ok:
                if not self.default_reported:
                    self.default_reported = True
                    self.add(line, "unknown_model", f"unknown model {self.default_model!r}")
                return
            model = self.default_model
        elif type(model) is not str or not model:
            self.add(line, "invalid_body", "body.model must be a non-empty string")
            return
        elif self.known is not None and model not in self.known:
            self.add(line, "unknown_model", f"unknown model {model[:80]!r}")
            return
        self.models[model] = self.models.get(model, 0) + 1


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {list: "array", str: "string", bool: "boolean"}.get(type(value), "number")


def _show(value: Any) -> str:
    if value is None:
        return "missing or null"
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


class FilePass:
    """One streaming pass over a batch file: checks every line under the rules of
    `validate_file`, and yields the requests of the file's lines for as long as none has failed
    (a consumer stores them as they come, and drops them if `report` ends not ok). Iterate it
    once; `report` is set when the iteration ends. `fp` need not be seekable.

    `endpoint` is the batch's endpoint (None: the first line's url fixes it); `known_models`, if
    given, is the set of allowed models; `default_model` stands in for a missing `body.model`
    (in the yielded body too, as a new dict).
    """

    def __init__(
        self,
        fp: BinaryIO,
        *,
        endpoint: str | None = None,
        known_models: Collection[str] | None = None,
        default_model: str | None = None,
        limits: Limits = Limits(),
    ) -> None:
        self._v = _Validator(endpoint, known_models, default_model)
        self._endpoint = endpoint
        self._default_model = default_model
        self._limits = limits
        self.report: Report | None = None
        self._reader = _CappedReader(fp, limits.max_file_bytes + 1)

    @property
    def bytes_read(self) -> int:
        return self._reader.count

    def __iter__(self) -> Iterator[RequestLine]:
        v, limits, default_model = self._v, self._limits, self._default_model
        if self._endpoint is not None and self._endpoint not in ENDPOINTS:
            v.add(None, "invalid_url", f"endpoint must be one of {', '.join(sorted(ENDPOINTS))}")
            v.endpoint = None  # still check the lines, against each other
        errors = v.errors
        reader = self._reader
        line_count = 0
        stopped = False  # reading ended before the end of the file
        for line, data, end in scan_lines(reader, max_line_bytes=limits.max_line_bytes):
            if end > limits.max_file_bytes:
                v.add(line, "file_too_large", f"file is over {limits.max_file_bytes:,} bytes")
                stopped = True
                break
            if line > limits.max_lines:
                v.add(line, "too_many_lines", f"file has more than {limits.max_lines:,} lines")
                stopped = True
                break
            line_count = line
            if type(data) is LineTooLong:
                v.requests += 1
                errors.append(_too_long(data, limits.max_line_bytes))
            else:
                obj = v.check(line, data)
                if line == 1 and data[:2] in _UTF16_BOMS:
                    stopped = True  # every later line would be noise from the same cause
                    break
                if obj is not None and not errors:
                    body = obj["body"]
                    # Keys keep the line's order: the body's text is sliced out only when last.
                    raw = data if next(reversed(obj)) == "body" else None
                    if default_model is not None and body.get("model") is None:
                        body, raw = {**body, "model": default_model}, None  # not as written
                    yield RequestLine(line - 1, line, obj["custom_id"], body, raw)
            if len(errors) >= limits.max_errors:
                stopped = True
                break
        if not stopped and v.requests == 0:
            v.add(None, "empty_file", "the file has no requests (blank lines do not count)")
        # Every line is read: the id table (~35 MB at 1M lines) must not stay alive through the
        # ingest's last group, the price pinning and the enqueue.
        v.seen = FirstLines()
        kept = errors[: limits.max_errors]
        self.report = Report(
            ok=not kept,
            line_count=line_count,
            errors=kept,
            models=v.models,
            endpoint=v.endpoint,
            bytes=reader.count,
        )


def validate_file(
    fp: BinaryIO,
    *,
    endpoint: str | None = None,
    known_models: Collection[str] | None = None,
    default_model: str | None = None,
    limits: Limits = Limits(),
) -> Report:
    """Validate a whole batch file in one streaming pass; `fp` is any binary stream (it need
    not be seekable). Never raises for bad content: every problem is a `LineError` in the report.
    The arguments are `FilePass`'s.
    """
    checked = FilePass(
        fp, endpoint=endpoint, known_models=known_models, default_model=default_model, limits=limits
    )
    for _ in checked:
        pass
    assert checked.report is not None
    return checked.report


def iter_requests(
    fp: BinaryIO, *, limits: Limits = Limits(), default_model: str | None = None
) -> Iterator[RequestLine]:
    """Yield the requests of a file that `validate_file` accepted, streaming, in file order.

    `body.model` is filled from `default_model` when absent (the body is a new dict). Only the
    structure needed here is re-checked; a line that does not fit raises `InvalidBatchFile`.
    """
    reader = _CappedReader(fp, limits.max_file_bytes + 1)
    for index, (line, data, end) in enumerate(
        scan_lines(reader, max_line_bytes=limits.max_line_bytes)
    ):
        if end > limits.max_file_bytes:
            raise InvalidBatchFile(LineError(line, "file_too_large", "file is over the limit"))
        if type(data) is LineTooLong:
            raise InvalidBatchFile(_too_long(data, limits.max_line_bytes))
        if not data.strip():
            raise InvalidBatchFile(LineError(line, "blank_line", "blank line"))
        try:
            obj = strict_loads(data)
        except JSONLineError as exc:
            raise InvalidBatchFile(LineError(line, exc.code, exc.message)) from None
        cid = obj.get("custom_id") if type(obj) is dict else None
        body = obj.get("body") if type(obj) is dict else None
        if type(cid) is not str or type(body) is not dict:
            raise InvalidBatchFile(LineError(line, "not_an_object", "not a request line"))
        if default_model is not None and body.get("model") is None:
            body = {**body, "model": default_model}
        yield RequestLine(index, line, cid, body)
