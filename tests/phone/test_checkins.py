"""The check-in queue: created by a bridge, read and resolved by peer support workers."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from tests.phone.conftest import PHONE_SETTINGS, checkin_with, web_room
from tests.phone.twilio_sim import RestRecorder
from tests.support import LiveServer


@pytest.fixture
async def live_server(
    server_factory: Any, twilio_rest: RestRecorder, database_url: str | None
) -> LiveServer:
    """The queue on both storage backends."""
    server: LiveServer = await server_factory(
        **PHONE_SETTINGS, twilio_api_base=twilio_rest.url, database_url=database_url
    )
    return server


async def api(server: LiveServer, method: str, path: str, token: str | None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{server.url}{path}", headers=headers) as r,
    ):
        return r.status, await r.json()


async def test_requests_to_be_called_from_one_number_are_bounded(
    live_server: LiveServer, clients: Any, bridges: Any
) -> None:
    """Automated calls from one number must not bury real requests in the queue (nor
    ring the talk number over and over): past 3 an hour a new call's request is not
    stored again and the caller is told theirs is with the team. A bridge's retry of one
    already made (the same call) still gets its id; others are not held back."""
    from server.phone.lines import CALL_REQUESTS_PER_CALLER

    room, _fac, _ = await web_room(live_server, clients)
    b = await bridges()
    spam = "+1 555 010 0666"
    ids = []
    for n in range(CALL_REQUESTS_PER_CALLER):
        status = "callback" if n % 2 else "talk"
        ack = await b.ok("checkin.create", {"call_id": f"s{n}", "caller": spam, "status": status})
        ids.append(ack["id"])
    over = await b.call("checkin.create", {"call_id": "s-more", "caller": spam, "status": "talk"})
    assert over["ok"] is False and over["error"]["code"] == "rate_limited"
    assert "with the team" in over["error"]["message"]
    last = CALL_REQUESTS_PER_CALLER - 1
    retry = {"call_id": f"s{last}", "caller": spam, "status": "callback" if last % 2 else "talk"}
    assert (await b.ok("checkin.create", retry))["id"] == ids[-1]  # a retry: same record
    # "I'm OK" is no request to be called; another number is not held back.
    await b.ok("checkin.create", {"call_id": "s-ok", "caller": spam, "status": "ok"})
    await b.ok("checkin.create", {"call_id": "x1", "caller": "+15550100017", "status": "talk"})
    _, body = await api(live_server, "GET", "/api/checkins", room["facilitator_token"])
    from_spam = [c for c in body["checkins"] if c["caller"].endswith("66")]
    assert len([c for c in from_spam if c["status"] != "ok"]) == CALL_REQUESTS_PER_CALLER


async def test_checkins_from_a_bridge(live_server: LiveServer, clients: Any, bridges: Any) -> None:
    room, fac, _ = await web_room(live_server, clients)
    b = await bridges()
    ids: dict[str, str] = {}
    for n, kind in enumerate(("ok", "callback", "talk")):
        ack = await b.ok(
            "checkin.create", {"call_id": f"c{n}", "caller": f"+1 555 010 00{n}7", "status": kind}
        )
        ids[kind] = ack["id"]
        live = await fac.wait_for("checkins.updated", checkin_with("id", ack["id"]))
        assert live["checkin"]["caller"] == f"******{n}7"
        assert "number" not in live["checkin"]  # live events never carry the number
    # a repeated check-in (a bridge retry) is the same record, announced once
    again = await b.ok(
        "checkin.create", {"call_id": "c1", "caller": "+15550100017", "status": "callback"}
    )
    assert again["id"] == ids["callback"]
    assert len(fac.received("checkins.updated")) == 3
    withheld = await b.ok(
        "checkin.create", {"call_id": "c9", "caller": "anonymous", "status": "callback"}
    )

    status, body = await api(live_server, "GET", "/api/checkins", room["facilitator_token"])
    assert status == 200
    by_id = {c["id"]: c for c in body["checkins"]}
    assert by_id[ids["ok"]]["caller"] == "******07" and "number" not in by_id[ids["ok"]]
    assert by_id[ids["callback"]]["number"] == "+15550100017"
    assert by_id[ids["talk"]]["number"] == "+15550100027"
    assert by_id[withheld["id"]]["caller"] == "withheld" and "number" not in by_id[withheld["id"]]
    # Open requests for a call first, the longest waiting first; then the rest.
    order = [ids["callback"], ids["talk"], withheld["id"], ids["ok"]]
    assert [c["id"] for c in body["checkins"]] == order and body["partial"] is False

    assert (await api(live_server, "GET", "/api/checkins", None))[0] == 401
    assert (await api(live_server, "GET", "/api/checkins", room["invite_token"]))[0] == 403
    assert (await api(live_server, "GET", "/api/checkins", "garbage"))[0] == 403

    path = f"/api/checkins/{ids['callback']}/resolve"
    assert (await api(live_server, "POST", path, room["invite_token"]))[0] == 403
    status, body = await api(live_server, "POST", path, live_server.admin_token)
    assert status == 200 and body == {"ok": True, "id": ids["callback"]}
    resolved = await fac.wait_for(
        "checkins.updated",
        lambda d: d["checkin"]["id"] == ids["callback"] and d["checkin"]["resolved_at"],
    )
    assert resolved["checkin"]["resolved_by"] == "admin"
    status, body = await api(live_server, "GET", "/api/checkins", live_server.admin_token)
    assert ids["callback"] not in {c["id"] for c in body["checkins"]}
    status, body = await api(
        live_server, "GET", "/api/checkins?resolved=1", live_server.admin_token
    )
    assert ids["callback"] in {c["id"] for c in body["checkins"]}
    assert (await api(live_server, "POST", "/api/checkins/nope/resolve", live_server.admin_token))[
        0
    ] == 404
    long = "/api/checkins/" + "x" * 500 + "/resolve"
    assert (await api(live_server, "POST", long, live_server.admin_token))[0] == 404


async def test_a_resent_checkin_while_the_first_is_in_flight_is_one_record(
    live_server: LiveServer, bridges: Any
) -> None:
    """A bridge resends after an ack timeout, on a new connection, while the database is
    slow: the requests are in flight at once, and they must still make one record."""
    connections = [await bridges() for _ in range(3)]
    checkin = {"call_id": "r1", "caller": "+15550100077", "status": "callback"}
    acks = await asyncio.gather(*(b.ok("checkin.create", checkin) for b in connections))
    assert len({a["id"] for a in acks}) == 1
    _, body = await api(live_server, "GET", "/api/checkins", live_server.admin_token)
    assert [c["id"] for c in body["checkins"]] == [acks[0]["id"]]


async def test_no_full_number_in_the_log(
    live_server: LiveServer, bridges: Any, clients: Any, caplog: Any
) -> None:
    room, _, _ = await web_room(live_server, clients)
    b = await bridges()
    caplog.set_level("DEBUG")
    await b.ok("call.join", {"call_id": "x1", "pin": room["phone_pin"], "caller": "+15550199988"})
    await b.ok("call.keys", {"call_id": "x1", "digits": "*9"})
    await b.ok("checkin.create", {"call_id": "x2", "caller": "+15550199988", "status": "talk"})
    await b.close()
    # the log did record the call and the check-in (so the check below can see them),
    # with the caller masked to the last two digits
    assert "call x1 joined room" in caplog.text
    assert ": talk from ******88" in caplog.text
    assert "5550199988" not in caplog.text
