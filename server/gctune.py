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

- young collections when the server is quiet (:class:`QuietCollector`): a burst that
  touches every connection (a hand storm, a room's every line) leaves tens of thousands
  of young objects, and without this the next burst (a group joining as the session
  opens) paid for walking them, 30-140 ms of pauses in a 1,000-join storm.

``--gc-thresholds`` / ``PEERROOM_GC_THRESHOLDS`` sets other values (``700,10,10`` is
CPython's). Every collection's pause is in ``/metrics`` as ``peerroom_gc_pause_seconds``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from typing import Any, Final

from prometheus_client import Histogram

log = logging.getLogger(__name__)

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


# Quiet: no Socket.IO message was handled since the last look, and the process used
# less than this share of a core (an idle server with 10,000 connections uses about 1-2%:
# its pings and the connection sweep).
QUIET_CORE: Final = 0.05
QUIET_LOOK_SECS: Final = 1.0
QUIET_EVERY_SECS: Final = 10.0  # at most one collection of its own this often
# Young objects worth a collection of their own (the young threshold is 50,000).
QUIET_DEBT: Final = 10_000


class QuietCollector:
    """Collects the young and middle generations once the process has been quiet for a
    look (:data:`QUIET_LOOK_SECS`), if a burst left enough for them to walk.

    The collector would walk those objects anyway, at the next automatic collection: in
    the middle of the next burst, which is when a pause costs most. Here it walks them
    while nobody is waiting: no message came in during the last look (``activity``, a
    count of messages handled, did not move) and the process was nearly idle. It never
    starts a full collection (``gc.collect(1)``) and runs at most once per
    :data:`QUIET_EVERY_SECS`.
    """

    def __init__(
        self,
        activity: Callable[[], int],
        *,
        clock: Callable[[], float] = time.monotonic,
        cpu: Callable[[], float] = time.process_time,
        counts: Callable[[], tuple[int, int, int]] = gc.get_count,
        collect: Callable[[int], int] = gc.collect,
    ) -> None:
        self._activity, self._clock, self._cpu = activity, clock, cpu
        self._counts, self._collect = counts, collect
        self._seen, self._at, self._used = activity(), clock(), cpu()
        self._last = float("-inf")

    def look(self) -> bool:
        """Called about once a :data:`QUIET_LOOK_SECS`; True if it collected."""
        seen, now, used = self._activity(), self._clock(), self._cpu()
        span = now - self._at
        busy = (used - self._used) / span if span > 0 else 1.0
        moved = seen != self._seen
        self._seen, self._at, self._used = seen, now, used
        if moved or busy >= QUIET_CORE or now - self._last < QUIET_EVERY_SECS:
            return False
        young, middle, _ = self._counts()
        if young < QUIET_DEBT and middle == 0:
            return False
        self._collect(1)
        self._last = now
        self._used = self._cpu()  # its own work is not the next look's activity
        return True


async def collect_when_quiet(collector: QuietCollector) -> None:
    """For ``peerroom serve``: look once a second, for as long as the process runs."""
    while True:
        await asyncio.sleep(QUIET_LOOK_SECS)
        try:
            collector.look()
        except Exception:
            log.exception("quiet collection failed; it goes on")
