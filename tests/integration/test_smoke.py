from collections.abc import Callable

from tests.support import Client, LiveServer


async def test_join_raise_and_floor(
    live_server: LiveServer, clients: Callable[..., Client]
) -> None:
    room = await live_server.create_room()
    fac: Client = clients()
    w = await fac.join(room["facilitator_token"], "Ann")
    assert w["you"]["role"] == "facilitator"
    peer: Client = clients()
    w2 = await peer.join(room["invite_token"], "Bo")
    assert [p["name"] for p in w2["room"]["participants"]] == ["Ann", "Bo"]
    await fac.wait_for("participant.joined", lambda d: d["participant"]["name"] == "Bo")
    ack = await peer.ok("hand.raise")
    assert ack["position"] == 1
    await fac.wait_for("hands", lambda d: d["hands"] == [w2["you"]["id"]])
    await fac.ok("mod.floor.next")
    h = await peer.wait_for("hands", lambda d: d["floor"] == w2["you"]["id"])
    assert h["hands"] == []
