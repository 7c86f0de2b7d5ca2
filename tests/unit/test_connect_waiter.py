"""DirectManager.wait_connected: the greeting waits for the handshake without polling."""

from __future__ import annotations

import asyncio

import pytest
import socketio

from server.fanout import DirectManager


def _manager() -> DirectManager:
    manager = DirectManager()
    socketio.AsyncServer(client_manager=manager)  # gives the manager its server
    return manager


async def test_resolves_when_the_connection_completes() -> None:
    m = _manager()
    sid = await m.pre_connect("eio-1", "/")
    waiting = asyncio.create_task(m.wait_connected(sid))
    await asyncio.sleep(0)
    assert not waiting.done()
    await m.connect(sid, "/")
    assert await waiting is True
    assert m._connect_waiters == {}
    assert await m.wait_connected(sid) is True  # already connected: at once


async def test_false_when_it_goes_away_first_or_never_completes() -> None:
    m = _manager()
    sid = await m.pre_connect("eio-1", "/")
    waiting = asyncio.create_task(m.wait_connected(sid))
    await asyncio.sleep(0)
    await m.disconnect(sid, "/")
    assert await waiting is False
    assert await m.wait_connected(sid) is False  # gone: no wait at all
    stuck = await m.pre_connect("eio-2", "/")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await m.wait_connected(stuck)
    assert m._connect_waiters == {}  # a timeout leaves nothing behind
