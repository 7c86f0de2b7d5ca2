"""The page's transports (websocket first, long-polling as the fallback) and the optional
msgpack wire: `?wire=msgpack` on the page, `--wire msgpack` on the server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from playwright.async_api import expect

from server.app import SIO
from server.eio_direct import direct_connection
from tests.support import LiveServer

from .conftest import WIDE, PersonFactory

pytestmark = pytest.mark.browser

REFUSED_WEBSOCKET = """
window.WebSocket = class RefusedWebSocket extends EventTarget {
  static CONNECTING = 0; static OPEN = 1; static CLOSING = 2; static CLOSED = 3;
  constructor(url) {
    super();
    this.url = url; this.readyState = 0; this.binaryType = "blob";
    setTimeout(() => {
      this.readyState = 3;
      if (this.onerror) this.onerror(new Event("error"));
      if (this.onclose) this.onclose(new CloseEvent("close", {code: 1006}));
    }, 20);
  }
  send() { throw new Error("not open"); }
  close() {}
};
"""


async def test_msgpack_wire_works_end_to_end(
    server_factory: Callable[..., Awaitable[LiveServer]], people: PersonFactory
) -> None:
    server = await server_factory(wire="msgpack")
    room = await server.create_room("Binary circle")
    fac = await people("Fay", WIDE)
    ana = await people("Ana", WIDE)
    # The links as the server hands them out: they say msgpack (the page cannot tell).
    assert room["invite_url"].endswith("?wire=msgpack")
    await fac.join(room["facilitator_url"])
    await ana.join(room["invite_url"])
    await ana.page.get_by_role("button", name="Raise my hand").click()
    await expect(fac.tile("Ana")).to_contain_text("Hand up, 1st")
    await ana.page.get_by_label("Your message").fill("packed")
    await ana.page.get_by_role("button", name="Send", exact=True).click()
    await expect(fac.page.get_by_role("log").get_by_text("packed")).to_be_visible()


async def test_the_page_opens_on_a_websocket_and_takes_the_lean_path(
    live_server: LiveServer, people: PersonFactory
) -> None:
    room = await live_server.create_room()
    ana = await people("Ana", WIDE, tap=True)
    polls: list[str] = []
    ana.page.on("request", lambda r: polls.append(r.url) if "transport=polling" in r.url else None)
    await ana.join(room["invite_url"])
    assert ana.tap.opened_here, "the session did not open on the websocket"
    assert polls == []
    sockets = list(live_server.app[SIO].eio.sockets.values())
    assert len(sockets) == 1 and direct_connection(sockets[0]) is not None


async def test_a_blocked_websocket_falls_back_to_long_polling(
    live_server: LiveServer, people: PersonFactory
) -> None:
    """Behind a proxy that refuses websockets, people still get in, on long-polling."""
    room = await live_server.create_room()
    fac = await people("Fay", WIDE)
    ana = await people("Ana", WIDE)
    # What a browser shows behind such a proxy: the websocket never opens, it fails
    # (an error, then a close with code 1006).
    await ana.page.add_init_script(REFUSED_WEBSOCKET)
    polls: list[str] = []
    ana.page.on("request", lambda r: polls.append(r.url) if "transport=polling" in r.url else None)
    await fac.join(room["facilitator_url"])
    await ana.join(room["invite_url"])
    assert polls, "the page did not fall back to long-polling"
    await ana.page.get_by_role("button", name="Raise my hand").click()
    await expect(fac.tile("Ana")).to_contain_text("Hand up, 1st")
    await fac.page.get_by_label("Your message").fill("still here")
    await fac.page.get_by_role("button", name="Send", exact=True).click()
    await expect(ana.page.get_by_role("log").get_by_text("still here")).to_be_visible()
