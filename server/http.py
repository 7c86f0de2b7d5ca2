"""HTTP routes: rooms, health, metrics and the browser client's files."""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from rooms.errors import ErrorCode, RoomError
from rooms.model import QueueOrder
from server.errors import SOMETHING_WENT_WRONG, http_error
from server.keys import LIVE, METRICS, RECORDER, ROOM_TOKENS, SETTINGS, STORAGE
from server.payloads import validate_title
from server.storage.base import PinTaken, RoomRecord, Storage, StorageUnavailable
from server.tokens import RoomTokens, TokenKind, same_secret

MAX_BODY_BYTES: Final = 8 * 1024
PIN_DIGITS: Final = 6  # easy to key in on a phone, a million to guess from
PIN_TRIES: Final = 20

# What a room, session or check-in id can look like (secrets.token_urlsafe): anything
# else is no id of ours, answered 404 before it reaches a database (PostgreSQL refused a
# NUL in one with an error of its own, a 500).
ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")  # with .match(): whole

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def is_admin(request: web.Request) -> bool:
    return same_secret(bearer(request), request.app[SETTINGS].admin_token)


def require_admin_or_facilitator(request: web.Request, room_id: str | None) -> None:
    """Admin token, or the facilitator token of ``room_id`` (any room if None)."""
    if is_admin(request):
        return
    token = request.app[ROOM_TOKENS].verify(bearer(request))
    if (
        token is not None
        and token.kind is TokenKind.FACILITATOR
        and (room_id is None or token.room_id == room_id)
    ):
        return
    if bearer(request) is None:
        raise http_error(ErrorCode.BAD_TOKEN, "Send 'Authorization: Bearer <token>'.")
    raise http_error(ErrorCode.FORBIDDEN, "That token cannot see this.")


async def json_body(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise http_error(ErrorCode.BAD_REQUEST, "The request body is too large.")
    raw = b""
    while not request.content.at_eof():  # read() may return only what has arrived so far
        raw += await request.content.read(MAX_BODY_BYTES + 1 - len(raw))
        if len(raw) > MAX_BODY_BYTES:
            raise http_error(ErrorCode.BAD_REQUEST, "The request body is too large.")
    try:
        data = json.loads(raw or b"{}")
    except (ValueError, RecursionError):  # RecursionError: thousands of nested brackets
        raise http_error(ErrorCode.BAD_REQUEST, "The body must be JSON.") from None
    if not isinstance(data, dict):
        raise http_error(ErrorCode.BAD_REQUEST, "The body must be a JSON object.")
    return data


def _opt_bool(data: dict[str, Any], key: str, default: bool) -> bool:
    v = data.get(key, default)
    if not isinstance(v, bool):
        raise http_error(ErrorCode.BAD_REQUEST, f"'{key}' must be true or false.")
    return v


async def create_room(
    storage: Storage,
    tokens: RoomTokens,
    link: Callable[[str], str],
    *,
    title: str,
    waiting_room: bool = False,
    transcripts_allowed: bool = True,
) -> dict[str, str]:
    """Create a durable room; returns the contract's ``POST /api/rooms`` body."""
    room_id = secrets.token_urlsafe(9)
    for _ in range(PIN_TRIES):
        pin = "".join(secrets.choice("0123456789") for _ in range(PIN_DIGITS))
        record = RoomRecord(
            id=room_id,
            title=title,
            phone_pin=pin,
            waiting_room=waiting_room,
            transcripts_allowed=transcripts_allowed,
            chat_enabled=True,
            queue_order=QueueOrder.TIME,
            created_at=time.time(),
        )
        try:
            await storage.create_room(record)
            break
        except PinTaken:
            continue
    else:
        raise http_error(ErrorCode.UNAVAILABLE, "Could not find a free phone PIN; try again.")
    facilitator = tokens.issue(room_id, TokenKind.FACILITATOR)
    invite = tokens.issue(room_id, TokenKind.INVITE)
    return {
        "room_id": room_id,
        "facilitator_token": facilitator,
        "invite_token": invite,
        "phone_pin": pin,
        "facilitator_url": link(facilitator),
        "invite_url": link(invite),
    }


@routes.post("/api/rooms")
async def post_room(request: web.Request) -> web.Response:
    if not is_admin(request):
        if bearer(request) is None:  # as every other route: no token is 401, a wrong one 403
            raise http_error(ErrorCode.BAD_TOKEN, "Send 'Authorization: Bearer <token>'.")
        raise http_error(ErrorCode.FORBIDDEN, "Creating rooms needs the admin token.")
    data = await json_body(request)
    try:
        title = validate_title(data.get("title"))
    except RoomError as e:
        raise http_error(e.code, e.message) from None
    body = await create_room(
        request.app[STORAGE],
        request.app[ROOM_TOKENS],
        request.app[SETTINGS].room_link,
        title=title,
        waiting_room=_opt_bool(data, "waiting_room", False),
        transcripts_allowed=_opt_bool(data, "transcripts_allowed", True),
    )
    return web.json_response(body, status=201)


@routes.get("/api/rooms/{room_id}")
async def get_room(request: web.Request) -> web.Response:
    room_id = request.match_info["room_id"]
    require_admin_or_facilitator(request, room_id)
    if not ID_PATTERN.match(room_id):
        raise http_error(ErrorCode.NOT_FOUND, "No such room.")
    room = await request.app[STORAGE].get_room(room_id)
    if room is None:
        raise http_error(ErrorCode.NOT_FOUND, "No such room.")
    state = await request.app[LIVE].get(room_id)
    settings = (state.settings if state else room.settings()).as_dict()
    return web.json_response(
        {
            "room_id": room.id,
            "title": room.title,
            "phone_pin": room.phone_pin,
            "settings": settings,
            "live": state is not None,
            "session_id": state.session_id if state else None,
            "participants": len(state.participants) if state else 0,
            "waiting": len(state.waiting) if state else 0,
        }
    )


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    recorder = request.app[RECORDER]
    # Storage is fine when it answers now and the recorder is not stuck retrying.
    storage_ok = await request.app[STORAGE].healthy() and not recorder.failing
    live_ok = await request.app[LIVE].healthy()
    ok = storage_ok and live_ok
    body = {"ok": ok, "storage": storage_ok, "live": live_ok, "storage_backlog": recorder.backlog}
    return web.json_response(body, status=200 if ok else 503)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    allowed = request.app[SETTINGS].metrics_allow
    try:
        remote = ipaddress.ip_address(request.remote or "")
        ok = any(remote in ipaddress.ip_network(net, strict=False) for net in allowed)
    except ValueError:
        ok = False
    if not ok:
        raise http_error(ErrorCode.FORBIDDEN, "Metrics are served to the configured hosts only.")
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


# the browser client ----------------------------------------------------------------------

SECURITY_HEADERS: Final = {
    # Links carry room tokens: never leak them to another site through Referer.
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "style-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
}


API_HEADERS: Final = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox; frame-ancestors 'none'",
}


def _index_file(web_dir: Path) -> Path:
    built = web_dir / "dist" / "index.html"
    return built if built.exists() else web_dir / "fallback.html"


@routes.get("/")
@routes.get("/r/{token}")
async def client_page(request: web.Request) -> web.FileResponse:
    page = _index_file(request.app[SETTINGS].web_dir)
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-store"}
    return web.FileResponse(page, headers=headers)


@web.middleware
def storage_errors(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    """A request that needs the database while it is down gets a coded 503.

    Not a coroutine on purpose: a Socket.IO connection is one request that lasts as long
    as the person stays, and an awaiting middleware would keep its frame alive all that
    time (about 0.8 KB a participant, measured). Those requests go straight through.
    """
    if request.path.startswith("/socket.io"):
        return handler(request)
    return _storage_errors(request, handler)


async def _storage_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except StorageUnavailable:
        raise http_error(
            ErrorCode.UNAVAILABLE, "The database is unavailable right now; try again soon."
        ) from None
    except RoomError as e:  # the live state's store is down (LiveUnavailable), say
        raise http_error(e.code, str(e)) from None
    except web.HTTPMethodNotAllowed as e:
        if not request.path.startswith("/api/") or e.content_type == "application/json":
            raise
        body = {
            "error": {"code": "bad_request", "message": f"{request.method} is not allowed here."}
        }
        raise web.HTTPMethodNotAllowed(
            request.method,
            e.allowed_methods,
            text=json.dumps(body),
            content_type="application/json",
        ) from None
    except web.HTTPNotFound as e:
        # The router's own 404 is plain text; an API client gets the contract's shape.
        if not request.path.startswith("/api/") or e.content_type == "application/json":
            raise
        raise http_error(ErrorCode.NOT_FOUND, "There is no such API path.") from None
    except web.HTTPException:
        raise
    except Exception:
        if not request.path.startswith("/api/"):
            raise
        # aiohttp's own 500 is plain text; an API client gets the contract's shape. The
        # route's pattern is logged, never the path (it may hold an id or a token).
        log.exception("%s %s failed", request.method, route_of(request))
        raise http_error(ErrorCode.INTERNAL, SOMETHING_WENT_WRONG) from None


def route_of(request: web.Request) -> str:
    """The matched route's pattern (``/api/rooms/{room_id}``), or ``-``: what a log may say
    of a request's path."""
    info = request.match_info
    resource = getattr(info.route, "resource", None) if info.http_exception is None else None
    return resource.canonical if resource is not None else "-"


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the static client files get the page's security headers
    (a signal rather than a middleware, for the same reason as above). API answers
    (tokens, a phone PIN, check-ins with numbers, transcripts to download) are never
    cached, never sniffed as another type, and a download opened in a tab runs nothing."""
    path = request.path
    if path.startswith("/static/"):
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
    elif path.startswith("/api/"):
        for k, v in API_HEADERS.items():
            response.headers.setdefault(k, v)
