"""Both ways onto a connection: straight to websocket (taken over by server.eio_direct)
and long-polling (a browser starts there; the library's own path)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from server.app import SIO
from server.eio_direct import direct_connection
from tests.support import Client, LiveServer


@pytest.mark.parametrize("wire", ["json", "msgpack"])
async def test_polling_and_websocket_clients_share_a_room(
    server_factory: Any, clients: Callable[..., Client], wire: str
) -> None:
    live_server: LiveServer = await server_factory(wire=wire)
    room = await live_server.create_room()
    fac, polled, direct = (clients(live_server.url, wire=wire) for _ in range(3))
    await fac.join(room["facilitator_token"], "Ann")
    await polled.join(room["invite_token"], "Bo", transports=("polling",))
    direct_id = (await direct.join(room["invite_token"], "Cy"))["you"]["id"]
    eio = live_server.app[SIO].eio
    kinds = {direct_connection(s) is not None for s in eio.sockets.values()}
    assert kinds == {True, False}  # one connection on the library's path, two direct

    # Every one hears every line, in order (Client checks the seq has no gaps).
    for i in range(5):
        await polled.ok("chat.send", {"text": f"from polling {i}"})
        await direct.ok("chat.send", {"text": f"from websocket {i}"})
    for c in (fac, polled, direct):
        await c.wait_for("chat", lambda d: d["message"]["text"] == "from websocket 4")
        texts = [d["message"]["text"] for e, d in c.events if e == "chat"]
        assert texts == [f"from {w} {i}" for i in range(5) for w in ("polling", "websocket")]

    # A direct connection's close is seen like any other.
    await direct.sio.disconnect()
    cy = direct_id
    await fac.wait_for(
        "participant.updated",
        lambda d: d["participant"]["id"] == cy and d["participant"]["connected"] is False,
    )
