"""A facilitator and two peers in one room, as each of them sees it."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import pytest
from playwright.async_api import expect

from tests.phone.bridge_client import Bridge
from tests.support import LiveServer

from .conftest import NARROW, WIDE, PersonFactory, check_axe, fay_and_ana, shoot
from .test_checkins import BRIDGE_TOKEN

pytestmark = pytest.mark.browser


@pytest.mark.redis_pass
async def test_hands_floor_chat_consent_and_mute(
    live_server: LiveServer, people: PersonFactory
) -> None:
    room = await live_server.create_room("Tuesday circle")
    fac = await people("Fay", WIDE)
    ana = await people("Ana", NARROW)
    ben = await people("Ben", NARROW)

    await fac.join(room["facilitator_url"])
    await ana.join(room["invite_url"])
    await ben.join(room["invite_url"])

    # Everyone sees everyone, camera-off presence with initials.
    for person in (fac, ana, ben):
        await expect(person.page.get_by_role("heading", name="Here now (3)")).to_be_visible()
        await expect(person.page.get_by_role("heading", name="Tuesday circle")).to_be_visible()
    await expect(ana.tile("Fay")).to_contain_text("Facilitator")
    await expect(ana.tile("Ben").locator(".avatar")).to_have_text("B")
    await expect(fac.page.get_by_role("heading", name="Facilitator tools")).to_be_visible()
    await expect(ana.page.get_by_role("heading", name="Facilitator tools")).to_have_count(0)

    # Hands go up in order; everyone sees the queue with positions.
    await ana.page.get_by_role("button", name="Raise my hand").click()
    await expect(
        ana.controls().get_by_text("Your hand is up. You are 1st in line.")
    ).to_be_visible()
    await ben.page.get_by_role("button", name="Raise my hand").click()
    await expect(
        ben.controls().get_by_text("Your hand is up. You are 2nd in line.")
    ).to_be_visible()
    for person in (fac, ana, ben):
        await expect(person.queue().get_by_role("listitem")).to_have_text(
            [re.compile("Ana|You"), re.compile("Ben|You")]
        )
    await expect(fac.tile("Ben")).to_contain_text("Hand up, 2nd")
    await expect(fac.announcer()).to_contain_text("Ben raised a hand")

    # Next speaker: Ana gets the floor; Ben moves up to 1st.
    await fac.page.get_by_role("button", name="Next speaker: Ana").click()
    await expect(ana.page.get_by_role("region", name="Who is speaking")).to_have_text(
        "You have the floor. Take your time."
    )
    # The floor line itself, not the screen-reader announcer saying the same words.
    await expect(ben.page.locator("p", has_text="Ana has the floor.")).to_be_visible()
    await expect(ben.announcer()).to_contain_text("Ana has the floor")
    await expect(
        ben.controls().get_by_text("Your hand is up. You are 1st in line.")
    ).to_be_visible()
    await expect(fac.tile("Ana")).to_contain_text("Speaking")
    await fac.page.get_by_role("button", name="Clear the floor").click()
    await expect(ben.page.locator("p", has_text="Nobody has the floor right now.")).to_be_visible()
    await expect(ben.announcer()).to_contain_text("Nobody has the floor")

    # Ben lowers his own hand.
    await ben.page.get_by_role("button", name="Lower my hand").click()
    await expect(fac.page.get_by_text("No hands raised.")).to_be_visible()

    # Chat to the group.
    await ben.page.get_by_label("Your message").fill("hello everyone")
    await ben.page.get_by_role("button", name="Send", exact=True).click()
    for person in (fac, ana):
        await expect(person.page.get_by_role("log").get_by_text("hello everyone")).to_be_visible()
    # A line in Hebrew (with the right-to-left mark a Hebrew keyboard adds) reads from the
    # right, on its own: the line before it does not.
    hebrew = "\u05e9\u05dc\u05d5\u05dd \u05dc\u05db\u05d5\u05dc\u05dd\u200f"
    await ana.page.get_by_label("Your message").fill(hebrew)
    await ana.page.get_by_role("button", name="Send", exact=True).click()
    line = fac.page.get_by_role("log").get_by_text(hebrew)
    await expect(line).to_be_visible()
    assert await line.evaluate("el => getComputedStyle(el).direction") == "rtl"
    hello = fac.page.get_by_role("log").get_by_text("hello everyone")
    assert await hello.evaluate("el => getComputedStyle(el).direction") == "ltr"

    # A private note reaches the facilitator only.
    await ana.page.get_by_label("Private note: only the facilitators see it").check()
    await ana.page.get_by_label("Your message").fill("can we talk after?")
    await ana.page.get_by_role("button", name="Send privately").click()
    await expect(ana.page.get_by_text("Private note sent to the facilitators.")).to_be_visible()
    fac_log = fac.page.get_by_role("log")
    await expect(fac_log.get_by_text("can we talk after?")).to_be_visible()
    await expect(fac_log.get_by_text("Private note to you")).to_be_visible()
    # Said at the top of the page too (sticky there), and to a screen reader.
    note = "Ana sent the facilitators a private note. It is in the chat."
    await expect(fac.page.locator("#notice").get_by_text(note)).to_be_visible()
    await expect(fac.announcer()).to_contain_text(note)
    await expect(ben.page.locator("#notice").get_by_text(note)).to_have_count(0)
    # The group line after the note still arrives for Ben (the note is no gap).
    await fac.page.get_by_label("Your message").fill("welcome, both")
    await fac.page.get_by_role("button", name="Send", exact=True).click()
    await expect(ben.page.get_by_role("log").get_by_text("welcome, both")).to_be_visible()
    await expect(ben.page.get_by_role("log").get_by_text("can we talk after?")).to_have_count(0)

    # Consent: everyone sees who is transcribed.
    await expect(ben.page.get_by_text("Nobody's chat is being kept.")).to_be_visible()
    await ana.page.get_by_role("switch", name="Keep my chat messages").click()
    for person in (fac, ben):
        await expect(person.page.get_by_text("Chat kept for: Ana.")).to_be_visible()
    await expect(ana.page.get_by_role("switch", name="Keep my chat messages")).to_have_attribute(
        "aria-checked", "true"
    )

    # Ana can delete what was kept of hers.
    await ana.page.get_by_role("button", name="Delete my kept messages").click()
    await expect(
        ana.page.get_by_text("Your kept chat messages from this session were deleted.")
    ).to_be_visible()
    await expect(ben.page.get_by_role("button", name="Delete my kept messages")).to_have_count(0)

    # A facilitator removes a chat message; everyone sees it gone.
    await fac.page.get_by_role("button", name="Remove message from Ben").click()
    for person in (ana, ben):
        await expect(person.page.get_by_role("log").get_by_text("hello everyone")).to_have_count(0)
        await expect(
            person.page.get_by_text("A message was removed by a facilitator.")
        ).to_be_visible()

    # Mic on by choice; the facilitator mutes; asking to unmute never unmutes.
    await ana.page.get_by_role("switch", name="Microphone").click()
    await expect(fac.tile("Ana")).to_contain_text("Mic on")
    await fac.tile("Ana").get_by_text("Actions").click()
    await fac.tile("Ana").get_by_role("button", name="Mute").click()
    await expect(ana.page.get_by_text("A facilitator turned your microphone off.")).to_be_visible()
    await expect(ana.page.get_by_role("switch", name="Microphone")).to_have_attribute(
        "aria-checked", "false"
    )
    await expect(fac.tile("Ana")).to_contain_text("Muted")
    await fac.tile("Ana").get_by_role("button", name="Ask to unmute").click()
    await expect(
        ana.page.get_by_text("A facilitator invites you to turn your microphone on.")
    ).to_be_visible()
    await ana.page.wait_for_timeout(500)
    await expect(ana.page.get_by_role("switch", name="Microphone")).to_have_attribute(
        "aria-checked", "false"
    )
    await expect(fac.tile("Ana")).to_contain_text("Muted")

    # Screenshots and axe, peer and facilitator, wide and narrow.
    await ben.page.get_by_role("button", name="Raise my hand").click()
    await expect(fac.tile("Ben")).to_contain_text("Hand up, 1st")
    for person, who in ((ana, "room-peer"), (fac, "room-facilitator")):
        await check_axe(person.page, who)
        await shoot(person.page, who, WIDE)
        await shoot(person.page, who, NARROW)
        await check_axe(person.page, who + " narrow")

    # Ana declines the invitation; her mic stays off.
    await ana.page.get_by_role("button", name="Not now").click()
    await expect(ana.page.get_by_text("A facilitator invites you")).to_have_count(0)
    await expect(ana.page.get_by_role("switch", name="Microphone")).to_have_attribute(
        "aria-checked", "false"
    )


async def test_facilitator_can_stop_camera_lower_hands_and_promote(
    live_server: LiveServer, people: PersonFactory
) -> None:
    _room, fac, ana = await fay_and_ana(live_server, people, "Thursday circle")

    await ana.page.get_by_role("switch", name="Camera").click()
    await expect(fac.tile("Ana")).to_contain_text("Camera on")
    await fac.tile("Ana").get_by_text("Actions").click()
    await fac.tile("Ana").get_by_role("button", name="Stop camera").click()
    await expect(ana.page.get_by_text("A facilitator turned your camera off.")).to_be_visible()
    await expect(fac.tile("Ana")).to_contain_text("Camera off")

    await ana.page.get_by_role("button", name="Raise my hand").click()
    await expect(fac.tile("Ana")).to_contain_text("Hand up, 1st")
    # By keyboard: the button goes away with the hand, focus stays in Ana's menu.
    await fac.tile("Ana").get_by_role("button", name="Lower hand").focus()
    await fac.page.keyboard.press("Enter")
    await expect(fac.tile("Ana").locator("summary")).to_be_focused()
    await expect(ana.page.get_by_role("button", name="Raise my hand")).to_be_visible()
    await expect(ana.page.get_by_text("No hands raised.")).to_be_visible()

    # Promotion shows the tools live; demotion takes them away.
    await fac.tile("Ana").get_by_role("button", name="Make co-facilitator").click()
    await expect(ana.page.get_by_role("heading", name="Facilitator tools")).to_be_visible()
    await expect(ana.tile("Ana")).to_contain_text("Co-facilitator")
    await expect(ana.page.get_by_role("button", name="End the session")).to_have_count(0)
    await expect(ana.tile("Fay").get_by_text("Actions")).to_have_count(0)  # not over a facilitator
    await fac.tile("Ana").get_by_role("button", name="Make participant").click()
    await expect(ana.page.get_by_role("heading", name="Facilitator tools")).to_have_count(0)

    # Pausing the chat: the peer is told, and can still reach the facilitators privately.
    paused = "The facilitator has paused the group chat. You can still send them a private note."
    await fac.page.get_by_role("switch", name="Group chat").click()
    await expect(ana.page.get_by_text(paused)).to_be_visible()
    await expect(
        ana.page.get_by_label("Private note: only the facilitators see it")
    ).to_be_checked()
    await expect(
        ana.page.get_by_label("Private note: only the facilitators see it")
    ).to_be_disabled()
    await ana.page.get_by_label("Your message").fill("is it ok if I step out?")
    await ana.page.get_by_role("button", name="Send privately").click()
    await expect(fac.page.get_by_text("is it ok if I step out?")).to_be_visible()
    await fac.page.get_by_role("switch", name="Group chat").click()
    await expect(ana.page.get_by_text(paused)).to_have_count(0)
    await expect(
        ana.page.get_by_label("Private note: only the facilitators see it")
    ).to_be_enabled()

    # Queue order setting reaches the server and comes back.
    await fac.page.get_by_label("Queue order").select_option("quieter_first")
    await fac.page.reload()  # a tab reload comes back to the same place, with the setting
    await expect(fac.page.get_by_label("Queue order")).to_have_value("quieter_first")
    await expect(fac.page.get_by_role("heading", name="Here now (2)")).to_be_visible()


async def test_removal_and_end_of_session(live_server: LiveServer, people: PersonFactory) -> None:
    room = await live_server.create_room("Friday circle")
    fac = await people("Fay", WIDE)
    ana = await people("Ana", NARROW)
    ben = await people("Ben", NARROW)
    for person, url in (
        (fac, room["facilitator_url"]),
        (ana, room["invite_url"]),
        (ben, room["invite_url"]),
    ):
        await person.join(url)
    await expect(fac.page.get_by_role("heading", name="Here now (3)")).to_be_visible()

    await fac.tile("Ben").get_by_text("Actions").click()
    await fac.tile("Ben").get_by_role("button", name="Remove and keep out").click()
    await fac.tile("Ben").get_by_role("button", name="Yes, remove and keep out").click()
    await expect(ben.page.get_by_role("heading", name="You have left the room")).to_be_visible()
    await expect(ben.page.get_by_text("A facilitator removed you")).to_be_visible()
    await check_axe(ben.page, "removed screen")
    await shoot(ben.page, "removed", NARROW)
    for person in (fac, ana):
        await expect(person.page.get_by_role("heading", name="Here now (2)")).to_be_visible()
        await expect(person.tile("Ben")).to_have_count(0)
    # Banned: coming back is refused.
    again = await people("Ben", NARROW)
    await again.join(room["invite_url"], expect_room=False)
    await expect(again.page.get_by_text("You cannot rejoin this session.")).to_be_visible()

    # Lock: a newcomer is refused in plain words.
    await fac.page.get_by_role("switch", name="Room locked").click()
    await expect(fac.page.get_by_role("switch", name="Room locked")).to_have_attribute(
        "aria-checked", "true"
    )
    late = await people("Cai", NARROW)
    await late.join(room["invite_url"], expect_room=False)
    await expect(late.page.get_by_text("The room is locked right now.")).to_be_visible()

    # End the session: a confirmation, then everyone sees the end.
    await fac.page.get_by_role("button", name="End the session").click()
    await fac.page.get_by_role("button", name="Yes, end it").click()
    for person in (fac, ana):
        await expect(
            person.page.get_by_role("heading", name="The session has ended")
        ).to_be_visible()


async def test_a_settings_change_does_not_redraw_the_chat_log(
    live_server: LiveServer, people: PersonFactory
) -> None:
    """The chat log is a live region: redrawn whole on every settings broadcast, a screen
    reader could read the whole conversation out again. Lines stay where they are; a
    change of role, which changes what a line shows a moderator, still redraws."""
    _room, fac, ana = await fay_and_ana(live_server, people, "Tuesday circle")
    await ana.page.get_by_label("Your message").fill("hello all")
    await ana.page.get_by_role("button", name="Send", exact=True).click()
    line = ana.page.get_by_role("log").locator("li").filter(has_text="hello all")
    await expect(line).to_be_visible()
    first = await line.element_handle()
    await fac.page.get_by_role("switch", name="Room locked").click()
    await expect(ana.page.get_by_role("log").get_by_text("hello all")).to_be_visible()
    await fac.page.get_by_role("switch", name="Room locked").click()
    await ana.page.wait_for_timeout(300)
    assert await first.evaluate("el => el.isConnected"), "the log was redrawn"
    # Made a cofacilitator: the line now offers Remove, so the log is redrawn.
    ana_tile = fac.tile("Ana")
    await ana_tile.get_by_text("Actions").click()
    await ana_tile.get_by_role("button", name="Make co-facilitator").click()
    await expect(ana.page.get_by_role("button", name="Remove your message")).to_be_visible()


async def test_dismissing_a_notice_by_keyboard_keeps_the_focus_in_the_room(
    live_server: LiveServer, people: PersonFactory
) -> None:
    """The pressed button goes with its notice: focus fell to the top of the page."""
    _room, fac, ana = await fay_and_ana(live_server, people, "Tuesday circle")
    await fac.tile("Ana").get_by_text("Actions").click()
    await fac.tile("Ana").get_by_role("button", name="Ask to unmute").click()
    not_now = ana.page.get_by_role("button", name="Not now")
    await not_now.focus()
    await ana.page.keyboard.press("Enter")
    await expect(ana.page.get_by_role("button", name="Raise my hand")).to_be_focused()
    await ana.page.get_by_role("switch", name="Microphone").click()
    await expect(fac.tile("Ana")).to_contain_text("Mic on")
    await fac.tile("Ana").get_by_role("button", name="Mute").click()
    ok = ana.page.get_by_role("button", name="OK")
    await ok.focus()
    await ana.page.keyboard.press("Enter")
    await expect(ana.page.get_by_text("A facilitator turned your microphone off.")).to_have_count(0)
    await expect(ana.page.get_by_role("button", name="Raise my hand")).to_be_focused()


async def test_a_ban_that_cannot_hold_is_explained(
    server_factory: Callable[..., Awaitable[LiveServer]], people: PersonFactory
) -> None:
    """A caller with a hidden number cannot be kept out: the facilitator reads why and
    what to do instead, rather than trusting a ban that does not hold."""
    server = await server_factory(bridge_token=BRIDGE_TOKEN)
    room = await server.create_room("Phone circle")
    fac = await people("Fay", WIDE)
    await fac.join(room["facilitator_url"])
    bridge = Bridge(server.url)
    await bridge.connect(BRIDGE_TOKEN)
    try:
        join = {"call_id": "h1", "pin": room["phone_pin"], "caller": "anonymous"}
        assert (await bridge.call("call.join", join))["ok"]
        await fac.tile("Caller").get_by_text("Actions").click()
        await fac.tile("Caller").get_by_role("button", name="Remove and keep out").click()
        await fac.tile("Caller").get_by_role("button", name="Yes, remove and keep out").click()
        await expect(fac.page.get_by_text("their number is hidden")).to_be_visible()
        await expect(fac.announcer()).to_contain_text("Lock the room to keep new people out")
        await expect(fac.tile("Caller")).to_have_count(0)
    finally:
        await bridge.close()


async def test_ending_the_session_reports_no_false_error(
    live_server: LiveServer, people: PersonFactory
) -> None:
    """The server sends session.ended before the ack of mod.end, and socket.io fails a
    pending ack when its socket closes: before, "Yes, end it" was followed by "No answer
    from the server. Try again." read out to the facilitator."""
    _room, fac, ana = await fay_and_ana(live_server, people, "Friday circle")
    await fac.page.get_by_role("button", name="End the session").click()
    await fac.page.get_by_role("button", name="Yes, end it").click()
    for person in (fac, ana):
        await expect(
            person.page.get_by_role("heading", name="The session has ended")
        ).to_be_visible()
    await fac.page.wait_for_timeout(600)  # the announcer speaks after a short batching
    await expect(fac.announcer()).not_to_contain_text("No answer")
    await expect(fac.page.get_by_text("No answer")).to_have_count(0)


async def test_a_line_storage_could_not_keep_is_said_plainly(
    live_server: LiveServer, people: PersonFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Storage's backlog is full (docs/storage.md): the server tells the sender with
    `transcript.unsaved`, which the page used to ignore, so Ana believed it kept."""
    from server.keys import RECORDER

    monkeypatch.setattr(live_server.app[RECORDER], "max_pending_lines", 0)
    _room, _fac, ana = await fay_and_ana(live_server, people, "Tuesday circle")
    await ana.page.get_by_role("switch", name="Keep my chat messages").click()
    await expect(ana.page.get_by_role("switch", name="Keep my chat messages")).to_have_attribute(
        "aria-checked", "true"
    )
    await ana.page.get_by_label("Your message").fill("please keep this")
    await ana.page.get_by_role("button", name="Send", exact=True).click()
    await expect(
        ana.page.locator("#notice").get_by_text(
            "Your message reached the group, but it could not be kept in the transcript."
        )
    ).to_be_visible()
    line = ana.page.get_by_role("log").locator("li").filter(has_text="please keep this")
    await expect(line).to_contain_text("Not kept")


async def test_an_erase_still_queued_says_will_be_deleted(
    live_server: LiveServer, people: PersonFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`transcript.erase` acks `erased: null` when storage has not done it yet (it stays
    queued): before, the page said "were deleted" all the same."""
    from server.keys import RECORDER

    monkeypatch.setattr(live_server.app[RECORDER], "erase_result", lambda event: None)
    _room, _fac, ana = await fay_and_ana(live_server, people, "Tuesday circle")
    await ana.page.get_by_role("switch", name="Keep my chat messages").click()
    await ana.page.get_by_role("button", name="Delete my kept messages").click()
    await expect(
        ana.page.get_by_text(
            "Your kept chat messages from this session will be deleted as soon as the server can."
        )
    ).to_be_visible()
    await expect(ana.page.get_by_text("were deleted")).to_have_count(0)


async def test_asking_to_unmute_says_it_was_done_and_is_not_repeated_at_once(
    live_server: LiveServer, people: PersonFactory
) -> None:
    """Before, "Ask to unmute" gave the facilitator no sign it had worked, inviting
    asks again and again that pressure the peer."""
    _room, fac, ana = await fay_and_ana(live_server, people, "Tuesday circle")
    await fac.tile("Ana").get_by_text("Actions").click()
    await fac.tile("Ana").get_by_role("button", name="Ask to unmute").click()
    await expect(
        fac.page.locator("#notice").get_by_text("Ana was asked. It's their choice.")
    ).to_be_visible()
    await expect(fac.tile("Ana").get_by_role("button", name="Asked to unmute")).to_be_disabled()
    await expect(fac.tile("Ana").get_by_role("button", name="Ask to unmute")).to_have_count(0)
    await expect(
        ana.page.get_by_text("A facilitator invites you to turn your microphone on.")
    ).to_be_visible()
    await check_axe(fac.page, "a peer just asked to unmute")


async def test_removing_someone_is_asked_once_more(
    live_server: LiveServer, people: PersonFactory
) -> None:
    """Before, one tap on "Remove from room" or "Remove and keep out" put the person out
    (a mis-tap on a small screen): now it asks, as ending the session does."""
    room, fac, ana = await fay_and_ana(live_server, people, "Friday circle")
    tile = fac.tile("Ana")
    await tile.get_by_text("Actions").click()
    await tile.get_by_role("button", name="Remove and keep out").click()
    await expect(tile.get_by_text("Remove Ana and keep them out of this session?")).to_be_visible()
    await expect(tile.get_by_role("button", name="Cancel")).to_be_focused()
    await check_axe(fac.page, "asked to confirm a removal")
    await shoot(fac.page, "confirm-remove", NARROW)
    await tile.get_by_role("button", name="Cancel").click()
    await expect(tile.get_by_role("button", name="Remove and keep out")).to_be_focused()

    await tile.get_by_role("button", name="Remove from room").click()
    await expect(tile.get_by_text("Remove Ana from the room?")).to_be_visible()
    await fac.page.wait_for_timeout(300)
    await expect(ana.page.get_by_role("button", name="Raise my hand")).to_be_visible()
    await expect(fac.page.get_by_role("heading", name="Here now (2)")).to_be_visible()
    await tile.get_by_role("button", name="Yes, remove").click()
    await expect(ana.page.get_by_role("heading", name="You have left the room")).to_be_visible()
    await expect(fac.page.get_by_role("heading", name="Here now (1)")).to_be_visible()
    # Not kept out: a plain removal lets her come back.
    again = await people("Ana", NARROW)
    await again.join(room["invite_url"])
