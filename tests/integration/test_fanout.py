"""The direct fan-out: a recipient whose write fails does not cost the others, and a
disconnect leaves no trace in the rooms index."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from server.app import SIO
from server.eio_direct import DirectConnection
from tests.integration.conftest import Group
from tests.support import LiveServer


async def test_a_failing_recipient_does_not_stop_a_broadcast(
    live_server: LiveServer, group: Group, monkeypatch: pytest.MonkeyPatch
) -> None:
    sio = live_server.app[SIO]
    real_write = DirectConnection.write_frame
    failed: list[str] = []

    def flaky_write(conn: DirectConnection, frame: bytes) -> None:
        if not failed and b'42["chat"' in frame[:16] and b"still reaches" in frame:
            # the first recipient's connection "breaks" under the broadcast's write
            failed.append(conn._socket.sid)
            raise ConnectionResetError("gone")
        real_write(conn, frame)

    monkeypatch.setattr(DirectConnection, "write_frame", flaky_write)
    bo, cy, di = group.peers
    everyone = (group.fac, bo, cy, di)
    await bo.ok("chat.send", {"text": "still reaches the rest"})
    assert len(failed) == 1
    unlucky = next(
        c for c in everyone if sio.manager.eio_sid_from_sid(c.sio.get_sid("/"), "/") == failed[0]
    )
    for c in everyone:
        if c is not unlucky:
            await c.wait_for("chat", lambda d: d["message"]["text"] == "still reaches the rest")
    monkeypatch.setattr(DirectConnection, "write_frame", real_write)
    await group.fac.ok("hand.raise")  # a fence: what came before it has arrived
    await unlucky.wait_for("hands", lambda d: d["hands"] == [group.id("Ann")])
    assert not unlucky.received("chat")
    unlucky.gaps.clear()  # it lost one broadcast, as a dropped frame would


def dropped(pid: str) -> Callable[[Any], bool]:
    return lambda d: bool(d["participant"]["id"] == pid and not d["participant"]["connected"])


async def test_a_disconnect_leaves_no_trace_in_the_rooms(
    live_server: LiveServer, group: Group
) -> None:
    manager = live_server.app[SIO].manager
    fac_sid = group.fac.sio.get_sid("/")
    gone = [p.sio.get_sid("/") for p in group.peers]
    rooms_of_fac = set(manager.get_rooms(fac_sid, "/"))
    assert fac_sid in rooms_of_fac and len(rooms_of_fac) >= 3  # own, participant, session
    for p in group.peers:
        await p.sio.disconnect()
    for name in ("Bo", "Cy", "Di"):
        await group.fac.wait_for("participant.updated", dropped(group.id(name)))
    for sid in gone:
        assert manager.get_rooms(sid, "/") == []
        assert all(sid not in members for members in manager.rooms["/"].values())
        assert ("/", sid) not in manager._joined
    assert set(manager.get_rooms(fac_sid, "/")) == rooms_of_fac
    await group.fac.ok("hand.raise")  # the room still works for who is left
