"""Hands, floor, presence, chat and consent over real sockets, seq checked everywhere."""

from __future__ import annotations

import asyncio

from rooms.machine import Outcome
from server.keys import SERVICE
from tests.integration.conftest import Group
from tests.support import LiveServer


async def test_hand_queue_in_raise_order_for_everyone(group: Group) -> None:
    bo, cy, di = group.peers
    assert (await di.ok("hand.raise"))["position"] == 1
    assert (await bo.ok("hand.raise"))["position"] == 2
    assert (await di.ok("hand.raise"))["position"] == 1  # already raised: unchanged
    expected = [group.id("Di"), group.id("Bo")]
    for c in (group.fac, bo, cy, di):
        await c.wait_for("hands", lambda d: d["hands"] == expected)
    await di.ok("hand.lower")
    for c in (group.fac, bo, cy, di):
        await c.wait_for("hands", lambda d: d["hands"] == [group.id("Bo")])


async def test_floor_next_give_clear(group: Group) -> None:
    bo, cy, _ = group.peers
    await cy.ok("hand.raise")
    await bo.ok("hand.raise")
    ack = await group.fac.ok("mod.floor.next")
    assert ack["floor"] == group.id("Cy")
    h = await bo.wait_for("hands", lambda d: d["floor"] == group.id("Cy"))
    assert h["hands"] == [group.id("Bo")]
    await group.fac.ok("mod.floor.give", {"id": group.id("Di")})
    await bo.wait_for("hands", lambda d: d["floor"] == group.id("Di"))
    await group.fac.ok("mod.floor.clear")
    await bo.wait_for("hands", lambda d: d["floor"] is None and d["hands"] == [group.id("Bo")])


async def test_floor_next_with_nobody_waiting(group: Group) -> None:
    ack = await group.fac.call("mod.floor.next")
    assert ack["ok"] is False and ack["error"]["code"] == "not_allowed_now"


async def test_quieter_first_puts_those_who_spoke_less_ahead(group: Group) -> None:
    bo, cy, di = group.peers
    await bo.ok("hand.raise")
    await group.fac.ok("mod.floor.next")  # Bo has had a turn
    await bo.ok("hand.raise")
    await cy.ok("hand.raise")
    await di.ok("hand.raise")
    order = [group.id(n) for n in ("Bo", "Cy", "Di")]
    await group.fac.wait_for("hands", lambda d: d["hands"] == order)
    await group.fac.ok("mod.settings", {"queue_order": "quieter_first"})
    s = await cy.wait_for("settings")
    assert s["settings"]["queue_order"] == "quieter_first"
    quieter = [group.id(n) for n in ("Cy", "Di", "Bo")]
    await cy.wait_for("hands", lambda d: d["hands"] == quieter)


async def test_presence_camera_off_is_presence(group: Group) -> None:
    bo = group.peers[0]
    await bo.ok("presence.set", {"mic": True, "away": True})
    u = await group.fac.wait_for("participant.updated")
    assert u["participant"]["id"] == group.id("Bo")
    assert (u["participant"]["mic"], u["participant"]["away"]) == (True, True)
    assert u["participant"]["camera"] is False and u["participant"]["connected"] is True


async def test_chat_to_everyone(group: Group) -> None:
    bo, cy, _ = group.peers
    ack = await bo.ok("chat.send", {"text": "hello all"})
    msg = (await cy.wait_for("chat"))["message"]
    assert msg["id"] == ack["id"]
    assert (msg["from"], msg["name"], msg["text"]) == (group.id("Bo"), "Bo", "hello all")
    assert "to" not in msg and isinstance(msg["ts"], float)


async def test_a_private_note_reaches_moderators_and_sender_only(group: Group) -> None:
    bo, cy, di = group.peers
    await bo.ok("chat.send", {"text": "can we talk after?", "to": "moderators"})
    for c in (group.fac, bo):
        m = await c.wait_for("chat")
        assert m["message"]["to"] == "moderators"
    await di.ok("chat.send", {"text": "public"})  # a later public line, as a fence
    await cy.wait_for("chat", lambda d: d["message"]["text"] == "public")
    assert [d["message"]["text"] for d in cy.received("chat")] == ["public"]


async def test_a_moderator_removes_a_message(group: Group) -> None:
    bo, cy, _ = group.peers
    ack = await bo.ok("chat.send", {"text": "oops"})
    await group.fac.ok("mod.chat.remove", {"message_id": ack["id"]})
    assert (await cy.wait_for("chat.removed"))["message_id"] == ack["id"]
    again = await group.fac.call("mod.chat.remove", {"message_id": ack["id"]})
    assert again["error"]["code"] == "not_found"


async def test_paused_chat(group: Group) -> None:
    bo = group.peers[0]
    await group.fac.ok("mod.settings", {"chat_enabled": False})
    ack = await bo.call("chat.send", {"text": "hi"})
    assert ack["error"]["code"] == "not_allowed_now"


async def test_consent_is_visible_to_everyone(group: Group) -> None:
    bo, cy, _ = group.peers
    assert (await bo.ok("transcript.consent", {"on": True}))["consent"] is True
    c = await cy.wait_for("consent")
    assert c["consenting"] == [group.id("Bo")]
    await bo.ok("transcript.consent", {"on": False})
    await cy.wait_for("consent", lambda d: d["consenting"] == [])
    await bo.ok("transcript.erase")


async def test_consent_when_the_room_keeps_no_transcripts(group: Group) -> None:
    await group.fac.ok("mod.settings", {"transcripts_allowed": False})
    ack = await group.peers[0].call("transcript.consent", {"on": True})
    assert ack["error"]["code"] == "not_allowed_now"


async def test_leave_is_immediate(group: Group) -> None:
    bo = group.peers[0]
    assert (await bo.call("session.leave"))["ok"] is True
    left = await group.fac.wait_for("participant.left")
    assert left["id"] == group.id("Bo") and left["reason"] == "left"
    await bo.wait_disconnected()


async def test_the_ack_of_leave_and_end_comes_before_the_line_closes(
    group: Group, live_server: LiveServer
) -> None:
    """Whoever leaves or ends the session gets the ack, then the close. On Redis a
    store can yield after delivering (draining the messages that waited behind a
    commit); the close, a task of its own, then ran first and the client's ack failed
    ("socket has been disconnected"). A store that yields after every delivery:"""
    service = live_server.app[SERVICE]
    delivered = service.deliver

    async def deliver_then_yield(room_id: str, outcome: Outcome) -> None:
        await delivered(room_id, outcome)
        for _ in range(5):
            await asyncio.sleep(0)

    service.store.set_deliver(deliver_then_yield)
    bo = group.peers[0]
    assert (await bo.call("session.leave"))["ok"] is True
    await bo.wait_disconnected()
    assert (await group.fac.call("mod.end"))["ok"] is True
    await group.fac.wait_disconnected()
