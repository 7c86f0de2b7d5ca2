"""Socket.IO handlers for namespace ``/``: thin. Decode, call the service, return the ack."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import socketio

from rooms.errors import RoomError
from server.payloads import DECODERS
from server.service import RoomService

log = logging.getLogger(__name__)


def register(sio: socketio.AsyncServer, service: RoomService) -> None:
    async def connect(sid: str, environ: dict[str, Any], auth: object = None) -> None:
        try:
            await service.connect(sid, auth)
        except RoomError as e:
            service.metrics.refusals.labels(e.code.value).inc()
            raise socketio.exceptions.ConnectionRefusedError(e.message, e.as_dict()) from None

    async def disconnect(sid: str, reason: object = None) -> None:
        await service.disconnected(sid)

    sio.on("connect", connect)
    sio.on("disconnect", disconnect)
    for event in DECODERS:
        sio.on(event, _handler(service, event))


def _handler(service: RoomService, event: str) -> Callable[..., Awaitable[dict[str, Any]]]:
    async def handle(sid: str, data: object = None, *extra: object) -> dict[str, Any]:
        return await service.handle(sid, event, data)

    handle.__name__ = f"on_{event}"
    return handle
