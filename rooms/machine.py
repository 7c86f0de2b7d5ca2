"""``apply(state, actor, command, now, rules) -> Outcome``: the one way a session changes.

Pure: no awaits, no clock, no randomness. The caller passes the current state (None if
no session is live), who is acting (a participant id, or None for the server itself:
joins, drops, the clock), the command and the time. A refused command raises
:class:`~rooms.errors.RoomError` and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from moderation.actions import MODERATOR_ACTIONS
from rooms import peer, session
from rooms.commands import (
    Command,
    Drop,
    End,
    EraseTranscript,
    Join,
    Leave,
    LowerHand,
    RaiseHand,
    SendChat,
    SetConsent,
    SetPresence,
    Tick,
    ToggleHand,
    ToggleMic,
)
from rooms.errors import ErrorCode, RoomError
from rooms.events import Event
from rooms.model import Participant, RoomState
from rooms.tx import Tx

GRACE_SECS = 60.0  # a phone dropping in a tunnel, a laptop lid closed: back within a minute
MAX_PARTICIPANTS = 100  # peer groups are small; this guards memory, not group size


@dataclass(frozen=True, slots=True)
class Rules:
    grace_secs: float = GRACE_SECS
    max_participants: int = MAX_PARTICIPANTS


@dataclass(frozen=True, slots=True)
class Outcome:
    state: RoomState | None  # None: the session is over
    events: tuple[Event, ...]
    reply: Mapping[str, Any] = field(default_factory=dict)


PEER_ACTIONS: dict[type, Callable[[Tx, Participant, Any], None]] = {
    RaiseHand: peer.raise_hand,
    LowerHand: peer.lower_hand,
    ToggleHand: peer.toggle_hand,
    ToggleMic: peer.toggle_mic,
    SetPresence: peer.presence,
    SendChat: peer.chat,
    SetConsent: peer.consent,
    EraseTranscript: peer.erase,
}


def apply(
    state: RoomState | None,
    actor: str | None,
    command: Command,
    *,
    now: float,
    rules: Rules = Rules(),
) -> Outcome:
    if state is None:
        if not isinstance(command, Join):
            raise RoomError(ErrorCode.NOT_FOUND, "This session has ended.")
        if command.resume_only or command.live_only:
            # A place to take back, or a session to rejoin, and no session to start.
            raise session.place_gone(session_live=False)
        state = session.new_session(command, now)
    tx = Tx(state, now)
    ended = False
    if isinstance(command, Join):
        session.join(tx, command, rules.max_participants)
    elif isinstance(command, Drop):
        session.drop(tx, command)
    elif isinstance(command, Tick):
        ended = session.expire(tx, rules.grace_secs)
        if ended:
            session.end(tx, "empty")
    else:
        who = tx.state.get(actor) if actor is not None else None
        if who is None:
            w = tx.state.get_waiting(actor) if actor is not None else None
            if w is None or not isinstance(command, Leave):
                raise RoomError(ErrorCode.FORBIDDEN, "You are not in this session.")
            session.leave_waiting(tx, w)  # "anyone" may leave, the waiting too
            return Outcome(_mark_empty(tx.state, now), tuple(tx.events), tx.reply)
        if isinstance(command, Leave):
            session.leave(tx, who, "left")
        elif type(command) in PEER_ACTIONS:
            PEER_ACTIONS[type(command)](tx, who, command)
        else:
            MODERATOR_ACTIONS[type(command)](tx, who, command)
            ended = isinstance(command, End)
    if ended:
        return Outcome(None, tuple(tx.events), tx.reply)
    return Outcome(_mark_empty(tx.state, now), tuple(tx.events), tx.reply)


def _mark_empty(state: RoomState, now: float) -> RoomState:
    empty = not state.participants and not state.waiting
    if empty and state.empty_since is None:
        return state.copy_and_replace(empty_since=now)
    if not empty and state.empty_since is not None:
        return state.copy_and_replace(empty_since=None)
    return state


def due(state: RoomState, now: float, rules: Rules) -> bool:
    """Whether a :class:`Tick` would change anything: lets the clock skip idle rooms."""
    g = rules.grace_secs
    if state.empty_since is not None and now - state.empty_since >= g:
        return True
    # (Asked of every room every second: loops, not lists built to be scanned.)
    for p in state.participants:
        if p.dropped_at is not None and now - p.dropped_at >= g:
            return True
    return any(w.dropped_at is not None and now - w.dropped_at >= g for w in state.waiting)
