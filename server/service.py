"""The room service: where sockets meet the room machine.

Every change to a live session goes through :meth:`RoomService.execute`, which runs
:func:`rooms.machine.apply` inside :meth:`LiveStore.transact`. The store hands each
outcome back to :meth:`RoomService.deliver`, the one function that turns room events
into Socket.IO emits, disconnects and storage writes. Single-node and Redis-backed
deployments differ only in the store plugged in.

Socket.IO rooms used: ``room:<room_id>`` (everyone admitted to the live session on this
node) and ``p:<participant_id>`` (one participant's connection, also while waiting).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final

import socketio

from presence.resume import ResumeClaim, ResumeTokens
from rooms import commands as c
from rooms.errors import ErrorCode, RoomError
from rooms.events import Disconnect, Emit, Event, Welcome
from rooms.machine import Outcome, Rules, apply, due
from rooms.model import Role, RoomState, Via
from server.live import LiveStore
from server.metrics import Metrics
from server.payloads import DECODERS, decode, validate_name
from server.ratelimit import Bucket
from server.settings import MAX_PAYLOAD_BYTES, Settings
from server.storage.base import Storage
from server.tokens import RoomTokens, TokenKind

log = logging.getLogger(__name__)

TICK_SECS: Final = 1.0  # how often dropped connections and empty sessions are checked
CONNECT_WAIT_SECS: Final = 5.0  # a handshake that has not completed by then is gone
MAX_DEVICE_CHARS: Final = 64


def room_channel(room_id: str) -> str:
    return f"room:{room_id}"


def participant_channel(pid: str) -> str:
    return f"p:{pid}"


def new_id() -> str:
    return secrets.token_urlsafe(12)


@dataclass(slots=True)
class Conn:
    """One Socket.IO connection on this node and what it is to the room."""

    room_id: str
    participant_id: str
    chat: Bucket
    other: Bucket


class RoomService:
    def __init__(
        self,
        *,
        sio: socketio.AsyncServer,
        store: LiveStore,
        storage: Storage,
        settings: Settings,
        room_tokens: RoomTokens,
        resume_tokens: ResumeTokens,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sio = sio
        self.store = store
        self.storage = storage
        self.settings = settings
        self.room_tokens = room_tokens
        self.resume_tokens = resume_tokens
        self.metrics = metrics
        self.clock = clock
        self.rules = Rules(grace_secs=settings.grace_secs, max_participants=settings.max_room_size)
        self.conns: dict[str, Conn] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        store.set_deliver(self.deliver)

    # the one path for every change ------------------------------------------------------

    async def execute(self, room_id: str, actor: str | None, command: c.Command) -> Outcome:
        now = self.clock()
        return await self.store.transact(
            room_id, lambda state: apply(state, actor, command, now=now, rules=self.rules)
        )

    # connections -----------------------------------------------------------------------

    async def connect(self, sid: str, auth: object) -> None:
        """Join (or wait, or resume). Raises RoomError with a connect-refusal code."""
        a = auth if isinstance(auth, dict) else {}
        token = self.room_tokens.verify(a.get("token"))
        room = await self.storage.get_room(token.room_id) if token else None
        if token is None or room is None:
            raise RoomError(
                ErrorCode.BAD_TOKEN, "This link is not valid. Ask your facilitator for a new one."
            )
        name = validate_name(a.get("name"))
        claim = self.resume_tokens.verify(a.get("resume")) if a.get("resume") else None
        device = a.get("device")
        ban_keys = {f"name:{name.casefold()}"}
        if isinstance(device, str) and 0 < len(device) <= MAX_DEVICE_CHARS:
            ban_keys.add(f"device:{device}")
        join = c.Join(
            room=c.RoomInfo(room.id, room.title, room.settings()),
            new_session_id=new_id(),
            participant_id=new_id(),
            name=name,
            role=Role.FACILITATOR if token.kind is TokenKind.FACILITATOR else Role.PEER,
            via=Via.WEB,
            conn=sid,
            ban_keys=frozenset(ban_keys),
            resume_id=claim.participant_id if claim and claim.room_id == room.id else None,
        )
        outcome = await self.execute(room.id, None, join)
        pid = outcome.reply["participant_id"]
        now = self.clock()
        s = self.settings
        self.conns[sid] = Conn(
            room.id,
            pid,
            chat=Bucket.full(s.chat_burst, s.chat_per_sec, now),
            other=Bucket.full(s.event_burst, s.event_per_sec, now),
        )
        self.metrics.connections.inc()
        self.spawn(self._greet_when_connected(sid, room.id, pid))

    async def _greet_when_connected(self, sid: str, room_id: str, pid: str) -> None:
        """After the handshake completes, send ``welcome`` (or ``waiting``) and subscribe.

        python-socketio sends the CONNECT packet only after the connect handler returns,
        so the first message must wait for it; ``attach`` then takes the snapshot and
        joins the room's broadcasts with no seq missed or repeated.
        """
        deadline = self.clock() + CONNECT_WAIT_SECS
        while not self.sio.manager.is_connected(sid, "/"):
            if sid not in self.conns or self.clock() > deadline:
                return
            await asyncio.sleep(0.005)

        async def greet(state: RoomState | None) -> None:
            if state is None or sid not in self.conns:
                return
            await self.sio.enter_room(sid, participant_channel(pid))
            p = state.get(pid)
            if p is not None and p.conn == sid:
                await self._welcome(state, pid, sid)
                return
            w = state.get_waiting(pid)
            if w is not None and w.conn == sid:
                position = [x.id for x in state.waiting].index(pid) + 1
                await self.sio.emit("waiting", {"position": position}, to=sid)

        await self.store.attach(room_id, greet)

    async def _welcome(self, state: RoomState, pid: str, sid: str) -> None:
        p = state.get(pid)
        assert p is not None
        resume = self.resume_tokens.issue(ResumeClaim(state.room_id, state.session_id, pid))
        payload = {
            "you": {"id": p.id, "name": p.name, "role": p.role.value},
            "resume": resume,
            "room": state.snapshot(for_moderator=p.role.is_moderator),
        }
        await self.sio.emit("welcome", payload, to=sid)
        await self.sio.enter_room(sid, room_channel(state.room_id))

    async def disconnected(self, sid: str) -> None:
        conn = self.conns.pop(sid, None)
        if conn is None:
            return  # closed by us (removed, left, ended): the room already knows
        self.metrics.connections.dec()
        with contextlib.suppress(RoomError):  # the session may have ended meanwhile
            await self.execute(conn.room_id, None, c.Drop(conn.participant_id, sid))

    # client events ---------------------------------------------------------------------

    async def handle(self, sid: str, event: str, data: object) -> dict[str, object]:
        """Validate, rate-limit and execute one client event; returns the ack."""
        self.metrics.events.labels(event).inc()
        try:
            conn = self.conns.get(sid)
            if conn is None:
                raise RoomError(ErrorCode.NOT_ALLOWED_NOW, "You are not in a room yet.")
            bucket = conn.chat if event == "chat.send" else conn.other
            if not bucket.take(self.clock()):
                raise RoomError(ErrorCode.RATE_LIMITED, "Too many requests: wait a moment.")
            command = decode(event, data, new_id(), MAX_PAYLOAD_BYTES)
            outcome = await self.execute(conn.room_id, conn.participant_id, command)
        except RoomError as e:
            self.metrics.errors.labels(e.code.value).inc()
            return e.ack()
        return {"ok": True, **outcome.reply}

    # delivery: the one function that turns room events into effects -----------------------

    async def deliver(self, room_id: str, outcome: Outcome) -> None:
        state = outcome.state
        for ev in outcome.events:
            await self._deliver_one(room_id, state, ev)

    async def _deliver_one(self, room_id: str, state: RoomState | None, ev: Event) -> None:
        if isinstance(ev, Emit):
            if ev.to is None:
                self.metrics.broadcasts.inc()
                await self.sio.emit(ev.name, ev.payload, room=room_channel(room_id))
            else:
                await self.sio.emit(
                    ev.name, ev.payload, to=[participant_channel(pid) for pid in ev.to]
                )
        elif isinstance(ev, Welcome):
            p = state.get(ev.participant_id) if state else None
            # A connection still in its handshake is greeted by _greet_when_connected.
            if state and p and p.conn and self.sio.manager.is_connected(p.conn, "/"):
                await self._welcome(state, p.id, p.conn)
        elif (
            isinstance(ev, Disconnect)
            and ev.conn is not None
            and self.conns.pop(ev.conn, None) is not None
        ):
            self.metrics.connections.dec()
            # After this transition's emits (and the ack of the command that caused it)
            # are queued, so the client hears why before the line closes.
            self.spawn(self.sio.disconnect(ev.conn))
        # Transcribe, Unstore, Consent, Audit, SessionClosed: durable storage of these is
        # the transcripts issue; nothing is written for them yet.

    # the clock -------------------------------------------------------------------------

    async def run_clock(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECS)
            try:
                await self.tick()
            except Exception:
                log.exception("clock tick failed")

    async def tick(self) -> None:
        now = self.clock()
        room_ids = await self.store.room_ids()
        self.metrics.live_sessions.set(len(room_ids))
        for room_id in room_ids:
            state = await self.store.get(room_id)
            if state is not None and due(state, now, self.rules):
                with contextlib.suppress(RoomError):
                    await self.execute(room_id, None, c.Tick())

    # tasks -----------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


__all__ = ["DECODERS", "RoomService"]
