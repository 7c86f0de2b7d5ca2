"""The ``/bridge`` Socket.IO namespace (protocol.md, "Phone bridge"): thin.

A bridge (a SIP gateway, or any service holding telephone calls) authenticates with
the bridge token, then sends ``call.join``, ``call.keys``, ``call.leave`` and
``checkin.create``; each handler validates the payload, calls
:class:`~server.phone.lines.PhoneLines` and returns the ack. The server sends
``call.mute``, ``call.remove`` (and the extensions ``call.admitted`` and
``call.notice``) back on the
connection that joined the call. A bridge connection that closes drops its calls:
they keep their place for the grace period and ``call.join`` with the same ``call_id``
from a new connection takes them back.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import socketio

from rooms.errors import ErrorCode, RoomError
from server.handlers import reserved_event, sent_as_event
from server.payloads import too_large
from server.phone.lines import (
    CheckinStatus,
    Notice,
    PhoneCall,
    PhoneLines,
    valid_call_id,
    valid_pin,
)
from server.phone.numbers import Caller
from server.tokens import same_secret

log = logging.getLogger(__name__)

NAMESPACE: Final = "/bridge"
MAX_DIGITS_CHARS: Final = 8
MAX_BRIDGE_PAYLOAD_BYTES: Final = 2048  # a call id, a PIN and a number: a few hundred bytes

Payload = dict[str, Any]


@dataclass(slots=True, eq=False)
class BridgeSink:
    """Calls held by one bridge connection."""

    sio: socketio.AsyncServer
    sid: str

    async def _send(self, event: str, payload: Payload) -> None:
        await self.sio.emit(event, payload, to=self.sid, namespace=NAMESPACE)

    async def mute(self, call: PhoneCall, muted: bool) -> None:
        await self._send("call.mute", {"call_id": call.call_id, "muted": muted})

    async def remove(self, call: PhoneCall, reason: str) -> None:
        await self._send("call.remove", {"call_id": call.call_id, "reason": reason})

    async def admitted(self, call: PhoneCall) -> None:
        await self._send("call.admitted", {"call_id": call.call_id})

    async def notice(self, call: PhoneCall, notice: Notice) -> None:
        await self._send("call.notice", {"call_id": call.call_id, "notice": notice.value})


def _obj(data: object) -> Payload:
    if not isinstance(data, dict):
        raise RoomError(ErrorCode.BAD_REQUEST, "The payload must be an object.")
    if too_large(data, MAX_BRIDGE_PAYLOAD_BYTES):
        raise RoomError(ErrorCode.BAD_REQUEST, "The payload is too large.")
    return data


Handler = Callable[[BridgeSink, Payload], Awaitable[Payload]]


def register(sio: socketio.AsyncServer, lines: PhoneLines, bridge_token: str | None) -> None:
    sinks: dict[str, BridgeSink] = {}

    async def connect(
        sid: str, environ: object, auth: object = None, *extra: object
    ) -> Payload | None:
        if sent_as_event(sio, sid, NAMESPACE):
            return reserved_event("connect")
        token = auth.get("token") if isinstance(auth, dict) else None
        if not same_secret(token if isinstance(token, str) else None, bridge_token):
            message = "This bridge token is not valid (PEERROOM_BRIDGE_TOKEN)."
            raise socketio.exceptions.ConnectionRefusedError(
                message, {"code": ErrorCode.BAD_TOKEN.value, "message": message}
            )
        sinks[sid] = BridgeSink(sio, sid)
        return None

    async def disconnect(sid: str, reason: object = None, *extra: object) -> Payload | None:
        if sent_as_event(sio, sid, NAMESPACE):
            return reserved_event("disconnect")  # else every call of this bridge drops
        sink = sinks.pop(sid, None)
        if sink is not None:
            await lines.drop_all(sink)
        return None

    async def join(sink: BridgeSink, p: Payload) -> Payload:
        call = await lines.join(
            valid_call_id(p.get("call_id")),
            valid_pin(p.get("pin")),
            Caller.parse(p.get("caller")),
            sink,
        )
        call.sink = sink  # a reconnected bridge takes its calls back
        return {
            "participant_id": call.participant_id,
            "room_title": call.room_title,
            "name": call.name,
            "waiting": call.waiting,
        }

    async def keys(sink: BridgeSink, p: Payload) -> Payload:
        digits = p.get("digits")
        if not isinstance(digits, str) or not 0 < len(digits) <= MAX_DIGITS_CHARS:
            raise RoomError(ErrorCode.BAD_REQUEST, "'digits' must be a string like \"*9\".")
        return await lines.keys(valid_call_id(p.get("call_id")), digits)

    async def leave(sink: BridgeSink, p: Payload) -> Payload:
        call_id = valid_call_id(p.get("call_id"))
        dropped = p.get("dropped", False)
        if not isinstance(dropped, bool):
            raise RoomError(ErrorCode.BAD_REQUEST, "'dropped' must be true or false.")
        if dropped:
            # The line fell (the network, not the caller): the place is kept for the
            # grace period, and a call back from the same number takes it back.
            await lines.drop(call_id)
        else:
            await lines.leave(call_id)
        return {}

    async def checkin(sink: BridgeSink, p: Payload) -> Payload:
        try:
            status = CheckinStatus(str(p.get("status")))
        except ValueError:
            raise RoomError(
                ErrorCode.BAD_REQUEST, "'status' must be ok, callback or talk."
            ) from None
        rec = await lines.checkin(
            valid_call_id(p.get("call_id")), Caller.parse(p.get("caller")), status
        )
        return {"id": rec.id}

    handlers: dict[str, Handler] = {
        "call.join": join,
        "call.keys": keys,
        "call.leave": leave,
        "checkin.create": checkin,
    }
    sio.on("connect", connect, namespace=NAMESPACE)
    sio.on("disconnect", disconnect, namespace=NAMESPACE)
    for event, handler in handlers.items():
        sio.on(event, _acked(sinks, event, handler), namespace=NAMESPACE)


def _acked(
    sinks: dict[str, BridgeSink], event: str, handler: Handler
) -> Callable[..., Awaitable[Payload]]:
    async def handle(sid: str, data: object = None, *extra: object) -> Payload:
        sink = sinks.get(sid)
        try:
            if sink is None:
                raise RoomError(ErrorCode.FORBIDDEN, "Connect with the bridge token first.")
            return {"ok": True, **await handler(sink, _obj(data))}
        except RoomError as e:
            return dict(e.ack())
        except Exception:  # storage down, a bug: the bridge gets a code, never silence
            log.exception("bridge %s failed", event)
            error = RoomError(ErrorCode.UNAVAILABLE, "The server could not do that; try again.")
            return dict(error.ack())

    handle.__name__ = f"on_{event.replace('.', '_')}"
    return handle
