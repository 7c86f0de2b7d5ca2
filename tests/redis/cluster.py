"""Real peerroom nodes as separate processes on one Redis and one PostgreSQL database
(as docs/deploy.md deploys many nodes), each test with a database and key prefix of
its own. With ``PEERROOM_SKIP_POSTGRES=1`` they share one SQLite file instead.

Every process started here is killed when the test ends, passed or not (the fixtures in
``conftest.py`` call :meth:`Cluster.stop`). Loopback only.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.support import ADMIN_TOKEN

ROOT = Path(__file__).resolve().parents[2]
BRIDGE_TOKEN = "cluster-test-bridge-token"
START_SECS = 15.0  # a node process answering /healthz (a busy shared 2-core machine)
POLL_SECS = 0.05


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def health(url: str) -> int | None:
    """The /healthz status code, or None if nothing answers."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as http,
            http.get(f"{url}/healthz") as r,
        ):
            return r.status
    except (aiohttp.ClientError, TimeoutError, OSError):
        return None


async def wait_health(url: str, status: int, within: float) -> float:
    """Seconds until /healthz answered ``status``; fails after ``within``."""
    start = time.monotonic()
    last: int | None = None
    while time.monotonic() - start < within:
        last = await health(url)
        if last == status:
            return time.monotonic() - start
        await asyncio.sleep(POLL_SECS)
    raise AssertionError(f"{url}/healthz: wanted {status} within {within}s, last {last}")


def spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


@dataclass
class Node:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """kill -9: no goodbye to Redis, no closing of sockets."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Cluster:
    """Nodes sharing a Redis URL, a key prefix, a database, a data dir and the same
    secrets."""

    redis_url: str
    data_dir: Path
    database_url: str | None = None  # None: SQLite in the shared data dir
    grace_secs: float = 30.0
    prefix: str = field(default_factory=lambda: f"peerroom-test:{secrets.token_hex(6)}:")
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    nodes: list[Node] = field(default_factory=list)

    async def start_node(self, name: str | None = None) -> Node:
        name = name or f"node{len(self.nodes)}"
        port = free_port()
        log = self.data_dir / f"{name}.log"
        env = {
            **os.environ,
            "PEERROOM_ADMIN_TOKEN": ADMIN_TOKEN,
            "PEERROOM_SECRET": self.secret,
            "PEERROOM_REDIS_PREFIX": self.prefix,
            "PEERROOM_BRIDGE_TOKEN": BRIDGE_TOKEN,
            "PYTHONUNBUFFERED": "1",
        }
        proc = spawn(
            [
                sys.executable,
                "-m",
                "server",
                "serve",
                "--port",
                str(port),
                "--data-dir",
                str(self.data_dir),
                "--redis-url",
                self.redis_url,
                "--grace",
                str(self.grace_secs),
                *(["--database-url", self.database_url] if self.database_url else []),
            ],
            env,
            log,
        )
        node = Node(name, port, proc, log)
        self.nodes.append(node)
        try:
            await wait_health(node.url, 200, START_SECS)
        except AssertionError as e:
            raise AssertionError(f"{name} did not start:\n{node.tail()}") from e
        return node

    async def start(self, n: int) -> list[Node]:
        # One at a time: the first one creates the schema.
        return [await self.start_node() for _ in range(n)]

    async def create_room(self, node: Node, title: str = "Circle", **extra: Any) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{node.url}/api/rooms",
                json={"title": title, **extra},
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            ) as r,
        ):
            assert r.status == 201, await r.text()
            body: dict[str, Any] = await r.json()
            return body

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {n.name} ---\n{n.tail()}" for n in self.nodes)
