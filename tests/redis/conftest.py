"""Fixtures for the many-node tests: a reachable Redis (or a clear failure), a cluster of
real node processes that is always torn down, and clients that are always closed."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.redis.cluster import Cluster
from tests.support import (
    REDIS_URL,
    SKIP_POSTGRES,
    Client,
    delete_redis_prefix,
    fresh_pg_database,
)

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.redis)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> str:
    from urllib.parse import urlsplit

    u = urlsplit(REDIS_URL)
    host, port = u.hostname or "127.0.0.1", u.port or 6379
    if not _reachable(host, port):
        msg = (
            f"Redis is not reachable at {host}:{port} (PEERROOM_TEST_REDIS_URL). "
            "Start it (redis-server), or set PEERROOM_SKIP_REDIS=1 to skip these tests."
        )
        if os.environ.get("PEERROOM_SKIP_REDIS") == "1":
            pytest.skip(msg)
        pytest.fail(msg)
    return REDIS_URL


@pytest.fixture
async def cluster_database() -> AsyncIterator[str | None]:
    """The nodes' shared database: a fresh PostgreSQL one, as many nodes are deployed
    (None, SQLite in the shared data dir, with ``PEERROOM_SKIP_POSTGRES=1``)."""
    if SKIP_POSTGRES:
        yield None
        return
    async with fresh_pg_database("cluster") as url:
        yield url


@pytest.fixture
async def cluster(
    redis_url: str, tmp_path: Path, cluster_database: str | None
) -> AsyncIterator[Cluster]:
    c = Cluster(redis_url, tmp_path, database_url=cluster_database)
    try:
        yield c
    finally:
        c.stop()
        await delete_redis_prefix(redis_url, c.prefix)


@pytest.fixture
async def make_client() -> AsyncIterator[Callable[[str], Client]]:
    made: list[Client] = []

    def make(url: str) -> Client:
        client = Client(url)
        made.append(client)
        return client

    yield make
    for c in made:
        with contextlib.suppress(Exception):  # the node may be gone: nothing to close
            await c.close()
