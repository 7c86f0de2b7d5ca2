"""The consent rule end to end over real Socket.IO, and who may read a transcript.

Every test runs on SQLite and on the real PostgreSQL (``backend`` fixture).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from server.keys import RECORDER
from tests.storage.helpers import flushed, lines_of, transcript
from tests.support import Client, LiveServer

Servers = Callable[..., Awaitable[LiveServer]]
People = Callable[[LiveServer], Client]


async def circle(
    servers: Servers, people: People, **room_settings: Any
) -> tuple[LiveServer, dict[str, Any], Client, dict[str, Any]]:
    server = await servers()
    room = await server.create_room(**room_settings)
    fac = people(server)
    w = await fac.join(room["facilitator_token"], "Ann")
    return server, room, fac, w


async def test_only_consenting_lines_to_everyone_are_stored(
    servers: Servers, people: People
) -> None:
    server, room, fac, w = await circle(servers, people)
    sid = w["room"]["session_id"]
    bo, cy = people(server), people(server)
    await bo.join(room["invite_token"], "Bo")
    await cy.join(room["invite_token"], "Cy")
    await bo.ok("transcript.consent", {"on": True})
    await bo.ok("chat.send", {"text": "bo line one"})
    await bo.ok("chat.send", {"text": "bo to the moderators", "to": "moderators"})
    await cy.ok("chat.send", {"text": "cy never opted in"})
    await fac.ok("chat.send", {"text": "ann never opted in"})
    await bo.ok("transcript.consent", {"on": False})
    await bo.ok("chat.send", {"text": "bo after withdrawing"})
    await bo.ok("transcript.consent", {"on": True})
    await bo.ok("chat.send", {"text": "bo line two"})
    assert await lines_of(server, sid, room["facilitator_token"]) == ["bo line one", "bo line two"]
    _, body, _ = await transcript(server, sid, room["facilitator_token"])
    assert {x["from_name"] for x in body["lines"]} == {"Bo"}
    assert set(body) == {"session_id", "room_id", "lines"}
    assert body["room_id"] == room["room_id"]
    assert set(body["lines"][0]) == {"id", "from_name", "text", "ts"}


async def test_erase_and_chat_remove_delete_stored_copies(servers: Servers, people: People) -> None:
    server, room, fac, w = await circle(servers, people)
    sid = w["room"]["session_id"]
    bo, ed = people(server), people(server)
    await bo.join(room["invite_token"], "Bo")
    await ed.join(room["invite_token"], "Ed")
    for c in (bo, ed):
        await c.ok("transcript.consent", {"on": True})
    for n in range(3):
        await bo.ok("chat.send", {"text": f"bo {n}"})
    kept = await ed.ok("chat.send", {"text": "ed kept"})
    removed = await ed.ok("chat.send", {"text": "ed removed"})
    ack = await bo.ok("transcript.erase")
    assert ack["erased"] == 3
    assert await bo.ok("transcript.erase") == {"ok": True, "erased": 0}
    ack = await fac.ok("mod.chat.remove", {"message_id": removed["id"]})
    assert ack["erased"] == 1
    _, body, _ = await transcript(server, sid, room["facilitator_token"])
    assert [x["id"] for x in body["lines"]] == [kept["id"]]
    # Consent stays on after an erase: new lines are kept again.
    await bo.ok("chat.send", {"text": "bo again"})
    assert await lines_of(server, sid, room["facilitator_token"]) == ["ed kept", "bo again"]


async def test_room_without_transcripts_stores_nothing(servers: Servers, people: People) -> None:
    server, room, _fac, w = await circle(servers, people, transcripts_allowed=False)
    sid = w["room"]["session_id"]
    bo = people(server)
    await bo.join(room["invite_token"], "Bo")
    ack = await bo.call("transcript.consent", {"on": True})
    assert ack["error"]["code"] == "not_allowed_now"
    await bo.ok("chat.send", {"text": "never kept"})
    assert await lines_of(server, sid, room["facilitator_token"]) == []


async def test_transcripts_switched_off_mid_session(servers: Servers, people: People) -> None:
    server, room, fac, w = await circle(servers, people)
    sid = w["room"]["session_id"]
    bo = people(server)
    wb = await bo.join(room["invite_token"], "Bo")
    await bo.ok("transcript.consent", {"on": True})
    await bo.ok("chat.send", {"text": "before"})
    await fac.ok("mod.settings", {"transcripts_allowed": False})
    await bo.ok("chat.send", {"text": "after"})
    assert await lines_of(server, sid, room["facilitator_token"]) == ["before"]
    # Bo's consent was switched off with the room's transcripts: no reading either.
    status, _, _ = await transcript(server, sid, wb["resume"])
    assert status == 403


async def test_who_may_read(servers: Servers, people: People) -> None:
    server, room, fac, w = await circle(servers, people)
    other_room = await server.create_room("Another circle")
    sid = w["room"]["session_id"]
    bo, cy, dee = people(server), people(server), people(server)
    wb = await bo.join(room["invite_token"], "Bo")
    wc = await cy.join(room["invite_token"], "Cy")
    wd = await dee.join(room["invite_token"], "Dee")
    for c in (bo, dee):
        await c.ok("transcript.consent", {"on": True})
    await bo.ok("chat.send", {"text": "hello"})
    await flushed(server)

    async def status(token: str | None, session: str = sid) -> int:
        code, body, _ = await transcript(server, session, token)
        if code != 200:
            assert set(body["error"]) == {"code", "message"}
        return code

    assert await status(None) == 401
    assert await status("not-a-token") == 401
    assert await status(room["invite_token"]) == 403
    assert await status(other_room["facilitator_token"]) == 403
    assert await status(room["facilitator_token"]) == 200
    assert await status(w["resume"]) == 403  # the facilitator's own resume: never consented
    assert await status(wb["resume"]) == 200  # consented
    assert await status(wc["resume"]) == 403  # never consented
    assert await status(room["facilitator_token"], "no-such-session") == 404
    assert await status(room["facilitator_token"], "bad/../id") == 404

    # Withdrawing ends access at once (no waiting for storage); opting in gives it back.
    await bo.ok("transcript.consent", {"on": False})
    assert await status(wb["resume"]) == 403
    await bo.ok("transcript.consent", {"on": True})
    assert await status(wb["resume"]) == 200

    # Removed: access ends at once, and stays ended.
    await fac.ok("mod.remove", {"id": wd["you"]["id"]})
    assert await status(wd["resume"]) == 403

    # After the session ends a consenting participant still has their transcript;
    # the removed one still does not (now from storage alone, on a fresh server too).
    await fac.ok("mod.end")
    await flushed(server)
    assert await status(wb["resume"]) == 200
    assert await status(wd["resume"]) == 403
    service = server.app[RECORDER]
    assert service.backlog == 0


async def test_access_survives_a_restart_from_storage(servers: Servers, people: People) -> None:
    """A fresh node has no live facts: consent and removal come from storage."""
    server, room, fac, w = await circle(servers, people)
    sid = w["room"]["session_id"]
    bo, dee = people(server), people(server)
    wb = await bo.join(room["invite_token"], "Bo")
    wd = await dee.join(room["invite_token"], "Dee")
    for c in (bo, dee):
        await c.ok("transcript.consent", {"on": True})
    await bo.ok("chat.send", {"text": "kept"})
    await fac.ok("mod.remove", {"id": wd["you"]["id"], "ban": True})
    await flushed(server)
    # A second server on the same data dir (secret) and database.
    again = await servers(data_dir=server.settings.data_dir)
    code, body, _ = await transcript(again, sid, wb["resume"])
    assert code == 200 and [x["text"] for x in body["lines"]] == ["kept"]
    code, _, _ = await transcript(again, sid, wd["resume"])
    assert code == 403


async def test_markdown_and_text_downloads(servers: Servers, people: People) -> None:
    server, room, _fac, w = await circle(servers, people)
    sid = w["room"]["session_id"]
    bo = people(server)
    await bo.join(room["invite_token"], "Bo_*")
    await bo.ok("transcript.consent", {"on": True})
    await bo.ok("chat.send", {"text": "line <b>one</b>\nsecond row"})
    await flushed(server)
    code, md, headers = await transcript(server, sid, room["facilitator_token"], fmt="md")
    assert code == 200
    assert headers["Content-Type"].startswith("text/markdown")
    assert f'filename="transcript-{sid}.md"' in headers["Content-Disposition"]
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in headers["Content-Security-Policy"]  # opened in a tab: runs nothing
    assert "# Transcript: Tuesday circle" in md
    assert "**Bo\\_\\***" in md and "line \\<b\\>one\\</b\\>\n  second row" in md
    code, txt, headers = await transcript(server, sid, room["facilitator_token"], fmt="txt")
    assert code == 200 and headers["Content-Type"].startswith("text/plain")
    assert "Bo_*: line <b>one</b>\n    second row" in txt
    code, body, _ = await transcript(server, sid, room["facilitator_token"], fmt="pdf")
    assert code == 400 and body["error"]["code"] == "bad_request"
    # The path form works too.
    token = room["facilitator_token"]
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{server.url}/api/sessions/{sid}/transcript.md",
            headers={"Authorization": f"Bearer {token}"},
        ) as r,
    ):
        assert r.status == 200 and (await r.text()) == md


async def test_a_line_that_cannot_be_kept_is_reported_to_its_sender(
    servers: Servers, people: People
) -> None:
    server, room, fac, w = await circle(servers, people)
    bo = people(server)
    await bo.join(room["invite_token"], "Bo")
    await bo.ok("transcript.consent", {"on": True})
    server.app[RECORDER].max_pending_lines = 0  # as if the backlog were full
    ack = await bo.ok("chat.send", {"text": "not kept"})
    got = await bo.wait_for("transcript.unsaved")
    assert got == {
        "message_id": ack["id"],
        "session_id": w["room"]["session_id"],
        "reason": "backlog_full",
    }
    assert fac.received("transcript.unsaved") == []
