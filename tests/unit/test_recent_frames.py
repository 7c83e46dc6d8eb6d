"""RecentFrames: a resubscribe is answered from memory only when the run holds its whole gap."""

from __future__ import annotations

from realtime.recent import RecentFrames


def frames(recent: RecentFrames, channel: str, epoch: str, first: int, last: int) -> None:
    for offset in range(first, last + 1):
        recent.add(channel, epoch, offset, b"m%d" % offset)


def test_a_gap_inside_the_run_is_answered_in_order() -> None:
    recent = RecentFrames(8)
    frames(recent, "room:a", "db1", 1, 5)
    assert recent.between("room:a", "db1", 2, 5) == [(3, b"m3"), (4, b"m4"), (5, b"m5")]
    assert recent.between("room:a", "db1", 0, 3) == [(1, b"m1"), (2, b"m2"), (3, b"m3")]


def test_nothing_is_answered_beyond_what_the_run_holds() -> None:
    recent = RecentFrames(4)
    frames(recent, "room:a", "db1", 1, 10)  # holds 7..10
    assert recent.between("room:a", "db1", 6, 10) == [(7, b"m7"), (8, b"m8"), (9, b"m9"), (10, b"m10")]
    assert recent.between("room:a", "db1", 5, 10) is None  # 6 was dropped
    assert recent.between("room:a", "db1", 8, 11) is None  # 11 not delivered here yet
    assert recent.between("room:a", "db1", 10, 10) is None  # no gap: nothing to answer
    assert recent.between("room:b", "db1", 1, 2) is None
    assert len(recent) == 4


def test_another_epoch_is_never_answered_from_the_run() -> None:
    recent = RecentFrames(8)
    frames(recent, "room:a", "db1", 1, 5)
    assert recent.between("room:a", "db2", 2, 5) is None
    recent.add("room:a", "db2", 6, b"new")  # the epoch changed: a new run
    assert recent.between("room:a", "db2", 5, 6) == [(6, b"new")]
    assert recent.between("room:a", "db1", 4, 5) is None


def test_a_gap_in_delivery_starts_a_new_run() -> None:
    recent = RecentFrames(8)
    frames(recent, "room:a", "db1", 1, 3)
    recent.add("room:a", "db1", 6, b"m6")  # 4 and 5 were never delivered here
    assert recent.between("room:a", "db1", 3, 6) is None
    assert recent.between("room:a", "db1", 5, 6) == [(6, b"m6")]


def test_forget_and_off() -> None:
    recent = RecentFrames(8)
    frames(recent, "room:a", "db1", 1, 3)
    recent.forget("room:a")
    assert recent.between("room:a", "db1", 1, 3) is None and len(recent) == 0
    off = RecentFrames(0)
    frames(off, "room:a", "db1", 1, 3)
    assert off.between("room:a", "db1", 1, 3) is None and len(off) == 0
