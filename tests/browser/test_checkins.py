"""The facilitator's phone check-in view.

The first test is end to end: a bridge (a real Socket.IO client on /bridge)
files check-ins, the facilitator's page shows them live and resolves one over
the real HTTP API. The others answer /api/checkins inside the browser
(Playwright routes) to check what the page sends and how it fails.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable

import pytest
from playwright.async_api import Locator, Page, Route, expect

from tests.phone.bridge_client import Bridge
from tests.support import LiveServer

from .conftest import NARROW, WIDE, PersonFactory, check_axe, shoot

BRIDGE_TOKEN = "browser-test-bridge-token"


def checkin_list(page: Page) -> Locator:
    return page.get_by_role("region", name="Phone check-ins")


async def test_checkins_arrive_live_and_are_resolved(
    server_factory: Callable[..., Awaitable[LiveServer]], people: PersonFactory
) -> None:
    server = await server_factory(bridge_token=BRIDGE_TOKEN)
    room = await server.create_room("Phone circle")
    fac = await people("Fay", NARROW)
    await fac.join(room["facilitator_url"])
    await expect(checkin_list(fac.page).get_by_text("No open check-ins.")).to_be_visible()

    bridge = Bridge(server.url)
    await bridge.connect(BRIDGE_TOKEN)
    try:
        for n, status in enumerate(("callback", "ok")):
            ack = await bridge.call(
                "checkin.create",
                {"call_id": f"call{n}", "caller": f"+1 555 010 00{n}7", "status": status},
            )
            assert ack["ok"], ack
    finally:
        await bridge.sio.disconnect()

    # Live (checkins.updated), no reload: the call-back shows its number to call.
    await expect(fac.page.get_by_role("link", name="Call +15550100007")).to_be_visible()
    await expect(checkin_list(fac.page).get_by_text("Doing OK")).to_be_visible()
    await expect(checkin_list(fac.page).get_by_text("Caller ******17")).to_be_visible()
    await expect(fac.announcer()).to_contain_text("New phone check-in")
    await expect(
        fac.page.get_by_role("link", name="1 phone check-in waiting for a call")
    ).to_be_visible()
    # Whom to call comes first, whatever the server's order.
    await expect(checkin_list(fac.page).get_by_role("listitem")).to_have_text(
        [re.compile("Asks for a call back"), re.compile("Doing OK")]
    )
    await check_axe(fac.page, "check-ins")
    await shoot(fac.page, "checkins", NARROW)

    await fac.page.get_by_role("button", name="Mark as done: Asks for a call back").click()
    await expect(checkin_list(fac.page).get_by_text("Asks for a call back")).to_have_count(0)
    await expect(checkin_list(fac.page).get_by_text("Doing OK")).to_be_visible()
    await expect(fac.page.get_by_role("link", name="waiting for a call")).to_have_count(0)
    # The server kept it: a co-worker joining now sees the same queue.
    gus = await people("Gus", NARROW)
    await gus.join(room["facilitator_url"])
    await expect(checkin_list(gus.page).get_by_text("Doing OK")).to_be_visible()
    await expect(checkin_list(gus.page).get_by_text("Asks for a call back")).to_have_count(0)


pytestmark = pytest.mark.browser


async def test_checkins_listed_and_resolved(live_server: LiveServer, people: PersonFactory) -> None:
    room = await live_server.create_room("Phone circle")
    fac = await people("Fay", WIDE)
    items = [
        {
            "id": "c1",
            "status": "callback",
            "caller": "******34",
            "number": "+47 555 01234",
            "created_at": 1763776800,
            "resolved_at": None,
        },
        {"id": "c2", "status": "ok", "caller": "******34", "created_at": 1763777000},
    ]
    seen: list[tuple[str, str | None]] = []

    async def checkins(route: Route) -> None:
        seen.append((route.request.method, await route.request.header_value("authorization")))
        await route.fulfill(status=200, content_type="application/json", body=json.dumps(items))

    async def resolve(route: Route) -> None:
        seen.append((route.request.method + " " + route.request.url.split("/api/")[1], None))
        items[:] = [x for x in items if x["id"] != "c1"]
        await route.fulfill(status=200, content_type="application/json", body="{}")

    await fac.page.route("**/api/checkins", checkins)
    await fac.page.route("**/api/checkins/*/resolve", resolve)
    await fac.join(room["facilitator_url"])
    await expect(checkin_list(fac.page).get_by_text("Asks for a call back")).to_be_visible()
    await expect(fac.page.get_by_role("link", name="Call +47 555 01234")).to_have_attribute(
        "href", "tel:+4755501234"
    )
    await expect(checkin_list(fac.page).get_by_text("Doing OK")).to_be_visible()
    assert ("GET", "Bearer " + room["facilitator_token"]) in seen

    await fac.page.get_by_role("button", name="Mark as done: Asks for a call back").click()
    await expect(checkin_list(fac.page).get_by_text("Asks for a call back")).to_have_count(0)
    await expect(checkin_list(fac.page).get_by_text("Doing OK")).to_be_visible()
    assert ("POST checkins/c1/resolve", None) in seen


async def test_checkins_missing_is_said_calmly(
    live_server: LiveServer, people: PersonFactory
) -> None:
    room = await live_server.create_room("Phone circle")
    fac = await people("Fay", WIDE)

    async def missing(route: Route) -> None:
        await route.fulfill(
            status=404, content_type="application/json", body='{"error": {"code": "not_found"}}'
        )

    await fac.page.route("**/api/checkins", missing)
    await fac.join(room["facilitator_url"])
    await expect(
        checkin_list(fac.page).get_by_text("Check-ins are not available on this server yet.")
    ).to_be_visible()
    await expect(fac.page.get_by_role("button", name="Next speaker")).to_be_visible()


async def test_a_failed_refresh_keeps_the_list_in_sight(
    live_server: LiveServer, people: PersonFactory
) -> None:
    """The server or its database away for a moment: before, the list was emptied and
    polling stopped, so a request to be called back could sit unseen."""
    room = await live_server.create_room("Phone circle")
    fac = await people("Fay", WIDE)
    items = [{"id": "c1", "status": "callback", "caller": "******34", "created_at": 1763776800}]
    answers = [200, 503, 200]

    async def checkins(route: Route) -> None:
        status = answers.pop(0) if answers else 200
        body = json.dumps(items if status == 200 else {"error": {"code": "unavailable"}})
        await route.fulfill(status=status, content_type="application/json", body=body)

    await fac.page.route("**/api/checkins", checkins)
    await fac.join(room["facilitator_url"])
    region = checkin_list(fac.page)
    await expect(region.get_by_text("Asks for a call back")).to_be_visible()
    await region.get_by_role("button", name="Refresh check-ins").click()
    await expect(region.get_by_text("Could not refresh check-ins (error 503)")).to_be_visible()
    await expect(region.get_by_text("Asks for a call back")).to_be_visible()
    await region.get_by_role("button", name="Refresh check-ins").click()
    await expect(region.get_by_text("Could not refresh")).to_have_count(0)
    await expect(region.get_by_text("Asks for a call back")).to_be_visible()


async def test_a_partial_list_while_the_database_is_away_adds_to_what_was_shown(
    live_server: LiveServer, people: PersonFactory
) -> None:
    """With its database away the server answers 200 with only the check-ins it kept on
    disk meanwhile (``partial``): the page must add them to the list it had, not put
    them in its place (the stored callbacks would drop out of sight)."""
    room = await live_server.create_room("Phone circle")
    fac = await people("Fay", WIDE)
    stored = {"id": "c1", "status": "callback", "caller": "******34", "created_at": 1763776800}
    kept = {"id": "c2", "status": "talk", "caller": "******56", "created_at": 1763776900}
    answers = [
        {"checkins": [stored], "partial": False},
        {"checkins": [kept], "partial": True},
        {"checkins": [stored, kept], "partial": False},
    ]

    async def checkins(route: Route) -> None:
        body = answers.pop(0) if len(answers) > 1 else answers[0]
        await route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    await fac.page.route("**/api/checkins", checkins)
    await fac.join(room["facilitator_url"])
    region = checkin_list(fac.page)
    await expect(region.get_by_text("Caller ******34")).to_be_visible()
    await region.get_by_role("button", name="Refresh check-ins").click()
    await expect(region.get_by_text("database is away")).to_be_visible()
    await expect(region.get_by_text("Caller ******34")).to_be_visible()
    await expect(region.get_by_text("Caller ******56")).to_be_visible()
    await region.get_by_role("button", name="Refresh check-ins").click()
    await expect(region.get_by_text("database is away")).to_have_count(0)
    await expect(region.get_by_text("Caller ******34")).to_be_visible()
    await expect(region.get_by_text("Caller ******56")).to_be_visible()


async def test_an_older_answer_arriving_late_does_not_undo_a_newer_one(
    live_server: LiveServer, people: PersonFactory
) -> None:
    """Loads of the list overlap (the poll, a live notice, a refresh, a resolve). An
    answer to an earlier one that came after a later one's was shown all the same: a
    check-in just made went from the list again (a callback out of sight until the next
    poll), or one just resolved came back."""
    room = await live_server.create_room("Phone circle")
    fac = await people("Fay", WIDE)
    item = {"id": "c1", "status": "callback", "caller": "******34", "created_at": 1763776800}
    calls = 0
    newer_answered = asyncio.Event()
    older_answered = asyncio.Event()

    async def checkins(route: Route) -> None:
        nonlocal calls
        calls += 1
        n = calls
        if n == 2:  # held until the next load is answered: then an answer from before
            await newer_answered.wait()
            body = {"checkins": [], "partial": False}
        else:
            body = {"checkins": [item] if n >= 3 else [], "partial": False}
        await route.fulfill(status=200, content_type="application/json", body=json.dumps(body))
        (newer_answered if n == 3 else older_answered if n == 2 else asyncio.Event()).set()

    await fac.page.route("**/api/checkins", checkins)
    await fac.join(room["facilitator_url"])
    region = checkin_list(fac.page)
    await expect(region.get_by_text("No open check-ins.")).to_be_visible()
    refresh = region.get_by_role("button", name="Refresh check-ins")
    await refresh.click()  # load 2: held
    await refresh.click()  # load 3: answered at once, with the new check-in
    await expect(region.get_by_text("Caller ******34")).to_be_visible()
    await asyncio.wait_for(older_answered.wait(), 5)
    await fac.page.wait_for_timeout(300)  # the late, older answer is in the page now
    await expect(region.get_by_text("Caller ******34")).to_be_visible()
