"""The waiting room, as the person waiting and the facilitator see it."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from playwright.async_api import expect

from tests.support import LiveServer

from .conftest import NARROW, WIDE, Person, PersonFactory, check_axe, shoot

pytestmark = pytest.mark.browser


async def test_waiting_room_admit_and_deny(live_server: LiveServer, people: PersonFactory) -> None:
    room = await live_server.create_room("Evening circle", waiting_room=True)
    fac = await people("Fay", NARROW)
    ana = await people("Ana", NARROW)
    ben = await people("Ben", NARROW)
    await fac.join(room["facilitator_url"])

    await ana.join(room["invite_url"], expect_room=False)
    await expect(
        ana.page.get_by_role("heading", name="You are in the waiting room")
    ).to_be_visible()
    await expect(ana.page.get_by_text("A facilitator will let you in soon.")).to_be_visible()
    await check_axe(ana.page, "waiting screen")
    await shoot(ana.page, "waiting", NARROW)

    await expect(fac.page.get_by_role("heading", name="Waiting to join (1)")).to_be_visible()
    await fac.page.get_by_role("button", name="Let in: Ana").click()
    await expect(ana.page.get_by_role("button", name="Raise my hand")).to_be_visible()
    await expect(ana.page.get_by_role("heading", name="Here now (2)")).to_be_visible()
    await expect(fac.page.get_by_text("Nobody is waiting.")).to_be_visible()
    await expect(fac.tile("Ana")).to_be_visible()

    await ben.join(room["invite_url"], expect_room=False)
    await expect(
        ben.page.get_by_role("heading", name="You are in the waiting room")
    ).to_be_visible()
    await fac.page.get_by_role("button", name="Not now: Ben").click()
    await expect(
        ben.page.get_by_role("heading", name="You could not join this time")
    ).to_be_visible()
    await expect(fac.page.get_by_text("Nobody is waiting.")).to_be_visible()
    await expect(ana.page.get_by_role("heading", name="Here now (2)")).to_be_visible()

    # Ben queues again at once; this time he is kept out of the session.
    ben = await people("Ben", NARROW)
    await ben.join(room["invite_url"], expect_room=False)
    await expect(fac.page.get_by_role("button", name="Keep out: Ben")).to_be_visible()
    await shoot(fac.page, "waiting-list", NARROW)
    await fac.page.get_by_role("button", name="Keep out: Ben").click()
    await expect(fac.page.get_by_text("Keep Ben out of this session?")).to_be_visible()
    await expect(fac.page.get_by_role("button", name="Cancel")).to_be_focused()
    await shoot(fac.page, "waiting-keep-out", NARROW)
    await fac.page.get_by_role("button", name="Yes, keep out").click()
    await expect(
        ben.page.get_by_role("heading", name="You could not join this time")
    ).to_be_visible()
    again = await people("Ben", NARROW)
    await again.join(room["invite_url"], expect_room=False)
    await expect(again.page.get_by_text("You cannot rejoin this session.")).to_be_visible()
    await expect(fac.page.get_by_text("Nobody is waiting.")).to_be_visible()

    # Waiting room off: the next person comes straight in.
    await fac.page.get_by_role("switch", name="Waiting room").click()
    await expect(fac.page.get_by_role("switch", name="Waiting room")).to_have_attribute(
        "aria-checked", "false"
    )
    cai = await people("Cai", WIDE)
    await cai.join(room["invite_url"])
    await expect(fac.page.get_by_role("heading", name="Here now (3)")).to_be_visible()


async def ana_waiting_then_offline(
    live_server: LiveServer, people: PersonFactory
) -> tuple[dict[str, Any], Person, Person]:
    """Fay in a room with a waiting room, Ana waiting in it, then her line gone: Fay
    sees her place kept, reconnecting. (room, Fay, Ana)"""
    room = await live_server.create_room("Evening circle", waiting_room=True)
    fac = await people("Fay", WIDE)
    ana = await people("Ana", NARROW, tap=True)
    await fac.join(room["facilitator_url"])
    await ana.join(room["invite_url"], expect_room=False)
    await expect(fac.page.get_by_role("heading", name="Waiting to join (1)")).to_be_visible()
    await ana.wait_for_websocket()
    await ana.go_offline()
    waiting = fac.page.locator("li", has_text="Ana")
    await expect(waiting.get_by_text("reconnecting…")).to_be_visible()
    await expect(fac.page.get_by_role("heading", name="Waiting to join (1)")).to_be_visible()
    await shoot(fac.page, "waiting-list-reconnecting", NARROW)
    return room, fac, ana


async def test_a_dropped_waiting_person_comes_back_to_the_waiting_list(
    live_server: LiveServer, people: PersonFactory
) -> None:
    _room, fac, ana = await ana_waiting_then_offline(live_server, people)
    await expect(
        ana.page.get_by_role("heading", name="You are in the waiting room")
    ).to_be_visible()
    await expect(ana.page.get_by_text("Connection lost. Reconnecting")).to_be_visible()
    # Meanwhile Ben arrives and the room is locked ("no more newcomers"): Ana was let
    # wait before the lock and keeps her place, first in line.
    ben = await people("Ben", NARROW)
    await ben.join(_room["invite_url"], expect_room=False)
    await expect(fac.page.get_by_role("heading", name="Waiting to join (2)")).to_be_visible()
    await fac.page.get_by_role("switch", name="Room locked").click()
    await expect(fac.page.get_by_role("switch", name="Room locked")).to_have_attribute(
        "aria-checked", "true"
    )
    await ana.go_online()
    await expect(ana.page.get_by_text("Connection lost. Reconnecting")).to_have_count(
        0, timeout=20_000
    )
    await expect(ana.page.get_by_text("You are first in line to be let in.")).to_be_visible()
    await expect(fac.page.locator("li", has_text="Ana").get_by_text("reconnecting…")).to_have_count(
        0, timeout=20_000
    )
    await fac.page.get_by_role("button", name="Let in: Ana").click()
    await expect(ana.page.get_by_role("button", name="Raise my hand")).to_be_visible()


async def test_back_in_the_waiting_room_after_the_session_ended_starts_none(
    live_server: LiveServer, people: PersonFactory
) -> None:
    """Someone waiting whose line dropped while the facilitator ended the session:
    before, the reconnect was a plain join, and started a new session of its own, the
    person alone in it, waiting for nobody (a waiting place has no resume token)."""
    room, fac, ana = await ana_waiting_then_offline(live_server, people)
    await fac.page.get_by_role("button", name="End the session").click()
    await fac.page.get_by_role("button", name="Yes, end it").click()
    await expect(fac.page.get_by_role("heading", name="The session has ended")).to_be_visible()

    await ana.go_online()
    await expect(
        ana.page.locator("main").get_by_text("The session you were in has ended.")
    ).to_be_visible(timeout=20_000)
    await expect(ana.page.get_by_label("Your name in the group")).to_have_value("Ana")
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{live_server.url}/api/rooms/{room['room_id']}",
            headers={"Authorization": f"Bearer {live_server.admin_token}"},
        ) as r,
    ):
        assert (await r.json())["live"] is False  # no session was started


async def test_someone_waiting_is_told_their_place_in_line(
    live_server: LiveServer, people: PersonFactory
) -> None:
    """The server says where a waiting person stands (`waiting {position}`); before, the
    page ignored it."""
    room = await live_server.create_room("Evening circle", waiting_room=True)
    fac = await people("Fay", WIDE)
    ana = await people("Ana", NARROW)
    ben = await people("Ben", NARROW)
    await fac.join(room["facilitator_url"])
    await ana.join(room["invite_url"], expect_room=False)
    await expect(ana.page.get_by_text("You are first in line to be let in.")).to_be_visible()
    await ben.join(room["invite_url"], expect_room=False)
    await expect(
        ben.page.get_by_text("When you arrived, you were 2nd in line to be let in.")
    ).to_be_visible()
    await check_axe(ben.page, "waiting screen with a place in line")


async def test_leaving_the_waiting_room_on_a_line_gone_quiet_is_quick(
    live_server: LiveServer, people: PersonFactory
) -> None:
    """Before, Leave waited up to 10 s for the server's answer, with no sign of it."""
    room = await live_server.create_room("Evening circle", waiting_room=True)
    fac = await people("Fay", WIDE)
    ana = await people("Ana", NARROW, tap=True)
    await fac.join(room["facilitator_url"])
    await ana.join(room["invite_url"], expect_room=False)
    await expect(ana.page.get_by_text("You are first in line to be let in.")).to_be_visible()
    await ana.wait_for_websocket()
    ana.tap.stalled = True
    await ana.page.get_by_role("button", name="Leave").click()
    await expect(ana.page.get_by_role("button", name="Leaving…")).to_be_disabled(timeout=1_000)
    await expect(ana.page.get_by_role("heading", name="You left the room")).to_be_visible(
        timeout=4_000
    )
