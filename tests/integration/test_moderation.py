"""Every moderator control over real sockets."""

from __future__ import annotations

from collections.abc import Callable

from tests.integration.conftest import Group
from tests.support import Client, LiveServer


async def test_mute(group: Group) -> None:
    bo = group.peers[0]
    await bo.ok("presence.set", {"mic": True})
    await group.fac.ok("mod.mute", {"id": group.id("Bo")})
    assert await bo.wait_for("you.muted") == {"by": group.id("Ann")}
    u = await group.fac.wait_for("participant.updated", lambda d: d["participant"]["mic"] is False)
    assert u["participant"]["id"] == group.id("Bo")


async def test_mute_all(group: Group) -> None:
    for c in (group.fac, *group.peers):
        await c.ok("presence.set", {"mic": True})
    await group.fac.ok("mod.mute_all")
    for peer in group.peers:
        await peer.wait_for("you.muted")
    assert not group.fac.received("you.muted")


async def test_ask_unmute_leaves_the_mic_to_its_owner(group: Group) -> None:
    bo = group.peers[0]
    mark = group.fac.mark()
    await group.fac.ok("mod.ask_unmute", {"id": group.id("Bo")})
    assert await bo.wait_for("you.asked_to_unmute") == {"by": group.id("Ann")}
    await group.fac.ok("hand.raise")  # a fence: anything earlier has arrived by now
    await group.fac.wait_for("hands", after=mark)
    assert not group.fac.received("participant.updated", after=mark)


async def test_stop_camera(group: Group) -> None:
    bo = group.peers[0]
    await bo.ok("presence.set", {"camera": True})
    await group.fac.ok("mod.stop_camera", {"id": group.id("Bo")})
    await bo.wait_for("you.camera_stopped")
    await group.fac.wait_for("participant.updated", lambda d: d["participant"]["camera"] is False)


async def test_lower_one_and_all_hands(group: Group) -> None:
    bo, cy, di = group.peers
    for p in (bo, cy, di):
        await p.ok("hand.raise")
    await group.fac.ok("mod.hand.lower", {"id": group.id("Cy")})
    await bo.wait_for("hands", lambda d: d["hands"] == [group.id("Bo"), group.id("Di")])
    await group.fac.ok("mod.hands.clear")
    await bo.wait_for("hands", lambda d: d["hands"] == [])


async def test_remove(group: Group) -> None:
    bo, cy, _ = group.peers
    await group.fac.ok("mod.remove", {"id": group.id("Bo")})
    assert (await bo.wait_for("you.removed"))["by"] == group.id("Ann")
    await bo.wait_disconnected()
    left = await cy.wait_for("participant.left")
    assert left == {"seq": left["seq"], "id": group.id("Bo"), "reason": "removed"}


async def test_peers_cannot_moderate(group: Group) -> None:
    bo = group.peers[0]
    for event, payload in [
        ("mod.mute", {"id": group.id("Cy")}),
        ("mod.remove", {"id": group.id("Ann")}),
        ("mod.end", {}),
        ("mod.lock", {"locked": True}),
    ]:
        ack = await bo.call(event, payload)
        assert ack["ok"] is False and ack["error"]["code"] == "forbidden", event


async def test_cofacilitator(group: Group) -> None:
    bo, cy, _ = group.peers
    await group.fac.ok("mod.role", {"id": group.id("Bo"), "role": "cofacilitator"})
    u = await cy.wait_for("participant.updated", lambda d: d["participant"]["role"] != "peer")
    assert u["participant"]["role"] == "cofacilitator"
    await bo.ok("mod.mute", {"id": group.id("Cy")})
    ack = await bo.call("mod.mute", {"id": group.id("Ann")})
    assert ack["error"]["code"] == "forbidden"
    ack = await bo.call("mod.end")
    assert ack["error"]["code"] == "forbidden"


async def test_handover_and_back(group: Group) -> None:
    bo = group.peers[0]
    await group.fac.ok("mod.role", {"id": group.id("Bo"), "role": "facilitator"})
    await bo.wait_for("participant.updated", lambda d: d["participant"]["role"] == "facilitator")
    await bo.ok("mod.role", {"id": group.id("Ann"), "role": "peer"})
    await group.fac.wait_for(
        "participant.updated",
        lambda d: d["participant"]["id"] == group.id("Ann") and d["participant"]["role"] == "peer",
    )
    await bo.ok("mod.role", {"id": group.id("Ann"), "role": "facilitator"})
    self_change = await bo.call("mod.role", {"id": group.id("Bo"), "role": "peer"})
    assert self_change["error"]["code"] == "not_allowed_now"


async def test_waiting_room_toggle_admits_all_when_off(
    live_server: LiveServer, clients: Callable[..., Client]
) -> None:
    room = await live_server.create_room()
    fac = clients()
    await fac.join(room["facilitator_token"], "Ann")
    await fac.ok("mod.waiting_room", {"on": True})
    await fac.wait_for("settings", lambda d: d["settings"]["waiting_room"])
    bo = clients()
    await bo.join(room["invite_token"], "Bo", expect="waiting")
    await fac.ok("mod.waiting_room", {"on": False})
    await bo.wait_for("admitted")
    w = await bo.wait_for("welcome")
    assert w["room"]["settings"]["waiting_room"] is False


async def test_end_session(group: Group) -> None:
    await group.fac.ok("mod.end")
    for c in (group.fac, *group.peers):
        assert await c.wait_for("session.ended") == {"reason": "ended"}
        await c.wait_disconnected()


async def test_a_new_session_after_the_end(
    group: Group, live_server: LiveServer, clients: Callable[..., Client]
) -> None:
    first = group.fac.received("welcome")[0]["room"]["session_id"]
    await group.fac.ok("mod.end")
    await group.fac.wait_disconnected()
    again = clients()
    w = await again.join(group.room["invite_token"], "Bo")
    assert w["room"]["session_id"] != first
    assert w["room"]["seq"] == 1
