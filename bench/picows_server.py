"""Generator check: the same minimal broadcast server on picows + uvloop.

Measures nothing itself, and is not a competitor: it exists to show where the
load generator itself tops out. It speaks exactly what ``bench.raw_server``
speaks (rooms from ``POST /api/rooms``, ``40{auth}``, ``welcome``, acked
``chat.send`` / ``hand.raise`` broadcast to the room with a ``seq``) but on a
Cython websocket server with a frame callback instead of a coroutine per
connection, so it is much cheaper per delivery than aiohttp. Whatever rate
the generator sustains against it is a lower bound on the generator's own
ceiling. Rooms are created on a small aiohttp HTTP server on ``--http-port``;
the websocket listens on ``--port``.

Run: ``python -m bench.picows_server --port 8767 --http-port 8768``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import uvloop
from aiohttp import web
from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

from bench import wire


@dataclass(slots=True, eq=False)
class Room:
    id: str
    members: dict[str, Conn] = field(default_factory=dict)
    hands: list[str] = field(default_factory=list)
    seq: int = 0

    def broadcast(self, event: str, payload: dict[str, Any]) -> None:
        self.seq += 1
        payload["seq"] = self.seq
        frame = ("42" + json.dumps([event, payload], separators=(",", ":"))).encode()
        for m in self.members.values():
            m.transport.send(WSMsgType.TEXT, frame)


class State:
    def __init__(self) -> None:
        self.by_token: dict[str, Room] = {}
        self.ids = itertools.count(1)
        self.msg_ids = itertools.count(1)


class Conn(WSListener):
    """One websocket: EIO/SIO JSON framing, namespace ``/`` only."""

    def __init__(self, state: State) -> None:
        super().__init__()
        self.state = state
        self.transport: WSTransport
        self.room: Room | None = None
        self.id = ""
        self.name = ""

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        transport.send(WSMsgType.TEXT, wire.eio_open(secrets.token_hex(8)).encode())

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        room = self.room
        if room is not None:
            room.members.pop(self.id, None)
            if self.id in room.hands:
                room.hands.remove(self.id)
            room.broadcast("participant.left", {"id": self.id, "reason": "timeout"})

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if frame.msg_type != WSMsgType.TEXT:
            return
        data = frame.get_payload_as_bytes()
        if data == wire.EIO_PING:
            transport.send(WSMsgType.TEXT, wire.EIO_PONG)
            return
        pkt = wire.decode_text(data)
        if pkt is None:
            return
        if pkt.type == wire.CONNECT and self.room is None:
            self._connect(pkt.data or {})
        elif pkt.type == wire.EVENT and self.room is not None and isinstance(pkt.data, list):
            self._event(pkt.data, pkt.id)

    def _send(self, pkt: wire.Packet) -> None:
        out = wire.encode("json", pkt)
        self.transport.send(WSMsgType.TEXT, out.encode() if isinstance(out, str) else out)

    def _connect(self, auth: dict[str, Any]) -> None:
        room = self.state.by_token.get(str(auth.get("token", "")))
        name = str(auth.get("name", "")).strip()
        if room is None or not 1 <= len(name) <= 40:
            self._send(wire.Packet(wire.CONNECT_ERROR, {"code": "bad_token", "message": "no"}))
            self.transport.disconnect()
            return
        if any(m.name == name for m in room.members.values()):
            self._send(wire.Packet(wire.CONNECT_ERROR, {"code": "name_taken", "message": "no"}))
            self.transport.disconnect()
            return
        self.id, self.name, self.room = f"p{next(self.state.ids)}", name, room
        self._send(wire.Packet(wire.CONNECT, {"sid": secrets.token_hex(8)}))
        info = {"id": self.id, "name": name, "role": "peer"}
        room.members[self.id] = self
        snapshot = {"id": room.id, "seq": room.seq, "hands": list(room.hands), "floor": None}
        self._send(wire.Packet(wire.EVENT, ["welcome", {"you": info, "room": snapshot}]))
        room.broadcast("participant.joined", {"participant": info})

    def _event(self, data: list[Any], ack_id: int | None) -> None:
        room = self.room
        assert room is not None
        name = data[0] if data else None
        payload = data[1] if len(data) > 1 and isinstance(data[1], dict) else {}
        if name == "chat.send":
            msg_id = f"m{next(self.state.msg_ids)}"
            if ack_id is not None:
                self._send(wire.Packet(wire.ACK, [{"ok": True, "id": msg_id}], ack_id))
            message = {
                "id": msg_id,
                "from": self.id,
                "name": self.name,
                "text": str(payload.get("text", "")),
                "ts": time.time(),
            }
            room.broadcast("chat", {"message": message})
        elif name == "hand.raise":
            changed = self.id not in room.hands
            if changed:
                room.hands.append(self.id)
            if ack_id is not None:
                self._send(wire.Packet(wire.ACK, [{"ok": True}], ack_id))
            if changed:
                room.broadcast("hands", {"hands": list(room.hands), "floor": None})


async def serve(host: str, port: int, http_port: int) -> None:
    state = State()

    async def create_room(request: web.Request) -> web.Response:
        token = secrets.token_urlsafe(12)
        state.by_token[token] = Room(f"r{len(state.by_token) + 1}")
        return web.json_response({"invite_token": token}, status=201)

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/api/rooms", create_room)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, http_port).start()

    def factory(request: WSUpgradeRequest) -> Conn:
        return Conn(state)

    server = await ws_create_server(factory, host, port, backlog=4096)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="generator check: picows broadcast server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8767)
    parser.add_argument("--http-port", type=int, default=8768)
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("loopback only")
    uvloop.run(serve(args.host, args.port, args.http_port))


if __name__ == "__main__":
    main()
