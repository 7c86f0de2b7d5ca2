"""The storage interface every backend implements, and the records it deals in.

Backends raise :class:`StorageUnavailable` when the database cannot be reached, so
callers can tell "try again later" from a bug without knowing the driver.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from rooms.model import QueueOrder, Settings


@dataclass(frozen=True, slots=True)
class RoomRecord:
    id: str
    title: str
    phone_pin: str
    waiting_room: bool
    transcripts_allowed: bool
    chat_enabled: bool
    queue_order: QueueOrder
    created_at: float

    def settings(self) -> Settings:
        """The settings a new session of this room starts with."""
        return Settings(
            waiting_room=self.waiting_room,
            transcripts_allowed=self.transcripts_allowed,
            chat_enabled=self.chat_enabled,
            queue_order=self.queue_order,
        )


# A check-in created again within this of the first, for the same call, status and
# caller, is a retry (a bridge resending after a lost ack, a webhook replayed).
RETRY_WINDOW_SECS: Final = 15 * 60.0


def is_retry_of(new: CheckinRecord, old: CheckinRecord) -> bool:
    """Whether ``new`` is the check-in ``old`` sent again (storage's rule, in memory)."""
    return new.id == old.id or (
        (new.call_id, new.status, new.caller_masked, new.caller_full)
        == (old.call_id, old.status, old.caller_masked, old.caller_full)
        and abs(new.created_at - old.created_at) <= RETRY_WINDOW_SECS
    )


@dataclass(frozen=True, slots=True)
class CheckinRecord:
    """A phone check-in. ``caller_full`` is set only when someone must call back."""

    id: str
    room_id: str | None
    call_id: str
    status: str  # ok | callback | talk
    caller_masked: str  # e.g. "********42", or "withheld"
    caller_full: str | None
    created_at: float
    resolved_at: float | None = None
    resolved_by: str | None = None


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """One live meeting of a room: ids and times only."""

    id: str
    room_id: str
    started_at: float
    ended_at: float | None = None
    end_reason: str | None = None


@dataclass(frozen=True, slots=True)
class TranscriptLine:
    """A chat line that passed the consent rule; ``id`` is the chat message id."""

    id: str
    session_id: str
    sender_id: str
    from_name: str
    text: str
    ts: float


@dataclass(frozen=True, slots=True)
class ConsentChange:
    id: str
    session_id: str
    participant_id: str
    consent: bool
    ts: float


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """A moderator action: who, what, to whom, when. Ids only, never names or text."""

    id: str
    session_id: str
    actor_id: str
    action: str
    target_id: str | None
    ts: float


class PinTaken(Exception):
    """Another room already has this phone PIN; draw another."""


class StorageUnavailable(Exception):
    """The database cannot be reached right now (down, restarting, connection lost).

    Worth retrying later. Carries no query text or parameters, so it is safe to log.
    """


class Storage(Protocol):
    async def create_room(self, room: RoomRecord) -> None:
        """Raises :class:`PinTaken` if the PIN is in use."""

    async def get_room(self, room_id: str) -> RoomRecord | None: ...

    async def get_room_by_pin(self, pin: str) -> RoomRecord | None: ...

    async def create_checkin(self, checkin: CheckinRecord) -> CheckinRecord:
        """Idempotent for a retry: the same id, or the same call, status and caller
        within :data:`RETRY_WINDOW_SECS`, returns the first record. Anything else is a
        new check-in, even on a call id seen before (a bridge may reuse them)."""

    async def list_checkins(
        self, *, include_resolved: bool = False, limit: int = 200
    ) -> list[CheckinRecord]:
        """Every open request for a call (``callback``, ``talk``, unresolved) first,
        oldest first: the longest waiting at the top, and never cut. Then the rest,
        newest first, at most ``limit`` of them. No limit may hide someone waiting for a
        call, behind a run of "I'm OK" check-ins or newer requests."""

    async def get_checkin(self, checkin_id: str) -> CheckinRecord | None: ...

    async def resolve_checkin(self, checkin_id: str, *, by: str, at: float) -> bool:
        """False if there is no such check-in."""

    # sessions, transcripts, consent and audit (issue 3) --------------------------------
    # Every write is idempotent on its id: the recorder retries after a lost connection.

    async def record_session(self, session: SessionRecord) -> None:
        """Insert the session unless it is already there."""

    async def record_sessions(self, sessions: Sequence[SessionRecord]) -> None:
        """Like :meth:`record_session` for each, in one transaction."""

    async def close_session(self, session_id: str, *, ended_at: float, reason: str) -> None: ...

    async def get_session(self, session_id: str) -> SessionRecord | None: ...

    async def add_line(self, line: TranscriptLine) -> None:
        """Insert the line unless a line with its id is already there."""

    async def add_lines(self, lines: Sequence[TranscriptLine]) -> None:
        """Like :meth:`add_line` for each, in one transaction."""

    async def delete_line(self, session_id: str, line_id: str) -> int:
        """Rows deleted (0 or 1). The line is never stored again (a late copy of it)."""

    async def delete_sender_lines(
        self, session_id: str, sender_id: str, up_to: float | None = None
    ) -> int:
        """Rows deleted: the sender's lines sent at or before ``up_to`` (all if None).
        Those lines are never stored again either."""

    async def list_lines(self, session_id: str) -> list[TranscriptLine]:
        """Oldest first."""

    async def add_consent_change(self, change: ConsentChange) -> None: ...

    async def latest_consent(self, session_id: str, participant_id: str) -> bool | None:
        """The participant's last recorded consent in the session; None if never changed."""

    async def latest_consent_at(
        self, session_id: str, participant_id: str
    ) -> tuple[bool, float] | None:
        """The participant's last recorded consent change: ``(on, ts)``; None if none."""

    async def add_audit(self, entry: AuditEntry) -> None: ...

    async def list_audit(self, session_id: str) -> list[AuditEntry]:
        """Oldest first."""

    async def audit_actions_on(self, session_id: str, target_id: str) -> set[str]:
        """The actions moderators took on ``target_id`` in the session."""

    # retention --------------------------------------------------------------------------

    async def delete_lines_before(self, cutoff: float) -> int: ...

    async def delete_sessions_before(self, cutoff: float) -> int:
        """Sessions past ``cutoff`` (ended before it or, never ended, with nothing stored
        since), with their lines, consent and audit rows, then their erases."""

    async def delete_checkins_before(self, cutoff: float, *, keep_open: tuple[str, ...]) -> int:
        """Check-ins created before ``cutoff``, except unresolved ones whose status is in
        ``keep_open``."""

    async def scrub(self) -> bool:
        """Make deleted rows unrecoverable from the database files as far as the backend
        can (SQLite: checkpoint and truncate the WAL; PostgreSQL: VACUUM). False if it
        could not be finished now (a reader holds the WAL): it is still owed. May take
        long (a VACUUM): never on the recorder's writer path."""

    async def healthy(self) -> bool:
        """True when storage answers a trivial query now."""

    async def close(self) -> None: ...
