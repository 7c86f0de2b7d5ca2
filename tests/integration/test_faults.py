"""When something the server needs fails, people get a coded answer, never silence."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from rooms import commands as c
from server.keys import LIVE, METRICS, SERVICE, STORAGE
from tests.support import Client, LiveServer


async def test_storage_gone_refuses_joins_with_a_code_and_health_says_503(
    live_server: LiveServer, clients: Callable[..., Client]
) -> None:
    room = await live_server.create_room()
    unseen = await live_server.create_room("Never joined since start")
    fac = clients()
    await fac.join(room["facilitator_token"], "Ann")
    await live_server.app[STORAGE].close()  # the database file is gone from under us
    # A room this server has not looked up cannot be checked: a coded refusal.
    err = await clients().refused(unseen["invite_token"], "Bo")
    assert err["data"]["code"] == "unavailable"
    assert "try again" in err["data"]["message"]
    # A room looked up before the outage is remembered: people can still come in (or
    # back, after a dropped phone) while the database is away.
    await clients().join(room["invite_token"], "Cy")
    async with aiohttp.ClientSession() as http, http.get(f"{live_server.url}/healthz") as r:
        assert r.status == 503
        assert (await r.json())["storage"] is False
    # The live room itself goes on.
    assert (await fac.ok("hand.raise"))["position"] == 1


async def test_a_line_closed_while_its_join_is_decided_leaves_no_ghost(
    server_factory: Callable[..., Awaitable[LiveServer]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The room lookup is slow (a cold cache, a busy database) and the person closes
    the tab meanwhile: python-socketio skips the disconnect handler of a connection
    still in its handshake, and the person stayed "connected" for good, their name
    taken, with no welcome and no resume token to come back with."""
    server = await server_factory(grace_secs=1.0)
    room = await server.create_room()
    service = server.app[SERVICE]
    real_get_room = service.storage.get_room
    looking, go_on = asyncio.Event(), asyncio.Event()

    async def slow_get_room(room_id: str) -> Any:
        looking.set()
        await go_on.wait()
        return await real_get_room(room_id)

    monkeypatch.setattr(service.storage, "get_room", slow_get_room)
    base = f"{server.url}/socket.io/?EIO=4&transport=polling"
    async with aiohttp.ClientSession() as http:
        async with http.get(base) as r:
            sid = json.loads((await r.text())[1:])["sid"]
        url = f"{base}&sid={sid}"
        auth = json.dumps({"token": room["invite_token"], "name": "Ghost"})
        join = asyncio.ensure_future(http.post(url, data="40" + auth))
        async with asyncio.timeout(5):
            await looking.wait()  # the join is waiting for the slow lookup
        async with http.post(url, data="1") as r:  # an Engine.IO close: the tab closed
            assert r.status == 200
        await asyncio.sleep(0.2)  # the close handled first, then the lookup answers
        go_on.set()
        (await join).release()
    monkeypatch.setattr(service.storage, "get_room", real_get_room)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while service.conns or server.app[METRICS].connections._value.get() != 0:
        assert loop.time() < deadline, "the closed connection is still counted"
        await asyncio.sleep(0.05)
    # Shown dropped (on Redis a moment after the count: the Drop is a commit of its own),
    # never "connected" for good.
    while True:
        state = await server.app[LIVE].get(room["room_id"])
        assert state is not None and len(state.participants) == 1
        if not state.participants[0].connected:
            break
        assert loop.time() < deadline, "the closed connection still shows connected"
        await asyncio.sleep(0.02)
    while (state := await server.app[LIVE].get(room["room_id"])) is not None:
        assert loop.time() < deadline + 5, "the dropped place was never let go"
        await asyncio.sleep(0.1)  # the 1 s grace, then the clock's tick
    person = Client(server.url)
    try:
        again = await person.join(room["invite_token"], "Ghost")  # the name is free again
        assert [p["name"] for p in again["room"]["participants"]] == ["Ghost"]
    finally:
        await person.close()


async def test_a_drop_the_clock_could_not_make_is_kept_for_the_next_tick(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A drop waiting to be made (its live state was away) that then fails some other
    way (a state that cannot be read, a delivery that raises) was thrown away with the
    rest of the tick's batch: the person stayed "connected" for good."""
    service = live_server.app[SERVICE]
    drops = [("room-1", c.Drop("p1", "n:sid1")), ("room-2", c.Drop("p2", "n:sid2"))]
    service._unsent_drops.extend(drops)

    async def failing(*_: Any, **__: Any) -> Any:
        raise RuntimeError("a state that cannot be read")

    monkeypatch.setattr(service, "execute", failing)
    await service.tick()
    assert service._unsent_drops == drops
