"""The fan-out knee search: the sweep, the bisection steps and the fractions, in order.

The steps themselves are replaced by a server whose capacity is known, so what is
checked is the search: which rates it offers and which one it reports as the knee.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench import workloads
from bench.loadgen import LoadGen, Participant, Room
from bench.meters import CpuSpan
from bench.workloads import FanoutPoint


def _server_that_holds(capacity: float, offered: list[tuple[str, float]]) -> Any:
    async def step(
        gen: LoadGen,
        rooms: list[Room],
        kind: str,
        deliveries_s: float,
        duration: float,
        drain: float,
        server_pids: list[int],
    ) -> FanoutPoint:
        offered.append((kind, deliveries_s))
        ok = deliveries_s <= capacity
        return FanoutPoint(
            kind, 0.0, 1, deliveries_s / 10, deliveries_s, 100, 100 if ok else 90,
            0 if ok else 10, 1.0, 1.0 if ok else 80.0, 1.0, 1.0, 0, ok, CpuSpan(),
        )  # fmt: skip

    return step


async def _no_wait(gen: LoadGen, quiet: float, limit: float) -> None:
    return None


async def _search(
    monkeypatch: pytest.MonkeyPatch, step: Any, fractions: list[float], bisections: int
) -> workloads.FanoutResult:
    """The knee search over one room of 10, its steps run by ``step``."""
    monkeypatch.setattr(workloads, "fanout_step", step)
    monkeypatch.setattr(workloads, "_wait_quiet", _no_wait)
    gen = LoadGen("json")
    room = Room(0, "token", ["ws://127.0.0.1:9/"])
    room.members = [Participant(gen, room, f"p{i}") for i in range(10)]
    return await workloads.fanout(
        gen, [room], [], 250.0, 2.0, 10_000.0, 1.0, 0.0, fractions, bisections=bisections
    )


@pytest.mark.parametrize(
    ("bisections", "knee"),
    [(0, 1_000.0), (1, 1_414.2), (2, 1_681.8), (3, 1_681.8)],
)
async def test_each_bisection_step_halves_the_gap_to_the_failing_rate(
    monkeypatch: pytest.MonkeyPatch, bisections: int, knee: float
) -> None:
    offered: list[tuple[str, float]] = []
    result = await _search(monkeypatch, _server_that_holds(1_700.0, offered), [0.5], bisections)
    assert result.knee_deliveries_s == knee
    sweep = [rate for kind, rate in offered if kind == "sweep"]
    # 250, 500, 1,000 pass; 2,000 fails, and a failing sweep step is run twice.
    assert sweep == [250.0, 500.0, 1_000.0, 2_000.0, 2_000.0]
    bisect = [round(rate, 1) for kind, rate in offered if kind == "bisect"]
    # Capacity 1,700: sqrt(1000 * 2000) = 1,414 passes, sqrt(1414 * 2000) = 1,682
    # passes, sqrt(1682 * 2000) = 1,834 fails, twice (a failure must repeat): the knee
    # stays at the last that passed.
    assert (
        bisect
        == [[], [1_414.2], [1_414.2, 1_681.8], [1_414.2, 1_681.8, 1_834.0, 1_834.0]][bisections]
    )
    kind, rate = offered[-1]
    assert kind == "fraction"
    assert rate == pytest.approx(knee * 0.5, rel=1e-3)


async def test_a_step_that_fails_once_and_passes_again_counts_as_passed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One stall of a shared machine fails a step's p99: a failing step of the search
    sets the knee only if it fails again."""
    offered: list[tuple[str, float]] = []
    steady = _server_that_holds(1_700.0, offered)
    stalled: set[float] = set()

    async def stalls_once_per_rate(gen: LoadGen, rooms: list[Room], kind: str, rate: float,
                                   *rest: Any) -> FanoutPoint:  # fmt: skip
        pt: FanoutPoint = await steady(gen, rooms, kind, rate, *rest)
        if kind != "fraction" and rate not in stalled:
            stalled.add(rate)
            pt.passed, pt.p99_ms = False, 80.0  # a stall: the core was not full
        return pt

    result = await _search(monkeypatch, stalls_once_per_rate, [], 2)
    # Every rate was tried twice; the capacity alone decided: the knee of the steady
    # server, 1,681.8 (with no second try of a bisection step, the stall at 1,414.2 and
    # then at 1,189.2 would have left it at 1,000).
    assert result.knee_deliveries_s == 1_681.8
    tried = [round(rate, 1) for _, rate in offered]
    assert tried == [250.0, 250.0, 500.0, 500.0, 1_000.0, 1_000.0, 2_000.0, 2_000.0,
                     1_414.2, 1_414.2, 1_681.8, 1_681.8]  # fmt: skip
