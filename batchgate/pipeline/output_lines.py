"""The output-file line of a finished item, as text: what finalize writes and live results send.

Finalize writes up to a million of these, so a line is not built as a dict and encoded: its text
is a template around the stored response body (`store/answers.py`), spliced in unparsed. The
text is exactly `json.dumps(line, ensure_ascii=False)` of the line as an object (keys, order
and spacing), for rows of either storage shape; `tests/unit/test_output_lines.py` holds it to
that. The only JSON parsed per line is the answer without its body (~150 bytes), by orjson.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any

import orjson

from batchgate.money import usd_str

_LINE = (
    '{"id": "batch_req_%012d", "custom_id": %s, "response": %s, "error": %s, "batchgate": '
    '{"index": %d, %s, "attempts": %d, "reasks": %d, "tried": %s, "usage": {"input_tokens": %d, '
    '"output_tokens": %d, "cache_read_tokens": %d, "cache_write_tokens": %d}, '
    '"cost_usd": "%s", "unpriced": %s, "cached": %s, "lane": %s}}\n'
)
_WHO = '"model": %s, "vendor": %s, "deployment": %s, "provider_model": %s'
_RESPONSE = '{"status_code": %s, "request_id": %s, "body": %s}'
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


def _usd(pusd: int) -> str:
    """`usd_str` without Decimal (the same text for every non-negative amount)."""
    if pusd < 0:
        return usd_str(pusd)
    return f"{pusd // _PICO}.{pusd % _PICO:012d}"


class LineWriter:
    """Builds line texts from `store.answers.LINE_COLUMNS` rows. Holds the encodings of the few
    values every line repeats (model, vendor, deployment, tried list), so keep one per batch."""

    def __init__(self) -> None:
        self._strings: dict[Any, str] = {}
        self._tried: dict[str, str] = {}
        self._whos: dict[tuple[Any, ...], str] = {}

    def _s(self, value: Any) -> str:
        if type(value) is not str:
            return _enc(value)
        text = self._strings.get(value)
        if text is None:
            if len(self._strings) > _MEMO:
                self._strings.clear()
            text = self._strings[value] = encode_basestring(value)
        return text

    def _who(self, alias: str, vendor: str, served: Any, provider_model: Any) -> str:
        """The model, vendor, deployment and provider model members, rendered once per set."""
        key = (alias, vendor, served, provider_model)
        try:
            return self._whos[key]
        except KeyError:
            pass
        except TypeError:  # a provider model that is not a string: not remembered
            return _WHO % (_enc(alias), _enc(vendor), _enc(served), _enc(provider_model))
        if len(self._whos) > _MEMO:
            self._whos.clear()
        text = self._whos[key] = _WHO % tuple(map(self._s, key))
        return text

    def line(self, row: Any, reasks: int = 0) -> str:
        """The line of one row, newline included."""
        (id_, idx, custom_id, state, alias, vendor, served, attempts, tried_json) = row[:9]
        (tin, tout, tcr, tcw, cost, unpriced, cached, result_json, body, error_json) = row[9:]
        result = _loads(result_json) if result_json else None
        error = _loads(error_json) if error_json else None
        tried = self._tried.get(tried_json)
        if tried is None:  # re-encoded once per distinct list: stored with ensure_ascii
            if len(self._tried) > _MEMO:
                self._tried.clear()
            tried = self._tried[tried_json] = json.dumps(json.loads(tried_json), ensure_ascii=False)
        lane = (result or error or {}).get("lane") or "online"
        if state == "succeeded" and result is not None:
            if body is None:  # a row from before `response_body`
                body = json.dumps(result["body"], ensure_ascii=False)
            response = _RESPONSE % (
                _enc(result.get("status_code", 200)),
                _enc(result.get("request_id")),
                body,
            )
            error_text = "null"
        else:
            response, error_text = _failure(state, error)
        return _LINE % (
            id_,
            encode_basestring(custom_id),
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
            "true" if unpriced else "false",
            "true" if cached else "false",
            self._s(lane),
        )


def _failure(state: str, error: dict[str, Any] | None) -> tuple[str, str]:
    """The `response` and `error` texts of a line that did not succeed."""
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
        json.dumps(response, ensure_ascii=False),
        json.dumps({"code": error["code"], "message": error["message"]}, ensure_ascii=False),
    )
