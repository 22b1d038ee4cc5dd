"""Download headers: byte ranges as RFC 9110 reads them, and a safe content-disposition."""

from __future__ import annotations

import pytest

from batchgate.api.ranges import UNSATISFIABLE, content_disposition, parse_range


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 100, None),
        ("bytes=0-9", 100, (0, 9)),
        ("bytes=90-", 100, (90, 99)),
        ("bytes=90-500", 100, (90, 99)),
        ("bytes=-10", 100, (90, 99)),
        ("bytes=-500", 100, (0, 99)),
        ("bytes=100-", 100, UNSATISFIABLE),
        ("bytes=-0", 100, UNSATISFIABLE),
        ("bytes=0-", 0, UNSATISFIABLE),
        ("bytes=9-3", 100, None),  # invalid: ignored, the whole file is sent
        ("bytes=0-1,5-6", 100, None),  # several ranges: the whole file
        ("items=0-1", 100, None),
        ("bytes=-", 100, None),
    ],
)
def test_parse_range(header: str | None, size: int, expected: object) -> None:
    assert parse_range(header, size) == expected


def test_content_disposition_quotes_plain_names_and_encodes_others() -> None:
    assert content_disposition("in.jsonl") == 'attachment; filename="in.jsonl"'
    odd = content_disposition('ré"sumé.jsonl')
    assert odd.startswith('attachment; filename="r__sum_.jsonl"')
    assert odd.endswith("filename*=UTF-8''r%C3%A9%22sum%C3%A9.jsonl")
