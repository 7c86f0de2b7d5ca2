from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.phone.bridge_client import Bridge
from tests.phone.twilio_sim import ACCOUNT_SID, AUTH_TOKEN, RestRecorder
from tests.support import Client, LiveServer, fresh_pg_database

BRIDGE_TOKEN = "test-bridge-token"


@pytest.fixture
async def twilio_rest() -> AsyncIterator[RestRecorder]:
    recorder = RestRecorder()
    await recorder.start()
    yield recorder
    await recorder.stop()


PHONE_SETTINGS: dict[str, Any] = {
    "bridge_token": BRIDGE_TOKEN,
    "grace_secs": 2.0,  # short, to watch a dropped call's place expire
    "twilio_account_sid": ACCOUNT_SID,
    "twilio_auth_token": AUTH_TOKEN,
}


@pytest.fixture
async def live_server(
    server_factory: Callable[..., Awaitable[LiveServer]], twilio_rest: RestRecorder
) -> LiveServer:
    """The phone tests' server: a bridge token, Twilio webhooks whose REST API is the
    local recorder, and a short grace."""
    return await server_factory(**PHONE_SETTINGS, twilio_api_base=twilio_rest.url)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest) -> AsyncIterator[str | None]:
    """None (SQLite in the data dir), or a fresh PostgreSQL database on 127.0.0.1:5432
    dropped afterwards (tests/storage/conftest.py does the same for its suite)."""
    if request.param == "sqlite":
        yield None
        return
    async with fresh_pg_database("phone") as url:
        yield url


@pytest.fixture
async def bridges(live_server: LiveServer) -> AsyncIterator[Callable[..., Any]]:
    made: list[Bridge] = []

    async def make(token: str | None = BRIDGE_TOKEN) -> Bridge:
        b = Bridge(live_server.url)
        made.append(b)
        if token is not None:
            await b.connect(token)
        return b

    yield make
    for b in made:
        await b.close()


async def web_room(
    live_server: LiveServer, clients: Callable[[], Client], **settings: Any
) -> tuple[dict[str, Any], Client, dict[str, Any]]:
    """A room with its facilitator on the web: (room, facilitator client, welcome)."""
    room = await live_server.create_room(**settings)
    fac = clients()
    welcome = await fac.join(room["facilitator_token"], "Ann")
    return room, fac, welcome


def checkin_with(key: str, value: str) -> Callable[[Any], bool]:
    """A ``checkins.updated`` payload whose check-in has ``key == value``."""
    return lambda d: bool(d["checkin"][key] == value)
