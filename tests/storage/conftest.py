"""Fixtures for the storage suite: every test here runs against SQLite in a temp dir and
against the real PostgreSQL on 127.0.0.1:5432, in a database of its own that is dropped
afterwards.

PostgreSQL tests carry the ``postgres`` marker. If PostgreSQL cannot be reached they
fail with a clear message; set ``PEERROOM_SKIP_POSTGRES=1`` to skip them instead.
``PEERROOM_TEST_PG_URL`` points at another server (an admin connection that may
CREATE DATABASE).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from server.storage.base import Storage
from server.storage.postgres import PostgresStorage
from server.storage.sqlite import SqliteStorage
from tests.support import (
    SKIP_POSTGRES,
    Client,
    LiveServer,
    fresh_pg_database,
    start_server,
)

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not SKIP_POSTGRES:
        return
    skip = pytest.mark.skip(reason="PEERROOM_SKIP_POSTGRES=1")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database for this test; dropped afterwards."""
    async with fresh_pg_database() as url:
        yield url


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    param: str = request.param
    return param


@pytest.fixture
def backend_url(backend: str, request: pytest.FixtureRequest) -> str | None:
    """The PostgreSQL database of this test, or None on SQLite. (A plain fixture: it
    pulls ``pg_url`` in only when needed, outside the running event loop.)"""
    if backend == "postgres":
        url: str = request.getfixturevalue("pg_url")
        return url
    return None


@pytest.fixture
def backend_settings(backend_url: str | None) -> dict[str, Any]:
    """Settings overrides that put a server on this test's backend."""
    return {"database_url": backend_url} if backend_url else {}


@pytest.fixture
async def storage(backend_url: str | None, tmp_path: Path) -> AsyncIterator[Storage]:
    s: SqliteStorage | PostgresStorage
    if backend_url:
        s = await PostgresStorage.open(backend_url)
    else:
        s = await SqliteStorage.open(tmp_path / "peerroom.sqlite3")
    yield s
    await s.close()


@pytest.fixture
async def servers(
    tmp_path: Path, backend_settings: dict[str, Any]
) -> AsyncIterator[Callable[..., Awaitable[LiveServer]]]:
    """Start real servers on this test's backend; all are stopped at the end."""
    started: list[LiveServer] = []

    async def factory(**overrides: Any) -> LiveServer:
        data_dir = overrides.pop("data_dir", tmp_path / f"data{len(started)}")
        server = await start_server(data_dir, **{**backend_settings, **overrides})
        started.append(server)
        return server

    yield factory
    for server in started:
        await server.stop()


@pytest.fixture
async def people(
    servers: Callable[..., Awaitable[LiveServer]],
) -> AsyncIterator[Callable[[LiveServer], Client]]:
    """Real Socket.IO clients; closed before the servers stop."""
    made: list[Client] = []

    def make(server: LiveServer) -> Client:
        c = Client(server.url)
        made.append(c)
        return c

    yield make
    for c in made:
        await c.close()
