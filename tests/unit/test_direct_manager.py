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


class _Conn:
    """Stands in for an eio_direct.DirectConnection: records the frames written."""

    def __init__(self, log: list[tuple[str, bytes]], name: str) -> None:
        self.log, self.name = log, name

    def write_frame(self, frame: bytes) -> None:
        self.log.append((self.name, frame))


class _Socket:
    def __init__(self, conn: _Conn | None) -> None:
        self.peerroom_direct = conn
        self.queue: asyncio.Queue[object] = asyncio.Queue()  # the library path's


async def test_a_broadcast_reaches_the_room_as_it_is_now() -> None:
    """A room's member list is kept from one broadcast to the next: every entry, exit,
    disconnect and close_room in between must show in the next broadcast (a stale list
    would deliver a room's lines to someone who left it)."""
    m = _manager()
    eio = m.server.eio
    written: list[tuple[str, bytes]] = []
    polled: list[str] = []

    async def send_packet(eio_sid: str, pkt: object) -> None:  # the library's path
        polled.append(eio_sid)

    eio.send_packet = send_packet
    sids: dict[str, str] = {}
    for name in ("a", "b", "c", "d"):
        eio.sockets[f"eio-{name}"] = _Socket(_Conn(written, name))
        sids[name] = await m.pre_connect(f"eio-{name}", "/")
        await m.connect(sids[name], "/")

    async def heard(room: str = "room") -> list[str]:
        written.clear()
        await m.emit("chat", {"text": "x"}, "/", room=room)
        return sorted(name for name, _ in written)

    for name in ("a", "b", "c"):
        await m.enter_room(sids[name], "/", "room")
    assert await heard() == ["a", "b", "c"]
    assert await heard() == ["a", "b", "c"]  # the kept list
    await m.leave_room(sids["b"], "/", "room")
    assert await heard() == ["a", "c"]
    await m.enter_room(sids["d"], "/", "room")
    assert await heard() == ["a", "c", "d"]
    await m.disconnect(sids["c"], "/")
    assert await heard() == ["a", "d"]
    # off the direct path (its connection ended): the library's send, read at each send
    eio.sockets["eio-a"].peerroom_direct = None
    assert await heard() == ["d"] and polled == ["eio-a"]
    await m.close_room("room", "/")
    assert await heard() == [] and polled == ["eio-a"]
    frames = {frame for _, frame in written}
    assert len(frames) <= 1  # one frame built per broadcast, the same bytes for each
