"""Fixed-rate A/B of peerroom checkouts: ``python -m bench ab``.

The tool behind the before/after numbers of docs/optimisations.md. For each repeat, each
source in turn (A, B, A, B: a drift of the machine falls on both) is started as the
target, pinned as in a run; rooms of 10 are filled and warmed, then each rate is offered
for a fixed time (open loop, as a fan-out step). One line per step: loss, p50 and p99,
server and generator CPU, steal, and the server's CPU per delivery, which is the number
to compare (p99 near the knee moves with every hiccup of a shared machine). At the end,
per source and rate, the median CPU per delivery and every p99.

``--workload join`` compares join storms instead: rooms of 10 are filled, the server is
left to go quiet, then ``--joins`` fresh participants connect at once (as the run's join
storm). One line per storm: joins/s, p50 and p99 from connect to welcome, server and
generator CPU, and the server's CPU per join, the number to compare. ``--after-load``
first chats at each of ``--rates`` and runs a hand storm, as a full run does before its
join storm (what a burst leaves behind lands in the storm: step 32); ``--quiet`` then
leaves the idle server alone for that many seconds, a lull before a session opens
(step 33).

Two options take the two-node commit path apart (optimisations.md, step 23):
``--nodes 1`` runs a Redis target as one node (the commit without a second node), and
``--whole-rooms`` puts all of a room's members on one node (no line crosses nodes).

A source is a checkout of peerroom: ``git worktree add /tmp/before HEAD~1`` makes one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench import targets
from bench.loadgen import LoadGen, Room
from bench.meters import CpuSpan
from bench.runner import pin_self, raise_nofile
from bench.workloads import (
    FanoutPoint,
    JoinStormResult,
    fanout_step,
    hand_storm,
    join_storm,
    wait_server_idle,
)

ROOM_SIZE = 10
WARM_DELIVERIES_S = 2_000.0
WARM_SECS = 2.0
DRAIN_SECS = 2.0


@dataclass(slots=True)
class AbArgs:
    target: str
    sources: list[Path]
    rates: list[float]
    seconds: float
    repeats: int
    participants: int = 10_000
    nodes: int | None = None  # None: the target's own
    whole_rooms: bool = False
    server_core: int | None = 0
    gen_core: int | None = 1
    workload: str = "fanout"  # or "join"
    joins: int = 1_000
    after_load: bool = False  # join: chat at each rate and a hand storm first, as a run
    quiet: float = 0.0  # join: seconds the idle server is then left alone before the storm


def _server_us(cpu: CpuSpan, done: int) -> float:
    """The server's CPU time per unit done (a delivery, a join), in microseconds."""
    return cpu.server * cpu.wall * 1e6 / max(1, done)


@dataclass(slots=True)
class AbStep:
    source: str
    rate: float
    point: FanoutPoint

    @property
    def us_per_delivery(self) -> float:
        return _server_us(self.point.cpu, self.point.delivered)

    def line(self) -> str:
        p, cpu = self.point, self.point.cpu
        return (
            f"{self.source:>12} {self.rate:>8,.0f}/s  lost {p.lost:>5}  p50 {p.p50_ms:7.2f}  "
            f"p99 {p.p99_ms:7.2f} ms  server {cpu.server:.2f}  generator {cpu.gen:.2f}  "
            f"steal {cpu.steal:.2f}  {self.us_per_delivery:6.1f} us/delivery"
        )


@dataclass(slots=True)
class AbJoin:
    source: str
    storm: JoinStormResult

    @property
    def us_per_join(self) -> float:
        return _server_us(self.storm.cpu, self.storm.joined)

    def line(self) -> str:
        s, cpu = self.storm, self.storm.cpu
        return (
            f"{self.source:>12} joined {s.joined:>5} of {s.attempted:<5} "
            f"{s.joins_s:7,.0f} joins/s  p50 {s.p50_ms:6,.0f}  p99 {s.p99_ms:6,.0f} ms  "
            f"server {cpu.server:.2f}  "
            f"generator {cpu.gen:.2f}  steal {cpu.steal:.2f}  {self.us_per_join:6.0f} us/join"
        )


def summarise_joins(storms: list[AbJoin]) -> str:
    """Per source, in the order first run: the median server CPU per join (and its
    range), every storm's joins/s and p99, and the joins that failed."""
    by: dict[str, list[AbJoin]] = {}
    for s in storms:
        by.setdefault(s.source, []).append(s)
    lines = [
        "| source | server CPU per join, median (range) | joins/s | p99 ms | failed |",
        "|---|---|---|---|---|",
    ]
    for source, rows in by.items():
        us = [r.us_per_join for r in rows]
        rates = ", ".join(f"{r.storm.joins_s:,.0f}" for r in rows)
        p99 = ", ".join(f"{r.storm.p99_ms:,.0f}" for r in rows)
        failed = sum(r.storm.errors for r in rows)
        lines.append(
            f"| {source} | {statistics.median(us):,.0f} us ({min(us):,.0f}-{max(us):,.0f}) "
            f"| {rates} | {p99} | {failed} |"
        )
    return "\n".join(lines) + "\n"


@dataclass(slots=True)
class Summary:
    source: str
    rate: float
    us_per_delivery: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    lost: int = 0


def summarise(steps: list[AbStep]) -> str:
    """Per source and rate, in the order first run: the median CPU per delivery (and
    its range), every p99, and any loss."""
    by: dict[tuple[str, float], Summary] = {}
    for s in steps:
        row = by.setdefault((s.source, s.rate), Summary(s.source, s.rate))
        row.us_per_delivery.append(s.us_per_delivery)
        row.p99_ms.append(s.point.p99_ms)
        row.lost += s.point.lost
    lines = [
        "| source | offered deliveries/s | server CPU per delivery, median (range) "
        "| p99 ms | lost |",
        "|---|---|---|---|---|",
    ]
    for row in by.values():
        us = row.us_per_delivery
        p99 = ", ".join(f"{x:.1f}" for x in row.p99_ms)
        lines.append(
            f"| {row.source} | {row.rate:,.0f} | {statistics.median(us):.1f} us "
            f"({min(us):.1f}-{max(us):.1f}) | {p99} | {row.lost} |"
        )
    return "\n".join(lines) + "\n"


def _labels(sources: list[Path]) -> list[str]:
    """Short names for the sources: their directory names, made unique."""
    names = [src.name or str(src) for src in sources]
    if len(set(names)) == len(names):
        return names
    return [f"{chr(ord('A') + i)}:{name}" for i, name in enumerate(names)]


async def _one(a: AbArgs, src: Path, label: str, steps: list[AbStep], storms: list[AbJoin]) -> None:
    spec = targets.ALL_TARGETS[a.target]
    if a.nodes is not None:
        spec = dataclasses.replace(spec, nodes=a.nodes)
    rt = await targets.start(spec, a.server_core, peerroom_src=src)
    gen = LoadGen(spec.wire)
    try:
        n_rooms = max(1, a.participants // ROOM_SIZE)
        n_storm = max(1, a.joins // ROOM_SIZE) if a.workload == "join" else 0
        tokens = await targets.create_rooms(rt, n_rooms + n_storm)
        urls = rt.ws_urls
        all_rooms = [
            Room(i, tok, [urls[i % len(urls)]] if a.whole_rooms else urls)
            for i, tok in enumerate(tokens)
        ]
        rooms, storm_rooms = all_rooms[:n_rooms], all_rooms[n_rooms:]
        _, errors = await gen.fill_rooms(rooms, ROOM_SIZE, 200)
        full = [r for r in rooms if len(r.members) == ROOM_SIZE]
        if not full:
            raise RuntimeError(f"{label}: no room could be filled ({len(errors)} join errors)")
        if a.workload == "join":
            if a.after_load:  # the state a full run's storm meets: rooms that chatted
                for rate in a.rates:
                    await fanout_step(gen, full, "load", rate, a.seconds, DRAIN_SECS, rt.pids)
                await wait_server_idle(rt.pids, 10.0)
                await hand_storm(gen, full, rt.pids, 30.0)
            await wait_server_idle(rt.pids, 10.0)
            await asyncio.sleep(a.quiet)
            storm = AbJoin(label, await join_storm(gen, storm_rooms, ROOM_SIZE, rt.pids))
            storms.append(storm)
            print(storm.line(), flush=True)
            return
        await fanout_step(gen, full, "warm", WARM_DELIVERIES_S, WARM_SECS, DRAIN_SECS, rt.pids)
        for rate in a.rates:
            p = await fanout_step(gen, full, "ab", rate, a.seconds, DRAIN_SECS, rt.pids)
            step = AbStep(label, rate, p)
            steps.append(step)
            print(step.line(), flush=True)
    finally:
        gen.close_all()
        rt.stop()


async def run(a: AbArgs) -> int:
    if targets.ALL_TARGETS[a.target].kind != "peerroom":
        print("ab compares peerroom checkouts: pick a peerroom target", file=sys.stderr)
        return 2
    raise_nofile()
    pin_self(a.gen_core)
    labels = _labels(a.sources)
    steps: list[AbStep] = []
    storms: list[AbJoin] = []
    for _ in range(a.repeats):
        for src, label in zip(a.sources, labels, strict=True):
            await _one(a, src, label, steps, storms)
    print()
    print(summarise_joins(storms) if a.workload == "join" else summarise(steps), end="")
    return 0
