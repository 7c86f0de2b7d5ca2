"""Phone lines: the domain both phone transports drive (the /bridge namespace and the
Twilio webhooks). It turns calls into room commands and room events into call actions.

A call, by its provider's call id::

    call.join (PIN) --bad PIN--> refused (bad_pin)
                    --ok--> waiting (room has a waiting room) --admitted--> in the room
                    --ok--> in the room
    in the room --keys *9 / *6--> hand / mic toggled (ToggleHand, ToggleMic)
                --call.leave--> left (Leave)
                --line lost--> dropped (Drop: the place is kept for the grace period)
    dropped --call.join with the same call id, or a new call from the same number
              to the same PIN within the grace--> resumed: same participant, same place
    a moderator's mod.mute / mod.mute_all --> sink.mute(muted=True)
    mod.remove, mod.deny, mod.end --> sink.remove(reason)
    the floor given to the caller, mod.ask_unmute --> sink.notice("floor" | "ask_unmute"):
        a caller cannot see the screen, so they are told it is their turn

Each call has a *sink*: how the room's decisions reach that call (a bridge connection,
or Twilio's REST API). Room events reach the sinks through :meth:`PhoneLines.deliver`,
called from the one delivery function, :meth:`server.service.RoomService.deliver`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Coroutine
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, Protocol

from rooms import commands as c
from rooms.errors import ErrorCode, RoomError
from rooms.events import Disconnect, Emit, Event, SessionClosed
from rooms.hands import position
from rooms.model import Role, RoomState, Via
from rooms.names import name_key
from server.live import LiveUnavailable
from server.phone.numbers import Caller, pseudonyms
from server.phone.pending import PendingCheckins
from server.ratelimit import Bucket
from server.service import RoomService, new_id
from server.storage.base import CheckinRecord, RoomRecord, StorageUnavailable
from server.tasks import stop_tasks

log = logging.getLogger(__name__)

MAX_CALL_ID_CHARS: Final = 64  # Twilio's CallSid is 34; SIP Call-IDs are longer
MAX_PIN_DIGITS: Final = 12
NAME_RACE_TRIES: Final = 3  # another caller took "Caller 42" between our look and our join
PINS_CACHED: Final = 1_000  # rooms found by PIN, kept to let callers in while storage is down
# Wrong PINs: a room's PIN is 6 digits, so guessing is the way in for a stranger. Each
# number (a keyed hash of it; withheld numbers share one) may get 5 wrong, then 5 more
# an hour; the whole line 30, then 30 more every 10 minutes. Past either, PINs are not
# even looked at until the budget refills: a guess cannot be told from a mistype.
PIN_MISSES_PER_CALLER: Final = 5
PIN_MISSES_PER_CALLER_PER_SEC: Final = 5 / 3600
PIN_MISSES_ALL: Final = 30
PIN_MISSES_ALL_PER_SEC: Final = 30 / 600
PIN_CALLERS_TRACKED: Final = 10_000  # oldest forgotten first
# Numbers that have given a right PIN on this node (keyed hashes, most recent kept): the
# whole line's budget does not hold them back, so strangers guessing from many numbers
# cannot keep the group's own callers out (a caller whose line fell calling back above
# all). Their own number's budget still does. Withheld numbers are never known.
KNOWN_CALLERS_KEPT: Final = 10_000
# Requests to be called (callback, talk) from one number, per node: 3, then 3 more an
# hour. Past it, a new call's request is not stored again: the caller is told theirs is
# with the team. Automated calls from one number cannot bury real requests (nor ring
# the talk number over and over). A bridge's retry of a request (the same call) is
# never counted. Withheld numbers are not limited: nothing to tell them apart by.
CALL_REQUESTS_PER_CALLER: Final = 3
CALL_REQUESTS_PER_CALLER_PER_SEC: Final = 3 / 3600
CALL_REQUESTS_TRACKED: Final = 10_000
_PIN: Final = re.compile(r"[0-9]{1,12}")
KEYS: Final[dict[str, c.Command]] = {"*9": c.ToggleHand(), "*6": c.ToggleMic()}


class CheckinStatus(StrEnum):
    OK = "ok"  # "I'm OK"
    CALLBACK = "callback"  # "please call me back"
    TALK = "talk"  # "I'd like to talk to someone now"

    @property
    def needs_number(self) -> bool:
        """Someone must call back: the one case the full number is stored."""
        return self is not CheckinStatus.OK


class CallSink(Protocol):
    """How the room's decisions reach one call."""

    async def mute(self, call: PhoneCall, muted: bool) -> None: ...

    async def remove(self, call: PhoneCall, reason: str) -> None: ...

    async def admitted(self, call: PhoneCall) -> None: ...

    async def notice(self, call: PhoneCall, notice: Notice) -> None: ...


class Notice(StrEnum):
    """Something a caller must hear, since they cannot see the room."""

    FLOOR = "floor"  # a moderator gave them the floor: their turn to speak
    ASK_UNMUTE = "ask_unmute"  # a moderator invites them to unmute


@dataclass(slots=True, eq=False)
class PhoneCall:
    call_id: str
    room_id: str
    room_title: str
    participant_id: str
    name: str
    caller_key: str | None  # keyed hash of the number: resumes a call back, never shown
    sink: CallSink
    waiting: bool = False
    resumed: bool = False  # took back a dropped participant's place
    dropped: bool = False
    reason: str | None = None  # why the room let go of it: removed, banned, denied, ended


def valid_call_id(raw: object) -> str:
    if not isinstance(raw, str) or not 0 < len(raw) <= MAX_CALL_ID_CHARS or not raw.isprintable():
        raise RoomError(ErrorCode.BAD_REQUEST, "'call_id' must be a string of 1 to 64 characters.")
    return raw


def valid_pin(raw: object) -> str:
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str) or not _PIN.fullmatch(raw):
        raise RoomError(ErrorCode.BAD_PIN, "A PIN is the digits your facilitator gave you.")
    return raw


def checkin_public(rec: CheckinRecord, *, with_number: bool) -> dict[str, Any]:
    """A check-in as moderators see it; the full number only where someone must call."""
    body: dict[str, Any] = {
        "id": rec.id,
        "room_id": rec.room_id,
        "status": rec.status,
        "caller": rec.caller_masked,
        "created_at": rec.created_at,
        "resolved_at": rec.resolved_at,
        "resolved_by": rec.resolved_by,
    }
    if with_number and rec.caller_full is not None:
        body["number"] = rec.caller_full
    return body


class PhoneLines:
    """The calls of this node, by call id and by participant, and what reaches them."""

    def __init__(
        self, service: RoomService, *, secret: str, pending_dir: Path | None = None
    ) -> None:
        self.service = service
        self.pending = PendingCheckins(service.storage, pending_dir)
        self._secret = secret
        self._calls: dict[str, PhoneCall] = {}  # by call id
        self._by_participant: dict[str, str] = {}  # participant id -> call id
        self._floor: dict[str, str | None] = {}  # room id -> who had the floor last we saw
        self._joining: dict[str, asyncio.Lock] = {}  # call id -> its call.join in flight
        self._checking_in: dict[tuple[str, str], asyncio.Lock] = {}  # (call id, status)
        self._pins: dict[str, RoomRecord] = {}  # PIN -> room, oldest lookup first
        self._pin_misses: dict[str, Bucket] = {}  # caller key -> wrong PINs left
        self._all_pin_misses = Bucket.full(PIN_MISSES_ALL, PIN_MISSES_ALL_PER_SEC, 0.0)
        self._known_callers: dict[str, None] = {}  # caller key, most recent last
        self._call_requests: dict[str, Bucket] = {}  # caller key -> requests left
        self._requesting_calls: dict[str, None] = {}  # calls that made one, most recent last
        self._outbox: asyncio.Queue[Coroutine[Any, Any, None]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    # the outbox: sink actions run in order, outside the room's transition -----------------

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._drain())
        self.pending.start()

    async def close(self) -> None:
        await stop_tasks(self._worker)
        await self.pending.close()
        while not self._outbox.empty():
            self._outbox.get_nowait().close()

    def _post(self, action: Coroutine[Any, Any, None]) -> None:
        """Queue a sink action. Delivery never awaits a call's transport: a yield there
        would let a pending Disconnect close a web socket before its command's ack."""
        self._outbox.put_nowait(action)

    async def _drain(self) -> None:
        while True:
            action = await self._outbox.get()
            try:
                await action
            except Exception:
                log.exception("a phone call action failed")
            finally:
                self._outbox.task_done()

    def get(self, call_id: str) -> PhoneCall | None:
        return self._calls.get(call_id)

    def _add(self, call: PhoneCall) -> None:
        self._calls[call.call_id] = call
        self._by_participant[call.participant_id] = call.call_id

    def _forget(self, call_id: str) -> PhoneCall | None:
        call = self._calls.pop(call_id, None)
        if call is not None and self._by_participant.get(call.participant_id) == call_id:
            del self._by_participant[call.participant_id]
        return call

    def _of_participant(self, pid: str) -> PhoneCall | None:
        call_id = self._by_participant.get(pid)
        return self._calls.get(call_id) if call_id is not None else None

    # calls --------------------------------------------------------------------------

    async def join(self, call_id: str, pin: str, caller: Caller, sink: CallSink) -> PhoneCall:
        """Join (or wait, or resume) the room with this PIN. Raises RoomError.

        One join per call id at a time: a bridge retrying ``call.join`` while the first
        is still in flight gets the same participant, not a second one."""
        lock = self._joining.setdefault(call_id, asyncio.Lock())
        try:
            async with lock:
                return await self._join(call_id, pin, caller, sink)
        finally:
            if not lock.locked() and self._joining.get(call_id) is lock:
                del self._joining[call_id]

    async def _room(self, pin: str) -> RoomRecord | None:
        """The room with this PIN; while storage is down, the copy from its last lookup,
        so a caller whose line dropped can still come back (as RoomService does for
        room tokens)."""
        try:
            room = await self.service.storage.get_room_by_pin(pin)
        except StorageUnavailable:
            room = self._pins.get(pin)
            if room is None:
                raise RoomError(
                    ErrorCode.UNAVAILABLE, "The server cannot reach its database: try again soon."
                ) from None
            return room
        if room is not None:
            self._pins.pop(pin, None)
            self._pins[pin] = room
            while len(self._pins) > PINS_CACHED:
                del self._pins[next(iter(self._pins))]
        return room

    def _pin_budget(self, key: str | None) -> tuple[Bucket, ...]:
        """The wrong-PIN budgets that hold this caller back: their number's, and the whole
        line's unless the number has given a right PIN here before."""
        who = key or "withheld"
        mine = self._pin_misses.pop(who, None) or Bucket.full(
            PIN_MISSES_PER_CALLER, PIN_MISSES_PER_CALLER_PER_SEC, self.service.clock()
        )
        self._pin_misses[who] = mine  # most recent last
        while len(self._pin_misses) > PIN_CALLERS_TRACKED:
            del self._pin_misses[next(iter(self._pin_misses))]
        if key is not None and key in self._known_callers:
            return (mine,)
        return mine, self._all_pin_misses

    def _known(self, key: str | None) -> None:
        if key is None:
            return
        self._known_callers.pop(key, None)
        self._known_callers[key] = None
        while len(self._known_callers) > KNOWN_CALLERS_KEPT:
            del self._known_callers[next(iter(self._known_callers))]

    async def _join(self, call_id: str, pin: str, caller: Caller, sink: CallSink) -> PhoneCall:
        key = caller.key(self._secret)
        budgets = self._pin_budget(key)
        now = self.service.clock()
        if any(b.available(now) < 1 for b in budgets):
            log.warning(
                "call %s: PIN not checked, too many wrong PINs (%s)", call_id, caller.masked
            )
            raise RoomError(
                ErrorCode.RATE_LIMITED,
                "Too many wrong PINs have been tried. Please try again in an hour, "
                "or ask your facilitator for help.",
            )
        room = await self._room(pin)
        if room is None:
            for b in budgets:
                b.take(now)
            raise RoomError(ErrorCode.BAD_PIN, "No group has that PIN. Check it and try again.")
        self._known(key)
        known = self._calls.get(call_id)
        if known is not None and known.room_id == room.id and not known.dropped:
            return known  # the same call.join again (a retry): nothing changes
        if known is not None and known.room_id != room.id:
            await self.leave(call_id)  # one call is in one room at a time
        resume = self._resumable(call_id, room.id, key)
        for _ in range(NAME_RACE_TRIES):
            state = await self.service.store.get(room.id)
            join = self._join_command(
                room,
                call_id,
                _free_name(state, caller),
                key,
                resume.participant_id if resume else None,
            )
            try:
                outcome = await self.service.execute(room.id, None, join)
                break
            except RoomError as e:
                if e.code is not ErrorCode.NAME_TAKEN:
                    raise
        else:
            raise RoomError(ErrorCode.NAME_TAKEN, "The room is busy; please call again.")
        pid = outcome.reply["participant_id"]
        if resume is not None:
            self._forget(resume.call_id)
        assert outcome.state is not None
        p = outcome.state.get(pid)
        w = outcome.state.get_waiting(pid)
        name = p.name if p else w.name if w else join.name
        call = PhoneCall(
            call_id=call_id,
            room_id=room.id,
            room_title=room.title,
            participant_id=pid,
            name=name,
            caller_key=key,
            sink=sink,
            waiting=bool(outcome.reply.get("waiting")),
            resumed=bool(outcome.reply.get("resumed")),
        )
        self._add(call)
        log.info("call %s joined room %s as %s", call_id, room.id, pid)
        return call

    def _join_command(
        self, room: RoomRecord, call_id: str, name: str, key: str | None, resume_id: str | None
    ) -> c.Join:
        """A caller's Join: known by the keyed hash of their number (a ban holds it), or
        by nothing if it is withheld; taking back ``resume_id``'s place if it is there."""
        return c.Join(
            room=c.RoomInfo(room.id, room.title, room.settings()),
            new_session_id=new_id(),
            participant_id=new_id(),
            name=name,
            role=Role.PEER,
            via=Via.PHONE,
            conn=self.service.conn_of(call_id),
            ban_keys=frozenset({f"phone:{key}"} if key else ()),
            resume_id=resume_id,
        )

    def _resumable(self, call_id: str, room_id: str, key: str | None) -> PhoneCall | None:
        """The earlier call this one takes over: same call id, or a dropped call from the
        same number (a caller whose line fell calls back) to the same room."""
        known = self._calls.get(call_id)
        if known is not None and known.room_id == room_id and not known.waiting:
            return known
        if key is None:
            return None  # a withheld number cannot be matched: a fresh place
        for call in self._calls.values():
            if call.room_id == room_id and call.dropped and call.caller_key == key:
                return call
        return None

    def _live(self, call_id: str) -> PhoneCall:
        call = self._calls.get(call_id)
        if call is None or call.dropped:
            raise RoomError(ErrorCode.NOT_FOUND, "That call is not in a room.")
        return call

    async def keys(self, call_id: str, digits: str) -> dict[str, Any]:
        """``*9`` hand, ``*6`` mic, ``#`` just tell: the reply says hand, mic, position
        (and ``floor``: whether the caller has it)."""
        call = self._live(call_id)
        if call.waiting:
            raise RoomError(
                ErrorCode.NOT_ALLOWED_NOW,
                "You are in the waiting room; a facilitator will let you in.",
            )
        command: c.Command | None = KEYS.get(digits)
        if command is not None:
            outcome = await self.service.execute(call.room_id, call.participant_id, command)
            return _status(outcome.state, call.participant_id)
        if digits == "#":
            return await self.where(call_id)
        raise RoomError(ErrorCode.BAD_REQUEST, "Keys are *9 (hand), *6 (microphone) or # (place).")

    async def where(self, call_id: str) -> dict[str, Any]:
        """Hand, mic, place in line and floor, read without changing anything."""
        call = self._live(call_id)
        return _status(await self.service.store.get(call.room_id), call.participant_id)

    async def leave(self, call_id: str) -> None:
        call = self._forget(call_id)
        if call is None or call.reason is not None:
            return
        drop = c.Drop(call.participant_id, self.service.conn_of(call_id))
        try:
            if call.waiting:
                await self.service.execute(call.room_id, None, drop)
            else:
                await self.service.execute(call.room_id, call.participant_id, c.Leave())
        except LiveUnavailable:
            # The caller is gone either way: their place is let go after the grace.
            self.service.drop_later(call.room_id, drop)
        except RoomError:
            pass  # the session ended meanwhile: nothing left to leave

    async def drop(self, call_id: str) -> None:
        """The line was lost: keep the place for the grace period (a waiting caller's
        place in the waiting room is not kept)."""
        call = self._calls.get(call_id)
        if call is None or call.dropped:
            return
        call.dropped = True
        if call.waiting:
            self._forget(call_id)
        drop = c.Drop(call.participant_id, self.service.conn_of(call_id))
        try:
            await self.service.execute(call.room_id, None, drop)
        except LiveUnavailable:
            self.service.drop_later(call.room_id, drop)  # not "session ended": retried
        except RoomError:
            self._forget(call_id)

    async def rejoin_all(self) -> None:
        """This node was taken for dead (it was only silent: a paused machine) and its
        calls were dropped in their rooms while still on the line. Each takes its place
        back, as a call back would; a waiting caller waits again."""
        for call in [x for x in self._calls.values() if not x.dropped and x.reason is None]:
            await self._rejoin(call)

    def _ended(self, call: PhoneCall) -> bool:
        """Whether the call left, dropped or was let go (read anew after each await)."""
        return self._calls.get(call.call_id) is not call or call.dropped or bool(call.reason)

    async def _rejoin(self, call: PhoneCall) -> None:
        """Take back the place of a call still on the line that the room shows dropped
        (by another node that took this one for dead; perhaps late, after a rejoin)."""
        if self._ended(call):
            return
        try:
            room = await self.service.room(call.room_id)
            if room is None:
                return
            join = self._join_command(
                room, call.call_id, call.name, call.caller_key, call.participant_id
            )
            outcome = await self.service.execute(room.id, None, join)
        except (RoomError, LiveUnavailable) as e:
            log.warning("call %s could not take its place back: %s", call.call_id, e)
            return
        pid = outcome.reply["participant_id"]
        if self._ended(call):
            # The caller hung up, the line dropped or they were removed while this join
            # was on its way: it must not stand (a place nobody holds, shown connected).
            with contextlib.suppress(RoomError, LiveUnavailable):
                if self._calls.get(call.call_id) is call and call.reason is None:
                    drop = c.Drop(pid, self.service.conn_of(call.call_id))
                    await self.service.execute(room.id, None, drop)  # kept for the grace
                else:
                    await self.service.execute(room.id, pid, c.Leave())
            return
        if pid != call.participant_id:
            self._forget(call.call_id)
            call.participant_id = pid
            self._add(call)
        call.waiting = bool(outcome.reply.get("waiting"))
        if not call.waiting:
            # Back, the room shows the caller muted (as after any resume) while the line
            # stayed open in the call: mute the line too, so that what everyone sees is
            # so (and "mute everyone", which passes over the muted, cannot miss it).
            try:
                await call.sink.mute(call, True)
            except Exception:
                log.warning(
                    "call %s: could not mute the line after its place came back", call.call_id
                )

    async def drop_all(self, sink: CallSink) -> None:
        """A bridge went away: every call it held is dropped (and may be resumed)."""
        for call in [x for x in self._calls.values() if x.sink is sink]:
            await self.drop(call.call_id)

    # check-ins ----------------------------------------------------------------------

    async def checkin(self, call_id: str, caller: Caller, status: CheckinStatus) -> CheckinRecord:
        """Store a check-in (a retry returns the first: storage/base.py) and tell the
        moderators.

        While the database is away it is kept on this node's disk and stored when the
        database returns (:mod:`server.phone.pending`): a caller asking for a call back is
        thanked, not asked to try again. Raises only if it could be kept nowhere."""
        self._budget_call_request(call_id, caller, status)
        call = self._calls.get(call_id)
        record = CheckinRecord(
            id=new_id(),
            room_id=call.room_id if call else None,
            call_id=call_id,
            status=status.value,
            caller_masked=caller.masked,
            caller_full=caller.number if status.needs_number else None,
            created_at=self.service.clock(),
        )
        # One at a time per call and status: a bridge resending while the first is in
        # flight must find it (storage's retry rule reads, then inserts).
        key = (call_id, status.value)
        lock = self._checking_in.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                saved = await self._save_checkin(record)
        finally:
            if not lock.locked() and self._checking_in.get(key) is lock:
                del self._checking_in[key]
        if saved.id == record.id:
            log.info("check-in %s: %s from %s", saved.id, status.value, caller.masked)
            try:
                await self.notify(saved)
            except Exception:
                # It is saved: the caller must not hear otherwise. The queue shows it.
                log.exception("check-in %s saved, but moderators could not be told", saved.id)
        return saved

    def _budget_call_request(self, call_id: str, caller: Caller, status: CheckinStatus) -> None:
        """Take one of the caller's requests to be called (see
        :data:`CALL_REQUESTS_PER_CALLER`), or refuse ``rate_limited``."""
        key = caller.key(self._secret)
        if not status.needs_number or key is None:
            return
        if call_id in self._requesting_calls:
            return  # the same call again (a retry): storage returns its first record
        now = self.service.clock()
        budget = self._call_requests.pop(key, None) or Bucket.full(
            CALL_REQUESTS_PER_CALLER, CALL_REQUESTS_PER_CALLER_PER_SEC, now
        )
        self._call_requests[key] = budget  # most recent last
        while len(self._call_requests) > CALL_REQUESTS_TRACKED:
            del self._call_requests[next(iter(self._call_requests))]
        if not budget.take(now):
            log.warning(
                "call %s: a request to be called not stored again (%s)", call_id, caller.masked
            )
            raise RoomError(
                ErrorCode.RATE_LIMITED,
                "You asked us to call you a short while ago. Your request is with the team, "
                "and someone will call you as soon as they can.",
            )
        self._requesting_calls[call_id] = None
        while len(self._requesting_calls) > CALL_REQUESTS_TRACKED:
            del self._requesting_calls[next(iter(self._requesting_calls))]

    async def _save_checkin(self, record: CheckinRecord) -> CheckinRecord:
        kept = self.pending.find(record)
        if kept is not None:
            return kept  # a repeated webhook while the first is still waiting
        try:
            return await self.service.storage.create_checkin(record)
        except StorageUnavailable:
            saved = self.pending.keep(record)
            log.warning("check-in %s kept on disk until the database returns", saved.id)
            return saved

    async def notify(self, rec: CheckinRecord) -> None:
        """Moderators of live sessions hear of a new or resolved check-in (masked only:
        the number is for those holding a facilitator or admin token, over HTTP)."""
        await self.service.notify_moderators(
            "checkins.updated", {"checkin": checkin_public(rec, with_number=False)}
        )

    # room events to calls -----------------------------------------------------------

    async def deliver(self, room_id: str, state: RoomState | None, ev: Event) -> None:
        if isinstance(ev, Emit) and ev.to is not None:
            for pid in ev.to:
                call = self._of_participant(pid)
                if call is not None:
                    self._to_call(call, ev)
        elif isinstance(ev, Emit) and ev.name == "hands":
            floor = ev.payload.get("floor")
            if floor != self._floor.get(room_id):
                self._floor[room_id] = floor
                call = self._of_participant(str(floor)) if floor else None
                if call is not None:
                    self._post(call.sink.notice(call, Notice.FLOOR))
        elif isinstance(ev, Emit) and ev.name == "participant.updated":
            shown = ev.payload.get("participant") or {}
            call = self._of_participant(str(shown.get("id")))
            if call is not None and shown.get("connected") is False and not call.dropped:
                # Dropped by someone else while still on the line here: another node
                # took this one for dead, perhaps late. Take the place back, outside the
                # room's transition.
                self._post(self._rejoin(call))
        elif isinstance(ev, Emit) and ev.name == "participant.left":
            call = self._of_participant(str(ev.payload.get("id")))
            if call is not None and ev.payload.get("reason") == "timeout":
                self._forget(call.call_id)  # past the grace: a call back gets a new place
        elif isinstance(ev, Disconnect) and ev.conn is not None:
            handle = self.service.sid_of(ev.conn)
            call = self._calls.get(handle) if handle is not None else None
            if call is not None and call.participant_id == ev.participant_id:
                self._forget(call.call_id)
                self._post(call.sink.remove(call, call.reason or "removed"))
        elif isinstance(ev, SessionClosed):
            self._floor.pop(room_id, None)

    def _to_call(self, call: PhoneCall, ev: Emit) -> None:
        if ev.name == "you.muted":
            self._post(call.sink.mute(call, True))
        elif ev.name == "you.removed":
            call.reason = str(ev.payload.get("reason") or "removed")
        elif ev.name == "session.ended":
            call.reason = "ended"
        elif ev.name == "denied":
            call.reason = "denied"
        elif ev.name == "you.asked_to_unmute":
            self._post(call.sink.notice(call, Notice.ASK_UNMUTE))
        elif ev.name == "admitted":
            call.waiting = False
            self._post(call.sink.admitted(call))


def _status(state: RoomState | None, pid: str) -> dict[str, Any]:
    p = state.get(pid) if state else None
    if state is None or p is None:
        raise RoomError(ErrorCode.NOT_FOUND, "That call is not in a room.")
    return {
        "hand": p.hand,
        "mic": p.mic,
        "position": position(state.participants, state.settings.queue_order, pid),
        "floor": state.floor == pid,
    }


def _free_name(state: RoomState | None, caller: Caller) -> str:
    taken: set[str] = set()
    if state is not None:
        taken = {name_key(p.name) for p in state.participants}
        taken |= {name_key(w.name) for w in state.waiting}
    for name in pseudonyms(caller):
        if name_key(name) not in taken:
            return name
    raise RoomError(ErrorCode.ROOM_FULL, "This room is full.")
