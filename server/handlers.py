"""Socket.IO handlers for namespace ``/``: thin. Decode, call the service, return the ack."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import socketio

from rooms.errors import ErrorCode, RoomError
from server.errors import SOMETHING_WENT_WRONG
from server.payloads import DECODERS
from server.service import RoomService

log = logging.getLogger(__name__)


def sent_as_event(sio: socketio.AsyncServer, sid: str, namespace: str = "/") -> bool:
    """Whether a call of a connect or disconnect handler is a client's event of that
    name. python-socketio calls those handlers for a connected client's event named
    "connect" or "disconnect" too (42["disconnect"]); obeyed, it would forget a person
    whose socket stays in the room's broadcasts, or add a second participant on one
    socket. The library's own calls come while the sid is connecting or disconnecting,
    never while it is connected: that tells them apart."""
    return bool(sio.manager.is_connected(sid, namespace))


def reserved_event(event: str) -> dict[str, object]:
    """The ack of a client's event named like a reserved one: refused, nothing done."""
    message = f"{event!r} is not an event a client can send; the connection goes on."
    return RoomError(ErrorCode.BAD_REQUEST, message).ack()


def register(sio: socketio.AsyncServer, service: RoomService) -> None:
    # environ's default: a client's 42["connect"] calls this with the sid alone.
    async def connect(
        sid: str, environ: object = None, auth: object = None, *extra: object
    ) -> dict[str, object] | None:
        if sent_as_event(sio, sid):
            return reserved_event("connect")
        try:
            await service.connect(sid, auth, address=_address(service, environ))
            return None
        except RoomError as e:
            refusal = e
        except Exception:
            log.exception("join failed")  # the traceback; never the auth (it holds tokens)
            refusal = UNAVAILABLE
        service.metrics.refusals.labels(refusal.code.value).inc()
        raise socketio.exceptions.ConnectionRefusedError(refusal.message, refusal.as_dict())

    async def disconnect(
        sid: str, reason: object = None, *extra: object
    ) -> dict[str, object] | None:
        if sent_as_event(sio, sid):
            return reserved_event("disconnect")
        service.closed(sid)  # never awaits the room: see RoomService.closed
        return None

    async def unknown(event: str, sid: object = None, *args: object) -> dict[str, object]:
        # An event named "*" comes here as (sid, *args): the name is the catch-all's own.
        name = "*" if sid is None or sio.manager.is_connected(event, "/") else event
        message = f"There is no event called {name[:40]!r}."
        return RoomError(ErrorCode.BAD_REQUEST, message).ack()

    sio.on("connect", connect)
    sio.on("disconnect", disconnect)
    for event in DECODERS:
        sio.on(event, _handler(service, event))
    sio.on("*", unknown)


def _address(service: RoomService, environ: object) -> str | None:
    """The client's address for the join limit (see JoinLimiter.client_address)."""
    request = environ.get("aiohttp.request") if isinstance(environ, dict) else None
    if request is None:
        return None
    # Every header of the name: a proxy may add its own after one the client sent.
    forwarded = request.headers.getall("X-Forwarded-For", [])
    return service.joins.client_address(request.remote, forwarded)


UNAVAILABLE = RoomError(ErrorCode.UNAVAILABLE, SOMETHING_WENT_WRONG)


def _handler(service: RoomService, event: str) -> Callable[..., Awaitable[dict[str, object]]]:
    async def handle(sid: str, data: object = None, *extra: object) -> dict[str, object]:
        try:
            return await service.handle(sid, event, data)
        except Exception:
            log.exception("%s failed", event)  # the event's name only, never its payload
            return UNAVAILABLE.ack()

    handle.__name__ = f"on_{event}"
    return handle
