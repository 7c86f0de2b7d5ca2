"""Profile one target under a steady fan-out or a join storm: ``python -m bench profile``.

Starts the target pinned as in a run, fills rooms of 10, then either offers a fixed chat
rate (open loop, as a fan-out step) or lets ``--joins`` fresh participants connect at
once (as the run's join storm), and samples every server process with py-spy meanwhile.
Prints the step's numbers (deliveries or joins, p99, CPU) and, per process, the functions
with the most samples of their own and in all (raw stacks are kept for a flame graph).
Measures nothing the report uses; it is the tool for finding what to make faster.
"""

from __future__ import annotations

import asyncio
import collections
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench import targets
from bench.loadgen import LoadGen, Room
from bench.runner import pin_self, raise_nofile
from bench.workloads import fanout_step, hand_storm, join_storm, wait_server_idle

ROOM_SIZE = 10


@dataclass(slots=True)
class ProfileArgs:
    target: str
    participants: int
    rate: float
    seconds: float
    out: Path
    top: int
    workload: str = "fanout"
    joins: int = 1_000
    server_core: int | None = 0
    gen_core: int | None = 1
    after_load: bool = False  # join: chat at --rate and a hand storm first, as a run


def _function(frame: str) -> str:
    """``f (path/mod.py:12)`` -> ``f (path/mod.py)``: samples of a function together."""
    name, _, rest = frame.partition(" (")
    return f"{name} ({rest.rpartition(':')[0]})" if rest else name


def _package(frame: str) -> str:
    """The top-level package (or stdlib module) a frame's file belongs to."""
    path = frame.partition(" (")[2].rstrip(")")
    return path.split("/", 1)[0] if "/" in path else path or "?"


def _summarise(raw: Path, top: int) -> str:
    """Self and inclusive sample counts per function from py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    where: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_function(f) for f in stack.split(";")]
        samples += n
        own[frames[-1]] += n
        where[_package(frames[-1])] += n
        for f in set(frames):
            total[f] += n
    if not samples:
        return f"{raw.name}: no samples\n"
    lines = [f"{raw.name}: {samples} samples (idle excluded)", "  own, by package:"]
    lines += [f"    {100 * n / samples:5.1f}%  {f}" for f, n in where.most_common(top)]
    lines.append("  own:")
    lines += [f"    {100 * n / samples:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines.append("  in all:")
    lines += [f"    {100 * n / samples:5.1f}%  {f}" for f, n in total.most_common(top)]
    return "\n".join(lines) + "\n"


async def run(a: ProfileArgs) -> int:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not shutil.which(spy):
        print("py-spy not found: scripts/bootstrap test,lint,bench installs it", file=sys.stderr)
        return 2
    spec = targets.ALL_TARGETS[a.target]
    raise_nofile()
    pin_self(a.gen_core)
    rt = await targets.start(spec, a.server_core)
    gen = LoadGen(spec.wire)
    spies: list[subprocess.Popen[bytes]] = []
    try:
        n_rooms = max(1, a.participants // ROOM_SIZE)
        storm_rooms = max(1, a.joins // ROOM_SIZE) if a.workload == "join" else 0
        tokens = await targets.create_rooms(rt, n_rooms + storm_rooms)
        all_rooms = [Room(i, tok, rt.ws_urls) for i, tok in enumerate(tokens)]
        rooms, storm = all_rooms[:n_rooms], all_rooms[n_rooms:]
        _, errors = await gen.fill_rooms(rooms, ROOM_SIZE, 200)
        full = [r for r in rooms if len(r.members) == ROOM_SIZE]
        print(f"{a.target}: {len(full)} full rooms, {len(errors)} join errors", file=sys.stderr)
        if a.workload == "fanout":
            # A short step first: connections and caches warm, as in a run.
            await fanout_step(gen, full, "warm", a.rate / 4, 1.0, 2.0, rt.pids)
        else:
            if a.after_load:  # the state a full run's storm meets: rooms that chatted
                await fanout_step(gen, full, "load", a.rate, a.seconds, 2.0, rt.pids)
                await wait_server_idle(rt.pids, 10.0)
                await hand_storm(gen, full, rt.pids, 30.0)
            await wait_server_idle(rt.pids, 10.0)
        a.out.mkdir(parents=True, exist_ok=True)
        raws = [a.out / f"{a.target}-{i}.txt" for i in range(len(rt.pids))]
        for pid, raw in zip(rt.pids, raws, strict=True):
            spies.append(
                subprocess.Popen(  # noqa: S603, ASYNC220 - fixed argv; a quick fork
                    [
                        *(spy, "record", "-p", str(pid), "-d", str(int(a.seconds) + 1)),
                        *("-r", "250", "-f", "raw", "-o", str(raw), "--nonblocking"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        await asyncio.sleep(0.5)
        if a.workload == "fanout":
            p = await fanout_step(gen, full, "profile", a.rate, a.seconds, 3.0, rt.pids)
            print(
                f"offered {p.offered_deliveries_s:,.0f} deliveries/s: delivered {p.delivered:,} "
                f"of {p.expected:,} (lost {p.lost}), p50 {p.p50_ms:.2f} ms, p99 "
                f"{p.p99_ms:.2f} ms, server CPU {p.cpu.server:.2f}, generator CPU "
                f"{p.cpu.gen:.2f}"
            )
        else:
            j = await join_storm(gen, storm, ROOM_SIZE, rt.pids)
            print(
                f"join storm: {j.joined:,} of {j.attempted:,} joined, {j.joins_s:,.0f} joins/s, "
                f"p50 {j.p50_ms:,.0f} ms, p99 {j.p99_ms:,.0f} ms, server CPU "
                f"{j.cpu.server:.2f}, generator CPU {j.cpu.gen:.2f} {j.first_error}"
            )
        for s in spies:
            await asyncio.to_thread(s.wait, 30)
        for raw in raws:
            if raw.exists():
                print(_summarise(raw, a.top))
    finally:
        for s in spies:
            if s.poll() is None:
                s.kill()
        gen.close_all()
        rt.stop()
    return 0
