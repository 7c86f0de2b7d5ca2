"""Storage failing under the phone line: a coded answer or a spoken sorry, never a 500,
and a caller asking for a call back is told to try again rather than silently lost."""

from __future__ import annotations

from typing import Any

from server.keys import STORAGE
from tests.phone.conftest import web_room
from tests.phone.test_checkins import api
from tests.phone.twilio_sim import Phone
from tests.support import LiveServer


async def test_storage_gone(live_server: LiveServer, clients: Any, bridges: Any) -> None:
    room, fac, _ = await web_room(live_server, clients)
    other = await live_server.create_room("Never called since start")
    b = await bridges()
    first = await b.ok(
        "call.join", {"call_id": "d1", "pin": room["phone_pin"], "caller": "+15550100042"}
    )
    await b.ok("call.keys", {"call_id": "d1", "digits": "*9"})
    await b.sio.disconnect()  # the line drops...
    await fac.wait_for("participant.updated", lambda d: d["participant"]["connected"] is False)
    await live_server.app[STORAGE].close()  # ...and the database goes away
    b = await bridges()
    # a PIN looked up before the outage is remembered: the caller comes back to their place
    back = await b.ok(
        "call.join", {"call_id": "d2", "pin": room["phone_pin"], "caller": "+15550100042"}
    )
    assert back["participant_id"] == first["participant_id"]
    assert (await b.ok("call.keys", {"call_id": "d2", "digits": "#"}))["position"] == 1

    checkin = {"call_id": "c", "caller": "+15550100042", "status": "callback"}
    assert await b.error("checkin.create", checkin) == "unavailable"
    # a PIN never looked up cannot be checked: a coded answer
    assert await b.error("call.join", {"call_id": "j", "pin": other["phone_pin"]}) == "unavailable"
    assert b.sio.connected

    phone = Phone(live_server.url, "+15550100042")
    await phone.call("/phone/twilio/checkin")
    await phone.press("2")
    assert "could not save that. Please try again." in phone.said()
    assert phone.twiml.find("Gather") is not None and not phone.hung_up()

    joiner = Phone(live_server.url, "+15550100043")
    await joiner.call()
    await joiner.press("1")
    await joiner.press(other["phone_pin"])
    assert "something went wrong on our side" in joiner.said() and joiner.last_status == 200

    status, body = await api(live_server, "GET", "/api/checkins", live_server.admin_token)
    assert status == 503 and body["error"]["code"] == "unavailable"
