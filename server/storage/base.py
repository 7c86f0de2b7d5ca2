"""The storage interface every backend implements, and the records it deals in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

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


class PinTaken(Exception):
    """Another room already has this phone PIN; draw another."""


class Storage(Protocol):
    async def create_room(self, room: RoomRecord) -> None:
        """Raises :class:`PinTaken` if the PIN is in use."""

    async def get_room(self, room_id: str) -> RoomRecord | None: ...

    async def get_room_by_pin(self, pin: str) -> RoomRecord | None: ...

    async def create_checkin(self, checkin: CheckinRecord) -> CheckinRecord:
        """Idempotent per (call_id, status): a repeated webhook returns the first record."""

    async def list_checkins(
        self, *, include_resolved: bool = False, limit: int = 200
    ) -> list[CheckinRecord]:
        """Newest first."""

    async def resolve_checkin(self, checkin_id: str, *, by: str, at: float) -> bool:
        """False if there is no such check-in."""

    async def healthy(self) -> bool:
        """True when storage answers a trivial query now."""

    async def close(self) -> None: ...
