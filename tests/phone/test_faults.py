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
    room, _, _ = await web_room(live_server, clients)
    b = await bridges()
    await live_server.app[STORAGE].close()

    checkin = {"call_id": "c", "caller": "+15550100042", "status": "callback"}
    assert await b.error("checkin.create", checkin) == "unavailable"
    assert await b.error("call.join", {"call_id": "j", "pin": room["phone_pin"]}) == "unavailable"
    assert b.sio.connected

    phone = Phone(live_server.url, "+15550100042")
    await phone.call("/phone/twilio/checkin")
    await phone.press("2")
    assert "could not save that. Please try again." in phone.said()
    assert phone.twiml.find("Gather") is not None and not phone.hung_up()

    joiner = Phone(live_server.url, "+15550100043")
    await joiner.call()
    await joiner.press("1")
    await joiner.press(room["phone_pin"])
    assert "something went wrong on our side" in joiner.said() and joiner.last_status == 200

    status, body = await api(live_server, "GET", "/api/checkins", live_server.admin_token)
    assert status == 503 and body["error"]["code"] == "unavailable"
