"""Browser test helpers: Debian's chromium driven by Playwright's async API.

The `live_server` fixture (the real server, in-process) comes from
tests/conftest.py. Nothing here downloads a browser: chromium is Debian's.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    Page,
    ViewportSize,
    WebSocketRoute,
    async_playwright,
    expect,
)

from tests.support import TEARDOWN_SECS, LiveServer

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "web" / "dist"
AXE = ROOT / "web" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WIDE: ViewportSize = {"width": 1280, "height": 860}
NARROW: ViewportSize = {"width": 360, "height": 740}
EXPECT_TIMEOUT_MS = 10_000  # 2 shared cores: give the UI time to catch up

expect.set_options(timeout=EXPECT_TIMEOUT_MS)


async def _close_or_leave(closing: Awaitable[None], what: str) -> None:
    """Close a Playwright object within TEARDOWN_SECS, else warn and go on: a close that
    hangs in chromium or Playwright's driver is not the server's doing, and leaving the
    playwright context kills the driver and the browser with it. (The server's own stop
    is bounded the same way but fails the test: tests/conftest.py.)"""
    try:
        async with asyncio.timeout(TEARDOWN_SECS):
            await closing
    except TimeoutError:
        warnings.warn(
            f"closing {what} took over {TEARDOWN_SECS:g} s; left to the driver's exit",
            stacklevel=2,
        )


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert (DIST / "index.html").exists(), (
        "build the client first: npm ci --prefix web && npm run build --prefix web"
    )
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await _close_or_leave(b.close(), "the browser")


class WsTap:
    """Carries a page's Socket.IO websocket through Playwright, so a test can
    cut the connection (a phone in a tunnel) or lose one frame (a gap in seq)."""

    def __init__(self) -> None:
        self.blocked = False
        self.routes: list[WebSocketRoute] = []
        self.server_sides: list[WebSocketRoute] = []
        self.drop_next: Callable[[str], bool] | None = None
        self.dropped: list[str] = []
        self.seen: list[str] = []  # text frames from the server, in order
        self.upgraded = False  # the traffic rides the tapped websocket
        self.opened_here = False  # a session opened on a websocket, not upgraded to one
        self.stalled = False  # frames both ways are swallowed: a line gone quiet, not closed

    async def handle(self, ws: WebSocketRoute) -> None:
        if self.blocked:
            # Closed from the server's side, as a dead network ends it: a mocked
            # socket closed from here would leave the page waiting on it.
            server = ws.connect_to_server()
            await server.close()
            await ws.close()
            return
        server = ws.connect_to_server()
        self.routes.append(ws)
        self.server_sides.append(server)

        def from_server(msg: str | bytes) -> None:
            if self.stalled:
                return
            text = msg if isinstance(msg, str) else ""
            if text.startswith("0{"):  # Engine.IO open: the session began on this socket
                self.opened_here = True
                self.upgraded = True
            self.seen.append(text)
            if self.drop_next is not None and self.drop_next(text):
                self.drop_next = None
                self.dropped.append(text)
                return
            ws.send(msg)

        def from_page(msg: str | bytes) -> None:
            if self.stalled:
                return
            if msg == "5":  # Engine.IO upgrade done: from now on everything rides here
                self.upgraded = True
            server.send(msg)

        server.on_message(from_server)
        ws.on_message(from_page)

    async def cut(self) -> None:
        self.blocked = True
        self.upgraded = False
        for ws in self.routes:
            await ws.close()
        self.routes.clear()

    def replay(self, frame: str) -> None:
        """Deliver an old server frame again (a duplicate, as after a reconnect)."""
        for ws in self.routes:
            ws.send(frame)

    def restore(self) -> None:
        self.blocked = False

    async def close_all(self) -> None:
        """Close the server side of every proxied socket: a closed page does not
        always do it, and the server would wait for the lingering socket on stop."""
        for server in self.server_sides:
            with contextlib.suppress(Exception):
                await server.close()
        self.server_sides.clear()


class Person:
    """One person in one browser context."""

    def __init__(self, context: BrowserContext, page: Page, name: str, tap: WsTap) -> None:
        self.context = context
        self.page = page
        self.name = name
        self.tap = tap
        self.polling_blocked = False
        self.problems: list[str] = []  # uncaught errors and CSP refusals in the page
        self.watch(page)

    def watch(self, page: Page) -> None:
        page.on("pageerror", lambda e: self.problems.append(f"uncaught: {e}"))
        page.on(
            "console",
            lambda m: (
                self.problems.append(f"console: {m.text}")
                if m.type == "error" and "Content Security Policy" in m.text
                else None
            ),
        )

    async def join(self, url: str, *, expect_room: bool = True) -> None:
        await self.page.goto(url)
        await self.page.get_by_label("Your name in the group").fill(self.name)
        await self.page.get_by_role("button", name="Join the group").click()
        if expect_room:
            await expect(self.page.get_by_role("button", name="Raise my hand")).to_be_visible()

    def tile(self, name: str) -> Any:
        return self.page.locator("li.tile").filter(
            has=self.page.locator(
                ".tile-name", has_text=re.compile(rf"^{re.escape(name)}( \(you\))?$")
            )
        )

    def queue(self) -> Any:
        return self.page.get_by_role("region", name=re.compile(r"^Hands raised"))

    def controls(self) -> Any:
        return self.page.get_by_role("region", name="Your controls")

    def announcer(self) -> Any:
        return self.page.locator("#announcer")

    async def wait_for_websocket(self) -> None:
        """Wait until the tapped websocket (which a test can cut) carries the traffic:
        at once for a session opened on it, after the upgrade for one that began on
        long-polling (the fallback)."""
        for _ in range(100):
            if self.tap.upgraded:
                return
            await asyncio.sleep(0.1)
        raise AssertionError("the client never upgraded to a websocket")

    async def go_offline(self) -> None:
        """Drop the connection and keep it down (websocket and polling). The browser is
        offline too, so new attempts fail at once, as on a real dead network (a
        websocket the tap swallowed would leave the client waiting for its 20 s
        connect timeout instead)."""
        self.polling_blocked = True
        await self.context.set_offline(True)
        await self.page.route("**/socket.io/**", lambda route: route.abort())
        await self.tap.cut()

    async def go_online(self) -> None:
        await self.context.set_offline(False)
        await self.page.unroute("**/socket.io/**")
        self.tap.restore()


PersonFactory = Callable[..., Awaitable[Person]]


@pytest.fixture
async def people(browser: Browser) -> AsyncIterator[PersonFactory]:
    contexts: list[BrowserContext] = []
    made: list[Person] = []

    async def make(name: str, viewport: ViewportSize | None = None, *, tap: bool = False) -> Person:
        """tap=True carries the websocket through WsTap (for cutting it)."""
        ctx = await browser.new_context(viewport=viewport or WIDE)
        contexts.append(ctx)
        page = await ctx.new_page()
        wstap = WsTap()
        if tap:
            await page.route_web_socket(re.compile(r"/socket\.io/"), wstap.handle)
        person = Person(ctx, page, name, wstap)
        made.append(person)
        return person

    yield make
    async with asyncio.timeout(TEARDOWN_SECS):
        for person in made:
            await person.tap.close_all()
    for ctx in contexts:
        await _close_or_leave(ctx.close(), "a browser context")
    problems = {p.name: p.problems for p in made if p.problems}
    assert not problems, f"errors in the pages: {problems}"


AXE_URL = "/__tests__/axe.min.js"
AXE_RUN = """async () => {
  const r = await axe.run(document, {resultTypes: ['violations']});
  return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))}));
}"""


async def check_axe(page: Page, where: str) -> None:
    """axe-core in the page: no serious or critical violations."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        # Served same-origin by a route, so the page's real CSP stays on.
        await page.route(
            "**" + AXE_URL,
            lambda route: route.fulfill(path=str(AXE), content_type="text/javascript"),
        )
        await page.add_script_tag(url=AXE_URL)
    violations = await page.evaluate(AXE_RUN)
    bad = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert not bad, f"axe found problems on {where}: {bad}"


async def shoot(page: Page, name: str, viewport: ViewportSize) -> Path:
    """Full-page screenshot at a width, into tests/artifacts/ (gitignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.set_viewport_size(viewport)
    await page.wait_for_timeout(150)  # let layout settle after the resize
    path = ARTIFACTS / f"{name}-{viewport['width']}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def fay_and_ana(
    live_server: LiveServer, people: PersonFactory, title: str, *, tap: bool = False
) -> tuple[dict[str, Any], Person, Person]:
    """A new room with its facilitator, Fay (a wide screen), and a peer, Ana (a narrow
    one, her frames tapped if asked), both in: (room, Fay, Ana)."""
    room = await live_server.create_room(title)
    fac = await people("Fay", WIDE)
    ana = await people("Ana", NARROW, tap=tap)
    await fac.join(room["facilitator_url"])
    await ana.join(room["invite_url"])
    return room, fac, ana
