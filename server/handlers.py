"""Socket.IO handlers for namespace ``/``: thin. Decode, call the service, return the ack."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import socketio

from rooms.errors import ErrorCode, RoomError
from server.payloads import DECODERS
from server.service import RoomService

log = logging.getLogger(__name__)


def register(sio: socketio.AsyncServer, service: RoomService) -> None:
    # python-socketio calls a handler registered for "connect" or "disconnect" also when
    # a connected client sends an event of that name (42["disconnect"]). Such an event
    # would forget the person while their socket stays in the room's broadcasts, or add
    # a second participant on one socket. The library's own calls come while the sid is
    # connecting or disconnecting, never while it is connected: that tells them apart.
    def sent_as_event(sid: str) -> bool:
        return bool(sio.manager.is_connected(sid, "/"))

    async def connect(
        sid: str, environ: object, auth: object = None, *extra: object
    ) -> dict[str, object] | None:
        if sent_as_event(sid):
            return _reserved("connect")
        try:
            await service.connect(sid, auth)
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
        if sent_as_event(sid):
            return _reserved("disconnect")
        await service.disconnected(sid)
        return None

    async def unknown(event: str, sid: str, *args: object) -> dict[str, object]:
        message = f"There is no event called {event[:40]!r}."
        return RoomError(ErrorCode.BAD_REQUEST, message).ack()

    sio.on("connect", connect)
    sio.on("disconnect", disconnect)
    for event in DECODERS:
        sio.on(event, _handler(service, event))
    sio.on("*", unknown)


def _reserved(event: str) -> dict[str, object]:
    message = f"{event!r} is not an event a client can send; the connection goes on."
    return RoomError(ErrorCode.BAD_REQUEST, message).ack()


UNAVAILABLE = RoomError(
    ErrorCode.UNAVAILABLE, "Something went wrong on the server; try again in a minute."
)


def _handler(service: RoomService, event: str) -> Callable[..., Awaitable[dict[str, object]]]:
    async def handle(sid: str, data: object = None, *extra: object) -> dict[str, object]:
        try:
            return await service.handle(sid, event, data)
        except Exception:
            log.exception("%s failed", event)  # the event's name only, never its payload
            return UNAVAILABLE.ack()

    handle.__name__ = f"on_{event}"
    return handle
