"""Storage failing under the phone line: a coded answer or a spoken sorry, never a 500,
and a check-in is kept on the node's disk until the database takes it, never lost."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from server.keys import SERVICE, STORAGE
from server.phone.pending import PENDING_GLOB, PendingCheckins
from server.storage.base import CheckinRecord
from server.storage.sqlite import SqliteStorage
from tests.phone.bridge_client import Bridge
from tests.phone.conftest import BRIDGE_TOKEN, PHONE_SETTINGS, checkin_with, web_room
from tests.phone.test_checkins import api
from tests.phone.twilio_sim import Phone, RestRecorder
from tests.storage.helpers import TcpProxy
from tests.support import LiveServer, fresh_pg_database, start_server


def kept_on_disk(data_dir: Path) -> list[dict[str, Any]]:
    """Every check-in kept in the data dir's pending files (each must be mode 0600)."""
    records: list[dict[str, Any]] = []
    for path in sorted(data_dir.glob(PENDING_GLOB)):
        assert path.stat().st_mode & 0o777 == 0o600, path
        records += json.loads(path.read_text())
    return records


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

    # a check-in is kept on disk (the database is gone) and moderators hear of it
    checkin = {"call_id": "c", "caller": "+15550100042", "status": "callback"}
    kept = await b.ok("checkin.create", checkin)
    live = await fac.wait_for("checkins.updated", checkin_with("id", kept["id"]))
    assert live["checkin"]["caller"] == "******42"
    assert (await b.ok("checkin.create", checkin))["id"] == kept["id"]  # a retry: the same
    data_dir = live_server.settings.data_dir
    assert [r["id"] for r in kept_on_disk(data_dir)] == [kept["id"]]
    # a PIN never looked up cannot be checked: a coded answer
    assert await b.error("call.join", {"call_id": "j", "pin": other["phone_pin"]}) == "unavailable"
    assert b.sio.connected

    phone = Phone(live_server.url, "+15550100044")
    await phone.call("/phone/twilio/checkin")
    await phone.press("2")
    assert "Someone from the team will call you back" in phone.said() and phone.hung_up()
    await fac.wait_for("checkins.updated", checkin_with("caller", "******44"))
    assert len(kept_on_disk(data_dir)) == 2

    joiner = Phone(live_server.url, "+15550100043")
    await joiner.call()
    await joiner.press("1")
    await joiner.press(other["phone_pin"])
    assert "something went wrong on our side" in joiner.said() and joiner.last_status == 200

    # The queue page still shows them (before: a 503, which hid exactly these), and says
    # the list is partial: only what this node keeps on its disk.
    status, body = await api(live_server, "GET", "/api/checkins", live_server.admin_token)
    assert status == 200 and body["partial"] is True
    assert [c["caller"] for c in body["checkins"]] == ["******42", "******44"]  # oldest first
    assert body["checkins"][0]["id"] == kept["id"]
    assert body["checkins"][0]["number"] == "+15550100042"


@pytest.fixture
async def pg_proxy() -> AsyncIterator[tuple[str, TcpProxy]]:
    """A fresh PostgreSQL database, and a proxy to it the test can cut: (url via the
    proxy, proxy). The database is dropped afterwards."""
    async with fresh_pg_database("phone") as direct:
        parts = urlsplit(direct)
        proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
        await proxy.start()
        try:
            netloc = f"{parts.username}@127.0.0.1:{proxy.port}"
            yield urlunsplit(parts._replace(netloc=netloc)), proxy
        finally:
            await proxy.stop()


async def stored_checkin(server: LiveServer, checkin_id: str) -> CheckinRecord | None:
    return await server.app[STORAGE].get_checkin(checkin_id)


async def until(check: Callable[[], bool], within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


@pytest.mark.postgres
@pytest.mark.redis_pass
async def test_checkins_outlive_an_outage_and_a_restart(
    pg_proxy: tuple[str, TcpProxy], twilio_rest: RestRecorder, tmp_path: Path
) -> None:
    """PostgreSQL goes away: call-back requests are kept on disk, listed, resolvable;
    stored when it returns, by this run or, if it stopped first, by the next one."""
    url, proxy = pg_proxy
    settings = {**PHONE_SETTINGS, "twilio_api_base": twilio_rest.url, "database_url": url}
    server = await start_server(tmp_path / "data", **settings)
    bridge = Bridge(server.url)
    try:
        room = await server.create_room()
        await bridge.connect(BRIDGE_TOKEN)
        stored = await bridge.ok(
            "checkin.create", {"call_id": "a", "caller": "+15550100011", "status": "ok"}
        )
        await proxy.stop()  # PostgreSQL is gone
        first = await bridge.ok(
            "checkin.create", {"call_id": "b", "caller": "+15550100022", "status": "callback"}
        )
        second = await bridge.ok(
            "checkin.create", {"call_id": "c", "caller": "+15550100033", "status": "talk"}
        )
        third = await bridge.ok(
            "checkin.create", {"call_id": "d", "caller": "+15550100044", "status": "callback"}
        )
        status, body = await api(server, "GET", "/api/checkins", server.admin_token)
        # The stored ones cannot be read; the kept ones are listed, the longest waiting first.
        assert status == 200 and body["partial"] is True
        assert [c["id"] for c in body["checkins"]] == [first["id"], second["id"], third["id"]]
        # a peer support worker called the second one back already
        path = f"/api/checkins/{second['id']}/resolve"
        status, body = await api(server, "POST", path, room["facilitator_token"])
        assert status == 200 and body == {"ok": True, "id": second["id"]}

        await proxy.start()  # back: what was kept is stored, the file goes
        data_dir = server.settings.data_dir
        await until(lambda: not kept_on_disk(data_dir))
        got = await stored_checkin(server, first["id"])
        assert got is not None and got.caller_full == "+15550100022" and got.resolved_at is None
        talked = await stored_checkin(server, second["id"])
        assert talked is not None and talked.resolved_by is not None
        assert talked.resolved_by.startswith("facilitator")
        status, body = await api(server, "GET", "/api/checkins", server.admin_token)
        listed = [c["id"] for c in body["checkins"]]
        assert status == 200 and listed == [first["id"], third["id"], stored["id"]]
        assert body["partial"] is False
        assert body["checkins"][0]["number"] == "+15550100022"

        await proxy.stop()  # gone again, and this time the node stops before it returns
        last = await bridge.ok(
            "checkin.create", {"call_id": "e", "caller": "+15550100055", "status": "callback"}
        )
    finally:
        await bridge.close()
        await server.stop()
    assert [r["id"] for r in kept_on_disk(data_dir)] == [last["id"]]

    await proxy.start()
    server = await start_server(tmp_path / "data", **settings)
    try:
        await until(lambda: not kept_on_disk(data_dir))
        got = await stored_checkin(server, last["id"])
        assert got is not None and got.caller_full == "+15550100055"
    finally:
        await server.stop()


async def test_a_saved_checkin_is_said_saved_even_if_moderators_cannot_be_told(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Telling live sessions is a courtesy; the caller must not hear "not saved" (and
    call again and again) because it failed after the check-in was stored."""

    async def notice_lost(event: str, payload: dict[str, Any]) -> None:
        raise RuntimeError("the notice could not be sent")

    monkeypatch.setattr(live_server.app[SERVICE], "notify_moderators", notice_lost)
    phone = Phone(live_server.url, "+15550100066")
    await phone.call("/phone/twilio/checkin")
    await phone.press("2")
    assert "Someone from the team will call you back" in phone.said() and phone.hung_up()
    _, body = await api(live_server, "GET", "/api/checkins", live_server.admin_token)
    assert [c["number"] for c in body["checkins"]] == ["+15550100066"]


async def test_kept_checkins_in_a_new_or_shared_data_dir(tmp_path: Path) -> None:
    """The data dir may not exist yet (secrets and database from the environment), and
    nodes may share one (scripts/two-nodes.sh): each process keeps its own file, and
    the next start takes them all."""
    down = await SqliteStorage.open(tmp_path / "gone.sqlite3")
    await down.close()  # the database is away
    shared = tmp_path / "not" / "yet"
    first, second = PendingCheckins(down, shared), PendingCheckins(down, shared)
    one = CheckinRecord("k1", None, "c1", "callback", "******11", "+15550100011", 1.0)
    two = CheckinRecord("k2", None, "c2", "callback", "******22", "+15550100022", 2.0)
    first.start()
    second.start()
    assert first.keep(one) == one and second.keep(two) == two
    assert len(list(shared.glob(PENDING_GLOB))) == 2
    assert sorted(r["id"] for r in kept_on_disk(shared)) == ["k1", "k2"]
    await first.close()
    await second.close()
    up = await SqliteStorage.open(tmp_path / "back.sqlite3")
    third = PendingCheckins(up, shared)
    third.start()
    try:
        await until(lambda: not kept_on_disk(shared))
        assert await up.get_checkin("k1") == one and await up.get_checkin("k2") == two
    finally:
        await third.close()
        await up.close()
