"""Minimal Engine.IO v4 / Socket.IO v5 framing, JSON and msgpack.

Measures nothing itself: it is the codec shared by the load generator and the
raw aiohttp baseline server, so both speak exactly what peerroom and a Node
socket.io server speak on a websocket transport (namespace ``/`` only, no
binary attachments). Engine.IO control packets (open ``0``, ping ``2``,
pong ``3``) are always text frames; Socket.IO packets are text frames
(``4`` + type digit + optional ack id + JSON) with the JSON parser, or binary
frames holding a msgpack map ``{type, nsp, data, id?}`` with the msgpack parser.

Chat messages sent by the generator carry a marker ``~B~<msgno>~<intended_us>~``
in their text. Because msgpack stores strings as raw UTF-8 bytes, a plain byte
search finds the marker in either encoding, so the receive path never has to
decode a chat frame.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import msgpack

Wire = Literal["json", "msgpack"]

# Socket.IO packet types.
CONNECT = 0
DISCONNECT = 1
EVENT = 2
ACK = 3
CONNECT_ERROR = 4

EIO_PING = b"2"
EIO_PONG = b"3"

MARKER = b"~B~"


@dataclass(slots=True)
class Packet:
    """A decoded Socket.IO packet (namespace ``/``)."""

    type: int
    data: Any
    id: int | None = None


def make_marker(msgno: int, intended_us: int) -> str:
    """Chat text that identifies message ``msgno`` and its intended send time."""
    return f"~B~{msgno}~{intended_us}~"


def find_marker(payload: bytes) -> tuple[int, int] | None:
    """Return ``(msgno, intended_us)`` if ``payload`` carries a chat marker."""
    i = payload.find(MARKER)
    if i < 0:
        return None
    j = payload.find(b"~", i + 3)
    k = payload.find(b"~", j + 1)
    if j < 0 or k < 0:
        return None
    return int(payload[i + 3 : j]), int(payload[j + 1 : k])


def encode(wire: Wire, pkt: Packet) -> bytes | str:
    """Encode a Socket.IO packet: ``str`` for a text frame, ``bytes`` for binary."""
    if wire == "msgpack":
        out: dict[str, Any] = {"type": pkt.type, "nsp": "/"}
        if pkt.data is not None:
            out["data"] = pkt.data
        if pkt.id is not None:
            out["id"] = pkt.id
        return bytes(msgpack.packb(out))
    head = f"4{pkt.type}{'' if pkt.id is None else pkt.id}"
    if pkt.data is None:
        return head
    return head + json.dumps(pkt.data, separators=(",", ":"))


def decode_text(frame: bytes) -> Packet | None:
    """Decode a text-frame Socket.IO packet (``4...``); ``None`` if it is not one."""
    if len(frame) < 2 or frame[0] != 0x34:  # '4'
        return None
    ptype = frame[1] - 0x30
    i = 2
    n = len(frame)
    while i < n and 0x30 <= frame[i] <= 0x39:
        i += 1
    ack_id = int(frame[2:i]) if i > 2 else None
    data = json.loads(frame[i:]) if i < n else None
    return Packet(ptype, data, ack_id)


def decode_binary(frame: bytes) -> Packet | None:
    """Decode a msgpack Socket.IO packet from a binary frame."""
    obj = msgpack.unpackb(frame)
    if not isinstance(obj, dict) or "type" not in obj:
        return None
    return Packet(int(obj["type"]), obj.get("data"), obj.get("id"))


def eio_open(sid: str, ping_interval_ms: int = 25000, ping_timeout_ms: int = 20000) -> str:
    """The Engine.IO open packet a server sends first on a websocket transport."""
    body = {
        "sid": sid,
        "upgrades": [],
        "pingInterval": ping_interval_ms,
        "pingTimeout": ping_timeout_ms,
        "maxPayload": 1_000_000,
    }
    return "0" + json.dumps(body, separators=(",", ":"))
