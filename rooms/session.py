"""A session's life: join (or wait, or resume), drop, expire, admit, end.

::

    (no session) --first Join--> live --End / empty for the grace period--> (no session)

    Join: refused (name_taken, banned, room_locked, room_full)
          | into the waiting room (waiting room on, joiner not a moderator)
          | admitted: participant.joined + Welcome
    Join with resume_id of a participant still in the session: restored, same id,
          role, hand ticket, turns and consent; camera and mic off.
    Join with resume_only that restores nobody (the grace passed, the session ended,
          a token of another room or none): refused (banned, else resume_expired);
          nothing changes and no session starts. Without resume_only: a fresh join.
    Join with live_only and no session live: refused resume_expired, none started.
    Drop: connected false, place kept; Tick after the grace period: left ("timeout").

Moderators (joined with a facilitator token) are never held by the lock, the size cap
or the waiting room: a facilitator must always be able to get into their own room.
"""

from __future__ import annotations

from dataclasses import replace

from presence.state import dropped, expired, reconnected
from rooms.commands import Drop, Join
from rooms.errors import ErrorCode, RoomError
from rooms.events import Disconnect, SessionClosed, Welcome
from rooms.model import Participant, Role, RoomState, Via, Waiting
from rooms.names import NAME_BAN_PREFIX, name_key
from rooms.tx import Tx

MAX_NAME_CHARS = 40
RESUME_EXPIRED_MESSAGE = "Your earlier place in this group has ended. You can join again."
SESSION_ENDED_MESSAGE = "The session you were in has ended."


def place_gone(*, session_live: bool) -> RoomError:
    """``session_live``: whether the group is meeting now (a place gone, or a new
    session since), or nobody is (joining again would start a session alone)."""
    message = RESUME_EXPIRED_MESSAGE if session_live else SESSION_ENDED_MESSAGE
    return RoomError(ErrorCode.RESUME_EXPIRED, message, {"session_live": session_live})


def new_session(cmd: Join, now: float) -> RoomState:
    return RoomState(
        room_id=cmd.room.room_id,
        title=cmd.room.title,
        session_id=cmd.new_session_id,
        started_at=now,
        settings=cmd.room.settings,
    )


def _name_in_use(state: RoomState, name: str) -> bool:
    key = name_key(name)
    return any(name_key(p.name) == key for p in state.participants) or any(
        name_key(w.name) == key for w in state.waiting
    )


def join(tx: Tx, cmd: Join, max_participants: int) -> None:
    if cmd.resume_id is not None:
        back = tx.state.get(cmd.resume_id)
        if back is not None:
            _resume(tx, back, cmd.conn)
            return
        waiting = tx.state.get_waiting(cmd.resume_id)
        if waiting is not None:
            _resume_waiting(tx, waiting, cmd.conn)
            return
    state = tx.state
    banned = cmd.ban_keys & state.banned
    if banned and cmd.role is Role.FACILITATOR:
        # Someone removed as "Sam" keeps out whoever types "Sam" on an invite link, but
        # not a facilitator link's holder of that name: they must get into their room.
        banned = frozenset(k for k in banned if not k.startswith(NAME_BAN_PREFIX))
    if banned:
        raise RoomError(ErrorCode.BANNED, "You cannot join this session.")
    if cmd.resume_only:
        raise place_gone(session_live=True)
    if _name_in_use(state, cmd.name):
        raise RoomError(ErrorCode.NAME_TAKEN, "Someone here already uses that name: pick another.")
    moderator = cmd.role.is_moderator
    if state.settings.locked and not moderator:
        raise RoomError(ErrorCode.ROOM_LOCKED, "The facilitator has locked this room for now.")
    if len(state.participants) + len(state.waiting) >= max_participants and not moderator:
        raise RoomError(ErrorCode.ROOM_FULL, "This room is full.")
    if state.settings.waiting_room and not moderator:
        w = Waiting(cmd.participant_id, cmd.name, cmd.role, cmd.via, cmd.conn, cmd.ban_keys)
        tx.state = state.copy_and_replace(waiting=(*state.waiting, w))
        tx.send([w.id], "waiting", position=len(tx.state.waiting))
        tx.waiting_changed()
        tx.reply.update(participant_id=w.id, waiting=True)
        return
    p = Participant(
        id=cmd.participant_id,
        name=cmd.name,
        role=cmd.role,
        via=cmd.via,
        conn=cmd.conn,
        ban_keys=cmd.ban_keys,
    )
    enter(tx, p)


def enter(tx: Tx, p: Participant) -> None:
    """Make ``p`` a participant: everyone hears of it, and ``p`` gets the room."""
    tx.state = tx.state.copy_and_replace(participants=(*tx.state.participants, p))
    tx.broadcast("participant.joined", participant=p.public())
    tx.emit(Welcome(p.id))
    if p.role.is_moderator and tx.state.waiting:
        tx.send(
            [p.id],
            "waiting.updated",
            waiting=[w.public() for w in tx.state.waiting],
        )
    tx.reply.update(participant_id=p.id, waiting=False)


def admit(tx: Tx, w: Waiting, by: str | None) -> None:
    tx.state = tx.state.copy_and_replace(waiting=tuple(x for x in tx.state.waiting if x.id != w.id))
    tx.send([w.id], "admitted", by=by)
    p = Participant(w.id, w.name, w.role, w.via, w.conn, ban_keys=w.ban_keys)
    if w.dropped_at is not None:
        # Let in while their line was down: in, keeping the rest of the grace to come
        # back (their token from the waiting room takes the place).
        p = dropped(p, w.dropped_at)
    enter(tx, p)
    tx.waiting_changed()


def _replace_line(tx: Tx, pid: str, old: str | None, new: str | None) -> None:
    """The same person on a new connection: tell the old one why, then close it (the
    new one is not in the person's channel yet). A close without this is the server
    going away, and a client comes back on its own. ``old``: None if it dropped."""
    if old is not None and old != new:
        tx.send([pid], "you.replaced")
        tx.emit(Disconnect(pid, old))


def _put_waiting(tx: Tx, w: Waiting) -> None:
    """``w`` in place of the waiting entry of the same id (its place in line kept)."""
    tx.state = tx.state.copy_and_replace(
        waiting=tuple(w if x.id == w.id else x for x in tx.state.waiting)
    )


def _resume(tx: Tx, p: Participant, conn: str | None) -> None:
    _replace_line(tx, p.id, p.conn if p.connected else None, conn)
    tx.updated(reconnected(p, conn))
    tx.emit(Welcome(p.id))
    tx.reply.update(participant_id=p.id, waiting=False, resumed=True)


def _resume_waiting(tx: Tx, w: Waiting, conn: str | None) -> None:
    """Back in the waiting room within the grace period: the same place in line. Not
    held by a lock put on meanwhile: they were let wait before it."""
    _replace_line(tx, w.id, w.conn if w.dropped_at is None else None, conn)
    _put_waiting(tx, replace(w, conn=conn, dropped_at=None))
    if w.dropped_at is not None:
        tx.waiting_changed()
    tx.reply.update(participant_id=w.id, waiting=True, resumed=True)


def drop(tx: Tx, cmd: Drop) -> None:
    p = tx.state.get(cmd.participant_id)
    if p is not None:
        if p.conn == cmd.conn and p.connected:
            tx.updated(dropped(p, tx.now))
        return
    w = tx.state.get_waiting(cmd.participant_id)
    if w is not None and w.conn == cmd.conn and w.dropped_at is None:
        if w.via is Via.PHONE:
            _off_the_list(tx, w)  # a caller calls again: the phone line keeps no place
            return
        _put_waiting(tx, replace(w, dropped_at=tx.now))
        tx.waiting_changed()


def leave_waiting(tx: Tx, w: Waiting) -> None:
    """Someone waiting to be let in goes (``session.leave``): off the list, line closed."""
    _off_the_list(tx, w)
    tx.emit(Disconnect(w.id, w.conn))


def _off_the_list(tx: Tx, w: Waiting) -> None:
    tx.state = tx.state.copy_and_replace(waiting=tuple(x for x in tx.state.waiting if x.id != w.id))
    tx.waiting_changed()


def leave(tx: Tx, p: Participant, reason: str) -> None:
    tx.drop_participant(p.id)
    tx.broadcast("participant.left", id=p.id, reason=reason)
    tx.emit(Disconnect(p.id, p.conn))
    keep_a_facilitator(tx)


def expire(tx: Tx, grace_secs: float) -> bool:
    """Let go of dropped participants, and dropped places in the waiting room, past the
    grace period. True if the session ends."""
    for p in tx.state.participants:
        if expired(p, tx.now, grace_secs):
            tx.drop_participant(p.id)
            tx.broadcast("participant.left", id=p.id, reason="timeout")
    gone = [
        w
        for w in tx.state.waiting
        if w.dropped_at is not None and tx.now - w.dropped_at >= grace_secs
    ]
    if gone:
        tx.state = tx.state.copy_and_replace(
            waiting=tuple(w for w in tx.state.waiting if w not in gone)
        )
        tx.waiting_changed()
    keep_a_facilitator(tx)
    since = tx.state.empty_since
    return since is not None and tx.now - since >= grace_secs


def keep_a_facilitator(tx: Tx) -> None:
    """The last facilitator has gone (left, or past the grace period): a cofacilitator
    becomes facilitator, so someone can still end the session, lock or unlock it, and
    pass roles on. The one chosen can act: connected before dropped, on the web before
    on the phone (a caller has only the hand and mic keys), then here longest. A dropped
    facilitator still counts (they may be back within the grace). With no
    cofacilitator, nobody is promoted: a facilitator token brings one in."""
    people = tx.state.participants
    if any(p.role is Role.FACILITATOR for p in people):
        return
    cofacilitators = [p for p in people if p.role is Role.COFACILITATOR]
    if cofacilitators:
        chosen = min(cofacilitators, key=lambda p: (not p.connected, p.via is Via.PHONE))
        tx.updated(chosen.copy_and_replace(role=Role.FACILITATOR))


def end(tx: Tx, reason: str) -> None:
    """Everyone, waiting or in, hears the session ended and is disconnected."""
    everyone = [p.id for p in tx.state.participants] + [w.id for w in tx.state.waiting]
    tx.send(everyone, "session.ended", reason=reason)
    for p in tx.state.participants:
        tx.emit(Disconnect(p.id, p.conn))
    for w in tx.state.waiting:
        tx.emit(Disconnect(w.id, w.conn))
    tx.emit(SessionClosed(tx.state.room_id, tx.state.session_id, reason, tx.now))
