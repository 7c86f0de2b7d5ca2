"""Who may do what, in one place. Every moderator control calls these.

- A *moderator* is a facilitator or a cofacilitator.
- Only a facilitator may change roles or end the session.
- Nobody changes their own role (a handover is done *to* someone, and is reversible:
  the new facilitator can hand it back).
- A moderator may act on someone of the same or a lower role, never a higher one: a
  cofacilitator cannot mute or remove a facilitator.
- Nobody removes themselves through a moderator control (``session.leave`` is for that).
"""

from __future__ import annotations

from rooms.errors import ErrorCode, RoomError
from rooms.model import Participant, Role


def require_moderator(actor: Participant) -> None:
    if not actor.role.is_moderator:
        raise RoomError(ErrorCode.FORBIDDEN, "Only a facilitator or cofacilitator can do that.")


def require_facilitator(actor: Participant) -> None:
    if actor.role is not Role.FACILITATOR:
        raise RoomError(ErrorCode.FORBIDDEN, "Only a facilitator can do that.")


def require_may_act_on(actor: Participant, target: Participant) -> None:
    require_moderator(actor)
    if target.role.rank > actor.role.rank:
        raise RoomError(ErrorCode.FORBIDDEN, "You cannot do that to a facilitator.")


def require_not_self(actor: Participant, target_id: str, what: str) -> None:
    if actor.id == target_id:
        raise RoomError(ErrorCode.NOT_ALLOWED_NOW, f"You cannot {what} yourself.")
