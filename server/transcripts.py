"""``GET /api/sessions/{id}/transcript``: the JSON of the contract, and Markdown and
plain-text downloads (``?format=md|txt`` or ``/transcript.md``, ``/transcript.txt``).

Who may read is :func:`server.transcript_access.participant_may_read` and the
facilitator token of the room; see that module.
"""

from __future__ import annotations

import re
import time
from typing import Final

from aiohttp import web

from presence.resume import ResumeClaim
from rooms.errors import ErrorCode
from server.errors import http_error
from server.http import ID_PATTERN, bearer
from server.keys import LIVE, ROOM_TOKENS, SERVICE, STORAGE
from server.live import LiveUnavailable
from server.storage.base import Storage, TranscriptLine
from server.tokens import RoomToken, TokenKind
from server.transcript_access import newer_consent, participant_may_read

FORMATS: Final = ("json", "md", "txt")

routes = web.RouteTableDef()


# rendering ------------------------------------------------------------------------------


def as_json(session_id: str, room_id: str, lines: list[TranscriptLine]) -> dict[str, object]:
    return {
        "session_id": session_id,
        "room_id": room_id,
        "lines": [
            {"id": x.id, "from_name": x.from_name, "text": x.text, "ts": x.ts} for x in lines
        ],
    }


_MD_SPECIAL: Final = re.compile(r"([\\`*_\[\]<>#|~])")


def _md(text: str) -> str:
    """Escape what Markdown would turn into markup (or raw HTML)."""
    return _MD_SPECIAL.sub(r"\\\1", text)


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ts))


def as_markdown(title: str, session_id: str, lines: list[TranscriptLine]) -> str:
    day = time.strftime("%Y-%m-%d", time.gmtime(lines[0].ts)) if lines else ""
    out = [
        f"# Transcript: {_md(title)}",
        "",
        f"Session `{session_id}` {day}, times in UTC. Only the lines of participants "
        "who chose to be transcribed are here.",
        "",
    ]
    for x in lines:
        body = "\n  ".join(_md(t) for t in x.text.splitlines() or [""])
        out.append(f"- **{_md(x.from_name)}** ({_clock(x.ts)}): {body}")
    return "\n".join(out) + "\n"


def as_text(title: str, session_id: str, lines: list[TranscriptLine]) -> str:
    out = [f"Transcript: {title}", f"Session {session_id}, times in UTC", ""]
    for x in lines:
        body = "\n    ".join(x.text.splitlines() or [""])
        out.append(f"[{_clock(x.ts)}] {x.from_name}: {body}")
    return "\n".join(out) + "\n"


# the route ------------------------------------------------------------------------------


@routes.get("/api/sessions/{session_id}/transcript")
@routes.get("/api/sessions/{session_id}/transcript.{fmt}")
async def get_transcript(request: web.Request) -> web.StreamResponse:
    session_id = request.match_info["session_id"]
    fmt = request.match_info.get("fmt") or request.query.get("format", "json")
    if fmt not in FORMATS:
        raise http_error(ErrorCode.BAD_REQUEST, "'format' must be json, md or txt.")
    storage = request.app[STORAGE]
    room_id = await _authorize(request, storage, session_id)
    lines = await storage.list_lines(session_id)
    headers = {"Cache-Control": "no-store"}
    if fmt == "json":
        return web.json_response(as_json(session_id, room_id, lines), headers=headers)
    room = await storage.get_room(room_id)
    title = room.title if room else ""
    if fmt == "md":
        body, ctype = as_markdown(title, session_id, lines), "text/markdown"
    else:
        body, ctype = as_text(title, session_id, lines), "text/plain"
    headers["Content-Disposition"] = f'attachment; filename="transcript-{session_id}.{fmt}"'
    return web.Response(text=body, content_type=ctype, charset="utf-8", headers=headers)


async def _authorize(request: web.Request, storage: Storage, session_id: str) -> str:
    """The session's room id, if the bearer may read its transcript; raises otherwise.

    A token that is neither a room token nor a resume token is refused before the
    session is looked up, so junk tokens cannot probe which sessions exist.
    """
    token = bearer(request)
    if token is None:
        raise http_error(ErrorCode.BAD_TOKEN, "Send 'Authorization: Bearer <token>'.")
    room_token = request.app[ROOM_TOKENS].verify(token)
    claim = request.app[SERVICE].resume_tokens.verify(token) if room_token is None else None
    if room_token is None and claim is None:
        raise http_error(ErrorCode.BAD_TOKEN, "That token is not valid.")
    if not ID_PATTERN.match(session_id):
        raise http_error(ErrorCode.NOT_FOUND, "No such session.")
    room_id = await _room_of(request, storage, session_id)
    if claim is not None:
        await _require_participant(request, storage, claim, session_id, room_id)
    elif (
        room_token is None
        or room_token.kind is not TokenKind.FACILITATOR
        or room_token.room_id != room_id
    ):
        raise http_error(ErrorCode.FORBIDDEN, "Only this room's facilitator link can read this.")
    return room_id


def _facilitator_of(token: RoomToken | None, room_id: str) -> bool:
    return token is not None and token.kind is TokenKind.FACILITATOR and token.room_id == room_id


async def _room_of(request: web.Request, storage: Storage, session_id: str) -> str:
    room_id = request.app[SERVICE].facts.room_of(session_id)
    if room_id is None:
        session = await storage.get_session(session_id)
        room_id = session.room_id if session else None
    if room_id is None:
        raise http_error(ErrorCode.NOT_FOUND, "No such session.")
    return room_id


async def _live_consent(
    request: web.Request, room_id: str, session_id: str, pid: str
) -> bool | None:
    """The participant's consent in the live session, if they are in it now: the one
    state every node shares. This node's own facts hold only what was decided here; a
    change made through another node (consent withdrawn there) would not be in them."""
    try:
        state = await request.app[LIVE].get(room_id)
    except LiveUnavailable:
        return None
    if state is None or state.session_id != session_id:
        return None
    p = state.get(pid)
    return p.consent if p is not None else None


async def _require_participant(
    request: web.Request, storage: Storage, claim: ResumeClaim, session_id: str, room_id: str
) -> None:
    if claim.session_id != session_id or claim.room_id != room_id:
        raise http_error(ErrorCode.FORBIDDEN, "That token belongs to another session.")
    facts = request.app[SERVICE].facts
    pid = claim.participant_id
    consent = await _live_consent(request, room_id, session_id, pid)
    if consent is None:
        stored = await storage.latest_consent_at(session_id, pid)
        consent = newer_consent(facts.consent_at(session_id, pid), stored)
    actions = facts.actions_on(session_id, pid) | await storage.audit_actions_on(session_id, pid)
    if not participant_may_read(consent, actions):
        raise http_error(
            ErrorCode.FORBIDDEN,
            "Only participants who are being transcribed in this session can read it.",
        )
