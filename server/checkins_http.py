"""The phone check-in queue for peer support workers (protocol.md, HTTP table).

- ``GET /api/checkins[?resolved=1]``: ``{checkins, partial}``. Every open request for a
  call (``callback``, ``talk``, unresolved) first, the longest waiting first, never cut;
  then the rest, newest first, up to :data:`LIST_LIMIT`. Admin or any facilitator
  token: the check-in line belongs to the organisation, not to one room. The full
  number is in ``number`` only on ``callback`` and ``talk`` entries, the ones someone
  must call. ``partial: true`` when the database cannot be read: the list then holds
  only the check-ins this node keeps on its disk, which are exactly the ones the outage
  put at risk, rather than a 503 that would hide them.
- ``POST /api/checkins/{id}/resolve``: done; moderators of live sessions hear it as
  ``checkins.updated`` (docs/phone.md).

Check-ins this node keeps on disk while the database is away (server/phone/pending.py)
are listed and resolvable like stored ones.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web

from rooms.errors import ErrorCode
from server.errors import http_error
from server.http import ID_PATTERN, bearer, is_admin, require_admin_or_facilitator
from server.keys import PHONE, ROOM_TOKENS, STORAGE
from server.phone.lines import CheckinStatus, checkin_public
from server.storage.base import CheckinRecord

log = logging.getLogger(__name__)

LIST_LIMIT = 200  # check-ins other than open requests for a call (those are never cut)

routes = web.RouteTableDef()


def _with_number(rec: CheckinRecord) -> bool:
    return rec.status in (CheckinStatus.CALLBACK.value, CheckinStatus.TALK.value)


def _who(request: web.Request) -> str:
    if is_admin(request):
        return "admin"
    token = request.app[ROOM_TOKENS].verify(bearer(request))
    return f"facilitator:{token.room_id}" if token else "facilitator"


@routes.get("/api/checkins")
async def list_checkins(request: web.Request) -> web.Response:
    require_admin_or_facilitator(request, None)
    include_resolved = request.query.get("resolved") in ("1", "true")
    partial = False
    try:
        records = await request.app[STORAGE].list_checkins(
            include_resolved=include_resolved, limit=LIST_LIMIT
        )
    except Exception:
        log.exception("listing check-ins failed; answering with those kept on this node")
        records, partial = [], True
    records = _with_pending(request.app[PHONE].pending.records(), records, include_resolved)
    return web.json_response(
        {
            "checkins": [checkin_public(r, with_number=_with_number(r)) for r in records],
            "partial": partial,
        },
        headers={"Cache-Control": "no-store"},
    )


def _open(rec: CheckinRecord) -> bool:
    """Someone waits for a call: never cut from the list."""
    return rec.resolved_at is None and rec.status != CheckinStatus.OK.value


def _with_pending(
    pending: list[CheckinRecord], stored: list[CheckinRecord], include_resolved: bool
) -> list[CheckinRecord]:
    """Check-ins kept on this node's disk (the database was away) with the stored ones,
    in the storage's order: open requests for a call first, oldest first, all of them;
    then the rest, newest first, up to :data:`LIST_LIMIT`."""
    ids = {r.id for r in stored}
    extra = [r for r in pending if r.id not in ids and (include_resolved or r.resolved_at is None)]
    if not extra:
        return stored
    merged = [*stored, *extra]
    waiting = sorted((r for r in merged if _open(r)), key=lambda r: (r.created_at, r.id))
    rest = sorted((r for r in merged if not _open(r)), key=lambda r: (-r.created_at, r.id))
    return [*waiting, *rest[:LIST_LIMIT]]


@routes.post("/api/checkins/{checkin_id}/resolve")
async def resolve_checkin(request: web.Request) -> web.Response:
    require_admin_or_facilitator(request, None)
    checkin_id = request.match_info["checkin_id"]
    if not ID_PATTERN.match(checkin_id):
        # Not one of our ids (a NUL failed PostgreSQL's query: a misleading 503 "retry").
        raise http_error(ErrorCode.NOT_FOUND, "No such check-in.")
    by = _who(request)
    try:
        kept = request.app[PHONE].pending.resolve(checkin_id, by=by, at=time.time())
    except OSError:
        log.exception("resolving a kept check-in failed")
        raise http_error(ErrorCode.UNAVAILABLE, "Check-ins cannot be written now; retry.") from None
    if kept is not None:  # not stored yet (the database was away): resolved on disk
        await request.app[PHONE].notify(kept)
        return web.json_response({"ok": True, "id": checkin_id})
    storage = request.app[STORAGE]
    try:
        found = await storage.resolve_checkin(checkin_id, by=by, at=time.time())
        record = await storage.get_checkin(checkin_id) if found else None
    except Exception:
        log.exception("resolving a check-in failed")
        raise http_error(ErrorCode.UNAVAILABLE, "Check-ins cannot be written now; retry.") from None
    if not found:
        raise http_error(ErrorCode.NOT_FOUND, "No such check-in.")
    if record is not None:
        await request.app[PHONE].notify(record)
    return web.json_response({"ok": True, "id": checkin_id})
