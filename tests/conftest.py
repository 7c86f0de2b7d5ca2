from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from tests.support import TEARDOWN_SECS, Client, LiveServer, start_server

# No per-example deadline: a property holds or not whatever the machine's load (CI shares
# two cores with the servers under test); Hypothesis's 200 ms default fails on a stall.
settings.register_profile("peerroom", deadline=None)
settings.load_profile("peerroom")

# Fixtures that start a peerroom server in the test's process: with PEERROOM_TEST_REDIS=1
# (scripts/test's second pass) its live state is on Redis.
SERVER_FIXTURES = frozenset({"server_factory", "live_server", "servers", "server"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The Redis pass runs what its live state can change: tests that start a server
    here, not those of storage alone, of subprocesses (the CLI, the benchmark: they do
    not read PEERROOM_TEST_REDIS) or of pure functions. Browser tests see only the wire,
    which the integration tests check on Redis; those marked ``redis_pass`` run too."""
    if os.environ.get("PEERROOM_TEST_REDIS") != "1":
        return
    keep: list[pytest.Item] = []
    left: list[pytest.Item] = []
    for item in items:
        starts_server = bool(SERVER_FIXTURES & set(getattr(item, "fixturenames", ())))
        if item.get_closest_marker("redis_pass") or (
            starts_server and not item.get_closest_marker("browser")
        ):
            keep.append(item)
        else:
            left.append(item)
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = keep


@pytest.fixture
async def server_factory(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[LiveServer]]]:
    started: list[LiveServer] = []

    async def factory(**overrides: Any) -> LiveServer:
        server = await start_server(tmp_path / f"data{len(started)}", **overrides)
        started.append(server)
        return server

    yield factory
    for server in started:
        await _stop_within(server, TEARDOWN_SECS)


async def _stop_within(server: LiveServer, secs: float) -> None:
    """Stop ``server``; if that takes over ``secs``, fail with where every task of the
    loop waits (a timeout's own traceback shows only the step it interrupted)."""
    stopping = asyncio.get_running_loop().create_task(server.stop())
    done, _ = await asyncio.wait({stopping}, timeout=secs)
    if stopping in done:
        stopping.result()
        return
    stacks = io.StringIO()
    for task in asyncio.all_tasks():
        if task is not asyncio.current_task():
            task.print_stack(limit=12, file=stacks)
    stopping.cancel()
    await asyncio.gather(stopping, return_exceptions=True)
    pytest.fail(f"stopping the server took over {secs:g} s; the loop's tasks:\n{stacks.getvalue()}")


@pytest.fixture
async def live_server(server_factory: Callable[..., Awaitable[LiveServer]]) -> LiveServer:
    return await server_factory()


@pytest.fixture
async def clients(live_server: LiveServer) -> AsyncIterator[Callable[[], Client]]:
    """Make clients of ``live_server``; all are closed at the end of the test."""
    made: list[Client] = []

    def make(url: str | None = None, wire: str = "json") -> Client:
        client = Client(url or live_server.url, wire=wire)
        made.append(client)
        return client

    yield make
    for c in made:
        await c.close()
    assert [c.gaps for c in made if c.gaps] == [], "a client saw a seq gap"
