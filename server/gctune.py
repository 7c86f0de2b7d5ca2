"""The cyclic garbage collector, tuned for a server that holds thousands of connections.

Measured (docs/optimisations.md): with CPython's default thresholds (700, 10, 10) and
10,000 participants connected, a full (generation 2) collection walks every
connection's objects and stops the loop for 400-620 ms, several times a minute under
chat load: that pause, not CPU, failed fan-out steps and made joins queue. Most of a
room's garbage is freed by reference counting the moment it is dropped; the collector
only has to find cycles, so it can run far less often. Defaults here:

- ``gc.freeze()`` once started: the modules, settings and app objects, alive for the
  whole process, move to the permanent generation and are never walked again;
- thresholds (50,000, 2, 100): a young collection every 50,000 net allocations, and a
  full one in practice only after many millions, so no full collection happened in a
  whole benchmark run; the middle generation every second young collection, so one
  of its passes walks at most about 150,000 objects however many people are connected
  (with 20 there, a fill of 10,000 participants made one pass of 450-470 ms, a freeze
  of every room; with 2, six of 50-100 ms, about the same time in all).

``--gc-thresholds`` / ``PEERROOM_GC_THRESHOLDS`` sets other values (``700,10,10`` is
CPython's). Every collection's pause is in ``/metrics`` as ``peerroom_gc_pause_seconds``.
"""

from __future__ import annotations

import gc
import time
from typing import Any, Final

from prometheus_client import Histogram

GC_PAUSES: Final = Histogram(
    "peerroom_gc_pause_seconds",
    "Pauses of the cyclic garbage collector, by generation",
    ["generation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
    registry=None,  # each app's registry adds it (server.metrics)
)
_GENERATIONS: Final = tuple(GC_PAUSES.labels(str(g)) for g in range(3))
_started: dict[int, float] = {}


def _time_collection(phase: str, info: dict[str, Any]) -> None:
    generation = info["generation"]
    if phase == "start":
        _started[generation] = time.perf_counter()
    elif (began := _started.pop(generation, None)) is not None:
        _GENERATIONS[generation].observe(time.perf_counter() - began)


def watch() -> None:
    """Time every collection (once per process, however many apps it runs)."""
    if _time_collection not in gc.callbacks:
        gc.callbacks.append(_time_collection)


def tune(thresholds: tuple[int, int, int]) -> None:
    """For ``peerroom serve``, once the app is up: freeze what exists, set thresholds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
