"""DirectManager: handshakes in flight, and the greeting waiting on them without polling."""

from __future__ import annotations

import asyncio

import pytest
import socketio

from server.fanout import DirectManager, _SidSet


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


async def test_handshakes_in_flight_are_kept_as_the_library_keeps_them() -> None:
    """The pending-connect and pending-disconnect containers answer as python-socketio's
    lists did (membership, removal, emptied namespaces dropped), in O(1) each."""
    m = _manager()
    sids = [await m.pre_connect(f"eio-{i}", "/") for i in range(5)]
    assert isinstance(m.pending_connect["/"], _SidSet)
    assert list(m.pending_connect["/"]) == sids
    assert all(m.is_pre_connected(s, "/") and not m.is_connected(s, "/") for s in sids)
    for s in sids[:3]:
        await m.connect(s, "/")
    assert list(m.pending_connect["/"]) == sids[3:]
    assert [m.is_connected(s, "/") for s in sids] == [True] * 3 + [False] * 2
    m.pre_disconnect(sids[0], "/")
    assert isinstance(m.pending_disconnect["/"], _SidSet)
    assert not m.is_connected(sids[0], "/")
    await m.disconnect(sids[0], "/")
    await m.disconnect(sids[3], "/")
    await m.disconnect(sids[4], "/")
    assert "/" not in m.pending_connect and "/" not in m.pending_disconnect
    assert [m.is_connected(s, "/") for s in sids] == [False, True, True, False, False]
    with pytest.raises(ValueError):
        m.pending_disconnect.setdefault("/", _SidSet()).remove("nobody")
