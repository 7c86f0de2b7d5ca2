"""One error type for every refused command, with a stable code clients can branch on."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    # Acks of client events (protocol.md, "Client to server").
    BAD_REQUEST = "bad_request"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    NOT_ALLOWED_NOW = "not_allowed_now"
    # Connect refusals (protocol.md, "Connecting").
    BAD_TOKEN = "bad_token"
    NAME_INVALID = "name_invalid"
    NAME_TAKEN = "name_taken"
    ROOM_LOCKED = "room_locked"
    ROOM_FULL = "room_full"
    BANNED = "banned"
    RESUME_EXPIRED = "resume_expired"  # asked to take a place back only, and it is gone
    # Phone bridge.
    BAD_PIN = "bad_pin"
    # Storage is down and the request needs it.
    UNAVAILABLE = "unavailable"
    # Something failed on the server that should not have (HTTP 500).
    INTERNAL = "internal"


class RoomError(Exception):
    """A command was refused. ``message`` is shown to a person: say what to do."""

    def __init__(
        self, code: ErrorCode, message: str, details: dict[str, object] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details  # more fields for the client, beside code and message

    def as_dict(self) -> dict[str, object]:
        return {"code": self.code.value, "message": self.message, **(self.details or {})}

    def ack(self) -> dict[str, object]:
        """The contract's refusal ack: ``{ok: false, error: {code, message}}``."""
        return {"ok": False, "error": self.as_dict()}
