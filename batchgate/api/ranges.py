"""HTTP download headers for file content: one `Range: bytes=...` span, `content-disposition`.

A 1M-line output file is over a gigabyte: a client whose download broke resumes with a Range
request instead of starting again. Multi-range requests are answered with the whole file (a
server may ignore Range; RFC 9110 §14.2).
"""

from __future__ import annotations

import re
from urllib.parse import quote

UNSATISFIABLE = (-1, -1)
_SPAN = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte to send, None for the whole file, UNSATISFIABLE for a 416."""
    if not header:
        return None
    m = _SPAN.match(header)
    if m is None or (not m.group(1) and not m.group(2)):
        return None  # malformed or several ranges: ignored, the whole file is sent
    start, end = m.group(1), m.group(2)
    if not start:  # "bytes=-N": the last N bytes
        n = int(end)
        if n == 0 or size == 0:
            return UNSATISFIABLE
        return max(0, size - n), size - 1
    first = int(start)
    if first >= size:
        return UNSATISFIABLE
    last = min(int(end), size - 1) if end else size - 1
    if last < first:
        return None
    return first, last


def content_disposition(filename: str) -> str:
    """`attachment` with the name as plain ASCII and, for any other text, RFC 6266's filename*."""
    ascii_name = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in filename)
    value = f'attachment; filename="{ascii_name}"'
    if ascii_name != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return value
