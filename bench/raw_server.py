"""Raw aiohttp websocket broadcast server: the Python ceiling for peerroom.

Measures nothing itself; it is a baseline target. It speaks just enough
Engine.IO v4 / Socket.IO v5 (see ``bench.wire``) for the load generator to
drive it exactly as it drives peerroom: ``POST /api/rooms`` hands out an invite
token, a websocket on ``/socket.io/`` gets the EIO open packet, ``40{auth}``
joins the room named by the token (names unique per room) and is answered with
``40{sid}`` and ``welcome``; ``chat.send`` and ``hand.raise`` are acked and
broadcast to the room (sender included) with a per-room ``seq``. No rate
limits, persistence, roles or pings: one encode per broadcast, then one
``send_str``/``send_bytes`` per member.

Run: ``python -m bench.raw_server --port 8765 [--wire msgpack]``.
"""

from __future__ import annotations

import argparse
import itertools
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from bench import wire
from bench.wire import Packet


@dataclass(slots=True)
class Member:
    """One connected participant."""

    id: str
    name: str
    ws: web.WebSocketResponse


@dataclass(slots=True)
class Room:
    """A room: members by id, hand queue, broadcast sequence."""

    id: str
    title: str
    members: dict[str, Member] = field(default_factory=dict)
    hands: list[str] = field(default_factory=list)
    seq: int = 0


class RawServer:
    """The broadcast server state and its aiohttp handlers."""

    def __init__(self, wire_name: wire.Wire) -> None:
        self.wire: wire.Wire = wire_name
        self.rooms: dict[str, Room] = {}
        self.by_token: dict[str, Room] = {}
        self.ids = itertools.count(1)
        self.msg_ids = itertools.count(1)

    def encode(self, pkt: Packet) -> bytes | str:
        return wire.encode(self.wire, pkt)

    async def send(self, ws: web.WebSocketResponse, frame: bytes | str) -> None:
        if isinstance(frame, str):
            await ws.send_str(frame)
        else:
            await ws.send_bytes(frame)

    async def broadcast(self, room: Room, event: str, payload: dict[str, Any]) -> None:
        room.seq += 1
        payload["seq"] = room.seq
        frame = self.encode(Packet(wire.EVENT, [event, payload]))
        for m in list(room.members.values()):
            if not m.ws.closed:
                await self.send(m.ws, frame)

    async def create_room(self, request: web.Request) -> web.Response:
        body = await request.json()
        room_id = f"r{len(self.rooms) + 1}"
        token = secrets.token_urlsafe(12)
        room = Room(room_id, str(body.get("title", room_id)))
        self.rooms[room_id] = room
        self.by_token[token] = room
        return web.json_response(
            {"room_id": room_id, "invite_token": token, "facilitator_token": token},
            status=201,
        )

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=1_000_000, autoping=True)
        await ws.prepare(request)
        await ws.send_str(wire.eio_open(secrets.token_hex(8), 25000, 20000))
        member: Member | None = None
        room: Room | None = None
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    data: bytes = msg.data.encode()
                    if data == wire.EIO_PING:
                        await ws.send_str("3")
                        continue
                    if data == wire.EIO_PONG:
                        continue
                    pkt = wire.decode_text(data)
                elif msg.type == WSMsgType.BINARY:
                    pkt = wire.decode_binary(msg.data)
                else:
                    break
                if pkt is None:
                    continue
                if pkt.type == wire.CONNECT and member is None:
                    member, room = await self.on_connect(ws, pkt.data or {})
                    if member is None:
                        break
                elif pkt.type == wire.EVENT and member is not None and room is not None:
                    await self.on_event(member, room, pkt)
        finally:
            if member is not None and room is not None:
                room.members.pop(member.id, None)
                if member.id in room.hands:
                    room.hands.remove(member.id)
                await self.broadcast(
                    room, "participant.left", {"id": member.id, "reason": "timeout"}
                )
        return ws

    async def on_connect(
        self, ws: web.WebSocketResponse, auth: dict[str, Any]
    ) -> tuple[Member | None, Room | None]:
        room = self.by_token.get(str(auth.get("token", "")))
        name = str(auth.get("name", "")).strip()
        err: dict[str, str] | None = None
        if room is None:
            err = {"code": "bad_token", "message": "unknown token"}
        elif not 1 <= len(name) <= 40:
            err = {"code": "name_invalid", "message": "bad name"}
        elif any(m.name == name for m in room.members.values()):
            err = {"code": "name_taken", "message": "name taken"}
        if err is not None or room is None:
            await self.send(ws, self.encode(Packet(wire.CONNECT_ERROR, err)))
            await ws.close()
            return None, None
        member = Member(f"p{next(self.ids)}", name, ws)
        await self.send(ws, self.encode(Packet(wire.CONNECT, {"sid": secrets.token_hex(8)})))
        info = {"id": member.id, "name": name, "role": "peer"}
        room.members[member.id] = member
        snapshot = {
            "id": room.id,
            "title": room.title,
            "seq": room.seq,
            "participants": [
                {"id": m.id, "name": m.name, "role": "peer"} for m in room.members.values()
            ],
            "hands": list(room.hands),
            "floor": None,
        }
        welcome = {"you": info, "resume": "", "room": snapshot}
        await self.send(ws, self.encode(Packet(wire.EVENT, ["welcome", welcome])))
        await self.broadcast(room, "participant.joined", {"participant": info})
        return member, room

    async def on_event(self, member: Member, room: Room, pkt: Packet) -> None:
        if not isinstance(pkt.data, list) or not pkt.data:
            return
        name = pkt.data[0]
        payload = pkt.data[1] if len(pkt.data) > 1 and isinstance(pkt.data[1], dict) else {}
        ack: dict[str, Any] = {"ok": True}
        if name == "chat.send":
            msg_id = f"m{next(self.msg_ids)}"
            ack["id"] = msg_id
            message = {
                "id": msg_id,
                "from": member.id,
                "name": member.name,
                "text": str(payload.get("text", "")),
                "ts": time.time(),
            }
            if pkt.id is not None:
                await self.send(member.ws, self.encode(Packet(wire.ACK, [ack], pkt.id)))
            await self.broadcast(room, "chat", {"message": message})
            return
        if name == "hand.raise":
            changed = member.id not in room.hands
            if changed:
                room.hands.append(member.id)
            if pkt.id is not None:
                await self.send(member.ws, self.encode(Packet(wire.ACK, [ack], pkt.id)))
            if changed:
                await self.broadcast(room, "hands", {"hands": list(room.hands), "floor": None})
            return
        if pkt.id is not None:
            err = {"ok": False, "error": {"code": "bad_request", "message": "unknown event"}}
            await self.send(member.ws, self.encode(Packet(wire.ACK, [err], pkt.id)))


def make_app(wire_name: wire.Wire = "json") -> web.Application:
    """Build the aiohttp application for the raw baseline."""
    srv = RawServer(wire_name)
    app = web.Application()
    app.router.add_post("/api/rooms", srv.create_room)
    app.router.add_get("/healthz", srv.healthz)
    app.router.add_get("/socket.io/", srv.websocket)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--wire", choices=["json", "msgpack"], default="json")
    parser.add_argument(
        "--uvloop", action="store_true", help="use uvloop (default: asyncio's loop, as peerroom)"
    )
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("loopback only")
    if args.uvloop:
        import uvloop

        uvloop.install()
    # aiohttp's default listen backlog (128), as peerroom gets it.
    web.run_app(
        make_app(args.wire), host=args.host, port=args.port, print=None, shutdown_timeout=1.0
    )


if __name__ == "__main__":
    main()
