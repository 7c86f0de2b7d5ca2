"""Before the room: the link screen, the join screen, refusals, page weight."""

from __future__ import annotations

import gzip
from typing import Any

import pytest
from playwright.async_api import Browser, expect

from tests.support import LiveServer

from .conftest import NARROW, WIDE, PersonFactory, check_axe, shoot

pytestmark = pytest.mark.browser

PAGE_BUDGET_GZIP_BYTES = 150 * 1024


async def test_no_link_asks_for_one(live_server: LiveServer, people: PersonFactory) -> None:
    anna = await people("Anna", NARROW)
    page = anna.page
    await page.goto(live_server.url + "/")
    await expect(page.get_by_role("heading", name="Welcome to peerroom")).to_be_visible()
    await expect(page.get_by_text("Ask your facilitator for your link")).to_be_visible()
    await expect(page.get_by_text("peerroom is not a crisis service.")).to_be_visible()
    await check_axe(page, "no-link screen")
    await shoot(page, "nolink", NARROW)

    # A pasted invite link takes you to the join screen.
    room = await live_server.create_room("Tuesday circle")
    await page.get_by_label("Your group link").fill("garbage !!")
    await page.get_by_role("button", name="Open my group").click()
    await expect(page.get_by_text("does not look like a group link")).to_be_visible()
    await page.get_by_label("Your group link").fill(room["invite_url"])
    await page.get_by_role("button", name="Open my group").click()
    await expect(page.get_by_role("heading", name="Join your group")).to_be_visible()
    assert page.url.endswith("/r/" + room["invite_token"])


async def test_join_screen_is_calm_and_private_by_default(
    live_server: LiveServer, people: PersonFactory
) -> None:
    room = await live_server.create_room("Tuesday circle")
    bo = await people("Bo", WIDE)
    page = bo.page
    await page.goto(room["invite_url"])
    await expect(page.get_by_role("heading", name="Join your group")).to_be_visible()
    await expect(page.get_by_label("Start with my microphone on")).not_to_be_checked()
    await expect(page.get_by_label("Start with my camera on")).not_to_be_checked()
    await expect(
        page.get_by_text("Chat messages are stored only for people who choose to keep them")
    ).to_be_visible()
    await expect(page.get_by_text("call your local emergency number")).to_be_visible()
    await check_axe(page, "join screen")
    await shoot(page, "join", WIDE)
    await shoot(page, "join", NARROW)

    # An empty name is caught on the page, in plain words.
    await page.get_by_role("button", name="Join the group").click()
    await expect(page.get_by_text("Please type a name")).to_be_visible()

    await bo.join(room["invite_url"])
    # Joined with camera and mic off.
    me = bo.tile("Bo")
    await expect(me).to_contain_text("Muted")
    await expect(me).to_contain_text("Camera off")
    await expect(page.get_by_role("switch", name="Microphone")).to_have_attribute(
        "aria-checked", "false"
    )

    # The pseudonym is remembered on this device (a new tab of the same profile).
    await page.get_by_role("button", name="Leave").click()
    await page.get_by_role("button", name="Stay").click()  # a mis-tap costs nothing
    await expect(page.get_by_role("button", name="Raise my hand")).to_be_visible()
    await page.get_by_role("button", name="Leave").click()
    await page.get_by_role("button", name="Leave now").click()
    await expect(page.get_by_role("heading", name="You left the room")).to_be_visible()
    other = await bo.context.new_page()
    await other.goto(room["invite_url"])
    await expect(other.get_by_label("Your name in the group")).to_have_value("Bo")


async def test_taken_name_is_refused_kindly(live_server: LiveServer, people: PersonFactory) -> None:
    room = await live_server.create_room("Tuesday circle")
    first = await people("Cleo")
    await first.join(room["invite_url"])
    second = await people("Cleo", NARROW)
    await second.join(room["invite_url"], expect_room=False)
    await expect(second.page.get_by_role("alert")).to_contain_text("already uses that name")
    await expect(second.page.get_by_role("heading", name="Join your group")).to_be_visible()


async def test_bad_link_is_refused_kindly(live_server: LiveServer, people: PersonFactory) -> None:
    dee = await people("Dee")
    await dee.join(live_server.url + "/r/not-a-real-token", expect_room=False)
    await expect(dee.page.get_by_text("This link does not work")).to_be_visible()


async def test_first_load_is_under_the_page_weight_budget(
    live_server: LiveServer, browser: Browser
) -> None:
    room = await live_server.create_room("Tuesday circle")
    ctx = await browser.new_context()
    page = await ctx.new_page()
    bodies: dict[str, int] = {}

    async def record(response) -> None:  # type: ignore[no-untyped-def]
        if "/socket.io/" in response.url:
            return
        body = await response.body()
        bodies[response.url] = len(gzip.compress(body, compresslevel=9))

    page.on("response", record)
    await page.goto(room["invite_url"], wait_until="networkidle")
    await expect(page.get_by_role("heading", name="Join your group")).to_be_visible()
    await ctx.close()
    assert any("/static/app.js" in u for u in bodies), bodies
    total = sum(bodies.values())
    print(f"first load: {total} bytes gzip over {len(bodies)} responses: {bodies}")
    assert total < PAGE_BUDGET_GZIP_BYTES


async def test_keyboard_only_join_and_raise_hand(
    live_server: LiveServer, people: PersonFactory
) -> None:
    room = await live_server.create_room("Tuesday circle")
    eve = await people("Eve", NARROW)
    page = eve.page
    await page.goto(room["invite_url"])
    await expect(page.get_by_role("heading", name="Join your group")).to_be_focused()
    await page.keyboard.press("Tab")
    await expect(page.get_by_label("Your name in the group")).to_be_focused()
    await page.keyboard.type("Eve")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Tuesday circle")).to_be_focused()
    hand = page.get_by_role("button", name="Raise my hand")
    for _ in range(6):
        await page.keyboard.press("Tab")
        if await hand.evaluate("el => el === document.activeElement"):
            break
    await expect(hand).to_be_focused()
    await page.keyboard.press("Space")
    await expect(
        eve.controls().get_by_text("Your hand is up. You are 1st in line.")
    ).to_be_visible()
    # Focus stays on the (relabelled) button, so Space again lowers it.
    await expect(page.get_by_role("button", name="Lower my hand")).to_be_focused()
    await page.keyboard.press("Space")
    await expect(page.get_by_role("button", name="Raise my hand")).to_be_focused()
    await expect(eve.queue().get_by_text("No hands raised.")).to_be_visible()


async def test_a_link_cut_in_the_middle_of_an_escape_does_not_hang_the_page(
    live_server: LiveServer, people: PersonFactory
) -> None:
    """A link copied short ("...%E0%A4%A") made the page throw at start and stay on
    "Loading..." for good; now it asks for the link like any page without one."""
    bo = await people("Bo", NARROW)
    await bo.page.goto(live_server.url + "/r/abc%E0%A4%A")
    await expect(bo.page.get_by_role("heading", name="Welcome to peerroom")).to_be_visible()
    await bo.page.get_by_label("Your group link").fill(live_server.url + "/r/x%E0%A4%A")
    await bo.page.get_by_role("button", name="Open my group").click()
    await expect(bo.page.get_by_text("does not look like a group link")).to_be_visible()


# What Chrome 64-85 and Firefox 68-77 lack (build.mjs promises Chrome 64+, Firefox 68+).
OLD_BROWSER = """
for (const kind of [Element, Document, DocumentFragment]) delete kind.prototype.replaceChildren;
"""


async def test_an_old_browser_without_replace_children_gets_in_and_takes_part(
    live_server: LiveServer, people: PersonFactory
) -> None:
    """Before, every screen was drawn with Element.replaceChildren (Chrome 86+): on an
    older phone the page threw at once and stayed on "Loading…"."""
    room = await live_server.create_room("Tuesday circle")
    fac = await people("Fay", WIDE)
    ana = await people("Ana", NARROW)
    for person in (fac, ana):
        await person.page.add_init_script(OLD_BROWSER)
    await fac.join(room["facilitator_url"])
    await ana.join(room["invite_url"])
    assert await ana.page.evaluate("typeof document.body.replaceChildren") == "undefined"

    await ana.page.get_by_role("button", name="Raise my hand").click()
    await expect(fac.tile("Ana")).to_contain_text("Hand up, 1st")
    await ana.page.get_by_label("Your message").fill("hello from an old phone")
    await ana.page.get_by_role("button", name="Send", exact=True).click()
    await expect(fac.page.get_by_role("log").get_by_text("hello from an old phone")).to_be_visible()
    await fac.tile("Ana").get_by_text("Actions").click()
    await fac.tile("Ana").get_by_role("button", name="Make co-facilitator").click()
    await expect(ana.page.get_by_role("heading", name="Facilitator tools")).to_be_visible()
    await ana.page.get_by_role("button", name="Leave").click()
    await ana.page.get_by_role("button", name="Leave now").click()
    await expect(ana.page.get_by_role("heading", name="You left the room")).to_be_visible()
    await ana.page.get_by_role("button", name="Join again").click()
    await expect(ana.page.get_by_role("heading", name="Join your group")).to_be_visible()


async def test_joins_over_the_limit_wait_with_the_servers_words_and_a_way_back(
    server_factory: Any, people: PersonFactory
) -> None:
    """A refusal for too many joins from one address: the page keeps trying, says why
    in the server's words (not "the server is busy"), in place (focus stays), and
    "Back" stops it. Loopback is told it is no proxy, so the limit counts it."""
    server: LiveServer = await server_factory(
        join_burst=1, join_per_sec=0.001, trusted_proxies=("192.0.2.0/24",)
    )
    room = await server.create_room("Limited")
    ana = await people("Ana", NARROW)
    await ana.join(room["invite_url"])
    ben = await people("Ben", NARROW)
    await ben.join(room["invite_url"], expect_room=False)
    lead = ben.page.locator("#connecting-lead")
    await expect(lead).to_contain_text("Many people joined from your connection just now")
    back = ben.page.get_by_role("button", name="Back")
    await back.focus()
    await ben.page.wait_for_timeout(2_500)  # a retry or two: the screen is not redrawn
    await expect(back).to_be_focused()
    await back.click()
    await expect(ben.page.get_by_role("heading", name="Join your group")).to_be_visible()
    await expect(ben.page.get_by_label("Your name in the group")).to_have_value("Ben")
    await expect(ana.page.get_by_role("heading", name="Here now (1)")).to_be_visible()


async def test_a_name_of_emoji_counts_as_the_server_counts_it(
    live_server: LiveServer, people: PersonFactory
) -> None:
    """21 emoji are 21 characters to the server (of 40) but 42 UTF-16 units to
    JavaScript's length: the page refused the name the server would take."""
    room = await live_server.create_room("Emoji circle")
    ana = await people("\U0001f331" * 21, NARROW)
    await ana.join(room["invite_url"])
    await expect(ana.tile("\U0001f331" * 21)).to_be_visible()
