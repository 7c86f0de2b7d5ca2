"""The /bridge namespace, driven the way a SIP gateway would, next to web clients."""

from __future__ import annotations

import asyncio
from typing import Any

from rooms import commands as c
from server.keys import LIVE, SERVICE
from tests.phone.conftest import web_room
from tests.support import Client, LiveServer

CALL = "sip-call-0001@gw.example"
CALLER = "+44 7700 900142"


async def test_bad_token_is_refused(bridges: Any) -> None:
    for token in ("wrong", "", None, 12345, {"x": 1}):
        b = await bridges(token=None)
        err = await b.refused(token)
        assert err.get("code") == "bad_token", (token, err)


async def test_no_bridge_token_configured_refuses_all(server_factory: Any) -> None:
    from tests.phone.bridge_client import Bridge

    server = await server_factory()  # no PEERROOM_BRIDGE_TOKEN
    b = Bridge(server.url)
    try:
        assert (await b.refused(""))["code"] == "bad_token"
    finally:
        await b.close()


async def test_join_by_pin_shows_a_phone_participant(
    live_server: LiveServer, clients: Any, bridges: Any
) -> None:
    room, fac, _ = await web_room(live_server, clients, title="Tuesday circle")
    b = await bridges()
    assert await b.error("call.join", {"call_id": CALL, "pin": "000000x", "caller": CALLER}) == (
        "bad_pin"
    )
    wrong = (
        "1" + room["phone_pin"][1:] if room["phone_pin"][0] != "1" else "2" + room["phone_pin"][1:]
    )
    assert (
        await b.error("call.join", {"call_id": CALL, "pin": wrong, "caller": CALLER}) == "bad_pin"
    )
    ack = await b.ok("call.join", {"call_id": CALL, "pin": room["phone_pin"], "caller": CALLER})
    assert ack["room_title"] == "Tuesday circle"
    assert ack["name"] == "Caller 42"
    assert ack["waiting"] is False
    joined = await fac.wait_for("participant.joined", lambda d: d["participant"]["via"] == "phone")
    p = joined["participant"]
    assert p == {
        "id": ack["participant_id"],
        "name": "Caller 42",
        "role": "peer",
        "via": "phone",
        "camera": False,
        "mic": False,
        "away": False,
        "connected": True,
        "hand": False,
    }
    # the same call.join again (a bridge retry) changes nothing
    again = await b.ok("call.join", {"call_id": CALL, "pin": room["phone_pin"], "caller": CALLER})
    assert again["participant_id"] == ack["participant_id"]
    # a second caller whose number ends the same gets a name of their own
    other = await b.ok(
        "call.join", {"call_id": "c2", "pin": room["phone_pin"], "caller": "+1555000042"}
    )
    assert other["name"] == "Caller 42 (2)"
    # withheld numbers
    for i, withheld in enumerate(("anonymous", "+266696687", "", "Restricted", None, 42)):
        a = await b.ok(
            "call.join", {"call_id": f"w{i}", "pin": room["phone_pin"], "caller": withheld}
        )
        assert a["name"].startswith("Caller") and not any(ch.isdigit() for ch in a["name"][:7])


async def test_bad_payloads_get_codes(live_server: LiveServer, clients: Any, bridges: Any) -> None:
    room, _, _ = await web_room(live_server, clients)
    b = await bridges()
    pin = room["phone_pin"]
    assert await b.error("call.join", "nope") == "bad_request"
    assert await b.error("call.join", {"call_id": 5, "pin": pin}) == "bad_request"
    assert await b.error("call.join", {"call_id": "x" * 65, "pin": pin}) == "bad_request"
    assert await b.error("call.join", {"call_id": "c", "pin": ["1"]}) == "bad_pin"
    assert await b.error("call.join", {"call_id": "c", "pin": "9" * 13}) == "bad_pin"
    assert await b.error("call.keys", {"call_id": "nobody", "digits": "*9"}) == "not_found"
    await b.ok("call.join", {"call_id": "c", "pin": pin, "caller": CALLER})
    for digits in ("", "*7", "99", "x" * 100, 9, None):
        assert await b.error("call.keys", {"call_id": "c", "digits": digits}) == "bad_request"
    assert await b.error("checkin.create", {"call_id": "c", "status": "maybe"}) == "bad_request"
    assert await b.error("checkin.create", {"call_id": None, "status": "ok"}) == "bad_request"
    assert await b.error("call.leave", []) == "bad_request"


async def test_keys_hand_queue_and_moderator_mute(
    live_server: LiveServer, clients: Any, bridges: Any
) -> None:
    room, fac, _ = await web_room(live_server, clients)
    peer: Client = clients()
    pw = await peer.join(room["invite_token"], "Bo")
    await peer.ok("hand.raise")
    b = await bridges()
    ack = await b.ok("call.join", {"call_id": CALL, "pin": room["phone_pin"], "caller": CALLER})
    pid = ack["participant_id"]
    keys = await b.ok("call.keys", {"call_id": CALL, "digits": "*9"})
    assert keys == {"ok": True, "hand": True, "mic": False, "position": 2, "floor": False}
    hands = await peer.wait_for("hands", lambda d: d["hands"] == [pw["you"]["id"], pid])
    assert hands["floor"] is None
    assert await b.ok("call.keys", {"call_id": CALL, "digits": "#"}) == keys
    await fac.ok("mod.floor.next")
    keys = await b.ok("call.keys", {"call_id": CALL, "digits": "#"})
    assert keys["position"] == 1 and keys["floor"] is False
    await fac.ok("mod.floor.next")  # the phone's turn: a caller cannot see it, so is told
    assert await b.wait_for("call.notice") == {"call_id": CALL, "notice": "floor"}
    assert (await b.ok("call.keys", {"call_id": CALL, "digits": "#"}))["floor"] is True
    await fac.ok("mod.ask_unmute", {"id": pid})
    await b.wait_for("call.notice", lambda d: d["notice"] == "ask_unmute")
    await peer.ok("hand.raise")  # the queue moves, the floor does not: no second notice
    await fac.wait_for("hands", lambda d: d["hands"] == [pw["you"]["id"]] and d["floor"] == pid)
    assert len([n for n in b.received("call.notice") if n["notice"] == "floor"]) == 1
    # unmute from the keypad, then a moderator mutes: the bridge hears call.mute
    keys = await b.ok("call.keys", {"call_id": CALL, "digits": "*6"})
    assert keys["mic"] is True
    await fac.wait_for("participant.updated", lambda d: d["participant"]["mic"] is True)
    await fac.ok("mod.mute", {"id": pid})
    assert await b.wait_for("call.mute") == {"call_id": CALL, "muted": True}
    await peer.wait_for(
        "participant.updated",
        lambda d: d["participant"]["id"] == pid and not d["participant"]["mic"],
    )
    # mute_all reaches the phone too
    await b.ok("call.keys", {"call_id": CALL, "digits": "*6"})
    await fac.ok("mod.mute_all")
    async with asyncio.timeout(5):  # the second call.mute, whenever the outbox sends it
        while len(b.received("call.mute")) < 2:
            await asyncio.sleep(0.02)
    await fac.wait_for("participant.updated", lambda d: d["participant"]["id"] == pid)
    assert b.received("call.mute")[-1] == {"call_id": CALL, "muted": True}
    # the turn took the hand down; the keypad raises and lowers it again
    keys = await b.ok("call.keys", {"call_id": CALL, "digits": "*9"})
    assert keys["hand"] is True and keys["position"] == 2
    keys = await b.ok("call.keys", {"call_id": CALL, "digits": "*9"})
    assert keys["hand"] is False and keys["position"] is None


async def test_remove_reaches_the_bridge(
    live_server: LiveServer, clients: Any, bridges: Any
) -> None:
    room, fac, _ = await web_room(live_server, clients)
    b = await bridges()
    ack = await b.ok("call.join", {"call_id": CALL, "pin": room["phone_pin"], "caller": CALLER})
    removed = await fac.ok("mod.remove", {"id": ack["participant_id"], "ban": True})
    assert removed["banned"] is True and "note" not in removed
    assert await b.wait_for("call.remove") == {"call_id": CALL, "reason": "banned"}
    await fac.wait_for("participant.left", lambda d: d["reason"] == "removed")
    # banned: the same number is kept out of this session, on any call id
    code = await b.error(
        "call.join", {"call_id": "again", "pin": room["phone_pin"], "caller": CALLER}
    )
    assert code == "banned"


async def test_a_hidden_number_cannot_be_banned_and_the_facilitator_is_told(
    live_server: LiveServer, clients: Any, bridges: Any
) -> None:
    room, fac, _ = await web_room(live_server, clients)
    b = await bridges()
    join = {"call_id": "h1", "pin": room["phone_pin"], "caller": "anonymous"}
    ack = await b.ok("call.join", join)
    removed = await fac.ok("mod.remove", {"id": ack["participant_id"], "ban": True})
    assert removed["banned"] is False and "number is hidden" in removed["note"]
    assert await b.wait_for("call.remove") == {"call_id": "h1", "reason": "banned"}
    # as the note says: the same hidden caller gets back in, unless the room is locked
    back = await b.ok("call.join", {**join, "call_id": "h2"})
    assert back["participant_id"] != ack["participant_id"]


async def test_dropped_bridge_resumes_the_same_participant(
    live_server: LiveServer, clients: Any, bridges: Any
) -> None:
    room, fac, _ = await web_room(live_server, clients)
    b1 = await bridges()
    ack = await b1.ok("call.join", {"call_id": CALL, "pin": room["phone_pin"], "caller": CALLER})
    pid = ack["participant_id"]
    await b1.ok("call.keys", {"call_id": CALL, "digits": "*9"})
    await fac.wait_for("hands", lambda d: d["hands"] == [pid])
    await b1.sio.disconnect()
    await fac.wait_for(
        "participant.updated",
        lambda d: d["participant"]["id"] == pid and d["participant"]["connected"] is False,
    )
    b2 = await bridges()
    back = await b2.ok("call.join", {"call_id": CALL, "pin": room["phone_pin"], "caller": CALLER})
    assert back["participant_id"] == pid and back["name"] == "Caller 42"
    await fac.wait_for(
        "participant.updated",
        lambda d: d["participant"]["id"] == pid and d["participant"]["connected"] is True,
    )
    assert (await b2.ok("call.keys", {"call_id": CALL, "digits": "#"}))["position"] == 1
    # the new bridge connection now gets this call's moderator actions
    await fac.ok("mod.mute", {"id": pid})
    await b2.wait_for("call.mute")
    assert b1.received("call.mute") == []


async def test_call_back_from_the_same_number_keeps_the_place(
    live_server: LiveServer, clients: Any, bridges: Any
) -> None:
    room, fac, _ = await web_room(live_server, clients)
    b = await bridges()
    ack = await b.ok("call.join", {"call_id": "first", "pin": room["phone_pin"], "caller": CALLER})
    await b.ok("call.keys", {"call_id": "first", "digits": "*9"})
    await b.sio.disconnect()
    await fac.wait_for("participant.updated", lambda d: d["participant"]["connected"] is False)
    b2 = await bridges()
    back = await b2.ok(
        "call.join", {"call_id": "second", "pin": room["phone_pin"], "caller": CALLER}
    )
    assert back["participant_id"] == ack["participant_id"]
    assert (await b2.ok("call.keys", {"call_id": "second", "digits": "#"}))["hand"] is True
    assert await b2.error("call.keys", {"call_id": "first", "digits": "#"}) == "not_found"


async def test_a_call_the_bridge_says_dropped_keeps_its_place(
    live_server: LiveServer, clients: Any, bridges: Any
) -> None:
    """protocol.md: a hand keeps its place through a reconnect within the grace, on the
    phone too. A bridge holding other calls cannot close its connection for one line
    that fell: call.leave with dropped: true says so."""
    room, fac, _ = await web_room(live_server, clients)
    b = await bridges()
    pin = room["phone_pin"]
    other = await b.ok("call.join", {"call_id": "other", "pin": pin, "caller": "+15550000007"})
    ack = await b.ok("call.join", {"call_id": "first", "pin": pin, "caller": CALLER})
    pid = ack["participant_id"]
    await b.ok("call.keys", {"call_id": "first", "digits": "*9"})
    assert await b.error("call.leave", {"call_id": "first", "dropped": "yes"}) == "bad_request"
    await b.ok("call.leave", {"call_id": "first", "dropped": True})
    await fac.wait_for(
        "participant.updated",
        lambda d: d["participant"]["id"] == pid and d["participant"]["connected"] is False,
    )
    back = await b.ok("call.join", {"call_id": "second", "pin": pin, "caller": CALLER})
    assert back["participant_id"] == pid
    again = await b.ok("call.keys", {"call_id": "second", "digits": "#"})
    assert (again["hand"], again["position"]) == (True, 1)
    # The bridge's other call never noticed.
    assert (await b.ok("call.keys", {"call_id": "other", "digits": "#"}))["hand"] is False
    assert not [d for d in fac.received("participant.left") if d["id"] == other["participant_id"]]
    assert not [d for d in fac.received("participant.left") if d["id"] == pid]


async def test_place_is_let_go_after_the_grace(
    live_server: LiveServer, clients: Any, bridges: Any
) -> None:
    room, fac, _ = await web_room(live_server, clients)
    b = await bridges()
    ack = await b.ok("call.join", {"call_id": CALL, "pin": room["phone_pin"], "caller": CALLER})
    await b.sio.disconnect()
    left = await fac.wait_for("participant.left", lambda d: d["id"] == ack["participant_id"])
    assert left["reason"] == "timeout"
    b2 = await bridges()
    back = await b2.ok("call.join", {"call_id": CALL, "pin": room["phone_pin"], "caller": CALLER})
    assert back["participant_id"] != ack["participant_id"]


async def test_leave_waiting_room_and_end(
    live_server: LiveServer, clients: Any, bridges: Any
) -> None:
    room, fac, _ = await web_room(live_server, clients, waiting_room=True)
    b = await bridges()
    pin = room["phone_pin"]
    ack = await b.ok("call.join", {"call_id": "w1", "pin": pin, "caller": CALLER})
    assert ack["waiting"] is True
    assert await b.error("call.keys", {"call_id": "w1", "digits": "*9"}) == "not_allowed_now"
    waiting = await fac.wait_for("waiting.updated", lambda d: len(d["waiting"]) == 1)
    assert waiting["waiting"][0] == {
        "id": ack["participant_id"],
        "name": "Caller 42",
        "connected": True,
    }
    await fac.ok("mod.admit", {"id": ack["participant_id"]})
    assert await b.wait_for("call.admitted") == {"call_id": "w1"}
    assert (await b.ok("call.keys", {"call_id": "w1", "digits": "*9"}))["position"] == 1
    denied = await b.ok("call.join", {"call_id": "w2", "pin": pin, "caller": "+15550000007"})
    await fac.ok("mod.deny", {"id": denied["participant_id"]})
    assert await b.wait_for("call.remove", lambda d: d["call_id"] == "w2") == {
        "call_id": "w2",
        "reason": "denied",
    }
    # leaving on purpose: the room hears "left", the bridge gets no call.remove
    left = await b.ok("call.join", {"call_id": "w3", "pin": pin, "caller": "+15550000008"})
    await b.ok("call.leave", {"call_id": "w3"})
    assert await fac.wait_for("waiting.updated", lambda d: d["waiting"] == [])
    # a fence: calls' actions go out in order, so a call.remove for w3 would come first
    fence = await b.ok("call.join", {"call_id": "w4", "pin": pin, "caller": "+15550000009"})
    await fac.ok("mod.deny", {"id": fence["participant_id"]})
    await b.wait_for("call.remove", lambda d: d["call_id"] == "w4")
    assert not [d for d in b.received("call.remove") if d["call_id"] == "w3"]
    assert left["waiting"] is True
    await b.ok("call.leave", {"call_id": "w3"})  # again: still fine
    await fac.ok("mod.end")
    assert await b.wait_for("call.remove", lambda d: d["call_id"] == "w1") == {
        "call_id": "w1",
        "reason": "ended",
    }


async def test_leave_in_the_room(live_server: LiveServer, clients: Any, bridges: Any) -> None:
    room, fac, _ = await web_room(live_server, clients)
    b = await bridges()
    ack = await b.ok("call.join", {"call_id": CALL, "pin": room["phone_pin"], "caller": CALLER})
    await b.ok("call.leave", {"call_id": CALL})
    left = await fac.wait_for("participant.left", lambda d: d["id"] == ack["participant_id"])
    assert left["reason"] == "left"
    await asyncio.sleep(0.1)
    assert b.received("call.remove") == []


async def test_refusals_and_oversized_fields(
    live_server: LiveServer, clients: Any, bridges: Any
) -> None:
    room, fac, _ = await web_room(live_server, clients)
    b = await bridges()
    pin = room["phone_pin"]
    await fac.ok("mod.lock", {"locked": True})
    assert await b.error("call.join", {"call_id": "l1", "pin": pin, "caller": CALLER}) == (
        "room_locked"
    )
    await fac.ok("mod.lock", {"locked": False})
    big = {"call_id": "big", "pin": pin, "caller": CALLER, "extra": "x" * 5_000}
    assert await b.error("call.join", big) == "bad_request"
    assert await b.error("call.join", {"call_id": "big", "pin": pin, "caller": [1] * 2000}) == (
        "bad_request"
    )
    ack = await b.ok("call.join", {"call_id": "big", "pin": pin, "caller": "+1" + "5" * 500})
    assert ack["name"] == "Caller"  # a caller field that is no number is withheld
    assert await b.error("call.join", {"call_id": "p", "pin": "1" * 1_000}) == "bad_pin"
    assert await b.error("call.keys", {"call_id": "big", "digits": "*" * 1_000}) == "bad_request"
    assert b.sio.connected


async def test_web_clients_never_see_a_full_number(
    live_server: LiveServer, clients: Any, bridges: Any
) -> None:
    room, fac, _ = await web_room(live_server, clients)
    peer: Client = clients()
    await peer.join(room["invite_token"], "Bo")
    b = await bridges()
    ack = await b.ok("call.join", {"call_id": CALL, "pin": room["phone_pin"], "caller": CALLER})
    await b.ok("call.keys", {"call_id": CALL, "digits": "*9"})
    await b.ok("checkin.create", {"call_id": "c1", "caller": CALLER, "status": "callback"})
    await fac.wait_for("checkins.updated")
    await fac.ok("mod.remove", {"id": ack["participant_id"]})
    await peer.wait_for("participant.left", lambda d: d["id"] == ack["participant_id"])
    seen = repr(fac.events) + repr(peer.events)
    assert "7700" not in seen and "900142" not in seen


async def test_concurrent_retries_make_one_participant(
    live_server: LiveServer, clients: Any, bridges: Any
) -> None:
    room, fac, _ = await web_room(live_server, clients)
    b = await bridges()
    join = {"call_id": CALL, "pin": room["phone_pin"], "caller": CALLER}
    acks = await asyncio.gather(*(b.ok("call.join", join) for _ in range(5)))
    assert len({a["participant_id"] for a in acks}) == 1
    await asyncio.sleep(0.1)
    phones = [d for d in fac.received("participant.joined") if d["participant"]["via"] == "phone"]
    assert len(phones) == 1


async def test_a_hang_up_the_live_store_cannot_take_now_is_retried(
    live_server: LiveServer, clients: Any, bridges: Any, monkeypatch: Any
) -> None:
    """Before, a hang-up (leave or drop) refused with ``unavailable`` (Redis
    reconnecting, a very busy room) was taken for "the session ended": the caller stayed
    connected for good. Now the clock retries it, as it does for web connections."""
    from rooms import commands as c
    from server.keys import SERVICE
    from server.live import LiveUnavailable

    room, fac, _ = await web_room(live_server, clients)
    service = live_server.app[SERVICE]
    real = service.execute
    refused: list[str] = []

    async def flaky(room_id: str, actor: str | None, command: c.Command) -> Any:
        if isinstance(command, (c.Drop, c.Leave)) and not refused:
            refused.append(type(command).__name__)
            raise LiveUnavailable()
        return await real(room_id, actor, command)

    monkeypatch.setattr(service, "execute", flaky)
    b = await bridges()
    for n, hang_up in enumerate(("call.leave", "disconnect")):
        call = f"{CALL}-{n}"
        ack = await b.ok("call.join", {"call_id": call, "pin": room["phone_pin"], "caller": CALLER})
        pid = ack["participant_id"]
        refused.clear()
        if hang_up == "call.leave":
            await b.ok("call.leave", {"call_id": call})
        else:
            await b.sio.disconnect()  # the bridge is gone: its calls drop

        def gone(d: Any, pid: str = pid) -> bool:
            return bool(d["participant"]["id"] == pid and d["participant"]["connected"] is False)

        await fac.wait_for("participant.updated", gone)
        assert refused == ["Leave" if hang_up == "call.leave" else "Drop"]


async def test_wrong_pins_are_limited_per_number_and_for_the_line(
    live_server: LiveServer, clients: Any, bridges: Any
) -> None:
    """A room's PIN is six digits: a stranger could guess it, a few tries per call, many
    calls. Past the budget of wrong PINs, no PIN is looked at, right or wrong."""
    from server.phone.lines import PIN_MISSES_ALL, PIN_MISSES_PER_CALLER

    room, _, _ = await web_room(live_server, clients)
    right = room["phone_pin"]
    wrong = ("1" if right[0] != "1" else "2") + right[1:]
    b = await bridges()
    guesser = "+44 7700 900999"
    for n in range(PIN_MISSES_PER_CALLER):
        payload = {"call_id": f"g{n}", "pin": wrong, "caller": guesser}
        assert await b.error("call.join", payload) == "bad_pin"
    payload = {"call_id": "g-right", "pin": right, "caller": guesser}
    assert await b.error("call.join", payload) == "rate_limited"
    # Another number still gets in.
    await b.ok("call.join", {"call_id": "other", "pin": right, "caller": CALLER})
    # Many numbers guessing at once exhaust the line's budget: then nobody's PIN is checked.
    for n in range(PIN_MISSES_ALL - PIN_MISSES_PER_CALLER):
        payload = {"call_id": f"m{n}", "pin": wrong, "caller": f"+44 7700 9{n:05d}"}
        assert await b.error("call.join", payload) == "bad_pin"
    payload = {"call_id": "late", "pin": right, "caller": "+44 7700 900123"}
    assert await b.error("call.join", payload) == "rate_limited"
    # But not a number that gave the right PIN before: the group's own callers (one
    # whose line fell, calling back) are not kept out by strangers guessing. Its own
    # number's budget still holds.
    back = await b.ok("call.join", {"call_id": "back", "pin": right, "caller": CALLER})
    assert back["participant_id"]
    for n in range(PIN_MISSES_PER_CALLER):
        payload = {"call_id": f"k{n}", "pin": wrong, "caller": CALLER}
        assert await b.error("call.join", payload) == "bad_pin"
    payload = {"call_id": "k-right", "pin": right, "caller": CALLER}
    assert await b.error("call.join", payload) == "rate_limited"


async def test_a_bridge_event_named_disconnect_drops_no_call(
    live_server: LiveServer, clients: Any, bridges: Any
) -> None:
    """python-socketio runs the disconnect handler for a connected client's event of
    that name: it dropped every call of the bridge while the bridge stayed connected."""
    room, fac, _ = await web_room(live_server, clients)
    b = await bridges()
    ack = await b.ok("call.join", {"call_id": CALL, "pin": room["phone_pin"], "caller": CALLER})
    mark = fac.mark()
    for event in ("disconnect", "connect"):
        refused = await b.call(event, {"token": "whatever"})
        assert refused["ok"] is False and refused["error"]["code"] == "bad_request", event
    assert (await b.ok("call.keys", {"call_id": CALL, "digits": "*9"}))["hand"] is True
    await fac.wait_for("hands", lambda d: d["hands"] == [ack["participant_id"]], after=mark)
    assert fac.received("participant.updated", mark) == []


def shown(pid: str, connected: bool) -> Any:
    return lambda d: d["participant"]["id"] == pid and d["participant"]["connected"] is connected


async def test_a_call_dropped_by_another_node_while_on_the_line_takes_its_place_back(
    live_server: LiveServer, clients: Any, bridges: Any
) -> None:
    """Another node that took this one for dead drops its calls (perhaps late, after
    they were brought back): a call still on the line here takes its place back."""
    room, fac, _ = await web_room(live_server, clients)
    b = await bridges()
    ack = await b.ok("call.join", {"call_id": CALL, "pin": room["phone_pin"], "caller": CALLER})
    pid = ack["participant_id"]
    await b.ok("call.keys", {"call_id": CALL, "digits": "*9"})
    assert (await b.ok("call.keys", {"call_id": CALL, "digits": "*6"}))["mic"] is True
    service = live_server.app[SERVICE]
    await service.execute(room["room_id"], None, c.Drop(pid, service.conn_of(CALL)))
    for connected in (False, True):
        await fac.wait_for("participant.updated", shown(pid, connected))
    keys = await b.ok("call.keys", {"call_id": CALL, "digits": "#"})
    assert keys["hand"] is True and keys["position"] == 1
    # The room shows the caller muted once back, as after any resume: so is the line.
    assert keys["mic"] is False
    assert await b.wait_for("call.mute", lambda d: d["muted"] is True) == {
        "call_id": CALL,
        "muted": True,
    }


async def test_a_caller_who_hangs_up_while_taking_their_place_back_is_not_left_behind(
    live_server: LiveServer, clients: Any, bridges: Any, monkeypatch: Any
) -> None:
    room, fac, _ = await web_room(live_server, clients)
    b = await bridges()
    ack = await b.ok("call.join", {"call_id": CALL, "pin": room["phone_pin"], "caller": CALLER})
    pid = ack["participant_id"]
    service = live_server.app[SERVICE]
    real_room = service.room
    looking_up = asyncio.Event()

    async def slow_room(room_id: str) -> Any:
        looking_up.set()
        await asyncio.sleep(0.5)  # the caller hangs up meanwhile
        return await real_room(room_id)

    monkeypatch.setattr(service, "room", slow_room)
    await service.execute(room["room_id"], None, c.Drop(pid, service.conn_of(CALL)))
    await looking_up.wait()  # the place is being taken back...
    await b.ok("call.leave", {"call_id": CALL})  # ...and the caller hangs up
    await fac.wait_for("participant.left", lambda d: d["id"] == pid)
    mark = len(fac.events)
    # the join on its way lands (the caller back under a new id), and is undone
    back = await fac.wait_for("participant.joined", after=mark)
    again = back["participant"]["id"]
    assert again != pid and back["participant"]["via"] == "phone"
    await fac.wait_for("participant.left", lambda d: d["id"] == again, after=mark)
    state = await live_server.app[LIVE].get(room["room_id"])
    assert state is not None and [p.name for p in state.participants] == ["Ann"]
