"""The optional msgpack wire: `?wire=msgpack` on the page, `--wire msgpack` on the server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from playwright.async_api import expect

from tests.support import LiveServer

from .conftest import WIDE, PersonFactory

pytestmark = pytest.mark.browser


async def test_msgpack_wire_works_end_to_end(
    server_factory: Callable[..., Awaitable[LiveServer]], people: PersonFactory
) -> None:
    server = await server_factory(wire="msgpack")
    room = await server.create_room("Binary circle")
    fac = await people("Fay", WIDE)
    ana = await people("Ana", WIDE)
    await fac.join(room["facilitator_url"] + "?wire=msgpack")
    await ana.join(room["invite_url"] + "?wire=msgpack")
    await ana.page.get_by_role("button", name="Raise my hand").click()
    await expect(fac.tile("Ana")).to_contain_text("Hand up, 1st")
    await ana.page.get_by_label("Your message").fill("packed")
    await ana.page.get_by_role("button", name="Send", exact=True).click()
    await expect(fac.page.get_by_role("log").get_by_text("packed")).to_be_visible()
