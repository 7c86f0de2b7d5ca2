"""When something the server needs fails, people get a coded answer, never silence."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

from server.keys import STORAGE
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
