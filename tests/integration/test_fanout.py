"""The direct fan-out: one recipient whose send fails does not cost the others."""

from __future__ import annotations

from typing import Any

import pytest

from server.app import SIO
from tests.integration.conftest import Group
from tests.support import LiveServer


async def test_a_failing_recipient_does_not_stop_a_broadcast(
    live_server: LiveServer, group: Group, monkeypatch: pytest.MonkeyPatch
) -> None:
    sio = live_server.app[SIO]
    real_send = sio.eio.send_packet
    failed: list[str] = []

    async def flaky_send(eio_sid: str, pkt: Any) -> None:
        if not failed:  # the first recipient's socket "closes" under the send
            failed.append(eio_sid)
            raise ConnectionResetError("gone")
        await real_send(eio_sid, pkt)

    monkeypatch.setattr(sio.eio, "send_packet", flaky_send)
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
    monkeypatch.setattr(sio.eio, "send_packet", real_send)
    await group.fac.ok("hand.raise")  # a fence: what came before it has arrived
    await unlucky.wait_for("hands", lambda d: d["hands"] == [group.id("Ann")])
    assert not unlucky.received("chat")
    unlucky.gaps.clear()  # it lost one broadcast, as a dropped frame would
