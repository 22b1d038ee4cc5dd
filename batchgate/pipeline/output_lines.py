"""The output-file line of a finished item: what finalize writes and live results send.

Finalize writes up to a million of these, so a line is not built as a dict and encoded: it is a
bytes template around the stored response body (`store/answers.py`), spliced in unparsed (and,
read as bytes, never decoded). The line is exactly `json.dumps(line, ensure_ascii=False)` of the
line as an object (keys, order and spacing) in UTF-8, for rows of either storage shape;
`tests/unit/test_output_lines.py` holds it to that. The only JSON parsed per line is the answer
without its body (~150 bytes), by orjson.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any

import orjson

from batchgate.money import usd_str

# Bytes templates: finalize writes bytes, and a line built as bytes around the body as read
# (UTF-8, never decoded) skips the decode of every body and the encode of every line.
_LINE = (
    b'{"id": "batch_req_%012d", "custom_id": %s, "response": %s, "error": %s, "batchgate": '
    b'{"index": %d, %s, "attempts": %d, "reasks": %d, "tried": %s, "usage": {"input_tokens": %d, '
    b'"output_tokens": %d, "cache_read_tokens": %d, "cache_write_tokens": %d}, '
    b'"cost_usd": "%s", "unpriced": %s, "cached": %s, "lane": %s}}\n'
)
_WHO = b'"model": %s, "vendor": %s, "deployment": %s, "provider_model": %s'
_RESPONSE = b'{"status_code": %s, "request_id": %s, "body": %s}'
_PICO = 10**12


_MEMO = 10_000  # distinct values remembered; a batch has a handful (models, deployments)


def _loads(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # what only json reads: NaN, integers past 64 bits
        return json.loads(text)


def _enc(value: Any) -> str:
    """One JSON value as `json.dumps(..., ensure_ascii=False)` writes it inside a line."""
    if value is None:
        return "null"
    kind = type(value)
    if kind is str:
        return encode_basestring(value)
    if kind is int:
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def _benc(value: Any) -> bytes:
    """`_enc` as UTF-8."""
    return _enc(value).encode("utf-8")


def _usd(pusd: int) -> bytes:
    """`usd_str` without Decimal (the same text for every non-negative amount), as bytes."""
    if pusd < 0:
        return usd_str(pusd).encode("ascii")
    return b"%d.%012d" % (pusd // _PICO, pusd % _PICO)


class LineWriter:
    """Builds lines from `store.answers.LINE_COLUMNS` rows (the body as text or as UTF-8 bytes).
    Holds the encodings of the few values every line repeats (model, vendor, deployment, tried
    list, status code), so keep one per batch."""

    def __init__(self) -> None:
        self._values: dict[Any, bytes] = {}
        self._tried: dict[str, bytes] = {}
        self._whos: dict[tuple[Any, ...], bytes] = {}

    def _s(self, value: Any) -> bytes:
        """A repeated value (string or status code) as JSON, encoded once."""
        kind = type(value)
        if kind is not str and kind is not int:  # not remembered (and 1, 1.0, True share a key)
            return _benc(value)
        text = self._values.get(value)
        if text is None:
            if len(self._values) > _MEMO:
                self._values.clear()
            text = self._values[value] = _benc(value)
        return text

    def _who(self, alias: str, vendor: str, served: Any, provider_model: Any) -> bytes:
        """The model, vendor, deployment and provider model members, rendered once per set."""
        key = (alias, vendor, served, provider_model)
        try:
            return self._whos[key]
        except KeyError:
            pass
        except TypeError:  # a provider model that is not a string: not remembered
            return _WHO % tuple(map(_benc, key))
        if len(self._whos) > _MEMO:
            self._whos.clear()
        text = self._whos[key] = _WHO % tuple(map(self._s, key))
        return text

    def line(self, row: Any, reasks: int = 0) -> str:
        """The line of one row as text, newline included."""
        return self.encoded(row, reasks).decode("utf-8")

    def encoded(self, row: Any, reasks: int = 0) -> bytes:
        """The line of one row in UTF-8, newline included (what the output files hold)."""
        (id_, idx, custom_id, state, alias, vendor, served, attempts, tried_json) = row[:9]
        (tin, tout, tcr, tcw, cost, unpriced, cached, result_json, body, error_json) = row[9:]
        result = _loads(result_json) if result_json else None
        error = _loads(error_json) if error_json else None
        tried = self._tried.get(tried_json)
        if tried is None:  # re-encoded once per distinct list: stored with ensure_ascii
            if len(self._tried) > _MEMO:
                self._tried.clear()
            tried = json.dumps(json.loads(tried_json), ensure_ascii=False).encode("utf-8")
            self._tried[tried_json] = tried
        lane = (result or error or {}).get("lane") or "online"
        if state == "succeeded" and result is not None:
            if body is None:  # a row from before `response_body`
                body = json.dumps(result["body"], ensure_ascii=False)
            if type(body) is str:
                body = body.encode("utf-8")
            response = _RESPONSE % (
                self._s(result.get("status_code", 200)),
                _benc(result.get("request_id")),
                body,
            )
            error_text = b"null"
        else:
            response, error_text = _failure(state, error)
        return _LINE % (
            id_,
            encode_basestring(custom_id).encode("utf-8"),
            response,
            error_text,
            idx,
            self._who(alias, vendor, served, result.get("provider_model") if result else None),
            attempts,
            reasks,
            tried,
            tin,
            tout,
            tcr,
            tcw,
            _usd(cost),
            b"true" if unpriced else b"false",
            b"true" if cached else b"false",
            self._s(lane),
        )


def _failure(state: str, error: dict[str, Any] | None) -> tuple[bytes, bytes]:
    """The `response` and `error` members of a line that did not succeed, in UTF-8."""
    error = error or {"code": state, "message": f"request {state}"}
    response: dict[str, Any] | None = None
    if error.get("status_code"):
        response = {
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
    return (
        json.dumps(response, ensure_ascii=False).encode("utf-8"),
        json.dumps({"code": error["code"], "message": error["message"]}, ensure_ascii=False).encode(
            "utf-8"
        ),
    )
