"""The generator keeps its own garbage collector out of measured phases: what is alive
before a phase is frozen (never walked by a collection during it) and let go at the end."""

from __future__ import annotations

import gc

from bench.loadgen import GC_THRESHOLDS, LoadGen


def test_settle_freezes_what_is_alive_and_close_all_lets_it_go() -> None:
    before = gc.get_threshold()
    try:
        gen = LoadGen("json")
        assert gc.get_threshold() == GC_THRESHOLDS
        held = [[i] for i in range(5_000)]  # tracked objects alive before the phase
        gen.settle()
        assert gc.get_freeze_count() >= len(held)
        assert gc.get_count()[0] < 100  # just collected
        gen.close_all()
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
