"""The facilitator's phone check-in view.

The check-in endpoints land in a later issue, so these tests answer
/api/checkins in the browser (Playwright routes) with the shape of the
contract, and check what a facilitator sees and what the page sends.
"""

from __future__ import annotations

import json

import pytest
from playwright.async_api import Route, expect

from tests.support import LiveServer

from .conftest import WIDE, PersonFactory

pytestmark = pytest.mark.browser


async def test_checkins_listed_and_resolved(live_server: LiveServer, people: PersonFactory) -> None:
    room = await live_server.create_room("Phone circle")
    fac = await people("Fay", WIDE)
    items = [
        {"id": "c1", "status": "callback", "caller": "+47 555 01234", "ts": 1763776800},
        {"id": "c2", "status": "ok", "caller": "••34", "ts": 1763777000},
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
    await expect(fac.page.get_by_text("Asks for a call back")).to_be_visible()
    await expect(fac.page.get_by_text("+47 555 01234")).to_be_visible()
    await expect(fac.page.get_by_text("Doing OK")).to_be_visible()
    assert ("GET", "Bearer " + room["facilitator_token"]) in seen

    await fac.page.get_by_role("button", name="Mark as done").first.click()
    await expect(fac.page.get_by_text("Asks for a call back")).to_have_count(0)
    await expect(fac.page.get_by_text("Doing OK")).to_be_visible()
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
        fac.page.get_by_text("Check-ins are not available on this server yet.")
    ).to_be_visible()
    await expect(fac.page.get_by_role("button", name="Next speaker")).to_be_visible()
