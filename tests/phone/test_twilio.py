"""Twilio voice webhooks, driven exactly as Twilio would: signed requests, following
the TwiML like a caller, next to web clients in the same room."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import aiohttp

from server.keys import LIVE
from server.phone import twilio_calls
from server.phone.twilio_http import TWILIO
from tests.phone.conftest import checkin_with, web_room
from tests.phone.test_checkins import api
from tests.phone.twilio_sim import ACCOUNT_SID, AUTH_TOKEN, CONFERENCE_SID, Phone, RestRecorder
from tests.support import LiveServer

NUMBER = "+15550100042"


def participant_path(call_sid: str) -> str:
    conference = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Conferences/{CONFERENCE_SID}"
    return f"{conference}/Participants/{call_sid}.json"


async def test_join_raise_hand_hear_place(live_server: LiveServer, clients: Any) -> None:
    room, fac, _ = await web_room(live_server, clients, title="Tuesday circle")
    peer = clients()
    pw = await peer.join(room["invite_token"], "Bo")
    await peer.ok("hand.raise")
    phone = Phone(live_server.url, NUMBER)
    await phone.call()
    assert "press 1" in phone.said() and "press 2" in phone.said()
    await phone.press("1")
    assert "PIN" in phone.said()
    await phone.press(room["phone_pin"])
    assert "You are in the room, and muted" in phone.said()
    conf = phone.conference()
    assert conf is not None and conf.text == f"peerroom-{room['room_id']}"
    assert phone.muted_in_conference() and conf.get("beep") == "false"
    await phone.joined_conference()
    joined = await fac.wait_for("participant.joined", lambda d: d["participant"]["via"] == "phone")
    pid = joined["participant"]["id"]
    assert joined["participant"]["name"] == "Caller 42"
    assert joined["participant"]["camera"] is False

    await phone.star()
    assert "Press 9" in phone.said()
    await phone.press("9")
    assert "Your hand is up. You are number 2 in line." in phone.said()
    assert phone.conference() is not None  # straight back into the room
    await fac.wait_for("hands", lambda d: d["hands"] == [pw["you"]["id"], pid])

    await phone.star()
    await phone.press("#")
    assert "You are number 2 in line." in phone.said()
    await fac.ok("mod.floor.next")
    await phone.star()
    await phone.press("#")
    assert "You are first in line." in phone.said()

    await phone.star()
    await phone.press("6")
    assert "You are unmuted" in phone.said() and not phone.muted_in_conference()
    await fac.wait_for(
        "participant.updated", lambda d: d["participant"]["id"] == pid and d["participant"]["mic"]
    )
    await phone.star()
    await phone.press("0")
    assert phone.said() == "" and not phone.muted_in_conference()  # back, state intact
    await phone.star()
    await phone.silence()  # the menu times out: back into the room
    assert phone.conference() is not None
    await phone.star()
    await phone.press("9")
    assert "Your hand is down." in phone.said()


async def test_moderator_mute_and_remove_reach_twilio(
    live_server: LiveServer, clients: Any, twilio_rest: RestRecorder
) -> None:
    room, fac, _ = await web_room(live_server, clients)
    phone = Phone(live_server.url, NUMBER)
    await phone.join_room(room["phone_pin"])
    joined = await fac.wait_for("participant.joined", lambda d: d["participant"]["via"] == "phone")
    pid = joined["participant"]["id"]
    await phone.star()
    await phone.press("6")  # unmuted, back in the conference
    await phone.joined_conference()
    await fac.ok("mod.mute", {"id": pid})
    rest = await twilio_rest.wait_for("POST", participant_path(phone.sid))
    assert rest.form == {"Muted": "true"}
    assert rest.auth is not None and rest.auth.startswith("Basic ")
    sent = base64.b64decode(rest.auth.removeprefix("Basic ")).decode()
    assert sent == f"{ACCOUNT_SID}:{AUTH_TOKEN}"  # HTTP Basic: the account SID and its token
    # back from the menu, the conference is joined muted, as the room now says
    await phone.star()
    await phone.press("0")
    assert phone.muted_in_conference()

    await fac.ok("mod.remove", {"id": pid})
    await twilio_rest.wait_for("DELETE", participant_path(phone.sid))
    await phone.dial_ended()  # Twilio asks the Dial action once the caller is out
    assert "removed you from the room" in phone.said() and phone.hung_up()
    await fac.wait_for("participant.left", lambda d: d["id"] == pid and d["reason"] == "removed")


async def test_conference_sid_looked_up_when_not_yet_known(
    live_server: LiveServer, clients: Any, twilio_rest: RestRecorder
) -> None:
    room, fac, _ = await web_room(live_server, clients)
    phone = Phone(live_server.url, NUMBER)
    await phone.call()
    await phone.press("1")
    await phone.press(room["phone_pin"])  # in the conference; its callback not yet arrived
    joined = await fac.wait_for("participant.joined", lambda d: d["participant"]["via"] == "phone")
    await fac.ok("mod.mute", {"id": joined["participant"]["id"]})
    lookup = await twilio_rest.wait_for("GET", "/Conferences.json")
    assert lookup.query == {"FriendlyName": f"peerroom-{room['room_id']}", "Status": "in-progress"}
    await twilio_rest.wait_for("POST", participant_path(phone.sid))


async def test_session_end_takes_callers_out(
    live_server: LiveServer, clients: Any, twilio_rest: RestRecorder
) -> None:
    room, fac, _ = await web_room(live_server, clients)
    phone = Phone(live_server.url, NUMBER)
    await phone.join_room(room["phone_pin"])
    await fac.ok("mod.end")
    await twilio_rest.wait_for("DELETE", participant_path(phone.sid))
    await phone.dial_ended()
    assert "The session has ended" in phone.said() and phone.hung_up()


async def test_drop_and_call_back_keeps_the_place(live_server: LiveServer, clients: Any) -> None:
    room, fac, _ = await web_room(live_server, clients)
    first = Phone(live_server.url, NUMBER)
    await first.join_room(room["phone_pin"])
    joined = await fac.wait_for("participant.joined", lambda d: d["participant"]["via"] == "phone")
    pid = joined["participant"]["id"]
    await first.star()
    await first.press("9")
    peer = clients()
    pw = await peer.join(room["invite_token"], "Bo")
    await peer.ok("hand.raise")
    await fac.wait_for("hands", lambda d: d["hands"] == [pid, pw["you"]["id"]])
    # the line drops: Twilio asks the Dial action (ignored) and sends the status callback
    await first.dial_ended("completed")
    await first.hang_up()
    await fac.wait_for(
        "participant.updated",
        lambda d: d["participant"]["id"] == pid and not d["participant"]["connected"],
    )
    again = Phone(live_server.url, NUMBER)  # a new call, a new CallSid, the same number
    await again.join_room(room["phone_pin"])
    assert "Welcome back. You kept your place." in again.said()
    await fac.wait_for(
        "participant.updated",
        lambda d: d["participant"]["id"] == pid and d["participant"]["connected"],
    )
    await again.star()
    await again.press("#")
    assert "You are first in line." in again.said()
    # someone else, a hidden number: a fresh place of their own
    hidden = Phone(live_server.url, "anonymous")
    await hidden.join_room(room["phone_pin"])
    other = await fac.wait_for(
        "participant.joined",
        lambda d: d["participant"]["via"] == "phone" and d["participant"]["id"] != pid,
    )
    assert other["participant"]["name"] == "Caller"


async def test_a_lost_status_callback_does_not_leave_a_ghost_in_the_room(
    live_server: LiveServer, clients: Any, twilio_rest: RestRecorder, monkeypatch: Any
) -> None:
    """The caller hung up but Twilio's status callback never reached us: the quiet call
    is looked up through the REST API and, ended, is a drop as if the callback came."""
    room, fac, _ = await web_room(live_server, clients)
    phone = Phone(live_server.url, NUMBER)
    await phone.join_room(room["phone_pin"])
    joined = await fac.wait_for("participant.joined", lambda d: d["participant"]["via"] == "phone")
    pid = joined["participant"]["id"]
    adapter = live_server.app[TWILIO]
    monkeypatch.setattr(twilio_calls, "QUIET_SECS", 0.0)
    await adapter.check_quiet_calls()  # Twilio cannot say (500): nothing changes
    twilio_rest.call_status[phone.sid] = "in-progress"
    await adapter.check_quiet_calls()  # still on the line: nothing changes
    assert phone.sid in adapter.calls
    twilio_rest.call_status[phone.sid] = "completed"  # hung up; the callback is lost
    await adapter.check_quiet_calls()
    left = await fac.wait_for(
        "participant.updated",
        lambda d: d["participant"]["id"] == pid and not d["participant"]["connected"],
    )
    assert left["participant"]["via"] == "phone" and phone.sid not in adapter.calls
    asked = [r for r in twilio_rest.requests if r.path.endswith(f"/Calls/{phone.sid}.json")]
    assert [r.method for r in asked] == ["GET"] * 3
    # the place is kept, as after any drop: calling back resumes it
    again = Phone(live_server.url, NUMBER)
    await again.join_room(room["phone_pin"])
    assert "Welcome back. You kept your place." in again.said()


async def test_wrong_pin_three_times(live_server: LiveServer, clients: Any) -> None:
    room, _, _ = await web_room(live_server, clients)
    wrong = str((int(room["phone_pin"]) + 1) % 1_000_000).zfill(6)
    phone = Phone(live_server.url, NUMBER)
    await phone.call()
    await phone.press("1")
    await phone.press(wrong)
    assert "did not match" in phone.said() and not phone.hung_up()
    await phone.press("12ab")  # garbage: the same as a wrong PIN, not a crash
    assert "did not match" in phone.said()
    await phone.press("")
    assert "did not work" in phone.said() and phone.hung_up()
    # wrong once, then right
    other = Phone(live_server.url, NUMBER)
    await other.call()
    await other.press("1")
    await other.press(wrong)
    await other.press(room["phone_pin"])
    assert other.conference() is not None


async def test_garbage_keys_get_a_spoken_sorry(live_server: LiveServer, clients: Any) -> None:
    room, _, _ = await web_room(live_server, clients)
    for junk in ("7", "abc", "9" * 500, "<Say>hi</Say>"):
        phone = Phone(live_server.url, NUMBER)
        await phone.call()
        await phone.press(junk)
        assert "Sorry, I did not get that." in phone.said(), junk
        assert phone.last_status == 200
    phone = Phone(live_server.url, NUMBER)
    await phone.join_room(room["phone_pin"])
    await phone.star()
    await phone.press("x")
    assert "Sorry, I did not get that." in phone.said() and "Press 9" in phone.said()
    await phone.press("5")
    await phone.press("*")
    assert phone.conference() is not None  # after three misses: back into the room


async def test_signatures(live_server: LiveServer, clients: Any) -> None:
    await web_room(live_server, clients)
    phone = Phone(live_server.url, NUMBER)
    await phone.post("/phone/twilio/voice", signature="", raw=True)
    assert phone.last_status == 403
    await phone.post("/phone/twilio/voice", signature="bm90IGEgc2lnbmF0dXJl", raw=True)
    assert phone.last_status == 403 and '"forbidden"' in phone.last_raw
    forged = Phone(live_server.url, NUMBER, token="someone-elses-token")
    await forged.post("/phone/twilio/voice", raw=True)
    assert forged.last_status == 403
    # signed for another URL (a replayed request moved to another step)
    sig = phone.validator.compute_signature(
        f"{live_server.url}/phone/twilio/voice", phone.params(Digits="9")
    )
    await phone.post("/phone/twilio/menu?s=1", signature=sig, raw=True, Digits="9")
    assert phone.last_status == 403
    # a signed request without a CallSid is not a call
    await phone.post("/phone/twilio/voice", raw=True, CallSid="")
    assert phone.last_status == 400
    # an oversized body: a coded error, not a 500
    await phone.post("/phone/twilio/voice", raw=True, Junk="x" * 100_000)
    assert phone.last_status in (400, 413)
    # a body in a charset that does not exist: a coded error, not a 500
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{live_server.url}/phone/twilio/voice",
            data=b"CallSid=CA1&From=%2B4712345678",
            headers={
                "Content-Type": "application/x-www-form-urlencoded; charset=nonsense",
                "X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl",
            },
        ) as r,
    ):
        assert r.status == 400 and (await r.json())["error"]["code"] == "bad_request"


async def test_not_configured_is_404(server_factory: Any) -> None:
    server = await server_factory()
    phone = Phone(server.url, NUMBER)
    await phone.post("/phone/twilio/voice", raw=True)
    assert phone.last_status == 404 and '"not_found"' in phone.last_raw


async def to_the_pin_step(phone: Phone) -> Any:
    """Call, choose a group: the step that asks for the PIN (its Gather, to replay)."""
    await phone.call()
    await phone.press("1")
    pin_step = phone.twiml.find("Gather")
    assert pin_step is not None
    return pin_step


async def test_replayed_webhooks_are_idempotent(live_server: LiveServer, clients: Any) -> None:
    room, fac, _ = await web_room(live_server, clients)
    phone = Phone(live_server.url, NUMBER)
    pin_step = await to_the_pin_step(phone)
    pin_answer = await phone.press(room["phone_pin"])
    assert pin_answer.find("Dial/Conference") is not None  # the PIN let the caller in
    pin_raw = phone.last_raw
    await phone.joined_conference()
    await phone.star()
    gather = phone.twiml.find("Gather")
    assert gather is not None
    action = gather.get("action", "")
    await phone.post(action, Digits="9")
    first = phone.last_raw
    await phone.post(action, Digits="9")  # Twilio retries the same step
    assert phone.last_raw == first
    await asyncio.sleep(0.1)
    hands = fac.received("hands")
    assert len(hands) == 1 and len(hands[0]["hands"]) == 1  # raised once, not toggled back
    # the first webhook again, and the PIN step again: same answers, one participant
    await phone.call()
    again = Phone(live_server.url, NUMBER, sid=phone.sid)
    await again.call()
    assert again.last_raw == phone.last_raw
    await again.post(pin_step.get("action", ""), Digits=room["phone_pin"])
    assert again.last_raw == pin_raw
    state = await live_server.app[LIVE].get(room["room_id"])
    assert state is not None and len([p for p in state.participants if p.via == "phone"]) == 1


async def test_a_webhook_replayed_after_the_call_ended_brings_no_ghost_back(
    live_server: LiveServer, clients: Any
) -> None:
    """A captured, signed PIN step posted again once the call is over: the call was
    forgotten at its end, and the replay made it anew and put a caller in the room."""
    room, fac, _ = await web_room(live_server, clients)
    phone = Phone(live_server.url, NUMBER)
    pin_step = await to_the_pin_step(phone)
    await phone.press(room["phone_pin"])
    joined = await fac.wait_for("participant.joined", lambda d: d["participant"]["via"] == "phone")
    pid = joined["participant"]["id"]
    await phone.joined_conference()
    await phone.dial_ended("completed")
    await phone.hang_up()
    await fac.wait_for(
        "participant.updated",
        lambda d: d["participant"]["id"] == pid and not d["participant"]["connected"],
    )
    replay = Phone(live_server.url, NUMBER, sid=phone.sid)
    await replay.post(pin_step.get("action", ""), Digits=room["phone_pin"])
    assert "<Hangup" in replay.last_raw and "<Dial" not in replay.last_raw
    state = await live_server.app[LIVE].get(room["room_id"])
    assert state is not None
    (caller,) = [p for p in state.participants if p.via == "phone"]
    assert not caller.connected  # still the dropped one, keeping its place


async def test_waiting_room_hold_then_admitted(live_server: LiveServer, clients: Any) -> None:
    room, fac, _ = await web_room(live_server, clients, waiting_room=True)
    phone = Phone(live_server.url, NUMBER)
    await phone.call()
    await phone.press("1")
    await phone.press(room["phone_pin"])
    assert "waiting room" in phone.said() and phone.twiml.find("Pause") is not None
    waiting = await fac.wait_for("waiting.updated", lambda d: len(d["waiting"]) == 1)
    await phone.hold_on()
    assert phone.conference() is None and phone.twiml.find("Redirect") is not None
    await fac.ok("mod.admit", {"id": waiting["waiting"][0]["id"]})
    await phone.hold_on()
    assert "let you in" in phone.said() and phone.conference() is not None
    denied = Phone(live_server.url, "+15550100077")
    await denied.call()
    await denied.press("1")
    mark = fac.mark()
    await denied.press(room["phone_pin"])
    waiting = await fac.wait_for("waiting.updated", lambda d: len(d["waiting"]) == 1, after=mark)
    await fac.ok("mod.deny", {"id": waiting["waiting"][0]["id"]})
    await denied.hold_on()
    assert "cannot let you in" in denied.said() and denied.hung_up()


async def test_checkin_line_each_status(live_server: LiveServer, clients: Any) -> None:
    room, fac, _ = await web_room(live_server, clients)
    ids = {}
    for digit, status, number in (
        ("1", "ok", "+15550100011"),
        ("2", "callback", "+15550100022"),
        ("3", "talk", "+15550100033"),
    ):
        phone = Phone(live_server.url, number)
        await phone.call()
        await phone.press("2")  # main menu: the check-in line
        assert "Press 1 if you are OK" in phone.said()
        await phone.press(digit)
        assert phone.hung_up()
        live = await fac.wait_for("checkins.updated", checkin_with("status", status))
        ids[status] = live["checkin"]["id"]
        assert live["checkin"]["caller"] == "******" + number[-2:]
    assert "call you back" in phone.said() or "as soon as they can" in phone.said()
    assert "not a crisis line" in phone.said()
    _, body = await api(live_server, "GET", "/api/checkins", room["facilitator_token"])
    by_id = {c["id"]: c for c in body["checkins"]}
    assert "number" not in by_id[ids["ok"]]
    assert by_id[ids["callback"]]["number"] == "+15550100022"
    assert by_id[ids["talk"]]["number"] == "+15550100033"


async def test_a_caller_asking_again_and_again_hears_their_request_is_in(
    live_server: LiveServer, clients: Any
) -> None:
    from server.phone.lines import CALL_REQUESTS_PER_CALLER

    await web_room(live_server, clients)
    for _ in range(CALL_REQUESTS_PER_CALLER):
        phone = Phone(live_server.url, "+15550100044")
        await phone.call()
        await phone.press("2")
        await phone.press("2")  # please call me back
        assert phone.hung_up() and "call you back" in phone.said()
    again = Phone(live_server.url, "+15550100044")
    await again.call()
    await again.press("2")
    await again.press("2")
    assert again.hung_up()
    assert "Your request is with the team" in again.said()
    assert "not a crisis line" in again.said()


async def test_checkin_own_number_and_hidden_caller(live_server: LiveServer, clients: Any) -> None:
    _room, fac, _ = await web_room(live_server, clients)
    ok = Phone(live_server.url, "+15550100044")
    await ok.call("/phone/twilio/checkin")  # the check-in line's own number
    await ok.press("4")
    assert "Sorry, I did not get that." in ok.said()
    await ok.press("1")
    assert "Thank you for checking in" in ok.said()
    hidden = Phone(live_server.url, "Restricted")
    await hidden.call("/phone/twilio/checkin")
    await hidden.press("2")
    assert "Your number is hidden" in hidden.said()
    await hidden.press("12")
    assert "did not sound like a phone number" in hidden.said()
    await hidden.press("07700 900123".replace(" ", ""))
    assert "call you back" in hidden.said()
    live = await fac.wait_for("checkins.updated", lambda d: d["checkin"]["status"] == "callback")
    assert live["checkin"]["caller"] == "******23"
    never = Phone(live_server.url, "+266696687")
    await never.call("/phone/twilio/checkin")
    await never.press("3")
    await never.press("")
    await never.press("")
    assert "without a number" in never.said()
    _, body = await api(live_server, "GET", "/api/checkins", live_server.admin_token)
    talk = next(c for c in body["checkins"] if c["status"] == "talk")
    assert talk["caller"] == "withheld" and "number" not in talk  # recorded all the same
    callback = next(c for c in body["checkins"] if c["status"] == "callback")
    assert callback["number"] == "07700900123"


async def test_the_floor_and_an_invitation_are_spoken(
    live_server: LiveServer, clients: Any, twilio_rest: RestRecorder
) -> None:
    room, fac, _ = await web_room(live_server, clients)
    phone = Phone(live_server.url, NUMBER)
    await phone.join_room(room["phone_pin"])
    joined = await fac.wait_for("participant.joined", lambda d: d["participant"]["via"] == "phone")
    pid = joined["participant"]["id"]
    await fac.ok("mod.floor.give", {"id": pid})
    rest = await twilio_rest.wait_for("POST", participant_path(phone.sid))
    url = rest.form["AnnounceUrl"]
    assert rest.form["AnnounceMethod"] == "POST"
    assert url.startswith(f"{live_server.url}/phone/twilio/announce?")
    await phone.post(url, raw=True)  # Twilio fetches it, signed, and plays it to the caller
    assert "It is your turn to speak." in phone.last_raw
    assert "Press star, then 6, to unmute." in phone.last_raw
    await phone.star()
    await phone.press("0")  # every way back into the room says it while the turn is theirs
    assert "It is your turn to speak." in phone.said()
    twilio_rest.requests.clear()
    await fac.ok("mod.ask_unmute", {"id": pid})
    rest = await twilio_rest.wait_for("POST", participant_path(phone.sid))
    await phone.post(rest.form["AnnounceUrl"], raw=True)
    assert "A facilitator invites you to speak." in phone.last_raw
    await phone.post("/phone/twilio/announce?notice=nonsense&call=x", raw=True)
    assert phone.last_status == 200 and "<Say>" not in phone.last_raw
    await phone.post("/phone/twilio/announce?notice=floor", raw=True, signature="bad")
    assert phone.last_status == 403


async def test_behind_a_proxy(server_factory: Any, clients: Any, twilio_rest: RestRecorder) -> None:
    """With PEERROOM_TWILIO_WEBHOOK_BASE, signatures are checked against the public URL
    and every URL we hand Twilio is absolute on it."""
    public = "https://peerroom.example.org"
    server = await server_factory(
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN,
        twilio_api_base=twilio_rest.url,
        twilio_webhook_base=public + "/",
    )
    room = await server.create_room()
    phone = Phone(server.url, NUMBER, public_base=public)
    await phone.call()
    gather = phone.twiml.find("Gather")
    assert gather is not None and gather.get("action", "").startswith(public + "/phone/twilio/")
    await phone.press("1")
    await phone.press(room["phone_pin"])
    conf = phone.conference()
    assert conf is not None and conf.get("statusCallback") == public + "/phone/twilio/conference"
    # signed for the local address instead of the public one: refused
    local = Phone(server.url, NUMBER)
    await local.post("/phone/twilio/voice", raw=True)
    assert local.last_status == 403


async def test_talk_now_is_put_through_when_a_number_is_set(
    server_factory: Any, twilio_rest: RestRecorder
) -> None:
    server = await server_factory(
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN,
        twilio_api_base=twilio_rest.url,
        twilio_talk_number="+15550109999",
    )
    for outcome, words in (("completed", "Goodbye."), ("no-answer", "nobody could answer")):
        phone = Phone(server.url, NUMBER)
        await phone.call("/phone/twilio/checkin")
        await phone.press("3")
        assert "Putting you through" in phone.said()
        dial = phone.twiml.find("Dial")
        assert dial is not None and (dial.findtext("Number") or "") == "+15550109999"
        await phone.post(dial.get("action", ""), DialCallStatus=outcome)
        assert words in phone.said() and phone.hung_up()
    _, body = await api(server, "GET", "/api/checkins", server.admin_token)
    talks = [c for c in body["checkins"] if c["status"] == "talk"]
    assert len(talks) == 2 and all(c["number"] == NUMBER for c in talks)  # open until resolved
