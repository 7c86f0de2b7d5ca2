"""Turns run results into docs/benchmarks.md (and a JSON record).

Measures nothing; it formats. The markdown holds a summary table per target,
the ratios peerroom / Node socket.io and peerroom / raw aiohttp, the details
of every workload with the generator's and the server's CPU at every point,
the machine it ran on and how to reproduce it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.meters import CpuSpan
from bench.runner import Config, TargetResult
from bench.targets import ALL_TARGETS, NODE_DIR, PEERROOM_BENCH_ENV
from bench.workloads import (
    NOISY,
    TARGET_DELIVERIES_S,
    CapacityPoint,
    FanoutPoint,
    FanoutResult,
    HandStormResult,
    JoinStormResult,
)

REPRODUCE = """\
```sh
scripts/bench                        # all of the below in one (what `make bench` runs)
scripts/bootstrap test,lint,bench    # .venv with the bench extra: picows, uvloop, psutil
npm ci --prefix bench/node           # the Node socket.io baseline (package-lock.json)
.venv/bin/python -m bench run        # < 10 min; docs/benchmarks.md + bench/results/*.json
```"""


def _cmd(argv: list[str]) -> str:
    try:
        out = subprocess.run(  # noqa: S603 - fixed argv
            argv, capture_output=True, text=True, timeout=10, check=False
        )
        return out.stdout.strip() or out.stderr.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "not found"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def source_info(src: str | None) -> str:
    """Where peerroom ran from and at which commit (a dirty tree is said so)."""
    path = src or str(NODE_DIR.parent.parent)
    commit = _cmd(["git", "-C", path, "rev-parse", "--short", "HEAD"])
    if not commit or " " in commit:
        commit = "no git metadata"
    elif _cmd(["git", "-C", path, "status", "--porcelain", "--untracked-files=no"]):
        commit += " + local changes"
    return f"{path} at {commit}"


def machine_info() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    sio_node = "not installed"
    pkg = NODE_DIR / "node_modules" / "socket.io" / "package.json"
    if pkg.is_file():
        sio_node = str(json.loads(pkg.read_text()).get("version"))
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node": _cmd(["node", "--version"]),
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "aiohttp": _version("aiohttp"),
        "python-socketio": _version("python-socketio"),
        "picows": _version("picows"),
        "uvloop": _version("uvloop"),
        "socket.io (node)": sio_node,
    }


def _f(x: float | None, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def _cpu(c: CpuSpan) -> str:
    """Server, generator and everyone else's CPU (cores); steal appended if any."""
    others = f"{c.other:.2f}" + (f" (+{c.steal:.2f} steal)" if c.steal >= 0.01 else "")
    return f"{c.server:.2f} | {c.gen:.2f} | {others}"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return "n/a"
    return f"{a / b:.2f}"


def by_spec_wire(key: str) -> str:
    """The wire a target speaks ("json" for one this version does not know)."""
    spec = ALL_TARGETS.get(key)
    return spec.wire if spec is not None else "json"


def _knee(x: float | None, cfg: Config) -> str:
    if x == 0:
        return f"< {cfg.fanout_start:,.0f} (p99 > 50 ms at the first step)"
    return _f(x, 0)


FIXED_RATE = 1_000.0  # deliveries/s: one rate every target's sweep passes through


def _p99_near(r: TargetResult, rate: float) -> float | None:
    """p99 at the sweep step within 10% of ``rate`` (its last try), if the sweep got there."""
    if r.fanout is None:
        return None
    near = [
        p
        for p in r.fanout.points
        if p.kind == "sweep" and abs(p.offered_deliveries_s - rate) <= 0.1 * rate
    ]
    return near[-1].p99_ms if near else None


def _summary(r: TargetResult) -> dict[str, float | None]:
    cap = r.capacity[-1] if r.capacity else None
    half = None
    if r.fanout:
        halves = [p for p in r.fanout.points if p.kind == "fraction" and p.fraction == 0.5]
        half = halves[-1] if halves else None
    return {
        "participants": cap.participants if cap else None,
        "kb_pp": cap.rss_kb_per_participant if cap else None,
        "knee": r.fanout.knee_deliveries_s if r.fanout else None,
        "p99_half": half.p99_ms if half else None,
        "p99_1k": _p99_near(r, FIXED_RATE),
        "hands_ms": r.hands.all_done_ms if r.hands else None,
        "joins_s": r.joins.joins_s if r.joins else None,
        "join_p99": r.joins.p99_ms if r.joins else None,
    }


def _shared_note(results: list[TargetResult], info: dict[str, str]) -> str:
    spans = [p.cpu for r in results if r.fanout for p in _all_points(r.fanout)]
    spans += [c.cpu for r in results for c in r.capacity]
    spans += [x.cpu for r in results for x in (r.hands, r.joins) if x is not None]
    if not spans:
        return ""
    others = [c.other + c.steal for c in spans]
    mean = sum(others) / len(others)
    busy = sum(1 for o in others if o > 0.25)
    if mean < 0.05 and busy == 0:
        return ""
    return (
        f"other processes used {mean:.2f} cores on average while points were measured "
        f"(at most {max(others):.2f}; above 0.25 cores in {busy} of {len(others)} points; "
        f"load average at start {info.get('load average at start', '?')}). See the "
        "others' CPU column next to each number: a failing step was run again, up to "
        "three tries while others were busy (see Fan-out)."
    )


def _step(p: FanoutPoint) -> str:
    if p.kind == "confirm":
        return f"confirmation, {_confirm_seconds(p):g} s"
    name = f"{p.fraction:.0%} of knee" if p.kind == "fraction" else p.kind
    return name if p.attempt == 1 else f"{name}, try {p.attempt}"


# Deliveries a step must not have besides loss (a point with any of the first two fails),
# and the frames that came outside their step: (field, column heading).
EXTRAS = (
    ("duplicates", "duplicates"),
    ("misrouted", "to non-members"),
    ("late", "after the drain"),
    ("stray", "stray (earlier step)"),
)


def _all_points(f: FanoutResult) -> list[FanoutPoint]:
    """The search's steps, then the confirmation step if one ran."""
    return f.points + ([f.confirm] if f.confirm is not None else [])


def _per_message(results: list[TargetResult]) -> bool:
    """A record from before loss was counted per recipient (no duplicates counted)."""
    return any(p.duplicates is None for r in results if r.fanout for p in r.fanout.points)


def _extras(points: list[FanoutPoint]) -> tuple[list[str], str]:
    """Column headings for the extra counts (none when every count is 0), and a note."""
    if any(p.duplicates is None for p in points):
        return [], ""  # said once, above the tables
    if not any(getattr(p, k) for p in points for k, _ in EXTRAS):
        return [], (
            "No step had a duplicate, a delivery to a non-member of the room, a delivery "
            "after the drain or a stray frame of an earlier step."
        )
    return [h for _, h in EXTRAS], ""


def _extra_cells(p: FanoutPoint) -> str:
    return "".join(f" {_n(getattr(p, k))} |" for k, _ in EXTRAS)


def _n(x: int | None) -> str:
    return "not measured" if x is None else f"{x:,}"


def _knee_point(r: TargetResult) -> FanoutPoint | None:
    if r.fanout is None:
        return None
    ok = [p for p in r.fanout.points if p.passed and p.kind != "fraction"]
    return max(ok, key=lambda p: p.offered_deliveries_s, default=None)


TRIES = {1: "first", 2: "second", 3: "third"}


def _tries(r: TargetResult) -> str:
    """How many tries the knee's step needed, e.g. "; passed on its second try"."""
    p = _knee_point(r)
    if p is None:
        return ""
    return f"; passed on its {TRIES.get(p.attempt, str(p.attempt))} try"


def _first_fail(r: TargetResult) -> FanoutPoint | None:
    """The last try of the sweep step that ended the sweep (None if none failed)."""
    if r.fanout is None:
        return None
    sweep = [p for p in r.fanout.points if p.kind == "sweep"]
    return sweep[-1] if sweep and not sweep[-1].passed else None


FULL_CORE = 0.85  # CPU averaged over a span: "full" is taken as >= 0.85


def _storm_generator(results: list[TargetResult]) -> str:
    """Which storms had the generator's core nearly full (its time may be partly the
    generator's), or that none had."""
    busy: list[str] = []
    for r in results:
        for name, storm in (("hand storm", r.hands), ("join storm", r.joins)):
            if storm is not None and storm.cpu.gen >= FULL_CORE:
                busy.append(f"{r.label}'s {name} ({storm.cpu.gen:.2f})")
    if not busy:
        return (
            f"In this run the generator used less than {FULL_CORE:.2f} of its core in every storm."
        )
    return (
        f"The generator used {FULL_CORE:.2f} of its core or more in: "
        + ", ".join(busy)
        + ". Those storms' times may overstate the server's (the generator may have been "
        "the slower side), and so may the ratios that use them."
    )


def _bound_by(p: FanoutPoint | None) -> str:
    if p is None:
        return "n/a"
    # CPU is averaged over the step and its drain, so "full" is taken as >= 0.85.
    full = FULL_CORE
    if p.cpu.server >= full and p.cpu.gen >= full:
        return "both cores nearly full (generator and server)"
    if p.cpu.server >= full:
        return "server (its core is full)"
    if p.cpu.gen >= full:
        return "GENERATOR (its core is full)"
    if p.cpu.other + p.cpu.steal > NOISY:
        return "neither core full; other processes busy"
    return "neither core full: server stalls"


def _headroom(results: list[TargetResult]) -> list[str]:
    out = [
        "The generator is one process on one core. This section covers the fan-out "
        "workload only: for the hand and join storms, the generator's CPU is next to each "
        "target's numbers in their own tables, and the storms in which its core was "
        "nearly full are named there. At each target's knee (its fastest "
        "passing step) it used this much of its core, next to the server's; at the step "
        "that failed next, the column on the right says which side ran out of CPU.",
        "",
        "| target | knee (deliveries/s) | p99 there (ms) | generator CPU | server CPU "
        "| first failing step: server / generator / others' CPU | limited by |",
        "|---|---|---|---|---|---|---|",
    ]
    best: tuple[float, str, FanoutPoint] | None = None
    peer_best = 0.0
    for r in results:
        p = _knee_point(r)
        fail = _first_fail(r)
        if p is None and fail is None:
            continue
        knee = (
            f"{p.offered_deliveries_s:,.0f} | {_f(p.p99_ms, 2)} | {p.cpu.gen:.2f} | "
            f"{p.cpu.server:.2f}"
            if p is not None
            else "none | n/a | n/a | n/a"
        )
        failed = (
            f"{fail.offered_deliveries_s:,.0f}/s: {fail.cpu.server:.2f} / {fail.cpu.gen:.2f} / "
            f"{fail.cpu.other:.2f}"
            if fail is not None
            else "none failed"
        )
        out.append(f"| {r.label} | {knee} | {failed} | {_bound_by(fail)} |")
        if p is None:
            continue
        if best is None or p.offered_deliveries_s > best[0]:
            best = (p.offered_deliveries_s, r.label, p)
        if r.key.startswith("peerroom"):
            peer_best = max(peer_best, p.offered_deliveries_s)
    if best is not None:
        rate, label, p = best
        line = (
            f"\nThe generator kept up with {rate:,.0f} deliveries/s (against {label}, p99 "
            f"{_f(p.p99_ms, 2)} ms, no loss) using {p.cpu.gen:.2f} of its core"
        )
        if peer_best:
            line += f": {rate / peer_best:.1f}x peerroom's best knee ({peer_best:,.0f}/s)"
        out.append(line + ".")
    return out


# The targets of issue 7, for one server core.
TARGET_KIB = 30_000 / 1024  # <= 30 KB per participant at 10,000
TARGET_JOINS_S = 2_000.0
TARGET_TWO_NODES = 0.70  # two nodes' knee against one node's


def knee_bracket(r: TargetResult) -> tuple[float, float | None] | None:
    """(knee, ceiling): the true knee lies between the last passing step of the search
    (the knee; 0 if none passed) and the lowest failing one above it (None if none
    failed: the cap was reached). None if no fan-out ran."""
    if r.fanout is None:
        return None
    knee = r.fanout.knee_deliveries_s
    above = [
        q.offered_deliveries_s
        for q in r.fanout.points
        if q.kind != "fraction" and not q.passed and q.offered_deliveries_s > knee
    ]
    return knee, min(above, default=None)


def knee_ratio(a: TargetResult, b: TargetResult) -> tuple[float, float | None, float | None] | None:
    """a's knee / b's knee, and the range it lies in given each knee's bracket: (ratio,
    low, high); low is None if b's knee has no ceiling, high if a's has none."""
    ba, bb = knee_bracket(a), knee_bracket(b)
    if ba is None or bb is None or not bb[0]:
        return None
    (ka, ca), (kb, cb) = ba, bb
    return ka / kb, (ka / cb if cb else None), (ca / kb if ca else None)


def knee_ratio_cell(t: tuple[float, float | None, float | None] | None) -> str:
    """A knee ratio with its range, e.g. "1.12 (1.00-1.19)"."""
    if t is None:
        return "n/a"
    mid, low, high = t
    if mid == 0:  # a knee below the first step
        return f"< {high:.3f}" if high else "n/a"
    if low is not None and high is not None:
        return f"{mid:.2f} ({low:.2f}-{high:.2f})"
    if high is not None:
        return f"{mid:.2f} (up to {high:.2f})"
    if low is not None:
        return f"{mid:.2f} ({low:.2f} or more)"
    return f"{mid:.2f} (no step failed: both knees may be higher)"


def _on_redis(key: str) -> bool:
    spec = ALL_TARGETS.get(key)
    return spec is not None and spec.redis_url is not None


def redis_kib(c: CapacityPoint) -> float | None:
    """Redis's memory per participant (KiB) at a capacity point: the larger of its two
    measures (see bench.meters.RedisMemory), so that neither another client freeing
    memory nor what lies outside the run's keys makes it look smaller. None: not measured."""
    known = [x for x in (c.redis_used_delta, c.redis_keys) if x is not None]
    if not known:
        return None
    return max(known) / 1024 / max(c.participants, 1)


def _two_nodes_memory(
    r: TargetResult, kb: float | None, n: float | None
) -> tuple[str, str, str, str]:
    """Two nodes keep the live state in Redis: their memory is the nodes' and Redis's."""
    target = "<= 30 KB (29.3 KiB) per participant"
    if kb is None or not n:
        return target, r.label, "n/a", "not measured"
    extra = redis_kib(r.capacity[-1])
    if extra is None:
        return (
            target,
            r.label,
            f"{_f(kb)} KiB nodes only at {n:,.0f}; Redis's memory not measured in this run",
            "not measured",
        )
    both = kb + extra
    return (
        target,
        r.label,
        f"{_f(kb)} KiB nodes only, {_f(both)} KiB nodes + Redis at {n:,.0f}",
        "met" if both <= TARGET_KIB and n >= 10_000 else "not met",
    )


def _redis_memory(results: list[TargetResult]) -> list[str]:
    """The capacity section's lines on Redis's memory, for the targets that use Redis."""
    rows = [r for r in results if _on_redis(r.key) and r.capacity]
    if not rows:
        return []
    if all(c.redis_used_delta is None and c.redis_keys is None for r in rows for c in r.capacity):
        return [
            "",
            "Redis's memory (the two-node row keeps its live state there): not measured in "
            "this run; the row's RSS above is the nodes' only.",
        ]
    out = [
        "",
        "The two-node row keeps its live state in Redis, so its memory is the nodes' and "
        "Redis's. Redis's is measured two ways from before the fill: INFO memory "
        "`used_memory`'s delta (all of Redis, the run's pub/sub subscriptions and "
        "connection buffers included; but Redis here is the machine's shared service, so "
        "the delta also counts whatever other clients stored or freed meanwhile) and the "
        "sum of `MEMORY USAGE key SAMPLES 0` over the keys of the run's own prefix (its "
        "keys alone). Nodes + Redis adds the larger of the two; the 30 KB target of the "
        "two-node row is judged on it.",
        "",
        "| target | participants | nodes' RSS / participant (KiB) | Redis `used_memory` delta "
        "(MiB) | Redis: the run's keys (MiB) | nodes + Redis / participant (KiB) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        for c in r.capacity:
            extra = redis_kib(c)
            both = _f(c.rss_kb_per_participant + extra, 2) if extra is not None else "n/a"
            out.append(
                f"| {r.label} | {c.participants:,} | {c.rss_kb_per_participant} | "
                f"{_mib(c.redis_used_delta)} | {_mib(c.redis_keys)} | {both} |"
            )
    return out


def _mib(x: int | None) -> str:
    return "not measured" if x is None else f"{x / 2**20:.1f}"


def _deliveries(r: TargetResult, knee: float | None) -> tuple[str, str]:
    """(this run, verdict) of the fan-out target: met only if the knee reached it and
    the longer confirmation step at the target rate passed too."""
    c = r.fanout.confirm if r.fanout is not None else None
    if knee is None:
        return "n/a", "not measured"
    value = f"knee {_f(knee, 0)}"
    if c is not None:
        how = "passed" if c.passed else "failed"
        value += (
            f"; {_confirm_seconds(c):g} s at {c.offered_deliveries_s:,.0f}/s {how} (p99 "
            f"{_f(c.p99_ms, 2)} ms, lost {c.lost:,}, duplicates {_n(c.duplicates)})"
        )
    if knee < TARGET_DELIVERIES_S:
        return value, "not met"
    if c is None:
        return value + "; no confirmation step", "not confirmed (knee only)"
    if c.offered_deliveries_s < TARGET_DELIVERIES_S:
        return value, "not met"
    return value, "met" if c.passed else "not met (the confirmation failed)"


def _confirm_seconds(c: FanoutPoint) -> float:
    """The confirmation step's length, from what it offered (its point has no field)."""
    return round(c.expected / max(c.offered_deliveries_s, 1e-9), 1)


def _verdict(value: float | None, target: float) -> str:
    if value is None or math.isnan(value):
        return "not measured"
    return "met" if value >= target else "not met"


def target_rows(results: list[TargetResult]) -> list[tuple[str, str, str, str]]:
    """(target, row, this run, verdict) for each of issue 7's targets and peerroom row.

    Two nodes against one compares their knees, and each knee is known only to within
    one step (it lies between the last passing step and the first failing one above
    it): the ratio's range is given, and the target is met only if all of it is."""
    rows: list[tuple[str, str, str, str]] = []
    peer = [r for r in results if r.key.startswith("peerroom")]
    sums = {r.key: _summary(r) for r in peer}
    for r in peer:
        kb = sums[r.key]["kb_pp"]
        n = sums[r.key]["participants"]
        if _on_redis(r.key):
            rows.append(_two_nodes_memory(r, kb, n))
            continue
        rows.append(
            (
                "<= 30 KB (29.3 KiB) per participant",
                r.label,
                f"{_f(kb)} KiB at {n:,.0f}" if kb is not None and n else "n/a",
                "not measured"
                if kb is None or not n
                else ("met" if kb <= TARGET_KIB and n >= 10_000 else "not met"),
            )
        )
    one_core = [r for r in peer if r.key != "peerroom-redis"]  # two nodes: their own target
    for r in one_core:
        value, verdict = _deliveries(r, sums[r.key]["knee"])
        rows.append(
            (
                f"{TARGET_DELIVERIES_S:,.0f} deliveries/s, p99 <= 50 ms, no loss",
                r.label,
                value,
                verdict,
            )
        )
    for r in one_core:
        joins = sums[r.key]["joins_s"]
        rows.append(
            (f"{TARGET_JOINS_S:,.0f} joins/s", r.label, _f(joins), _verdict(joins, TARGET_JOINS_S))
        )
    one = next((r for r in peer if r.key == "peerroom"), None)
    two = next((r for r in peer if r.key == "peerroom-redis"), None)
    if one is not None and two is not None:
        ratio = knee_ratio(two, one)
        if ratio is None:
            rows.append(("two nodes >= 70% of one", two.label, "n/a", "not measured"))
        else:
            mid, low, high = ratio
            span = f" (between {_f(low, 2)} and {_f(high, 2)})" if low or high else ""
            if low is not None and low >= TARGET_TWO_NODES:
                verdict = "met"
            elif high is not None and high < TARGET_TWO_NODES:
                verdict = "not met"
            else:
                verdict = "not shown: within one step of the knees"
            rows.append(
                (
                    "two nodes >= 70% of one",
                    f"{two.label} / {one.label}",
                    f"{mid:.2f}{span}",
                    verdict,
                )
            )
    return rows


def _confirm_rule(results: list[TargetResult], cfg: Config) -> str:
    """The fan-out section's sentence on the confirmation step."""
    if not any(r.fanout is not None and r.fanout.confirm is not None for r in results):
        return (
            f"No confirmation step at {TARGET_DELIVERIES_S:,.0f} deliveries/s ran in this run: "
            "its targets' verdicts rest on the knee alone and say so. "
        )
    labels = [ALL_TARGETS[k].label if k in ALL_TARGETS else k for k in cfg.confirm_targets]
    return (
        f"After its search, {' and '.join(labels)} ran one confirmation step of "
        f"{cfg.confirm_seconds:g} s at {min(cfg.confirm_rate, cfg.fanout_max):,.0f} "
        f"deliveries/s (the {TARGET_DELIVERIES_S:,.0f}/s target, or the highest rate this "
        "run offers if lower), once, with the same pass rule (the last row of its table): "
        f"the {TARGET_DELIVERIES_S:,.0f}/s target is met only if the knee reached it and "
        "this step passed. "
    )


def _bisections(n: int) -> str:
    if n == 1:
        return "one bisection step refines the knee"
    return f"{n} bisection steps refine the knee (each halves the gap, on a log scale)"


def render(
    results: list[TargetResult], cfg: Config, info: dict[str, str], note: str, wall: float
) -> str:
    out: list[str] = ["# peerroom benchmarks", ""]
    pinning = (
        f"the server is pinned to core {cfg.server_core} (`taskset`), the generator to core "
        f"{cfg.gen_core} (`sched_setaffinity`)"
        if cfg.server_core is not None
        else "nothing is pinned"
    )
    if cfg.nice:
        pinning += (
            f"; both ran at niceness {cfg.nice} to keep other processes from stealing the cores"
        )
    out += [
        "Generated by `python -m bench run` (issue 7). One generator process "
        "(picows + uvloop, speaking Engine.IO v4 / Socket.IO v5 frames directly) drives "
        f"every target with the same workload; {pinning}. "
        f"Loopback only. Whole run: {wall:.0f} s.",
        "",
        "What was changed in peerroom to get these numbers, with before and after for each "
        "step: [optimisations.md](optimisations.md).",
        "",
    ]
    if note:
        out += [f"**Note:** {note}", ""]
    shared = _shared_note(results, info)
    if shared:
        out += [f"**Shared machine:** {shared}", ""]
    out += ["## Summary", ""]
    out += [
        "| target | status | RSS / participant at "
        f"{max(cfg.levels):,} (KiB) | fan-out knee (deliveries/s) | p99 at 50% of knee (ms) "
        f"| p99 at ~{FIXED_RATE:,.0f} deliveries/s (ms) "
        "| hand storm: all clients have the final queue (ms) | join storm (joins/s) "
        "| join p99 (ms) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    sums = {r.key: _summary(r) for r in results}
    for r in results:
        s = sums[r.key]
        out.append(
            f"| {r.label} | {r.status} | {_f(s['kb_pp'])} | {_knee(s['knee'], cfg)} | "
            f"{_f(s['p99_half'], 2)} | {_f(s['p99_1k'], 2)} | {_f(s['hands_ms'])} | "
            f"{_f(s['joins_s'])} | "
            f"{_f(s['join_p99'], 1)} |"
        )
    targets_met = target_rows(results)
    if targets_met:
        out += ["", "## Targets (issue 7), for one server core", ""]
        out += ["| target | row | this run | |", "|---|---|---|---|"]
        out += [f"| {t} | {row} | {value} | {verdict} |" for t, row, value, verdict in targets_met]
    out += ["", "## Ratios", ""]
    out += [
        "Above 1 means peerroom has more of it: good for the knee and joins/s, bad for "
        "memory and storm time. Each knee is known only to within one step of its search "
        "(it lies between its last passing step and the first failing one above it), so a "
        "knee ratio is given with its range: from this knee over the other's ceiling to "
        "this ceiling over the other's knee. The msgpack row compares peerroom speaking "
        "msgpack with the baselines speaking JSON (they have no msgpack row): msgpack vs "
        "the baselines' JSON, not like for like.",
        "",
        "| peerroom row | vs | RSS / participant | knee | hand storm time | joins/s |",
        "|---|---|---|---|---|---|",
    ]
    by_key = {r.key: r for r in results}
    for r in results:
        if not r.key.startswith("peerroom"):
            continue
        for base_key, base_name in (("node", "Node socket.io"), ("raw", "raw aiohttp")):
            if base_key not in sums:
                continue
            a, b = sums[r.key], sums[base_key]
            cells = [_ratio(a[k], b[k]) for k in ("kb_pp", "hands_ms", "joins_s")]
            cells.insert(1, knee_ratio_cell(knee_ratio(r, by_key[base_key])))
            vs = base_name
            if by_spec_wire(r.key) != "json":
                vs += f" ({by_spec_wire(r.key)} vs the baselines' JSON)"
            out.append(f"| {r.label} | {vs} | " + " | ".join(cells) + " |")
    out += ["", "## Is the generator the bottleneck?", ""]
    out += _headroom(results)
    out += ["", "## Capacity: idle participants in rooms of 10", ""]
    out += [
        "RSS per participant = (server RSS now - RSS before the first join) / participants. "
        "CPU columns are in cores, over the fill and a settling second.",
        "",
        "| target | participants | server RSS (MiB) | KiB / participant | fill time (s) "
        "| join errors | server CPU | generator CPU | others' CPU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for c in r.capacity:
            out.append(
                f"| {r.label} | {c.participants:,} | {c.rss_mb} | {c.rss_kb_per_participant} | "
                f"{c.fill_seconds} | {c.join_errors} | {_cpu(c.cpu)} |"
            )
    out += _redis_memory(results)
    out += ["", "## Fan-out: chat in rooms of 10, open-loop schedule", ""]
    out += [
        f"Each step offers a fixed delivery rate for {cfg.step_seconds:g} s (message k is due at "
        "t0 + k/rate, from room k mod R, sent by the room's members in turn); latency runs "
        "from the intended send time to receipt, at every member, sender included. "
        + (
            "A step passes with no loss, no refused send and p99 <= 50 ms. This run's "
            "record predates loss counted per recipient: loss was counted per message "
            "against the room size (a duplicate to one member could hide a miss at "
            "another), and duplicates, deliveries to non-members, late and stray frames "
            "were not measured in this run. "
            if _per_message(results)
            else "A step passes with no loss, no duplicate, no delivery to a non-member, "
            "no refused send and p99 <= 50 ms. Loss is counted per recipient: each member "
            "must receive each message sent to its room; one received again by the same "
            "member is a duplicate (not a delivery: no latency), one received after the "
            "drain is late (and lost), a frame of an earlier step arriving during this one "
            "is stray. A room's messages may arrive out of send order (they have different "
            "senders): that is no error. "
        )
        + "A failing step of the search (sweep or bisection) is run a second time, and a "
        "third time if other processes (with the hypervisor's steal) used more than "
        f"{NOISY:.2f} cores during the second try; a failing fraction step is run again "
        f"only while others used more than {NOISY:.2f} cores during it, up to three tries in "
        "all. A step passes if any try passes; every try is in the tables. The rate grows "
        f"x{cfg.fanout_factor:g} per step from {cfg.fanout_start:,.0f}/s; "
        + _bisections(cfg.fanout_bisections)
        + (
            f" ({cfg.ratio_bisections} for {' and '.join(cfg.ratio_targets)}, whose ratio "
            "is a target)"
            if cfg.ratio_bisections != cfg.fanout_bisections
            else ""
        )
        + "; then fixed fractions of the knee. "
        + _confirm_rule(results, cfg)
        + "CPU is in cores (1.00 = one core "
        "busy for the whole step); others' CPU is the machine's busy time that was neither the "
        "server nor the generator (a neighbour's tests, the kernel's softirq work), with the "
        "hypervisor's steal time if any.",
        "",
    ]
    for r in results:
        if r.fanout is None:
            continue
        f = r.fanout
        points = _all_points(f)
        heads, extras_note = _extras(points)
        out += [
            f"### {r.label}: knee {f.knee_deliveries_s:,.0f} deliveries/s "
            f"({f.per_participant_msgs_s_at_knee} msgs/s per participant{_tries(r)}) "
            f"{f.knee_note}",
            "",
            "| step | offered msgs/s | offered deliveries/s | delivered / expected | lost "
            + "".join(f"| {h} " for h in heads)
            + "| p50 ms | p99 ms | p99.9 ms | max ms | refused | pass | server CPU "
            "| generator CPU | others' CPU |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|" + "---|" * len(heads),
        ]
        for p in points:
            out.append(
                f"| {_step(p)} | {p.offered_msgs_s:,.0f} | {p.offered_deliveries_s:,.0f} | "
                f"{p.delivered:,} / {p.expected:,} | {p.lost:,} |"
                + (_extra_cells(p) if heads else "")
                + f" {_f(p.p50_ms, 2)} | "
                f"{_f(p.p99_ms, 2)} | {_f(p.p999_ms, 2)} | {_f(p.max_ms, 1)} | {p.nacks} | "
                f"{'yes' if p.passed else 'NO'} | {_cpu(p.cpu)} |"
            )
        out.append("")
        if f.confirm is not None:
            k = f.confirm
            out += [
                f"Confirmation ({_confirm_seconds(k):g} s at {k.offered_deliveries_s:,.0f} "
                f"deliveries/s, once, after the search): {'passed' if k.passed else 'FAILED'}; "
                f"p99 {_f(k.p99_ms, 2)} ms, {k.lost:,} lost, {_n(k.duplicates)} duplicates, "
                f"{k.delivered:,} of {k.expected:,} delivered.",
                "",
            ]
        if extras_note:
            out += [extras_note, ""]
    out += ["## Hand-raise storm and join storm", ""]
    out += [
        "The generator's CPU is in each row, next to the server's: a storm is a burst of "
        "well under a second to a few seconds, and the generator's own work in it (sending "
        "every raise or connection at once, decoding every queue or welcome) can fill its "
        "core; then the storm's time is partly the generator's. " + _storm_generator(results),
        "",
    ]
    out += [
        "| target | raised | clients with the final queue | all done (ms) | p50 (ms) "
        "| p99 (ms) | server CPU | generator CPU | others' CPU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.hands:
            h = r.hands
            out.append(
                f"| {r.label} | {h.participants:,} | {h.complete:,} | {_f(h.all_done_ms)} | "
                f"{_f(h.p50_ms)} | {_f(h.p99_ms)} | {_cpu(h.cpu)} |"
            )
    out += [
        "",
        f"Join storm: {cfg.join_storm:,} participants connect at once into fresh rooms of "
        f"{cfg.room_size}, while the capacity participants stay connected; latency is "
        "connect start to `welcome`. A p99 near 1,000 ms or 3,000 ms is the kernel's SYN "
        "retransmit: the server's listen backlog overflowed. The raw aiohttp baseline "
        "keeps aiohttp's default backlog (128); `peerroom serve` asks for 4,096 "
        "(`--listen-backlog`; the kernel grants up to net.core.somaxconn), so its joins/s "
        "ratio to raw aiohttp is partly that.",
        "",
        "| target | joined / attempted | joins/s | p50 (ms) | p99 (ms) | max (ms) "
        "| server CPU | generator CPU | others' CPU | first error |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.joins:
            j = r.joins
            out.append(
                f"| {r.label} | {j.joined:,} / {j.attempted:,} | {_f(j.joins_s)} | "
                f"{_f(j.p50_ms)} | {_f(j.p99_ms)} | {_f(j.max_ms)} | {_cpu(j.cpu)} | "
                f"{j.first_error.replace('|', '/')} |"
            )
    out += ["", "## Settings", ""]
    env = " ".join(f"{k}={v}" for k, v in PEERROOM_BENCH_ENV.items())
    out += [
        f"- peerroom ran with `{env}` (defaults: burst 5 chat lines, then 1 line/s per "
        "participant) so that its rate limiter never decides a fan-out step. The rate each "
        "knee needed per participant (senders rotate through every member of a room):",
    ]
    for r in results:
        if r.fanout is not None and r.key.startswith("peerroom"):
            need = r.fanout.per_participant_msgs_s_at_knee
            verdict = "within" if need <= 1.0 else "above"
            out.append(
                f"  - {r.label}: {need} msgs/s per participant, {verdict} the default 1 line/s"
            )
    out += [
        f"- capacity levels {', '.join(f'{n:,}' for n in cfg.levels)}; rooms of "
        f"{cfg.room_size}; fan-out steps of {cfg.step_seconds:g} s, drain up to "
        f"{cfg.drain_seconds:g} s; join storm {cfg.join_storm:,}; hand storm wait up to "
        f"{cfg.hand_timeout:g} s.",
        "- The raw aiohttp baseline runs on asyncio's own loop (as peerroom does), with "
        "aiohttp's default listen backlog; Node socket.io uses Node's default backlog (511).",
        "- The two-node row: both peerroom nodes share the server core (its server CPU is "
        "their sum), one SQLite data dir and Redis (db 15, a key prefix of its own, removed "
        "afterwards); each room's members alternate between the nodes, so every broadcast "
        "crosses Redis. Redis itself is the machine's shared service and is not pinned: its "
        "CPU shows in others' CPU; its memory is in the capacity section.",
    ]
    out += ["", "## Machine", ""]
    out += [f"- {k}: {v}" for k, v in info.items()]
    out += ["", "## Reproduce", "", REPRODUCE, ""]
    out += [
        "`python -m bench run --targets raw,node` runs a subset, `--levels 1000 --join-storm "
        "200` a small one, `--peerroom-src DIR` measures peerroom from another checkout, "
        "`--nice 0` leaves priorities alone; `python -m bench run --smoke` is the "
        "few-second version the test suite runs (tests/bench/test_bench_smoke.py).",
        "",
    ]
    return "\n".join(out)


def to_json(
    results: list[TargetResult], cfg: Config, info: dict[str, str], wall: float = 0.0
) -> str:
    def conv(o: Any) -> Any:
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            return dataclasses.asdict(o)
        return str(o)

    doc = {
        "argv": sys.argv,
        "config": dataclasses.asdict(cfg),
        "machine": info,
        "wall_seconds": round(wall, 1),
        "results": [dataclasses.asdict(r) for r in results],
    }
    return json.dumps(doc, indent=1, default=conv)


def _span(d: dict[str, Any]) -> CpuSpan:
    return CpuSpan(**d)


def load_json(path: Path) -> tuple[list[TargetResult], Config, dict[str, str], float]:
    """Read a JSON record written by ``to_json`` back (to re-render a report)."""
    doc = json.loads(path.read_text())
    results: list[TargetResult] = []
    for r in doc["results"]:
        f = r.get("fanout")
        fan = None
        if f is not None:
            points = [FanoutPoint(**{**p, "cpu": _span(p["cpu"])}) for p in f["points"]]
            c = f.get("confirm")
            fan = FanoutResult(
                f["knee_deliveries_s"],
                f["knee_note"],
                f["per_participant_msgs_s_at_knee"],
                points,
                FanoutPoint(**{**c, "cpu": _span(c["cpu"])}) if c else None,
            )
        hands = r.get("hands")
        joins = r.get("joins")
        results.append(
            TargetResult(
                key=r["key"],
                label=r["label"],
                status=r["status"],
                capacity=[CapacityPoint(**{**c, "cpu": _span(c["cpu"])}) for c in r["capacity"]],
                fanout=fan,
                hands=HandStormResult(**{**hands, "cpu": _span(hands["cpu"])}) if hands else None,
                joins=JoinStormResult(**{**joins, "cpu": _span(joins["cpu"])}) if joins else None,
                disconnects=r["disconnects"],
                nacks=r["nacks"],
                seconds=r["seconds"],
            )
        )
    # Records from before the knee had more than one bisection step do not say so.
    # Nor do those from before the two knees of the two-node target had one more.
    old = int(doc["config"].get("fanout_bisections", 1))
    # Nor do those from before the confirmation step: none ran.
    defaults = {"fanout_bisections": 1, "ratio_bisections": old, "confirm_targets": ()}
    cfg = Config(**{**defaults, **doc["config"]})
    wall = float(doc.get("wall_seconds") or sum(r.seconds for r in results))
    return results, cfg, dict(doc["machine"]), wall
