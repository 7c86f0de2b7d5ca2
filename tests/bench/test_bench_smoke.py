"""Smoke test of the benchmark harness (issue 7), so it cannot rot.

Runs ``python -m bench run --smoke`` (20 participants in 2 rooms, steps of one
second) against the raw aiohttp baseline, the Node socket.io baseline and peerroom
(JSON and msgpack wire), then checks behaviour only: every participant joined,
every chat message reached every room member once, the hand storm completed, the join
storm joined everyone, and every reported number is present. No timing is asserted.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from tests.bench.cli import bench

pytest.importorskip("picows")
pytest.importorskip("uvloop")
pytest.importorskip("psutil")


# Every target always runs: one that cannot start reports an "n/a: ..." status and its
# test fails with it. Node's socket.io is no exception: scripts/test installs Node and
# npm (scripts/web-build) and runs `npm ci --prefix bench/node`.
TARGETS = ["raw", "node", "peerroom", "peerroom-msgpack"]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench")
    proc = bench(
        *("run", "--smoke", "--targets", ",".join(TARGETS)),
        *("--out", str(out / "benchmarks.md"), "--json", str(out / "results.json")),
        timeout=100,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (out / "benchmarks.md").read_text()
    assert "## Summary" in md and "## Machine" in md
    doc = json.loads((out / "results.json").read_text())
    rerender = ["report", "--from", str(out / "results.json"), "--out", str(out / "again.md")]
    again = bench(*rerender, timeout=60)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (out / "again.md").read_text() == md  # the JSON record holds the whole report
    return {r["key"]: r for r in doc["results"]}


def _present(x: Any) -> bool:
    return isinstance(x, int | float) and not math.isnan(x)


@pytest.mark.parametrize("target", TARGETS)
def test_target_ran_every_workload(results: dict[str, dict[str, Any]], target: str) -> None:
    r = results[target]
    assert r["status"] == "ok", r["status"]

    cap = r["capacity"]
    assert [c["participants"] for c in cap] == [20]
    assert cap[0]["join_errors"] == 0
    assert _present(cap[0]["rss_mb"]) and cap[0]["rss_mb"] > 0

    fan = r["fanout"]
    assert fan["points"], "no fan-out step ran"
    for p in fan["points"]:
        assert p["expected"] > 0
        assert p["delivered"] == p["expected"], p
        assert p["lost"] == 0 and p["nacks"] == 0, p
        assert p["duplicates"] == 0 and p["misrouted"] == 0, p
        assert isinstance(p["stray"], int) and isinstance(p["late"], int), p
        for k in ("p50_ms", "p99_ms", "p999_ms", "max_ms"):
            assert _present(p[k]), (k, p)
        assert _present(p["cpu"]["gen"]) and _present(p["cpu"]["server"])
    assert fan["knee_deliveries_s"] > 0
    confirm = fan["confirm"]
    if target == "peerroom":  # the one row whose 50,000/s verdict takes a longer step
        assert confirm["kind"] == "confirm" and confirm["offered_deliveries_s"] == 100.0
        assert confirm["delivered"] == confirm["expected"] > 0, confirm
        assert confirm["lost"] == 0 and confirm["duplicates"] == 0, confirm
    else:
        assert confirm is None

    hands = r["hands"]
    assert hands["participants"] == 20 and hands["complete"] == 20
    assert _present(hands["all_done_ms"])

    joins = r["joins"]
    assert joins["attempted"] == 20 and joins["joined"] == 20, joins["first_error"]
    assert _present(joins["joins_s"]) and _present(joins["p99_ms"])
    assert r["disconnects"] == 0
