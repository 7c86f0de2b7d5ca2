"""`--wire msgpack` switches the whole server to Socket.IO's msgpack parser."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.support import Client


async def test_a_session_over_msgpack(
    server_factory: Callable[..., Any], clients: Callable[..., Client]
) -> None:
    server = await server_factory(wire="msgpack")
    room = await server.create_room()
    fac = clients(server.url, wire="msgpack")
    bo = clients(server.url, wire="msgpack")
    fw = await fac.join(room["facilitator_token"], "Ann")
    bw = await bo.join(room["invite_token"], "Bo")
    assert (await bo.ok("hand.raise"))["position"] == 1
    await fac.wait_for("hands", lambda d: d["hands"] == [bw["you"]["id"]])
    await bo.ok("chat.send", {"text": "über msgpack ✓"})
    m = await fac.wait_for("chat")
    assert m["message"]["text"] == "über msgpack ✓"
    # msgpack keeps the integer an integer: the payload is refused (decoded before any
    # role check), and a well-formed one from a peer is refused for the role
    bad = await bo.call("mod.mute", {"id": 3})
    refused = {"code": "bad_request", "message": "'id' must be an id string."}
    assert bad == {"ok": False, "error": refused}
    not_yours = await bo.call("mod.mute", {"id": fw["you"]["id"]})
    assert not_yours["ok"] is False and not_yours["error"]["code"] == "forbidden"
