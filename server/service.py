"""The room service: where sockets meet the room machine.

Every change to a live session goes through :meth:`RoomService.execute`, which runs
:func:`rooms.machine.apply` inside :meth:`LiveStore.transact`. The store hands each
outcome back to :meth:`RoomService.deliver`, the one function that turns room events
into Socket.IO emits, disconnects and storage writes. Single-node and Redis-backed
deployments differ only in the store plugged in.

Socket.IO rooms used: ``room:<room_id>`` (everyone admitted to the live session on this
node) and ``p:<participant_id>`` (one participant's connection, also while waiting).

With many nodes, every node that holds connections of a room receives every outcome of
that room in commit order and delivers it to its *own* connections only: a Socket.IO
emit reaches local members, and Welcome and Disconnect act only on a ``conn`` of this
node (``"<node id>/<sid>"``). Durable events (transcripts, audit) are acted on once, by
the node that committed the transition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import socketio

from presence.resume import ResumeClaim, ResumeTokens
from rooms import commands as c
from rooms.errors import ErrorCode, RoomError
from rooms.events import Audit, Consent, Disconnect, Emit, Event, Transcribe, Unstore, Welcome
from rooms.machine import Outcome, Rules, apply
from rooms.model import Role, RoomState, Via
from rooms.names import NAME_BAN_PREFIX, name_key
from server.live import LiveStore, LiveUnavailable, conn_handle
from server.metrics import Metrics
from server.payloads import DECODERS, decode, validate_name
from server.ratelimit import Bucket, JoinLimiter
from server.recorder import STORAGE_EVENTS, Recorder
from server.settings import MAX_PAYLOAD_BYTES, Settings
from server.storage.base import RoomRecord, Storage, StorageUnavailable
from server.tasks import stop_tasks
from server.tokens import RoomTokens, TokenKind
from server.transcript_access import SessionFacts

log = logging.getLogger(__name__)

TICK_SECS: Final = 1.0  # how often dropped connections and empty sessions are checked
BUCKETS_KEPT: Final = 50_000  # participants' rate limits kept, the oldest forgotten first
CONNECT_WAIT_SECS: Final = 5.0  # a handshake that has not completed by then is gone
MAX_DEVICE_CHARS: Final = 64
ERASE_ACK_WAIT_SECS: Final = 2.0  # an erase acks with its count if storage is this quick
ROOMS_CACHED: Final = 1_000  # room records kept to let people join while storage is down
ROOM_FRESH_SECS: Final = 60.0  # how long a looked-up room record is reused without a query


def room_channel(room_id: str) -> str:
    return f"room:{room_id}"


def participant_channel(pid: str) -> str:
    return f"p:{pid}"


def new_id() -> str:
    return secrets.token_urlsafe(12)


@dataclass(slots=True)
class _Acting:
    """The connection whose event this task is handling, and the closes of its own
    connection that event's outcome asked for (``session.leave``, ``mod.end``): they
    wait until its ack is out (see :meth:`RoomService.deliver`)."""

    sid: str
    closes: list[str] = field(default_factory=list)
    open: bool = True


_ACTING: ContextVar[_Acting | None] = ContextVar("peerroom_acting", default=None)
# The events whose outcome can close the sender's own connection.
CLOSING_OWN: Final = frozenset({"session.leave", "mod.end"})


@dataclass(slots=True)
class Conn:
    """One Socket.IO connection on this node and what it is to the room."""

    room_id: str
    participant_id: str
    chat: Bucket
    other: Bucket


class PhoneDelivery(Protocol):
    """Where room events reach phone calls (:class:`server.phone.lines.PhoneLines`)."""

    async def deliver(self, room_id: str, state: RoomState | None, ev: Event) -> None: ...

    async def rejoin_all(self) -> None:
        """This node was taken for dead while its calls were still on the line."""


class RoomService:
    def __init__(
        self,
        *,
        sio: socketio.AsyncServer,
        store: LiveStore,
        storage: Storage,
        recorder: Recorder,
        settings: Settings,
        room_tokens: RoomTokens,
        resume_tokens: ResumeTokens,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sio = sio
        self.store = store
        self.storage = storage
        self.recorder = recorder
        self.facts = SessionFacts()
        self.settings = settings
        self.room_tokens = room_tokens
        self.resume_tokens = resume_tokens
        self.metrics = metrics
        self.clock = clock
        self.rules = Rules(grace_secs=settings.grace_secs, max_participants=settings.max_room_size)
        self.conns: dict[str, Conn] = {}
        self.node_prefix = conn_handle(store.node_id, "")
        self._tasks: set[asyncio.Task[None]] = set()
        self._drops: set[asyncio.Task[None]] = set()  # Drops of closed connections
        self._unsent_drops: list[tuple[str, c.Drop]] = []  # live store was down at the time
        self._buckets: dict[str, tuple[Bucket, Bucket]] = {}  # participant -> rate limits
        self.joins = JoinLimiter(
            settings.join_burst, settings.join_per_sec, settings.trusted_proxies
        )
        self._rooms: dict[str, tuple[RoomRecord, float]] = {}  # record, when fetched
        self._room_lookups: dict[str, asyncio.Future[RoomRecord | None]] = {}
        self.phone: PhoneDelivery | None = None
        store.set_deliver(self.deliver)
        store.set_notice(self._notify_moderators_here)
        store.set_reaped(self._taken_for_dead)
        recorder.set_unsaved(self._line_unsaved)

    def set_phone(self, phone: PhoneDelivery) -> None:
        """Phone participants have no Socket.IO connection: their events go here."""
        self.phone = phone

    # the one path for every change ------------------------------------------------------

    async def execute(self, room_id: str, actor: str | None, command: c.Command) -> Outcome:
        now = self.clock()
        return await self.store.transact(
            room_id, lambda state: apply(state, actor, command, now=now, rules=self.rules)
        )

    # connections -----------------------------------------------------------------------

    def conn_of(self, handle: str) -> str:
        """The ``Participant.conn`` of a connection on this node: a Socket.IO sid, or a
        phone call id. Naming the node lets the others find it if this node dies."""
        return self.node_prefix + handle

    def sid_of(self, conn: str | None) -> str | None:
        """The sid (or call id) of ``conn`` if this node holds it, else None."""
        if conn is None or not conn.startswith(self.node_prefix):
            return None
        return conn[len(self.node_prefix) :]

    async def connect(self, sid: str, auth: object, *, address: str | None = None) -> None:
        """Join (or wait, or resume). Raises RoomError with a connect-refusal code.
        ``address``: the client's, for the join rate limit (None: not limited)."""
        a = auth if isinstance(auth, dict) else {}
        token = self.room_tokens.verify(a.get("token"))
        room = await self._room(token.room_id) if token else None
        if token is None or room is None:
            raise RoomError(
                ErrorCode.BAD_TOKEN, "This link is not valid. Ask your facilitator for a new one."
            )
        name = validate_name(a.get("name"))
        claim = self.resume_tokens.verify(a.get("resume")) if a.get("resume") else None
        # Each resume is broadcast to the whole room (the old line replaced, the new one
        # connected): paid from the person's event budget, so a client reconnecting in a
        # loop is refused before it floods the room.
        if (
            claim is not None
            and claim.room_id == room.id
            and not self._buckets_of(claim.participant_id)[1].take(self.clock())
        ):
            raise RoomError(
                ErrorCode.RATE_LIMITED,
                "Reconnecting very often: wait a moment, then try again.",
            )
        resume_only = a.get("resume_only") is True  # never a new join: not counted
        if (
            address is not None
            and not resume_only
            # A facilitator must always be able to get into their own room, whoever
            # else joins from their address (a shared network, a phone carrier).
            and token.kind is not TokenKind.FACILITATOR
            and not await self._resumes(room.id, claim)
            and not self.joins.take(address, self.clock())
        ):
            raise RoomError(
                ErrorCode.RATE_LIMITED,
                "Many people joined from your connection just now: wait a minute, then try again.",
            )
        device = a.get("device")
        ban_keys = {NAME_BAN_PREFIX + name_key(name)}
        if isinstance(device, str) and 0 < len(device) <= MAX_DEVICE_CHARS:
            ban_keys.add(f"device:{device}")
        join = c.Join(
            room=c.RoomInfo(room.id, room.title, room.settings()),
            new_session_id=new_id(),
            participant_id=new_id(),
            name=name,
            role=Role.FACILITATOR if token.kind is TokenKind.FACILITATOR else Role.PEER,
            via=Via.WEB,
            conn=self.conn_of(sid),
            ban_keys=frozenset(ban_keys),
            resume_id=claim.participant_id if claim and claim.room_id == room.id else None,
            resume_only=resume_only,
            live_only=a.get("live_only") is True,
        )
        outcome = await self.execute(room.id, None, join)
        pid = outcome.reply["participant_id"]
        chat, other = self._buckets_of(pid)
        self.conns[sid] = Conn(room.id, pid, chat=chat, other=other)
        self.metrics.connections.inc()
        self.spawn(self._greet_when_connected(sid, room.id, pid))

    async def _resumes(self, room_id: str, claim: ResumeClaim | None) -> bool:
        """Whether ``claim`` takes a place that is there to take back (a resume, which the
        join limit does not count; a token replayed after its place is gone would be a
        way round it)."""
        if claim is None or claim.room_id != room_id:
            return False
        state = await self.store.get(room_id)
        return (
            state is not None
            and state.session_id == claim.session_id
            and (state.get(claim.participant_id) or state.get_waiting(claim.participant_id))
            is not None
        )

    def _buckets_of(self, pid: str) -> tuple[Bucket, Bucket]:
        """The participant's rate limits: kept across their reconnects on this node, so
        that leaving and resuming does not buy a fresh burst (a flood in bursts)."""
        buckets = self._buckets.pop(pid, None)
        if buckets is None:
            now, s = self.clock(), self.settings
            buckets = (
                Bucket.full(s.chat_burst, s.chat_per_sec, now),
                Bucket.full(s.event_burst, s.event_per_sec, now),
            )
        self._buckets[pid] = buckets  # most recent last
        while len(self._buckets) > BUCKETS_KEPT:
            del self._buckets[next(iter(self._buckets))]
        return buckets

    async def _room(self, room_id: str) -> RoomRecord | None:
        """The room's record. Records never change once created, so a lookup is reused for
        ``ROOM_FRESH_SECS`` and joins that arrive while it is in flight wait for it (a
        join storm is not a query storm); while storage is down, the last copy lets a
        live room go on letting people in."""
        cached = self._rooms.get(room_id)
        now = self.clock()
        if cached is not None and now - cached[1] < ROOM_FRESH_SECS:
            return cached[0]
        lookup = self._room_lookups.get(room_id)
        if lookup is None:
            # A task of its own, so that a joiner who gives up does not cancel it for
            # the others waiting on it.
            lookup = asyncio.ensure_future(self._fetch_room(room_id, cached))
            self._room_lookups[room_id] = lookup
            lookup.add_done_callback(lambda _: self._room_lookups.pop(room_id, None))
        return await asyncio.shield(lookup)

    async def _fetch_room(
        self, room_id: str, cached: tuple[RoomRecord, float] | None
    ) -> RoomRecord | None:
        try:
            room = await self.storage.get_room(room_id)
        except StorageUnavailable:
            if cached is None:
                raise RoomError(
                    ErrorCode.UNAVAILABLE, "The server cannot reach its database: try again soon."
                ) from None
            return cached[0]
        self._rooms.pop(room_id, None)
        if room is not None:
            self._rooms[room_id] = (room, self.clock())
            while len(self._rooms) > ROOMS_CACHED:
                del self._rooms[next(iter(self._rooms))]
        return room

    async def _greet_when_connected(self, sid: str, room_id: str, pid: str) -> None:
        """After the handshake completes, send ``welcome`` (or ``waiting``) and subscribe.

        python-socketio sends the CONNECT packet only after the connect handler returns,
        so the first message must wait for it; ``attach`` then takes the snapshot and
        joins the room's broadcasts with no seq missed or repeated.
        """
        connected = False
        try:
            async with asyncio.timeout(CONNECT_WAIT_SECS):
                connected = await self.sio.manager.wait_connected(sid)
        except TimeoutError:
            pass
        if not connected or not self._transport_open(sid):
            # The line closed while the join was being decided (a slow lookup, a busy
            # room): python-socketio skips the disconnect handler of a connection still
            # in its handshake, so without this the person would stay "connected" for
            # good, with no welcome and no resume token, their name taken.
            await self.disconnected(sid)
            if connected:
                await self.sio.manager.disconnect(sid, "/", ignore_queue=True)
            return
        if sid not in self.conns:
            return

        async def greet(state: RoomState | None) -> None:
            if state is None or sid not in self.conns:
                return
            await self.sio.enter_room(sid, participant_channel(pid))
            p = state.get(pid)
            if p is not None and p.conn == self.conn_of(sid):
                await self._welcome(state, pid, sid)
                return
            w = state.get_waiting(pid)
            if w is not None and w.conn == self.conn_of(sid):
                position = [x.id for x in state.waiting].index(pid) + 1
                # resume: the waiting place back after a drop (within the grace), and
                # the participant's place once let in.
                resume = self.resume_tokens.issue(ResumeClaim(state.room_id, state.session_id, pid))
                await self.sio.emit("waiting", {"position": position, "resume": resume}, to=sid)

        try:
            await self.store.attach(room_id, greet)
        except LiveUnavailable:
            # No snapshot to give: close, so the client reconnects (and resumes) later.
            await self.sio.disconnect(sid)

    def _transport_open(self, sid: str) -> bool:
        """Whether the Engine.IO connection under ``sid`` is still open."""
        eio_sid = self.sio.manager.eio_sid_from_sid(sid, "/")
        socket = self.sio.eio.sockets.get(eio_sid) if eio_sid is not None else None
        return socket is not None and not socket.closed and not socket.closing

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

    def drop_later(self, room_id: str, drop: c.Drop) -> None:
        """A Drop the live store could not take now (it is reconnecting, or the room is
        too busy): the clock retries it, so the person is not left "connected" for good."""
        self._unsent_drops.append((room_id, drop))

    async def disconnected(self, sid: str) -> None:
        conn = self._forget_conn(sid)
        if conn is not None:
            await self._drop(sid, conn)

    def closed(self, sid: str) -> None:
        """The Socket.IO disconnect handler's part. python-socketio calls that handler
        inline from wherever it found the connection closed, and that can be a send
        inside a room transition, holding the room: a broadcast reaching a long-polling
        member whose client went silent closes it there. Awaiting the Drop then waited
        for the room the broadcast held, for ever, and with it every later event of the
        room. So the Drop runs in a task of its own (one that comes late is harmless: it
        names the connection, and a resume has moved the participant to another)."""
        conn = self._forget_conn(sid)
        if conn is None:
            return
        task = asyncio.get_running_loop().create_task(self._drop(sid, conn))
        self._drops.add(task)
        task.add_done_callback(self._drops.discard)

    def _forget_conn(self, sid: str) -> Conn | None:
        conn = self.conns.pop(sid, None)
        if conn is not None:  # None: closed by us (removed, left, ended): the room knows
            self.metrics.connections.dec()
        return conn

    async def _drop(self, sid: str, conn: Conn) -> None:
        drop = c.Drop(conn.participant_id, self.conn_of(sid))
        try:
            await self.execute(conn.room_id, None, drop)
        except LiveUnavailable:
            self.drop_later(conn.room_id, drop)
        except RoomError:
            pass  # the session may have ended meanwhile

    # client events ---------------------------------------------------------------------

    async def handle(self, sid: str, event: str, data: object) -> dict[str, object]:
        """Validate, rate-limit and execute one client event; returns the ack."""
        if event not in CLOSING_OWN:  # a chat line, a hand: nothing to hold back
            return await self._handle(sid, event, data)
        acting = _Acting(sid)
        token = _ACTING.set(acting)
        try:
            return await self._handle(sid, event, data)
        finally:
            _ACTING.reset(token)
            acting.open = False
            # Tasks: they run once this task yields, and python-socketio writes the ack
            # as soon as this returns, without yielding first.
            for closing in acting.closes:
                self.spawn(self.sio.disconnect(closing))

    async def _handle(self, sid: str, event: str, data: object) -> dict[str, object]:
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
        ack: dict[str, object] = {"ok": True, **outcome.reply}
        erases = [ev for ev in outcome.events if isinstance(ev, Unstore)]
        if erases:  # transcript.erase, mod.chat.remove: out of the lock, bounded wait
            ack["erased"] = await self._erased(erases)
        return ack

    async def _erased(self, erases: list[Unstore]) -> int | None:
        """Lines deleted by these erases, or None if storage has not done them yet (they
        stay queued and run as soon as it can)."""
        futures = [self.recorder.erase_result(ev) for ev in erases]
        if any(f is None for f in futures):
            return None
        pending = [f for f in futures if f is not None]
        done, _ = await asyncio.wait(pending, timeout=ERASE_ACK_WAIT_SECS)
        if len(done) < len(pending) or any(f.cancelled() for f in done):
            return None
        return sum(f.result() for f in done)

    # delivery: the one function that turns room events into effects -----------------------

    async def deliver(self, room_id: str, outcome: Outcome) -> None:
        state = outcome.state
        if state is not None:
            self.recorder.session_seen(state.room_id, state.session_id, state.started_at)
        closing: list[str] = []
        welcomes: list[Welcome] = []
        for ev in outcome.events:
            if isinstance(ev, Welcome):
                # After the outcome's broadcasts: a welcome's snapshot is the state after
                # all of them, so one sent before the others (several admitted at once)
                # would be followed by broadcasts it already holds (a seq repeated).
                welcomes.append(ev)
                continue
            sid = self.sid_of(ev.conn) if isinstance(ev, Disconnect) else None
            if sid is not None and self.conns.pop(sid, None) is not None:
                closing.append(sid)
                self.metrics.connections.dec()
            await self._deliver_one(room_id, state, ev)
        for welcome in welcomes:
            await self._deliver_one(room_id, state, welcome)
        # Connections close only after every event of this outcome is out (an emit yields
        # to the loop), and the connection whose own command closes it only after that
        # command's ack (the client hears why before the line closes): a task spawned
        # here could run before it, whenever the store yields after delivering (on Redis,
        # draining the room's messages that waited behind this one).
        acting = _ACTING.get()
        for conn in closing:
            if acting is not None and acting.open and conn == acting.sid:
                acting.closes.append(conn)
            else:
                self.spawn(self.sio.disconnect(conn))

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
            sid = self.sid_of(p.conn) if p else None
            # A connection still in its handshake is greeted by _greet_when_connected.
            if state and p and sid and self.sio.manager.is_connected(sid, "/"):
                await self._welcome(state, p.id, sid)
        elif isinstance(ev, STORAGE_EVENTS):
            # Decided by the machine; queued for the recorder, never awaited here (the
            # room's lock is held). Access facts are noted first, so that a withdrawal
            # or a removal ends transcript access before storage has caught up.
            if isinstance(ev, Consent | Audit):
                self.facts.note(ev)
            self.recorder.submit(ev)
        if self.phone is not None:
            # Phone calls have no Socket.IO connection; the phone lines queue what reaches
            # them and never await a call's transport here (the room's lock is held).
            await self.phone.deliver(room_id, state, ev)

    def _line_unsaved(self, line: Transcribe, reason: str) -> None:
        """Tell the sender their line will not be kept (never a silent loss)."""
        payload = {"message_id": line.message_id, "session_id": line.session_id, "reason": reason}
        self.spawn(
            self.sio.emit("transcript.unsaved", payload, to=participant_channel(line.sender_id))
        )

    async def notify_moderators(self, event: str, payload: dict[str, Any]) -> None:
        """A server notice (not a room broadcast: no seq) to the moderators of every live
        session, e.g. a new phone check-in. Every node tells its own connections."""
        await self.store.notice(event, payload)

    async def _notify_moderators_here(self, event: str, payload: dict[str, Any]) -> None:
        for room_id in await self.store.room_ids():
            state = await self.store.get(room_id)
            ids = state.moderator_ids() if state else ()
            if ids:
                await self.sio.emit(event, payload, to=[participant_channel(p) for p in ids])

    # the clock -------------------------------------------------------------------------

    async def run_clock(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECS)
            try:
                await self.tick()
            except Exception:
                log.exception("clock tick failed")

    async def tick(self) -> None:
        """Expire what is due, drop connections of dead nodes, retry drops that failed."""
        self.metrics.live_sessions.set(len(await self.store.room_ids()))
        lost = [
            (x.room_id, c.Drop(x.participant_id, x.conn)) for x in await self.store.lost_conns()
        ]
        # Taken only now: a failure above leaves them queued for the next tick.
        unsent, self._unsent_drops = self._unsent_drops, []
        for room_id, drop in unsent + lost:
            try:
                await self.execute(room_id, None, drop)
            except LiveUnavailable:
                self._unsent_drops.append((room_id, drop))
            except RoomError:
                pass  # the session ended meanwhile
            except Exception:
                # Never lost (the person would stay "connected" for good): next tick.
                log.exception("room %s: a drop failed; tried again at the next tick", room_id)
                self._unsent_drops.append((room_id, drop))
        for room_id in await self.store.due_rooms(self.clock(), self.rules):
            with contextlib.suppress(RoomError):
                await self.execute(room_id, None, c.Tick())

    # tasks -----------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _taken_for_dead(self) -> None:
        """Another node took this one for dead (it was only silent) and dropped its
        people. Web clients are closed, so each resumes and takes its place back; phone
        calls, still on the line, take theirs back at once."""
        await self.disconnect_all()
        if self.phone is not None:
            await self.phone.rejoin_all()

    async def room(self, room_id: str) -> RoomRecord | None:
        """The room's record (cached; see :meth:`_room`)."""
        return await self._room(room_id)

    async def disconnect_all(self) -> None:
        """Shutting down, or taken for dead by another node: close every connection of
        this node now. Each is a Drop, so the room shows it at once and the person can
        resume on another node (or on this one) within the grace period, keeping their
        place."""
        sids = list(self.conns)
        await asyncio.gather(*(self.sio.disconnect(sid) for sid in sids), return_exceptions=True)
        while self._drops:  # each close's Drop (:meth:`closed`), recorded before we go on
            await asyncio.gather(*self._drops, return_exceptions=True)

    async def close(self) -> None:
        await stop_tasks(*self._tasks, *self._drops)


__all__ = ["DECODERS", "RoomService"]
