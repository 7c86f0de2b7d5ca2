"""CPU and memory meters for the generator and the server processes.

Measures CPU as a fraction of one core (process CPU seconds, user + system,
divided by wall seconds over a span) for the generator (this process, via
``time.process_time``) and for each server process tree (via psutil), and the
servers' resident set size (RSS, summed over the process tree).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psutil


def _tree(pids: list[int]) -> list[psutil.Process]:
    procs: list[psutil.Process] = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            procs.append(p)
            procs.extend(p.children(recursive=True))
        except psutil.NoSuchProcess:
            continue
    return procs


def tree_cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds consumed so far by the process trees."""
    total = 0.0
    for p in _tree(pids):
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            continue
    return total


def tree_rss(pids: list[int]) -> int:
    """Resident set size in bytes of the process trees."""
    total = 0
    for p in _tree(pids):
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


@dataclass(slots=True)
class CpuSpan:
    """CPU use of the generator and the server over one span of wall time."""

    gen: float = 0.0
    server: float = 0.0
    wall: float = 0.0


class CpuMeter:
    """Start, then ``stop()`` returns the CPU fractions since the start."""

    def __init__(self, server_pids: list[int]) -> None:
        self.server_pids = server_pids
        self.t0 = time.monotonic()
        self.g0 = time.process_time()
        self.s0 = tree_cpu_seconds(server_pids)

    def stop(self) -> CpuSpan:
        wall = max(time.monotonic() - self.t0, 1e-9)
        gen = (time.process_time() - self.g0) / wall
        server = (tree_cpu_seconds(self.server_pids) - self.s0) / wall
        return CpuSpan(round(gen, 3), round(server, 3), round(wall, 3))
