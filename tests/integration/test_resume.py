"""Dropped connections: the grace period, resume, and timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from server.keys import LIVE
from tests.support import Client

MakeClient = Callable[..., Client]


async def test_resume_within_grace_keeps_id_role_hand_and_consent(
    server_factory: Callable[..., Any], clients: MakeClient
) -> None:
    server = await server_factory(grace_secs=30)
    room = await server.create_room()
    fac, bo, cy = clients(server.url), clients(server.url), clients(server.url)
    await fac.join(room["facilitator_token"], "Ann")
    bw = await bo.join(room["invite_token"], "Bo")
    cw = await cy.join(room["invite_token"], "Cy")
    await bo.ok("hand.raise")
    await cy.ok("hand.raise")
    await bo.ok("transcript.consent", {"on": True})
    await bo.ok("presence.set", {"camera": True, "mic": True})
    await bo.sio.disconnect()  # not session.leave: a drop
    dropped = await fac.wait_for("participant.updated", lambda d: not d["participant"]["connected"])
    assert dropped["participant"]["id"] == bw["you"]["id"]

    back = clients(server.url)
    w = await back.join(room["invite_token"], "Bo", resume=bw["resume"])
    assert w["you"] == bw["you"]
    assert w["room"]["hands"] == [bw["you"]["id"], cw["you"]["id"]]
    assert w["room"]["consenting"] == [bw["you"]["id"]]
    me = next(p for p in w["room"]["participants"] if p["id"] == bw["you"]["id"])
    assert (me["connected"], me["camera"], me["mic"]) == (True, False, False)
    assert (await back.ok("hand.raise"))["position"] == 1


async def test_a_second_connection_with_the_resume_token_replaces_the_first(
    live_server: Any, clients: MakeClient
) -> None:
    room = await live_server.create_room()
    first = clients()
    w = await first.join(room["invite_token"], "Bo")
    second = clients()
    w2 = await second.join(room["invite_token"], "Bo", resume=w["resume"])
    assert w2["you"]["id"] == w["you"]["id"]
    await first.wait_disconnected()
    assert (await second.ok("hand.raise"))["ok"]


async def test_after_the_grace_period_the_place_is_gone(
    server_factory: Callable[..., Any], clients: MakeClient
) -> None:
    server = await server_factory(grace_secs=0.5)
    room = await server.create_room()
    fac, bo = clients(server.url), clients(server.url)
    await fac.join(room["facilitator_token"], "Ann")
    bw = await bo.join(room["invite_token"], "Bo")
    await bo.ok("hand.raise")
    await bo.sio.disconnect()
    left = await fac.wait_for("participant.left")
    assert left["id"] == bw["you"]["id"] and left["reason"] == "timeout"
    await fac.wait_for("hands", lambda d: d["hands"] == [])
    late = clients(server.url)
    w = await late.join(room["invite_token"], "Bo", resume=bw["resume"])
    assert w["you"]["id"] != bw["you"]["id"]
    assert w["room"]["hands"] == []


async def test_a_resume_token_does_not_open_another_room(
    live_server: Any, clients: MakeClient
) -> None:
    a = await live_server.create_room("A")
    b = await live_server.create_room("B")
    bo = clients()
    w = await bo.join(a["invite_token"], "Bo")
    other = clients()
    w2 = await other.join(b["invite_token"], "Bo", resume=w["resume"])
    assert w2["you"]["id"] != w["you"]["id"]
    assert w2["room"]["id"] == b["room_id"]


async def test_a_forged_resume_token_is_just_a_fresh_join(
    live_server: Any, clients: MakeClient
) -> None:
    room = await live_server.create_room()
    w = await clients().join(room["invite_token"], "Bo", resume="forged.token")
    assert w["you"]["name"] == "Bo"


async def test_an_empty_session_ends_after_the_grace_period(
    server_factory: Callable[..., Any], clients: MakeClient
) -> None:
    server = await server_factory(grace_secs=0.3)
    room = await server.create_room()
    first = clients(server.url)
    w = await first.join(room["invite_token"], "Bo")
    await first.ok("session.leave")

    for _ in range(50):
        if not await server.app[LIVE].room_ids():
            break
        await asyncio.sleep(0.1)
    w2 = await clients(server.url).join(room["invite_token"], "Bo")
    assert w2["room"]["session_id"] != w["room"]["session_id"]


async def test_resume_only_takes_the_place_back_within_the_grace(
    live_server: Any, clients: MakeClient
) -> None:
    room = await live_server.create_room()
    bo = clients()
    bw = await bo.join(room["invite_token"], "Bo")
    await bo.ok("hand.raise")
    await bo.sio.disconnect()
    w = await clients().join(room["invite_token"], "Bo", resume=bw["resume"], resume_only=True)
    assert w["you"] == bw["you"]
    assert w["room"]["hands"] == [bw["you"]["id"]]


async def test_resume_only_after_the_grace_is_refused_and_nobody_joins(
    server_factory: Callable[..., Any], clients: MakeClient
) -> None:
    """A phone asleep past the grace: before, its reconnect joined as a new person."""
    server = await server_factory(grace_secs=0.5)
    room = await server.create_room()
    fac, bo = clients(server.url), clients(server.url)
    await fac.join(room["facilitator_token"], "Ann")
    bw = await bo.join(room["invite_token"], "Bo")
    await bo.sio.disconnect()
    await fac.wait_for("participant.left", lambda d: d["reason"] == "timeout")
    mark = fac.mark()

    late = clients(server.url)
    refusal = await late.refused(room["invite_token"], "Bo", resume=bw["resume"], resume_only=True)
    assert refusal["data"]["code"] == "resume_expired"
    assert refusal["data"]["session_live"] is True  # the group meets on: join again?
    assert "join again" in refusal["data"]["message"]
    await asyncio.sleep(0.3)
    assert fac.received("participant.joined", after=mark) == []
    # The name is free: joining on purpose still works.
    w = await clients(server.url).join(room["invite_token"], "Bo")
    assert w["you"]["id"] != bw["you"]["id"]


async def test_resume_only_after_the_session_ended_starts_no_session(
    server_factory: Callable[..., Any], clients: MakeClient
) -> None:
    """A tab restored days later: before, it started a new session all by itself."""
    server = await server_factory(grace_secs=30)
    room = await server.create_room()
    fac, bo = clients(server.url), clients(server.url)
    await fac.join(room["facilitator_token"], "Ann")
    bw = await bo.join(room["invite_token"], "Bo")
    await fac.ok("mod.end")
    await bo.wait_for("session.ended")
    assert not await server.app[LIVE].room_ids()

    refusal = await clients(server.url).refused(
        room["invite_token"], "Bo", resume=bw["resume"], resume_only=True
    )
    assert refusal["data"]["code"] == "resume_expired"
    assert refusal["data"]["session_live"] is False  # nobody there: said plainly
    assert not await server.app[LIVE].room_ids()


async def test_resume_only_refuses_a_token_of_another_room_or_none(
    live_server: Any, clients: MakeClient
) -> None:
    a = await live_server.create_room("A")
    b = await live_server.create_room("B")
    fac = clients()
    await fac.join(b["facilitator_token"], "Ann")
    mark = fac.mark()
    w = await clients().join(a["invite_token"], "Bo")
    for resume in (w["resume"], "forged.token", None):
        extra: dict[str, Any] = {"resume": resume} if resume else {}
        refusal = await clients().refused(b["invite_token"], "Bo", resume_only=True, **extra)
        assert refusal["data"]["code"] == "resume_expired", resume
    await asyncio.sleep(0.3)
    assert fac.received("participant.joined", after=mark) == []


async def test_live_only_joins_the_live_session_or_starts_none(
    live_server: Any, clients: MakeClient
) -> None:
    """auth.live_only (a page back in the waiting room after a drop): the session that
    is live, waiting room and all, or a refusal; never a session of its own."""
    room = await live_server.create_room("A", waiting_room=True)
    refusal = await clients().refused(room["invite_token"], "Bo", live_only=True)
    assert refusal["data"]["code"] == "resume_expired"
    assert refusal["data"]["session_live"] is False
    assert await live_server.app[LIVE].get(room["room_id"]) is None
    await clients().join(room["facilitator_token"], "Ann")
    waiting = await clients().join(room["invite_token"], "Bo", live_only=True, expect="waiting")
    assert waiting["position"] == 1
