"""IdRuns: the ids an ingest stored, kept as runs and given back a page at a time in order."""

from __future__ import annotations

from batchgate.pipeline.ingest import IdRuns


def _runs(ids: list[int]) -> IdRuns:
    runs = IdRuns()
    for item_id in ids:
        runs.add(item_id)
    return runs


def test_pages_give_back_every_id_in_order_with_gaps_and_page_edges_inside_runs() -> None:
    ids = [*range(1, 8), 10, 12, 13, *range(20, 31)]
    assert list(_runs(ids).pages(4)) == [
        [1, 2, 3, 4],
        [5, 6, 7, 10],
        [12, 13, 20, 21],
        [22, 23, 24, 25],
        [26, 27, 28, 29],
        [30],
    ]


def test_a_batch_of_consecutive_ids_is_one_run() -> None:
    runs = _runs(list(range(100, 100_100)))
    assert len(runs._starts) == 1
    assert [len(page) for page in runs.pages(40_000)] == [40_000, 40_000, 20_000]


def test_no_ids_no_pages() -> None:
    assert list(IdRuns().pages(10)) == []
