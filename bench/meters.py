"""CPU and memory meters for the generator and the server processes.

Measures CPU as a fraction of one core (process CPU seconds, user + system,
divided by wall seconds over a span) for the generator (this process, via
``time.process_time``) and for each server process tree (via psutil), the
servers' resident set size (RSS, summed over the process tree), and, because
the machine is shared, the CPU that everything else used over the same span
(``/proc/stat`` busy time minus generator and server) and the hypervisor's
steal time, so a noisy neighbour is visible next to every number.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

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


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine so far, from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return 0.0, 0.0
    vals = [int(x) for x in fields[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = vals[:7]
    steal = vals[7] if len(vals) > 7 else 0
    return (user + nice + system + irq + softirq) / _TICK, steal / _TICK


@dataclass(slots=True)
class CpuSpan:
    """CPU use over one span of wall time, each as a fraction of one core.

    ``other`` is what every process but the generator and the server used (a
    neighbour's test suite, say); ``steal`` is time the hypervisor took away.
    """

    gen: float = 0.0
    server: float = 0.0
    other: float = 0.0
    steal: float = 0.0
    wall: float = 0.0


class CpuMeter:
    """Start, then ``stop()`` returns the CPU fractions since the start."""

    def __init__(self, server_pids: list[int]) -> None:
        self.server_pids = server_pids
        self.t0 = time.monotonic()
        self.g0 = time.process_time()
        self.s0 = tree_cpu_seconds(server_pids)
        self.m0 = machine_cpu_seconds()

    def stop(self) -> CpuSpan:
        wall = max(time.monotonic() - self.t0, 1e-9)
        gen = (time.process_time() - self.g0) / wall
        server = (tree_cpu_seconds(self.server_pids) - self.s0) / wall
        busy, steal = machine_cpu_seconds()
        other = max(0.0, (busy - self.m0[0]) / wall - gen - server)
        steal = (steal - self.m0[1]) / wall
        return CpuSpan(
            round(gen, 3), round(server, 3), round(other, 3), round(steal, 3), round(wall, 3)
        )


class RedisMemory:
    """Redis's memory a run adds, from before the fill: two measures, both in bytes.

    ``used``: INFO memory ``used_memory`` now minus at :meth:`start`. It counts all of
    Redis, the run's pub/sub subscriptions and connection buffers included, but on a
    Redis shared with other processes also whatever they stored or freed meanwhile.
    ``keys``: the sum of ``MEMORY USAGE key SAMPLES 0`` over the keys of the run's own
    prefix, now minus at :meth:`start`: this run's keys alone, without the rest.
    Blocking calls (redis-py): run them in a thread. Any error leaves both None."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self.base: tuple[int, int] | None = None

    def _read(self) -> tuple[int, int]:
        import redis

        client = redis.Redis.from_url(self.url, socket_timeout=5)
        try:
            used = int(client.info("memory")["used_memory"])
            keys = list(client.scan_iter(match=self.prefix + "*", count=1000))
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.memory_usage(key, samples=0)
            total = sum(int(x or 0) for x in pipe.execute()) if keys else 0
            return used, total
        finally:
            client.close()

    def start(self) -> None:
        try:
            self.base = self._read()
        except Exception:
            self.base = None

    def sample(self) -> tuple[int | None, int | None]:
        """(used_memory delta, the run's keys' delta) since :meth:`start`."""
        if self.base is None:
            return None, None
        try:
            used, keys = self._read()
        except Exception:
            return None, None
        return used - self.base[0], keys - self.base[1]
