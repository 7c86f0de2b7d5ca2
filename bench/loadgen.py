"""The load generator core: many Socket.IO participants in one process.

Measures, for every participant it holds, when it joined (connect start to
``welcome``), every chat delivery it receives (latency from the message's
*intended* send time, carried in the text marker, so a stalled server or a
late generator both show up) and which messages of the current step it got (a set
of their numbers, so that loss is counted per recipient and a repeat is a duplicate,
not a delivery), and when it first saw its room's complete hand queue. One picows
websocket per participant; each incoming frame is handled in a plain callback (no
task, no python-socketio object): a byte search finds the chat marker without
decoding, Engine.IO pings are answered, and only the rare control events (welcome,
hands, acks) are decoded.

The generator's own garbage collector is kept out of the numbers (:meth:`LoadGen.settle`):
with 10,000 participants held, CPython's default thresholds made collections walk
all of them in the middle of a join storm, and the generator started its 1,000
connections over 330-430 ms instead of 80-90 (docs/optimisations.md, step 25).
"""

from __future__ import annotations

import asyncio
import gc
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgpack
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench import wire
from bench.wire import Packet


def now_us() -> int:
    """Monotonic clock in microseconds (the generator's one time base)."""
    return time.monotonic_ns() // 1000


class JoinError(Exception):
    """A participant could not join (refused, disconnected or timed out)."""


@dataclass(slots=True, eq=False)
class Room:
    """A room as the generator sees it: its invite token, node URLs, members."""

    index: int
    token: str
    urls: list[str]
    members: list[Participant] = field(default_factory=list)

    def member_ids(self) -> set[str]:
        return {m.pid for m in self.members}


class Participant(WSListener):
    """One participant: a websocket plus the few facts the workloads need."""

    def __init__(self, gen: LoadGen, room: Room, name: str) -> None:
        super().__init__()
        self.gen = gen
        self.room = room
        self.name = name
        self.transport: WSTransport | None = None
        self.pid = ""
        self.t_start = now_us()
        self.t_welcome = 0
        self.t_hands_full = 0
        self.welcome: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.next_ack = 1
        self.closed = False
        # The chat messages of the current fan-out step this participant received, once
        # each (a handful per step: about 14 at the knee); cleared by LoadGen.reset_chat.
        self.seen: set[int] = set()

    # picows callbacks -----------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closed = True
        self.gen.disconnects += 1
        if not self.welcome.done():
            self.welcome.set_exception(JoinError("disconnected before welcome"))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        payload = frame.get_payload_as_bytes()
        gen = self.gen
        # Hot path: a chat delivery carrying the generator's marker.
        i = payload.find(b"~B~")
        if i >= 0:
            j = payload.find(b"~", i + 3)
            k = payload.find(b"~", j + 1)
            msgno = int(payload[i + 3 : j])
            lat = now_us() - int(payload[j + 1 : k])
            if gen.count_base <= msgno < gen.count_end:
                seen = self.seen
                if msgno in seen:
                    gen.duplicates += 1  # not a delivery: no latency
                else:
                    seen.add(msgno)
                    gen.latencies.append(lat)
            else:
                gen.stray += 1  # a message of an earlier step
            return
        mt = frame.msg_type
        if mt == WSMsgType.TEXT:
            if payload == b"2":
                transport.send(WSMsgType.TEXT, b"3")
                return
            if payload[:1] == b"0":
                self._send_connect()
                return
            pkt = wire.decode_text(payload)
        elif mt == WSMsgType.BINARY:
            pkt = wire.decode_binary(payload)
        elif mt == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        else:
            return
        if pkt is not None:
            self._on_packet(pkt)

    # protocol ---------------------------------------------------------------

    def _send_connect(self) -> None:
        self.send_packet(Packet(wire.CONNECT, {"token": self.room.token, "name": self.name}))

    def _on_packet(self, pkt: Packet) -> None:
        if pkt.type == wire.EVENT and isinstance(pkt.data, list) and pkt.data:
            event = pkt.data[0]
            body = pkt.data[1] if len(pkt.data) > 1 else None
            if event == "hands" and isinstance(body, dict):
                self._on_hands(body)
            elif event == "welcome" and isinstance(body, dict):
                self.pid = str(body["you"]["id"])
                self.t_welcome = now_us()
                if not self.welcome.done():
                    self.welcome.set_result(None)
            else:
                self.gen.other_events[str(event)] += 1
        elif pkt.type == wire.ACK:
            res = pkt.data[0] if isinstance(pkt.data, list) and pkt.data else {}
            ok = isinstance(res, dict) and res.get("ok") is True
            if ok:
                self.gen.acks_ok += 1
            else:
                code = res.get("error", {}).get("code") if isinstance(res, dict) else None
                self.gen.nacks[str(code)] += 1
        elif pkt.type == wire.CONNECT_ERROR and not self.welcome.done():
            self.welcome.set_exception(JoinError(f"refused: {pkt.data}"))

    def _on_hands(self, body: dict[str, Any]) -> None:
        hands = body.get("hands")
        if self.t_hands_full or not isinstance(hands, list):
            return
        if len(hands) == len(self.room.members) and set(hands) == self.room.member_ids():
            self.t_hands_full = now_us()
            self.gen.hands_full += 1

    def send_packet(self, pkt: Packet) -> None:
        frame = wire.encode(self.gen.wire, pkt)
        if self.transport is None or self.closed:
            return
        if isinstance(frame, str):
            self.transport.send(WSMsgType.TEXT, frame.encode())
        else:
            self.transport.send(WSMsgType.BINARY, frame)

    def emit(self, event: str, payload: dict[str, Any]) -> None:
        """Send an event with an ack id (every peerroom event takes an ack)."""
        ack = self.next_ack
        self.next_ack += 1
        self.send_packet(Packet(wire.EVENT, [event, payload], ack))

    def send_chat(self, msgno: int, intended_us: int) -> None:
        """Hot path: ``chat.send`` with the marker, pre-formatted, no json.dumps."""
        if self.transport is None or self.closed:
            return
        ack = self.next_ack
        self.next_ack += 1
        text = f"~B~{msgno}~{intended_us}~"
        if self.gen.wire == "json":
            frame = f'42{ack}["chat.send",{{"text":"{text}"}}]'.encode()
            self.transport.send(WSMsgType.TEXT, frame)
        else:
            obj = {"type": 2, "nsp": "/", "data": ["chat.send", {"text": text}], "id": ack}
            self.transport.send(WSMsgType.BINARY, msgpack.packb(obj))

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.disconnect(graceful=False)


# Young collections every 50,000 net allocations (CPython's default is 700), as the
# server does (server/gctune.py); with :meth:`LoadGen.settle` before each measured
# phase, a collection during one walks only what that phase made.
GC_THRESHOLDS = (50_000, 2, 100)


class LoadGen:
    """Holds every participant and the counters their callbacks update.

    Sets the process's garbage-collector thresholds (:data:`GC_THRESHOLDS`): one
    generator per process, which is what the bench runs."""

    def __init__(self, wire_name: wire.Wire, join_timeout: float = 30.0) -> None:
        gc.set_threshold(*GC_THRESHOLDS)
        self.wire: wire.Wire = wire_name
        self.join_timeout = join_timeout
        self.participants: list[Participant] = []
        self.count_base = 0
        self.count_end = 0
        self.latencies: array[int] = array("q")
        self.duplicates = 0
        self.stray = 0
        # (deliveries, duplicates) when the step was measured: what came later was late.
        self.step_mark = (0, 0)
        self.acks_ok = 0
        self.nacks: Counter[str] = Counter()
        self.other_events: Counter[str] = Counter()
        self.disconnects = 0
        self.hands_full = 0
        self.next_msgno = 0

    def reset_chat(self, base: int, n: int) -> None:
        """Start counting deliveries of messages ``base .. base+n-1``: every participant
        forgets what it received; a message below ``base`` (an earlier step's) is stray."""
        self.count_base = base
        self.count_end = base + n
        for p in self.participants:
            p.seen.clear()
        self.latencies = array("q")
        self.duplicates = 0
        self.stray = 0

    async def join(self, room: Room, name: str, url: str) -> Participant:
        """Connect one participant and wait for its ``welcome``."""
        p = Participant(self, room, name)
        try:
            async with asyncio.timeout(self.join_timeout):
                await ws_connect(
                    lambda: p,
                    url,
                    websocket_handshake_timeout=self.join_timeout,
                    enable_auto_pong=True,
                )
                await p.welcome
        except (OSError, TimeoutError, JoinError) as exc:
            p.close()
            raise JoinError(f"{name}: {type(exc).__name__}: {exc}") from exc
        except Exception as exc:  # picows handshake errors and the like
            p.close()
            raise JoinError(f"{name}: {type(exc).__name__}: {exc}") from exc
        room.members.append(p)
        self.participants.append(p)
        return p

    async def fill_rooms(
        self, rooms: list[Room], per_room: int, concurrency: int
    ) -> tuple[int, list[str]]:
        """Bring each room up to ``per_room`` members; returns (joined, errors)."""
        sem = asyncio.Semaphore(concurrency)
        errors: list[str] = []

        async def one(room: Room, j: int) -> bool:
            async with sem:
                try:
                    await self.join(room, f"u{room.index}-{j}", room.urls[j % len(room.urls)])
                    return True
                except JoinError as exc:
                    errors.append(str(exc))
                    return False

        jobs = [one(room, j) for j in range(per_room) for room in rooms if len(room.members) <= j]
        results = await asyncio.gather(*jobs)
        return sum(results), errors

    def settle(self) -> None:
        """Before a measured phase: collect now, then freeze what is alive (the
        participants held, their sockets), so no collection during the phase walks them.
        Frozen objects are let go again by :meth:`close_all`."""
        gc.collect()
        gc.freeze()

    def close_all(self) -> None:
        for p in self.participants:
            p.close()
        self.participants.clear()
        gc.unfreeze()
