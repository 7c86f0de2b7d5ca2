"""The values a live session is made of. All frozen: a transition builds a new state.

A :class:`RoomState` is one live *session* of a durable room. It starts with the first
join and is dropped (``None``) when the session ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Self, TypeVar

_T = TypeVar("_T")


def _replace(value: _T, changes: dict[str, object]) -> _T:
    """``dataclasses.replace`` for our frozen, slotted values, without its generic checks:
    every transition copies a state and a participant or two, and the library's version
    was more than half of a transition's time (measured: 14 -> 8 us for a chat line).
    An unknown field name is still an error."""
    cls = type(value)
    new = object.__new__(cls)
    for name in cls.__slots__:  # type: ignore[attr-defined]
        object.__setattr__(
            new, name, changes.pop(name) if name in changes else getattr(value, name)
        )
    if changes:
        raise TypeError(f"{cls.__name__} has no field {next(iter(changes))!r}")
    return new


class Role(StrEnum):
    FACILITATOR = "facilitator"
    COFACILITATOR = "cofacilitator"
    PEER = "peer"

    @property
    def is_moderator(self) -> bool:
        return self is not Role.PEER

    @property
    def rank(self) -> int:
        return {Role.PEER: 0, Role.COFACILITATOR: 1, Role.FACILITATOR: 2}[self]


class Via(StrEnum):
    WEB = "web"
    PHONE = "phone"


class QueueOrder(StrEnum):
    TIME = "time"  # first raised, first in line
    QUIETER_FIRST = "quieter_first"  # fewer turns this session go first; time among equals


@dataclass(frozen=True, slots=True)
class Settings:
    locked: bool = False
    waiting_room: bool = False
    transcripts_allowed: bool = True
    chat_enabled: bool = True
    queue_order: QueueOrder = QueueOrder.TIME

    def as_dict(self) -> dict[str, object]:
        return {
            "locked": self.locked,
            "waiting_room": self.waiting_room,
            "transcripts_allowed": self.transcripts_allowed,
            "chat_enabled": self.chat_enabled,
            "queue_order": self.queue_order.value,
        }


@dataclass(frozen=True, slots=True)
class Participant:
    id: str
    name: str
    role: Role
    via: Via
    conn: str | None  # transport handle (Socket.IO sid or phone call id); opaque here
    camera: bool = False
    mic: bool = False
    away: bool = False
    connected: bool = True
    consent: bool = False
    hand_ticket: int | None = None  # set while the hand is up; lower = raised earlier
    turns: int = 0  # times this participant has had the floor this session
    dropped_at: float | None = None  # when the connection dropped; None while connected
    ban_keys: frozenset[str] = frozenset()  # what a ban of this person keeps out

    @property
    def hand(self) -> bool:
        return self.hand_ticket is not None

    def copy_and_replace(self, **changes: object) -> Self:
        return _replace(self, changes)

    def public(self) -> dict[str, object]:
        """The contract's ``Participant`` shape. Consent, tickets and keys stay inside."""
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role.value,
            "via": self.via.value,
            "camera": self.camera,
            "mic": self.mic,
            "away": self.away,
            "connected": self.connected,
            "hand": self.hand,
        }


@dataclass(frozen=True, slots=True)
class Waiting:
    """Someone in the waiting room, not yet a participant. A web line that dropped keeps
    its place for the grace period (``dropped_at``), as a participant's does: a phone
    on a bad signal must not lose its turn to be let in, nor be kept out by a lock put
    on meanwhile."""

    id: str
    name: str
    role: Role
    via: Via
    conn: str | None
    ban_keys: frozenset[str] = frozenset()
    dropped_at: float | None = None

    def public(self) -> dict[str, object]:
        """As moderators see it (``waiting.updated``, a snapshot's ``waiting``)."""
        return {"id": self.id, "name": self.name, "connected": self.dropped_at is None}


@dataclass(frozen=True, slots=True)
class RoomState:
    room_id: str
    title: str
    session_id: str
    started_at: float
    settings: Settings = field(default_factory=Settings)
    seq: int = 0  # last broadcast's sequence number in this session
    participants: tuple[Participant, ...] = ()  # in join order
    waiting: tuple[Waiting, ...] = ()
    floor: str | None = None
    next_ticket: int = 1
    banned: frozenset[str] = frozenset()
    recent_messages: tuple[str, ...] = ()  # ids of recent chat lines, for mod.chat.remove
    # What may reach disk (the consent rule: nothing of someone who never opted in).
    consented: frozenset[str] = frozenset()  # participants whose consent was ever on here
    transcribed: tuple[str, ...] = ()  # those of recent_messages stored (Transcribe), in order
    empty_since: float | None = None  # when the last participant left; the session ends later

    def copy_and_replace(self, **changes: object) -> Self:
        return _replace(self, changes)

    def get(self, participant_id: str) -> Participant | None:
        for p in self.participants:
            if p.id == participant_id:
                return p
        return None

    def get_waiting(self, waiting_id: str) -> Waiting | None:
        for w in self.waiting:
            if w.id == waiting_id:
                return w
        return None

    def moderator_ids(self) -> tuple[str, ...]:
        return tuple(p.id for p in self.participants if p.role.is_moderator)

    def consenting(self) -> list[str]:
        return [p.id for p in self.participants if p.consent]

    def hands(self) -> list[str]:
        from rooms.hands import ordered_hands  # a cycle: hands sorts these values

        return ordered_hands(self.participants, self.settings.queue_order)

    def snapshot(self, *, for_moderator: bool) -> dict[str, object]:
        """The contract's ``Snapshot``: what a joiner needs to draw the room."""
        return {
            "id": self.room_id,
            "title": self.title,
            "session_id": self.session_id,
            "seq": self.seq,
            "settings": self.settings.as_dict(),
            "participants": [p.public() for p in self.participants],
            "hands": self.hands(),
            "floor": self.floor,
            "consenting": self.consenting(),
            "waiting": [w.public() for w in self.waiting] if for_moderator else [],
        }
