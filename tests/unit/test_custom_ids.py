"""custom_ids.FirstLines: the first line of each id, exact, across table growth."""

from __future__ import annotations

import pytest

from batchgate import custom_ids
from batchgate.custom_ids import FirstLines


def test_each_id_answers_the_line_it_was_first_used_on() -> None:
    seen = FirstLines()
    ids = [f"req-{i}" for i in range(5000)] + ["é", "e\u0301", "Abc", "abc", "🙂" * 3]
    for line, cid in enumerate(ids, 1):
        assert seen.first(cid, line) == line  # every id new: no false repeat, through growth
    assert len(seen) == len(ids)
    assert seen.first("req-0", 9000) == 1
    assert seen.first("req-4999", 9001) == 5000
    assert seen.first("e\u0301", 9002) == 5002  # compared as written: not normalised
    assert seen.first("ABC", 9003) == 9003
    assert seen.first("ABC", 9004) == 9003
    assert len(seen) == len(ids) + 1


def test_ids_in_the_same_slot_are_told_apart() -> None:
    seen = FirstLines()
    # More ids than the first table has slots, so probes run into other ids' slots.
    for line in range(1, 3000):
        assert seen.first(str(line), line) == line
    for line in range(1, 3000):
        assert seen.first(str(line), 10_000) == line


def test_offsets_widen_past_four_gib(monkeypatch: pytest.MonkeyPatch) -> None:
    # 4-byte offsets keep the table small; a blob past their range switches to 8-byte ones
    # (a limit of 40 bytes stands in for 4 GiB here).
    monkeypatch.setattr(custom_ids, "_MAX_I", 40)
    seen = FirstLines()
    ids = [f"request-{i}" for i in range(50)]
    for line, cid in enumerate(ids, 1):
        assert seen.first(cid, line) == line
    assert seen._ends.typecode == "Q"
    assert [seen.first(cid, 999) for cid in ids] == list(range(1, 51))
