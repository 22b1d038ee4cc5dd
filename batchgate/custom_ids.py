"""Which line first used each `custom_id` of a file, in little memory.

A dict of the ids took ~125 bytes per line (125 MB for a 1M-line file, most of the API's peak);
`FirstLines` keeps the ids' UTF-8 bytes back to back in one buffer and an open-addressing table
of 4-byte indexes into it: ~35 bytes per line for ids of a dozen characters. Ids are compared
byte for byte, so a hash collision is never taken for a repeat.
"""

from __future__ import annotations

from array import array

_EMPTY_SLOTS = 1 << 10
_MAX_I = 2**32 - 1


class FirstLines:
    """custom_id → the line it was first used on, for the lines of one file."""

    def __init__(self) -> None:
        self._blob = bytearray()  # every id's UTF-8, back to back
        # id k is blob[ends[k - 1] : ends[k]] (from 0 for k = 0); 4-byte offsets until the blob
        # passes 4 GiB (no upload limit allows that by default), then 8-byte ones.
        self._ends = array("I")
        self._lines = array("I")  # the line of id k
        self._slots = array("I", bytes(4 * _EMPTY_SLOTS))  # k + 1 of an id, 0: free
        self._mask = _EMPTY_SLOTS - 1

    def __len__(self) -> int:
        return len(self._lines)

    def first(self, custom_id: str, line: int) -> int:
        """The line `custom_id` was first used on; `line` (remembered from now on) if none."""
        data = custom_id.encode("utf-8", "surrogatepass")
        slots, mask, ends, blob = self._slots, self._mask, self._ends, self._blob
        i = hash(data) & mask
        while k := slots[i]:
            start = ends[k - 2] if k > 1 else 0
            if blob[start : ends[k - 1]] == data:
                return self._lines[k - 1]
            i = (i + 1) & mask
        blob += data
        if len(blob) > _MAX_I and ends.typecode == "I":
            ends = self._ends = array("Q", ends)
        ends.append(len(blob))
        self._lines.append(line)
        slots[i] = len(self._lines)
        if 2 * len(self._lines) > mask:  # keep the table at most half full: short probes
            self._grow()
        return line

    def _grow(self) -> None:
        size = 2 * (self._mask + 1)
        slots = array("I", bytes(4 * size))
        mask = size - 1
        blob, ends = self._blob, self._ends
        start = 0
        for k, end in enumerate(ends, 1):
            i = hash(bytes(blob[start:end])) & mask
            while slots[i]:
                i = (i + 1) & mask
            slots[i] = k
            start = end
        self._slots, self._mask = slots, mask
