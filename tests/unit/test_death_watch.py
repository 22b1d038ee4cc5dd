"""The reconciler's DeathWatch: which worker processes are dead, and when their slots go back."""

from __future__ import annotations

from batchgate.pipeline.reconcile import DEAD_AFTER_SECONDS, DeathWatch


def test_a_slot_holder_with_no_lease_left_is_watched_and_its_slots_taken_back() -> None:
    # host:111 died holding call slots; its leases already lapsed and were released, so no
    # running item names it. Its slots must still be freed, not kept until their TTL.
    freed: list[set[str]] = []
    watch = DeathWatch(
        alive=lambda workers: {w for w in workers if w == "host:222"},
        on_dead=freed.append,
        holders=lambda: {"host:111", "host:222"},
    )
    assert watch.dead({"host:222:chunk1"}, 100.0) == set()
    assert freed == []  # missing once: maybe a Redis restart, not yet dead
    assert watch.dead({"host:222:chunk1"}, 100.0 + DEAD_AFTER_SECONDS) == set()  # no lease
    assert freed == [{"host:111"}]


def test_without_holders_only_lease_owners_are_watched() -> None:
    freed: list[set[str]] = []
    watch = DeathWatch(alive=lambda workers: set(), on_dead=freed.append)
    watch.dead(set(), 0.0)
    watch.dead(set(), DEAD_AFTER_SECONDS)
    assert freed == []
    assert watch.dead({"host:1:c"}, 10.0) == set()
    assert watch.dead({"host:1:c"}, 10.0 + DEAD_AFTER_SECONDS) == {"host:1:c"}
    assert freed == [{"host:1"}]
