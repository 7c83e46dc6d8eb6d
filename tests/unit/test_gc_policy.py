"""`vonix serve` tunes the garbage collector (server/gc_policy.py): start-up objects frozen, rare
young collections, rarer full ones; the p99 effect is measured by the rooms benchmark."""

from __future__ import annotations

import gc
import weakref

from server.gc_policy import THRESHOLDS, tune_for_serving


class Node:
    pass


def test_serving_freezes_start_up_objects_and_raises_the_thresholds() -> None:
    before = gc.get_threshold()
    try:
        tune_for_serving()
        assert gc.get_threshold() == THRESHOLDS
        assert THRESHOLDS[0] > before[0] and THRESHOLDS[2] > before[2]
        assert gc.get_freeze_count() > 1000  # the imported modules' objects

        cycle = Node()
        cycle.self = cycle  # type: ignore[attr-defined]
        ref = weakref.ref(cycle)
        del cycle
        gc.collect()
        assert ref() is None  # cycles are still collected
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
