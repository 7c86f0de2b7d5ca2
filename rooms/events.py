"""Events: what a transition asks the outside world to do, in order.

The server turns them into Socket.IO emits (:class:`Emit`, :class:`Welcome`,
:class:`Disconnect`) and storage writes (:class:`Transcribe`, :class:`Unstore`,
:class:`Audit`). The machine has already decided everything: storage and transport
decide nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final


@dataclass(frozen=True, slots=True)
class Emit:
    """Send ``name`` with ``payload``. ``to`` None: everyone admitted to the session
    (room broadcasts, which carry ``seq``); otherwise these participant or waiting ids."""

    name: str
    payload: dict[str, Any]
    to: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Welcome:
    """Admit this participant's connection: send the snapshot and start its broadcasts."""

    participant_id: str


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Close this participant's connection (removed, denied, replaced, ended, left)."""

    participant_id: str
    conn: str | None


@dataclass(frozen=True, slots=True)
class Transcribe:
    """A chat line that passed the consent rule: the only way text reaches storage."""

    room_id: str
    session_id: str
    message_id: str
    sender_id: str
    sender_name: str
    text: str
    ts: float


@dataclass(frozen=True, slots=True)
class Unstore:
    """Delete stored transcript lines: one message, or everything of one participant."""

    session_id: str
    message_id: str | None = None
    participant_id: str | None = None
    ts: float | None = None  # a participant's erase covers their lines sent until then


@dataclass(frozen=True, slots=True)
class Consent:
    """A participant's consent changed (kept for the consent history)."""

    room_id: str
    session_id: str
    participant_id: str
    on: bool
    ts: float


# The moderator actions an Audit event is made for: what the transcript access rule
# (server/transcript_access.py) reads. Nothing else a moderator does is kept.
AUDITED_ACTIONS: Final = frozenset({"remove", "ban"})


@dataclass(frozen=True, slots=True)
class Audit:
    """A removal or ban of someone who opted in, for the transcript access rule
    (:meth:`rooms.tx.Tx.audit`). Ids only, never names or text; ``actor`` is '' unless
    the moderator opted in too."""

    room_id: str
    session_id: str
    actor: str
    action: str
    target: str | None
    ts: float


@dataclass(frozen=True, slots=True)
class SessionClosed:
    """The session is over; ``reason`` is ``ended`` (by a facilitator) or ``empty``."""

    room_id: str
    session_id: str
    reason: str
    ts: float


Event = Emit | Welcome | Disconnect | Transcribe | Unstore | Consent | Audit | SessionClosed
