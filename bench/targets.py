"""The servers under test: how to start, probe, pin and stop each one.

Measures nothing itself. Each target is a server process (two for the Redis
row) started on 127.0.0.1 with a free port, pinned to one core with
``taskset``, ready when ``GET /healthz`` answers 200, and killed (SIGTERM,
then SIGKILL) when the run ends, on error or on Ctrl-C too. A peerroom target
that refuses a flag it does not have yet (``--redis-url``) is reported as
skipped with the reason instead of failing the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import aiohttp

from bench import wire

ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = ROOT / "bench" / "node"
LOOPBACK = "127.0.0.1"

Kind = Literal["raw", "node", "peerroom", "picows"]

# peerroom's per-participant chat limit (default: burst 5, then 1 line/s) is
# raised so the limiter never decides a fan-out step; the report states the
# per-participant rate each knee actually needed. Rooms of 10 are under the
# default --max-room-size (100), and the other events' limit (burst 20) covers
# one hand.raise each.
PEERROOM_BENCH_ENV = {
    "PEERROOM_CHAT_RATE": "100",
    "PEERROOM_CHAT_BURST": "100",
}


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """One row of the comparison."""

    key: str
    label: str
    kind: Kind
    wire: wire.Wire = "json"
    nodes: int = 1
    redis_url: str | None = None


ALL_TARGETS: dict[str, TargetSpec] = {
    t.key: t
    for t in (
        TargetSpec("picows", "generator check: picows server (JSON)", "picows"),
        TargetSpec("raw", "raw aiohttp (JSON)", "raw"),
        TargetSpec("node", "Node socket.io (JSON)", "node"),
        TargetSpec("peerroom", "peerroom (JSON)", "peerroom"),
        TargetSpec("peerroom-msgpack", "peerroom (msgpack)", "peerroom", "msgpack"),
        TargetSpec(
            "peerroom-redis",
            "peerroom, 2 nodes on Redis (JSON)",
            "peerroom",
            nodes=2,
            redis_url="redis://127.0.0.1:6379/15",
        ),
    )
}


def _load_prctl() -> Callable[..., int] | None:
    try:
        import ctypes

        fn: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
        return fn
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()  # resolved here: the child only makes the call (no import after fork)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL if the generator dies (even by SIGKILL)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def get_priority(pid: int) -> tuple[int, int]:
    """(niceness, autogroup niceness) of a process, to restore later."""
    nice = os.getpriority(os.PRIO_PROCESS, pid)
    group = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        group = int(Path(f"/proc/{pid}/autogroup").read_text().split("nice")[1])
    return nice, group


def set_priority(pid: int, nice: int, group: int | None = None) -> None:
    """Set a process's niceness and its autogroup's (Linux groups CPU time by session,
    so niceness alone does not count against other sessions' processes)."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, pid, nice)
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/autogroup").write_text(str(nice if group is None else group))


class TargetSkipped(Exception):
    """The target cannot run here; the message says why (goes in the table)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def node_available() -> str | None:
    """Why the Node baseline cannot run, or None if it can."""
    if shutil.which("node") is None:
        return "n/a: node not installed"
    if not (NODE_DIR / "node_modules" / "socket.io").is_dir():
        return "n/a: run `npm ci --prefix bench/node` first"
    return None


@dataclass
class RunningTarget:
    """A started target: its processes, URLs and admin token."""

    spec: TargetSpec
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    http_ports: list[int] = field(default_factory=list)
    admin_token: str = ""
    workdir: Path | None = None
    logs: list[Path] = field(default_factory=list)
    redis_prefix: str = ""

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    @property
    def http_urls(self) -> list[str]:
        return [f"http://{LOOPBACK}:{p}" for p in self.http_ports]

    @property
    def ws_urls(self) -> list[str]:
        return [f"ws://{LOOPBACK}:{p}/socket.io/?EIO=4&transport=websocket" for p in self.ports]

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 3
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if self.spec.redis_url and self.redis_prefix:
            _delete_redis_prefix(self.spec.redis_url, self.redis_prefix)

    def log_tail(self, n: int = 20) -> str:
        out: list[str] = []
        for log in self.logs:
            with contextlib.suppress(OSError):
                out.extend(log.read_text(errors="replace").splitlines()[-n:])
        return "\n".join(out)


def _delete_redis_prefix(url: str, prefix: str) -> None:
    """Remove the keys this run left in Redis (its own prefix only)."""
    try:
        import redis
    except ImportError:
        return
    with contextlib.suppress(Exception):
        client = redis.Redis.from_url(url, socket_timeout=5)
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
        client.close()


def _command(spec: TargetSpec, port: int, http_port: int, data_dir: Path) -> list[str]:
    if spec.kind == "picows":
        argv = ["--port", str(port), "--http-port", str(http_port)]
        return [sys.executable, "-m", "bench.picows_server", *argv]
    if spec.kind == "raw":
        return [sys.executable, "-m", "bench.raw_server", "--port", str(port), "--wire", spec.wire]
    if spec.kind == "node":
        return ["node", str(NODE_DIR / "server.js"), "--port", str(port), "--wire", spec.wire]
    cmd = [sys.executable, "-m", "server", "serve", "--host", LOOPBACK, "--port", str(port)]
    cmd += ["--data-dir", str(data_dir)]
    if spec.wire != "json":
        cmd += ["--wire", spec.wire]
    if spec.redis_url:
        cmd += ["--redis-url", spec.redis_url]
    return cmd


def _pin(cmd: list[str], core: int | None) -> list[str]:
    if core is None or shutil.which("taskset") is None:
        return cmd
    return ["taskset", "-c", str(core), *cmd]


_REFUSED = ("unrecognized arguments", "no such option", "not supported")


async def _wait_ready(rt: RunningTarget, limit: float) -> None:
    deadline = time.monotonic() + limit
    async with aiohttp.ClientSession() as http:
        for proc, url in zip(rt.procs, rt.http_urls, strict=True):
            while True:
                tail = rt.log_tail()
                # A refused flag may leave the process hanging (seen: peerroom printing
                # "--redis-url ... not supported" without exiting), so read the log too.
                if any(r in tail for r in _REFUSED):
                    flag = "--redis-url" if rt.spec.redis_url else "--wire"
                    raise TargetSkipped(f"n/a: needs {flag} support")
                if proc.poll() is not None:
                    raise TargetSkipped(f"n/a: server exited ({proc.returncode}): {tail[-300:]}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(url + "/healthz") as resp:
                        if resp.status == 200:
                            break
                if time.monotonic() > deadline:
                    raise TargetSkipped("n/a: server did not become ready")
                await asyncio.sleep(0.1)


async def start(
    spec: TargetSpec,
    core: int | None,
    ready_timeout: float = 30.0,
    nice: int = 0,
    peerroom_src: Path | None = None,
) -> RunningTarget:
    """Start the target's process(es); raises TargetSkipped if it cannot run.

    ``peerroom_src`` runs peerroom from another checkout (default: this one)."""
    if spec.kind == "node" and (why := node_available()):
        raise TargetSkipped(why)
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{spec.key}-"))
    rt = RunningTarget(spec, admin_token="bench-" + secrets.token_hex(12), workdir=workdir)
    env = dict(os.environ)
    env["PEERROOM_ADMIN_TOKEN"] = rt.admin_token
    env.update(PEERROOM_BENCH_ENV)
    if spec.redis_url:
        # Both nodes share one SQLite data dir, one Redis prefix of their own and, as
        # docs/deploy.md asks of every deployment of many nodes, one signing secret.
        env["PEERROOM_SECRET"] = secrets.token_urlsafe(32)
        rt.redis_prefix = f"peerroom-bench-{secrets.token_hex(4)}:"
        env["PEERROOM_REDIS_PREFIX"] = rt.redis_prefix
    src = peerroom_src if spec.kind == "peerroom" and peerroom_src is not None else ROOT
    env["PYTHONPATH"] = str(src) + os.pathsep + env.get("PYTHONPATH", "")
    data_dir = workdir / "data"
    data_dir.mkdir()
    try:
        for i in range(spec.nodes):
            port = free_port()
            http_port = free_port() if spec.kind == "picows" else port
            log = workdir / f"server-{i}.log"
            rt.logs.append(log)
            with log.open("wb") as fh:
                proc = subprocess.Popen(  # noqa: S603, ASYNC220 - fixed argv; a quick fork
                    _pin(_command(spec, port, http_port, data_dir), core),
                    cwd=src,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                )
            rt.procs.append(proc)
            if nice:
                set_priority(proc.pid, nice)
            rt.ports.append(port)
            rt.http_ports.append(http_port)
        await _wait_ready(rt, ready_timeout)
    except BaseException:
        rt.stop()
        raise
    return rt


async def create_rooms(rt: RunningTarget, n: int, concurrency: int = 16) -> list[str]:
    """Create ``n`` rooms over HTTP on the first node; returns invite tokens."""
    sem = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {rt.admin_token}"}
    url = rt.http_urls[0] + "/api/rooms"

    async with aiohttp.ClientSession(headers=headers) as http:

        async def one(i: int) -> str:
            async with sem, http.post(url, json={"title": f"bench room {i}"}) as resp:
                if resp.status != 201:
                    raise RuntimeError(f"POST /api/rooms -> {resp.status}: {await resp.text()}")
                body = await resp.json()
                return str(body["invite_token"])

        return list(await asyncio.gather(*(one(i) for i in range(n))))
