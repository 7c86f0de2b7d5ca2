"""A server stops, even when a background task swallows its cancellation.

On Python 3.11 ``asyncio.wait_for`` returns its result instead of raising when a
cancellation lands in the same turn as that result, and libraries built on it do the
same (server/tasks.py). The room clock, which talks to Redis every second on many nodes,
once went on ticking after the server cancelled it, and the stop waited for it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from server.keys import SERVICE
from server.tasks import stop_tasks
from tests.support import start_server


async def test_a_clock_that_swallows_its_cancellation_does_not_hold_the_stop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await start_server(tmp_path / "data")
    service = server.app[SERVICE]
    ticking = asyncio.Event()
    swallowed = 0

    async def tick() -> None:
        nonlocal swallowed
        ticking.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if swallowed:
                raise
            swallowed += 1  # once, as wait_for does when its result and the cancel meet

    monkeypatch.setattr(service, "tick", tick)
    async with asyncio.timeout(5):
        await ticking.wait()  # the clock is inside its tick
    async with asyncio.timeout(10):
        await server.stop()
    assert swallowed == 1
    assert any("went on after it was cancelled" in r.getMessage() for r in caplog.records)


async def test_a_task_that_will_not_stop_is_given_up_on_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    refusals = 0

    async def stubborn() -> None:
        nonlocal refusals
        while refusals < 10:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                refusals += 1

    task = asyncio.get_running_loop().create_task(stubborn())
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await stop_tasks(task, within=1.2)
    assert 1.2 <= loop.time() - started < 4.0  # not the minute a swallowed cancel could take
    assert not task.done() and refusals == 3  # cancelled at 0, 0.5 and 1.0 s
    assert any("did not stop within 1.2 s" in r.getMessage() for r in caplog.records)
    while not task.done():
        task.cancel()
        await asyncio.sleep(0)
