"""`python -m bench ab`: fixed-rate A/B steps against peerroom checkouts. The summary is
checked on made-up steps; tiny real runs check that every step delivers everything."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from bench.ab import AbJoin, AbStep, _labels, summarise, summarise_joins
from bench.meters import CpuSpan
from bench.workloads import FanoutPoint, JoinStormResult
from tests.bench.cli import ROOT, bench


def _step(source: str, rate: float, server: float, p99: float, lost: int = 0) -> AbStep:
    delivered = 10_000
    point = FanoutPoint(
        "ab", 0.0, 1, rate / 10, rate, delivered + lost, delivered, lost,
        1.0, p99, p99, p99, 0, lost == 0, CpuSpan(gen=0.3, server=server, wall=10.0),
    )  # fmt: skip
    return AbStep(source, rate, point)


def test_the_summary_takes_the_median_per_source_and_rate() -> None:
    steps = [
        _step("before", 8000, 0.80, 20.0),  # 0.80 cores x 10 s / 10,000 = 800 us
        _step("after", 8000, 0.60, 10.0),
        _step("before", 8000, 0.90, 30.0),
        _step("after", 8000, 0.70, 12.0, lost=3),
        _step("before", 8000, 1.00, 40.0),
        _step("after", 8000, 0.50, 11.0),
    ]
    assert steps[0].us_per_delivery == pytest.approx(800.0)
    rows = summarise(steps).splitlines()[2:]
    assert rows == [
        "| before | 8,000 | 900.0 us (800.0-1000.0) | 20.0, 30.0, 40.0 | 0 |",
        "| after | 8,000 | 600.0 us (500.0-700.0) | 10.0, 12.0, 11.0 | 3 |",
    ]
    assert "lost     3" in steps[3].line() and "700.0 us/delivery" in steps[3].line()


def _storm(source: str, server: float, joined: int = 1000, errors: int = 0) -> AbJoin:
    wall = 0.8
    storm = JoinStormResult(
        joined + errors, joined, errors, joined / wall, 500.0, 700.0 + errors, 750.0,
        CpuSpan(gen=0.5, server=server, wall=wall),
    )  # fmt: skip
    return AbJoin(source, storm)


def test_the_join_summary_takes_the_median_cpu_per_join_per_source() -> None:
    storms = [
        _storm("before", 0.75),  # 0.75 cores x 0.8 s / 1,000 joins = 600 us
        _storm("after", 0.50),
        _storm("before", 1.00),
        _storm("after", 0.60, joined=960, errors=40),
        _storm("before", 0.50),
    ]
    assert storms[0].us_per_join == pytest.approx(600.0)
    assert storms[3].us_per_join == pytest.approx(0.60 * 0.8 * 1e6 / 960)
    rows = summarise_joins(storms).splitlines()[2:]
    assert rows == [
        "| before | 600 us (400-800) | 1,250, 1,250, 1,250 | 700, 700, 700 | 0 |",
        "| after | 450 us (400-500) | 1,250, 1,200 | 700, 740 | 40 |",
    ]
    assert "joined   960 of 1000" in storms[3].line() and "500 us/join" in storms[3].line()


def test_sources_are_named_by_directory_and_told_apart() -> None:
    assert _labels([Path("/src/before"), Path("/work/main")]) == ["before", "main"]
    assert _labels([Path("/a/main"), Path("/b/main")]) == ["A:main", "B:main"]


def _ab(*args: str) -> str:
    out = bench(
        *("ab", "--no-pin", "--participants", "20", "--rates", "100,200", "--seconds", "0.5"),
        *("--repeats", "1", *args),
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def _step_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if "us/delivery" in line]


def test_two_checkouts_in_turn() -> None:
    out = _ab("--source", str(ROOT), "--source", str(ROOT))
    lines = _step_lines(out)
    assert [line.split()[0] for line in lines] == [f"{s}:{ROOT.name}" for s in "AABB"]
    assert all(re.search(r"lost +0 ", line) for line in lines), out
    assert out.count(f":{ROOT.name} |") == 4  # two rates for each side in the summary


@pytest.mark.skipif(os.environ.get("PEERROOM_SKIP_REDIS") == "1", reason="no Redis here")
def test_two_nodes_with_whole_rooms_and_one_node_on_redis() -> None:
    for extra in (["--whole-rooms"], ["--nodes", "1"]):
        lines = _step_lines(_ab("--target", "peerroom-redis", *extra))
        assert len(lines) == 2 and all(re.search(r"lost +0 ", line) for line in lines)


def test_join_storms_in_turn() -> None:
    out = bench(
        *("ab", "--no-pin", "--workload", "join", "--participants", "20", "--joins", "30"),
        *("--repeats", "2", "--source", str(ROOT), "--source", str(ROOT)),
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [line for line in out.stdout.splitlines() if "us/join" in line]
    assert [line.split()[0] for line in lines] == [f"{s}:{ROOT.name}" for s in "ABAB"]
    assert all("joined    30 of 30" in line for line in lines), out.stdout
    summary = [line for line in out.stdout.splitlines() if line.startswith(f"| A:{ROOT.name}")]
    assert len(summary) == 1 and summary[0].endswith("| 0 |"), out.stdout


def test_a_join_storm_after_load() -> None:
    """``--after-load``: chat at each rate and a hand storm before the storm, as a full
    run does; the storm still joins everyone."""
    out = bench(
        *("ab", "--no-pin", "--workload", "join", "--after-load", "--participants", "20"),
        *("--joins", "30", "--rates", "100", "--seconds", "0.5", "--repeats", "1"),
        *("--quiet", "0.2"),
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [line for line in out.stdout.splitlines() if "us/join" in line]
    assert len(lines) == 1 and "joined    30 of 30" in lines[0], out.stdout


def test_bad_arguments_are_refused() -> None:
    for bad in (
        *(["--rates", "x"], ["--rates", "0"], ["--seconds", "0"], ["--nodes", "9"]),
        *(["--joins", "5"], ["--joins", "15000", "--participants", "1000"]),
        ["--after-load"],  # for join storms only
        ["--quiet", "1"],
        ["--workload", "join", "--quiet", "-1"],
    ):
        out = bench("ab", *bad, timeout=60)
        assert out.returncode == 2, (bad, out.stderr)
