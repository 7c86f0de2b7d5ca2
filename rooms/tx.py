"""A transition in progress: the state so far and the events it has produced.

Used only inside :func:`rooms.machine.apply`; it never escapes, so its mutability is
local. Every room broadcast goes through :meth:`Tx.broadcast`, which is what keeps
``seq`` growing by exactly one per broadcast.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from rooms.errors import ErrorCode, RoomError
from rooms.events import AUDITED_ACTIONS, Audit, Emit, Event
from rooms.model import Participant, RoomState


class Tx:
    def __init__(self, state: RoomState, now: float) -> None:
        self.state = state
        self.now = now
        self.events: list[Event] = []
        self.reply: dict[str, Any] = {}

    # state -----------------------------------------------------------------------------

    def participant(self, pid: str) -> Participant:
        p = self.state.get(pid)
        if p is None:
            raise RoomError(ErrorCode.NOT_FOUND, "That person is not in this session any more.")
        return p

    def put(self, p: Participant) -> None:
        self.state = self.state.copy_and_replace(
            participants=tuple(p if q.id == p.id else q for q in self.state.participants)
        )

    def drop_participant(self, pid: str) -> Participant:
        """Take a participant out of the session, with their hand and floor."""
        p = self.participant(pid)
        had_hand, had_floor = p.hand, self.state.floor == pid
        self.state = self.state.copy_and_replace(
            participants=tuple(q for q in self.state.participants if q.id != pid),
            floor=None if had_floor else self.state.floor,
        )
        if had_hand or had_floor:
            self.hands_changed()
        return p

    # events ----------------------------------------------------------------------------

    def broadcast(self, name: str, **payload: Any) -> None:
        seq = self.state.seq + 1
        self.state = self.state.copy_and_replace(seq=seq)
        self.events.append(Emit(name, {"seq": seq, **payload}))

    def send(self, to: Iterable[str], name: str, **payload: Any) -> None:
        ids = tuple(to)
        if ids:
            self.events.append(Emit(name, payload, ids))

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def updated(self, p: Participant) -> None:
        self.put(p)
        self.broadcast("participant.updated", participant=p.public())

    def change_settings(self, **changes: Any) -> set[str]:
        """Apply the given settings (None means unchanged); broadcast once if any changed."""
        before = self.state.settings
        changed = {k: v for k, v in changes.items() if v is not None and getattr(before, k) != v}
        if changed:
            self.state = self.state.copy_and_replace(settings=replace(before, **changed))
            self.broadcast("settings", settings=self.state.settings.as_dict())
        return set(changed)

    def hands_changed(self) -> None:
        self.broadcast("hands", hands=self.state.hands(), floor=self.state.floor)

    def waiting_changed(self) -> None:
        self.send(
            self.state.moderator_ids(),
            "waiting.updated",
            waiting=[w.public() for w in self.state.waiting],
        )

    def audit(self, actor: Participant, action: str, target: str | None = None) -> None:
        """A moderator action, kept (an :class:`Audit` event: noted for the transcript
        access rule, stored) only if that rule needs it: the removal or ban of someone
        who opted in this session, whose resume token must no longer read the
        transcript. Nothing else is kept: a row would put on disk the id of someone who
        never opted in (a muted peer, a moderator), which the consent rule forbids. The
        actor's id is kept only if they opted in too ('' otherwise)."""
        if action not in AUDITED_ACTIONS or target not in self.state.consented:
            return
        self.events.append(
            Audit(
                room_id=self.state.room_id,
                session_id=self.state.session_id,
                actor=actor.id if actor.id in self.state.consented else "",
                action=action,
                target=target,
                ts=self.now,
            )
        )
