"""Dropped connections and missed broadcasts: the person keeps their place."""

from __future__ import annotations

import asyncio
import re

import pytest
from playwright.async_api import Page, expect

from server.keys import SERVICE
from tests.support import LiveServer

from .conftest import NARROW, WIDE, Person, PersonFactory, check_axe, fay_and_ana, shoot

pytestmark = pytest.mark.browser


@pytest.mark.redis_pass
async def test_drop_shows_reconnecting_and_resume_keeps_the_hand(
    live_server: LiveServer, people: PersonFactory
) -> None:
    _room, fac, ana = await fay_and_ana(live_server, people, "Monday circle", tap=True)
    await ana.wait_for_websocket()
    await ana.page.get_by_role("button", name="Raise my hand").click()
    await expect(fac.tile("Ana")).to_contain_text("Hand up, 1st")

    await ana.go_offline()
    await expect(ana.page.get_by_text("Connection lost. Reconnecting")).to_be_visible()
    await expect(fac.tile("Ana")).to_contain_text("Reconnecting")
    await shoot(ana.page, "offline-peer", NARROW)
    await shoot(fac.page, "reconnecting-seen-by-facilitator", NARROW)
    await expect(fac.tile("Ana")).to_contain_text("Hand up, 1st")
    await fac.page.get_by_label("Your message").fill("said while Ana was away")
    await fac.page.get_by_role("button", name="Send", exact=True).click()

    await ana.go_online()
    await expect(fac.tile("Ana")).not_to_contain_text("Reconnecting", timeout=20_000)
    await expect(ana.page.get_by_text("2 people here")).to_be_visible(timeout=20_000)
    # The same person, same place: no second Ana, the hand is still first.
    await expect(fac.page.get_by_role("heading", name="Here now (2)")).to_be_visible()
    await expect(fac.tile("Ana")).to_contain_text("Hand up, 1st")
    await expect(
        ana.controls().get_by_text("Your hand is up. You are 1st in line.")
    ).to_be_visible()
    # The snapshot has no chat history: the log says a line may be missing. Before, it
    # said nothing, and the talk simply went on.
    log = ana.page.get_by_role("log")
    await expect(
        log.get_by_text(
            "You were disconnected for a moment. Messages sent meanwhile are not shown."
        )
    ).to_be_visible()
    await expect(log.get_by_text("said while Ana was away")).to_have_count(0)
    await shoot(ana.page, "back-after-a-drop", NARROW)


async def test_a_missed_broadcast_is_caught_up_from_a_fresh_snapshot(
    live_server: LiveServer, people: PersonFactory
) -> None:
    room = await live_server.create_room("Monday circle")
    fac = await people("Fay", WIDE)
    ana = await people("Ana", NARROW, tap=True)
    ben = await people("Ben", NARROW)
    for person, url in (
        (fac, room["facilitator_url"]),
        (ana, room["invite_url"]),
        (ben, room["invite_url"]),
    ):
        await person.join(url)
    await expect(ana.page.get_by_role("heading", name="Here now (3)")).to_be_visible()
    await ana.wait_for_websocket()

    # Ana's connection loses exactly the `hands` broadcast for Ben's hand.
    ana.tap.drop_next = lambda frame: frame.startswith('42["hands"')
    await ben.page.get_by_role("button", name="Raise my hand").click()
    await expect(fac.tile("Ben")).to_contain_text("Hand up, 1st")
    for _ in range(50):  # the frame reaches Ana's tap a moment after Fay's page shows it
        if ana.tap.dropped:
            break
        await asyncio.sleep(0.1)
    assert ana.tap.dropped, "the hands frame was never seen on Ana's websocket"
    await expect(ana.page.get_by_text("No hands raised.")).to_be_visible()

    # The next broadcast shows the gap; Ana reconnects with resume and catches up.
    await fac.page.get_by_label("Your message").fill("welcome back")
    await fac.page.get_by_role("button", name="Send", exact=True).click()
    await expect(ana.queue().get_by_role("listitem")).to_have_text([re.compile("Ben")])
    await expect(ana.tile("Ben")).to_contain_text("Hand up, 1st")
    await expect(ana.page.get_by_role("log").get_by_text("welcome back")).to_be_visible()
    await expect(fac.page.get_by_role("heading", name="Here now (3)")).to_be_visible()
    await expect(ana.page.get_by_role("heading", name="Here now (3)")).to_be_visible()


async def test_a_duplicated_tab_takes_over_without_a_tug_of_war(
    live_server: LiveServer, people: PersonFactory
) -> None:
    room, fac, ana = await fay_and_ana(live_server, people, "Monday circle", tap=True)
    await ana.page.get_by_role("button", name="Raise my hand").click()
    await expect(fac.tile("Ana")).to_contain_text("Hand up, 1st")

    # "Duplicate tab" copies the tab's sessionStorage, resume token included.
    saved = await ana.page.evaluate("JSON.stringify(Object.assign({}, sessionStorage))")
    second = await ana.context.new_page()
    await second.add_init_script(
        f"Object.entries(JSON.parse({saved!r})).forEach(([k, v]) => sessionStorage.setItem(k, v));"
    )
    await second.goto(room["invite_url"])
    await expect(second.get_by_role("button", name="Lower my hand")).to_be_visible()
    await expect(
        ana.page.get_by_role("heading", name="This room is open somewhere else")
    ).to_be_visible()
    await second.wait_for_timeout(1500)  # no tug of war: the first tab stays aside
    await expect(
        ana.page.get_by_role("heading", name="This room is open somewhere else")
    ).to_be_visible()
    await expect(fac.page.get_by_role("heading", name="Here now (2)")).to_be_visible()
    await expect(fac.tile("Ana")).to_contain_text("Hand up, 1st")

    await ana.page.get_by_role("button", name="Use this window instead").click()
    await expect(ana.page.get_by_role("button", name="Lower my hand")).to_be_visible()
    await expect(
        second.get_by_role("heading", name="This room is open somewhere else")
    ).to_be_visible()
    await expect(fac.page.get_by_role("heading", name="Here now (2)")).to_be_visible()

    # Later the server closes every connection (a restart): the window in use comes
    # back by itself. Before, it still counted as taken over and stayed aside for good.
    await live_server.app[SERVICE].disconnect_all()
    await ana.page.wait_for_timeout(500)
    await expect(
        ana.page.get_by_role("heading", name="This room is open somewhere else")
    ).to_have_count(0)
    await expect(fac.tile("Ana")).not_to_contain_text("Reconnecting", timeout=15_000)
    await expect(ana.page.get_by_role("button", name="Lower my hand")).to_be_visible()


async def ana_watched_and_ben(
    live_server: LiveServer, people: PersonFactory
) -> tuple[Person, Person]:
    """Two peers in a new room, Ana's websocket frames tapped: (Ana, Ben)."""
    room = await live_server.create_room("Monday circle")
    ana = await people("Ana", NARROW, tap=True)
    ben = await people("Ben", NARROW)
    await ana.join(room["invite_url"])
    await ben.join(room["invite_url"])
    await ana.wait_for_websocket()
    return ana, ben


async def test_an_old_broadcast_delivered_again_is_ignored(
    live_server: LiveServer, people: PersonFactory
) -> None:
    ana, ben = await ana_watched_and_ben(live_server, people)

    await ben.page.get_by_role("button", name="Raise my hand").click()
    await expect(ana.tile("Ben")).to_contain_text("Hand up, 1st")
    raised = [f for f in ana.tap.seen if f.startswith('42["hands"')][-1]
    await ben.page.get_by_role("button", name="Lower my hand").click()
    await expect(ana.queue().get_by_text("No hands raised.")).to_be_visible()

    ana.tap.replay(raised)  # the stale "Ben's hand is up" arrives again
    await ana.page.wait_for_timeout(500)
    await expect(ana.queue().get_by_text("No hands raised.")).to_be_visible()
    await expect(ana.tile("Ben")).not_to_contain_text("Hand up")


async def test_a_server_that_closes_every_connection_gets_everyone_back_in_place(
    live_server: LiveServer, people: PersonFactory
) -> None:
    """A server closing connections with no reason given (a restart, live state away
    for a moment) is not "open somewhere else": pages come back by themselves, with
    their place. Before, every page stopped on the "somewhere else" screen."""
    _room, fac, ana = await fay_and_ana(live_server, people, "Monday circle")
    await ana.page.get_by_role("button", name="Raise my hand").click()
    await expect(fac.tile("Ana")).to_contain_text("Hand up, 1st")

    await live_server.app[SERVICE].disconnect_all()
    await expect(fac.page.get_by_role("heading", name="Here now (2)")).to_be_visible(timeout=15_000)
    await expect(fac.tile("Ana")).not_to_contain_text("Reconnecting", timeout=15_000)
    await expect(fac.tile("Ana")).to_contain_text("Hand up, 1st")
    await expect(
        ana.controls().get_by_text("Your hand is up. You are 1st in line.")
    ).to_be_visible()
    for person in (fac, ana):
        await expect(
            person.page.get_by_role("heading", name="This room is open somewhere else")
        ).to_have_count(0)


async def test_the_next_person_on_the_same_tab_sees_nothing_of_the_last_session(
    live_server: LiveServer, people: PersonFactory
) -> None:
    _room, _fac, ana = await fay_and_ana(live_server, people, "Monday circle")
    await ana.page.get_by_label("Your message").fill("something only for this session")
    await ana.page.get_by_role("button", name="Send", exact=True).click()
    await expect(ana.page.get_by_role("log").get_by_text("something only for")).to_be_visible()
    await ana.page.get_by_role("button", name="Leave").click()
    await ana.page.get_by_role("button", name="Leave now").click()
    await ana.page.get_by_role("button", name="Join again").click()
    # Someone else on the same shared device joins next.
    await ana.page.get_by_label("Your name in the group").fill("Bea")
    await ana.page.get_by_role("button", name="Join the group").click()
    await expect(ana.page.get_by_role("button", name="Raise my hand")).to_be_visible()
    await expect(ana.page.get_by_role("log").get_by_text("something only for")).to_have_count(0)


async def test_a_broadcast_the_page_cannot_read_is_replaced_by_a_fresh_snapshot(
    live_server: LiveServer, people: PersonFactory
) -> None:
    """Before, the page threw half-way through applying it (its seq already counted)
    and went on with a room that was partly updated."""
    ana, ben = await ana_watched_and_ben(live_server, people)
    await expect(ana.page.get_by_role("heading", name="Here now (2)")).to_be_visible()
    seqs = [int(s) for f in ana.tap.seen for s in re.findall(r'"seq":(\d+)', f)]
    ana.tap.replay(f'42["participant.updated",{{"seq":{max(seqs) + 1}}}]')  # no participant
    await ben.page.get_by_role("button", name="Raise my hand").click()
    await expect(ana.tile("Ben")).to_contain_text("Hand up, 1st")
    await expect(ana.page.get_by_role("heading", name="Here now (2)")).to_be_visible()


ENDED_PLACE = "Your earlier place in this group has ended, and the group is meeting now."
SESSION_OVER = "The session you were in has ended. Thank you for being here."


async def copy_of_tab(person: Person) -> Page:
    """A new tab holding this tab's sessionStorage (its saved place), as a tab restored
    by the browser later, or "Duplicate tab", has."""
    saved = await person.page.evaluate("JSON.stringify(Object.assign({}, sessionStorage))")
    page = await person.context.new_page()
    person.watch(page)
    await page.add_init_script(
        f"Object.entries(JSON.parse({saved!r})).forEach(([k, v]) => sessionStorage.setItem(k, v));"
    )
    return page


async def test_a_saved_place_that_has_ended_is_not_taken_up_unasked(
    live_server: LiveServer, people: PersonFactory
) -> None:
    """A tab restored after its place ended: before, the reload walked Ana back into
    the group as someone new (everyone saw her join) without her pressing Join."""
    room, fac, ana = await fay_and_ana(live_server, people, "Monday circle")
    restored = await copy_of_tab(ana)
    await ana.page.get_by_role("button", name="Leave").click()
    await ana.page.get_by_role("button", name="Leave now").click()
    await expect(fac.page.get_by_role("heading", name="Here now (1)")).to_be_visible()

    await restored.goto(room["invite_url"])
    await expect(restored.get_by_role("heading", name="Join your group")).to_be_visible()
    await expect(restored.locator("main").get_by_text(ENDED_PLACE)).to_be_visible()
    await expect(restored.get_by_label("Your name in the group")).to_have_value("Ana")
    await restored.wait_for_timeout(500)
    await expect(fac.page.get_by_role("heading", name="Here now (1)")).to_be_visible()
    await check_axe(restored, "join screen after a place ended")

    await restored.get_by_role("button", name="Join the group").click()  # her choice
    await expect(restored.get_by_role("button", name="Raise my hand")).to_be_visible()
    await expect(fac.page.get_by_role("heading", name="Here now (2)")).to_be_visible()


async def test_a_saved_place_of_a_session_that_ended_says_it_ended(
    live_server: LiveServer, people: PersonFactory
) -> None:
    """Nobody is meeting now: "Join again?" would send an anxious peer into a session of
    their own, alone. The server says whether the group is meeting (session_live)."""
    room, fac, ana = await fay_and_ana(live_server, people, "Monday circle")
    restored = await copy_of_tab(ana)
    await fac.page.get_by_role("button", name="End the session").click()
    await fac.page.get_by_role("button", name="Yes, end it").click()
    await expect(ana.page.get_by_role("heading", name="The session has ended")).to_be_visible()

    await restored.goto(room["invite_url"])
    await expect(restored.locator("main").get_by_text(SESSION_OVER)).to_be_visible()
    await expect(restored.locator("main").get_by_text(ENDED_PLACE)).to_have_count(0)
    await expect(restored.get_by_label("Your name in the group")).to_have_value("Ana")


async def fay_starts_a_new_session_while_ana_is_away(fac: Person, ana: Person) -> None:
    await ana.wait_for_websocket()
    await ana.go_offline()
    await expect(fac.tile("Ana")).to_contain_text("Reconnecting")
    await fac.page.get_by_role("button", name="End the session").click()
    await fac.page.get_by_role("button", name="Yes, end it").click()
    await fac.page.get_by_role("button", name="Join again").click()
    await fac.page.get_by_role("button", name="Join the group").click()
    await expect(fac.page.get_by_role("heading", name="Here now (1)")).to_be_visible()


async def test_back_online_after_the_session_ended_offers_join_again(
    live_server: LiveServer, people: PersonFactory
) -> None:
    """A phone that slept through the end of the session: before, its reconnect joined
    the next session as someone new, unasked."""
    _room, fac, ana = await fay_and_ana(live_server, people, "Monday circle", tap=True)
    await fay_starts_a_new_session_while_ana_is_away(fac, ana)

    await ana.go_online()
    await expect(ana.page.locator("main").get_by_text(ENDED_PLACE)).to_be_visible(timeout=20_000)
    await expect(ana.page.get_by_label("Your name in the group")).to_have_value("Ana")
    await ana.page.wait_for_timeout(500)
    await expect(fac.page.get_by_role("heading", name="Here now (1)")).to_be_visible()
    await shoot(ana.page, "place-ended", NARROW)


async def test_a_welcome_to_another_session_clears_what_was_on_screen(
    live_server: LiveServer, people: PersonFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that does not know resume_only (an older one) lets a resume attempt in
    as someone new: the page must not show the old chat, private notes and all, as if
    it were the same place. Before, it did, and said nothing."""
    service = live_server.app[SERVICE]
    real_connect = service.connect

    async def older_server(sid: str, auth: object, *, address: str | None = None) -> None:
        if isinstance(auth, dict):
            auth = {k: v for k, v in auth.items() if k != "resume_only"}
        await real_connect(sid, auth, address=address)

    monkeypatch.setattr(service, "connect", older_server)
    _room, fac, ana = await fay_and_ana(live_server, people, "Monday circle", tap=True)
    await ana.page.get_by_label("Private note: only the facilitators see it").check()
    await ana.page.get_by_label("Your message").fill("a note from before")
    await ana.page.get_by_role("button", name="Send privately").click()
    await expect(ana.page.get_by_role("log").get_by_text("a note from before")).to_be_visible()
    await fay_starts_a_new_session_while_ana_is_away(fac, ana)

    await ana.go_online()
    await expect(fac.page.get_by_role("heading", name="Here now (2)")).to_be_visible(timeout=20_000)
    await expect(
        ana.page.locator("#notice").get_by_text("This is a new session of your group.")
    ).to_be_visible()
    await expect(ana.page.get_by_role("log").get_by_text("a note from before")).to_have_count(0)


async def test_a_line_sent_as_the_connection_drops_is_not_offered_again_blindly(
    live_server: LiveServer, people: PersonFactory
) -> None:
    """The connection drops after the line reached the server, before its ack came
    back. Before, the page said "No answer from the server. Try again.": trying again
    sent the line twice."""
    _room, fac, ana = await fay_and_ana(live_server, people, "Monday circle", tap=True)
    await ana.wait_for_websocket()
    ana.tap.drop_next = lambda frame: frame.startswith("43")  # the ack of chat.send
    await ana.page.get_by_label("Your message").fill("did this go?")
    await ana.page.get_by_role("button", name="Send", exact=True).click()
    await expect(fac.page.get_by_role("log").get_by_text("did this go?")).to_be_visible()
    for _ in range(50):
        if ana.tap.dropped:
            break
        await asyncio.sleep(0.1)
    assert ana.tap.dropped, "the ack never came past the tap"

    await ana.go_offline()
    await expect(
        ana.page.get_by_text("Connection dropped; check whether it went through.")
    ).to_be_visible()
    await expect(ana.page.get_by_text("Try again")).to_have_count(0)
    await ana.go_online()
    await expect(ana.page.get_by_role("log").get_by_text("did this go?")).to_be_visible()


async def test_leave_now_on_a_line_gone_quiet_leaves_within_seconds(
    live_server: LiveServer, people: PersonFactory
) -> None:
    """Before, "Leave now" waited up to 10 s for the server's answer, with nothing to
    show it had been pressed."""
    _room, _fac, ana = await fay_and_ana(live_server, people, "Monday circle", tap=True)
    await ana.wait_for_websocket()
    ana.tap.stalled = True
    await ana.page.get_by_role("button", name="Leave").click()
    await ana.page.get_by_role("button", name="Leave now").click()
    await expect(ana.page.get_by_role("button", name="Leave now")).to_be_disabled(timeout=1_000)
    await expect(ana.page.locator("#leave").get_by_text("Leaving…")).to_be_visible()
    await expect(ana.page.get_by_role("heading", name="You left the room")).to_be_visible(
        timeout=4_000
    )
