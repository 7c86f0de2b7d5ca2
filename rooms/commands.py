"""Commands: what a participant (or the server's clock) asks the room to do.

Each is a frozen value, already validated for shape by the transport layer; the state
machine checks whether it is allowed *now*. Fresh ids (participant, session, message)
are chosen by the caller and passed in, so the machine stays deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

from rooms.model import QueueOrder, Role, Settings, Via


@dataclass(frozen=True, slots=True)
class RoomInfo:
    """What the durable room contributes when a session starts."""

    room_id: str
    title: str
    settings: Settings


@dataclass(frozen=True, slots=True)
class Join:
    room: RoomInfo
    new_session_id: str  # used only if this join starts the session
    participant_id: str  # used unless ``resume_id`` restores an earlier participant
    name: str
    role: Role
    via: Via
    conn: str | None
    ban_keys: frozenset[str] = frozenset()
    resume_id: str | None = None  # participant to restore, from a verified resume token
    # Only take a place back, never join afresh: a page reloaded days later, or a phone
    # that slept past the grace, must not walk its person into a new session unasked.
    resume_only: bool = False
    # Join the session that is live, or nobody: a page back from a dropped connection in
    # the waiting room must not start a session of its own, alone, if that one ended.
    live_only: bool = False


@dataclass(frozen=True, slots=True)
class Drop:
    """A connection was lost (not a deliberate leave): the place is kept for the grace."""

    participant_id: str
    conn: str | None


@dataclass(frozen=True, slots=True)
class Tick:
    """The clock moved: expire dropped participants and an empty session."""


@dataclass(frozen=True, slots=True)
class Leave:
    pass


@dataclass(frozen=True, slots=True)
class RaiseHand:
    pass


@dataclass(frozen=True, slots=True)
class LowerHand:
    pass


@dataclass(frozen=True, slots=True)
class ToggleHand:
    """The phone keypad's ``*9``."""


@dataclass(frozen=True, slots=True)
class ToggleMic:
    """The phone keypad's ``*6``."""


@dataclass(frozen=True, slots=True)
class SetPresence:
    camera: bool | None = None
    mic: bool | None = None
    away: bool | None = None


@dataclass(frozen=True, slots=True)
class SendChat:
    message_id: str
    text: str
    to_moderators: bool = False


@dataclass(frozen=True, slots=True)
class SetConsent:
    on: bool


@dataclass(frozen=True, slots=True)
class EraseTranscript:
    pass


# Moderator controls ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModLowerHand:
    target: str


@dataclass(frozen=True, slots=True)
class ClearHands:
    pass


@dataclass(frozen=True, slots=True)
class FloorNext:
    pass


@dataclass(frozen=True, slots=True)
class FloorGive:
    target: str


@dataclass(frozen=True, slots=True)
class FloorClear:
    pass


@dataclass(frozen=True, slots=True)
class Mute:
    target: str


@dataclass(frozen=True, slots=True)
class MuteAll:
    pass


@dataclass(frozen=True, slots=True)
class AskUnmute:
    target: str


@dataclass(frozen=True, slots=True)
class StopCamera:
    target: str


@dataclass(frozen=True, slots=True)
class Remove:
    target: str
    ban: bool = False


@dataclass(frozen=True, slots=True)
class Lock:
    locked: bool


@dataclass(frozen=True, slots=True)
class SetWaitingRoom:
    on: bool


@dataclass(frozen=True, slots=True)
class Admit:
    target: str


@dataclass(frozen=True, slots=True)
class Deny:
    target: str
    ban: bool = False  # keep them out of this session, as mod.remove's ban


@dataclass(frozen=True, slots=True)
class SetRole:
    target: str
    role: Role


@dataclass(frozen=True, slots=True)
class ChangeSettings:
    queue_order: QueueOrder | None = None
    chat_enabled: bool | None = None
    transcripts_allowed: bool | None = None


@dataclass(frozen=True, slots=True)
class RemoveChat:
    message_id: str


@dataclass(frozen=True, slots=True)
class End:
    pass


Command = (
    Join
    | Drop
    | Tick
    | Leave
    | RaiseHand
    | LowerHand
    | ToggleHand
    | ToggleMic
    | SetPresence
    | SendChat
    | SetConsent
    | EraseTranscript
    | ModLowerHand
    | ClearHands
    | FloorNext
    | FloorGive
    | FloorClear
    | Mute
    | MuteAll
    | AskUnmute
    | StopCamera
    | Remove
    | Lock
    | SetWaitingRoom
    | Admit
    | Deny
    | SetRole
    | ChangeSettings
    | RemoveChat
    | End
)
