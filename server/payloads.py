"""Client event payloads, validated into typed commands. Nothing else reads a payload.

Each decoder takes what the client sent and returns a :mod:`rooms.commands` value or
raises ``bad_request`` with a message naming the field. Unknown extra fields are
ignored (clients may be newer than the server); wrong types, missing ids and oversize
text are refused.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any, Final

from rooms import commands as c
from rooms.errors import ErrorCode, RoomError
from rooms.model import QueueOrder, Role
from rooms.names import is_visible

MAX_CHAT_CHARS: Final = 2000  # protocol.md: text 1 to 2000 characters
MAX_NAME_CHARS: Final = 40  # protocol.md: pseudonym 1 to 40 characters after trimming
MAX_ID_CHARS: Final = 64

Payload = dict[str, Any]


def bad(message: str) -> RoomError:
    return RoomError(ErrorCode.BAD_REQUEST, message)


def _obj(data: object) -> Payload:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise bad("The payload must be an object.")
    return data


def _id(p: Payload, key: str = "id") -> str:
    v = p.get(key)
    if not isinstance(v, str) or not 0 < len(v) <= MAX_ID_CHARS:
        raise bad(f"'{key}' must be an id string.")
    return v


def _bool(p: Payload, key: str) -> bool:
    v = p.get(key)
    if not isinstance(v, bool):
        raise bad(f"'{key}' must be true or false.")
    return v


def _opt_bool(p: Payload, key: str) -> bool | None:
    return None if p.get(key) is None else _bool(p, key)


# Bidirectional embeddings, overrides and isolates. In a name or title, shown inside
# other text ("Sam raised a hand"), one can reorder what is shown around it; a chat line
# is a paragraph of its own, where they are what right-to-left writers may need.
_BIDI_CONTROLS: Final = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _has_control(text: str, *, one_line: bool) -> bool:
    """Whether ``text`` has a control character: C0/C1 controls (in a chat line, all but
    newline and tab), a lone surrogate (it cannot be stored as UTF-8), and in one line of
    text (a name, a title) line separators and bidi controls too.

    Format characters are allowed: the joiners of emoji sequences and of Persian and
    Indic writing (U+200D, U+200C), direction marks, the tags of flag emoji, a soft
    hyphen. So are code points this Python's Unicode tables do not know yet (Python 3.11
    has Unicode 14; newer emoji arrive on phones first)."""
    for ch in text:
        category = unicodedata.category(ch)
        if category == "Cc":
            if one_line or ch not in "\n\t":
                return True
        elif category == "Cs" or (one_line and (category in ("Zl", "Zp") or ch in _BIDI_CONTROLS)):
            return True
    return False


MAX_TITLE_CHARS: Final = 100


def validate_title(raw: object) -> str:
    """A room's title: 1 to 100 characters after trimming, one line, no control
    characters (a NUL is refused by PostgreSQL; a newline would break the transcript's
    heading)."""
    if not isinstance(raw, str):
        raise bad(f"'title' must be 1 to {MAX_TITLE_CHARS} characters.")
    title = unicodedata.normalize("NFC", raw).strip()
    if not 0 < len(title) <= MAX_TITLE_CHARS:
        raise bad(f"'title' must be 1 to {MAX_TITLE_CHARS} characters.")
    if _has_control(title, one_line=True):
        raise bad("A title is one line of text, without control characters.")
    return title


def validate_name(raw: object) -> str:
    """A pseudonym: 1 to 40 characters after trimming, no control characters."""
    if not isinstance(raw, str):
        raise RoomError(ErrorCode.NAME_INVALID, "Please choose a name to be called by.")
    name = unicodedata.normalize("NFC", raw).strip()
    if not 0 < len(name) <= MAX_NAME_CHARS:
        raise RoomError(
            ErrorCode.NAME_INVALID, f"A name must be 1 to {MAX_NAME_CHARS} characters long."
        )
    if _has_control(name, one_line=True):
        raise RoomError(
            ErrorCode.NAME_INVALID, "A name cannot have hidden control characters in it."
        )
    if not is_visible(name):
        raise RoomError(
            ErrorCode.NAME_INVALID, "A name needs a letter, number or sign that others can see."
        )
    return name


def _chat(p: Payload, message_id: str) -> c.SendChat:
    text = p.get("text")
    if not isinstance(text, str) or not text.strip():
        raise bad("'text' must be a non-empty string.")
    # One kind of line break, whichever the sender's system types (Windows: CRLF).
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if len(text) > MAX_CHAT_CHARS:
        raise bad(f"A message can be at most {MAX_CHAT_CHARS} characters long.")
    if _has_control(text, one_line=False):
        raise bad("A message cannot contain control characters.")
    to = p.get("to")
    if to not in (None, "moderators"):
        raise bad("'to' can only be \"moderators\".")
    return c.SendChat(message_id=message_id, text=text, to_moderators=to == "moderators")


def _role(p: Payload) -> c.SetRole:
    try:
        role = Role(str(p.get("role")))
    except ValueError:
        raise bad("'role' must be facilitator, cofacilitator or peer.") from None
    return c.SetRole(target=_id(p), role=role)


def _settings(p: Payload) -> c.ChangeSettings:
    order = p.get("queue_order")
    try:
        queue_order = None if order is None else QueueOrder(order)
    except ValueError:
        raise bad('\'queue_order\' must be "time" or "quieter_first".') from None
    cmd = c.ChangeSettings(
        queue_order=queue_order,
        chat_enabled=_opt_bool(p, "chat_enabled"),
        transcripts_allowed=_opt_bool(p, "transcripts_allowed"),
    )
    if cmd == c.ChangeSettings():
        raise bad("Say which setting to change.")
    return cmd


def _presence(p: Payload) -> c.SetPresence:
    cmd = c.SetPresence(
        camera=_opt_bool(p, "camera"), mic=_opt_bool(p, "mic"), away=_opt_bool(p, "away")
    )
    if cmd == c.SetPresence():
        raise bad("Say camera, mic or away.")
    return cmd


# event name -> decoder(payload, fresh id) -> command
Decoder = Callable[[Payload, str], c.Command]

DECODERS: Final[dict[str, Decoder]] = {
    "session.leave": lambda p, _: c.Leave(),
    "hand.raise": lambda p, _: c.RaiseHand(),
    "hand.lower": lambda p, _: c.LowerHand(),
    "presence.set": lambda p, _: _presence(p),
    "chat.send": _chat,
    "transcript.consent": lambda p, _: c.SetConsent(on=_bool(p, "on")),
    "transcript.erase": lambda p, _: c.EraseTranscript(),
    "mod.hand.lower": lambda p, _: c.ModLowerHand(target=_id(p)),
    "mod.hands.clear": lambda p, _: c.ClearHands(),
    "mod.floor.next": lambda p, _: c.FloorNext(),
    "mod.floor.give": lambda p, _: c.FloorGive(target=_id(p)),
    "mod.floor.clear": lambda p, _: c.FloorClear(),
    "mod.mute": lambda p, _: c.Mute(target=_id(p)),
    "mod.mute_all": lambda p, _: c.MuteAll(),
    "mod.ask_unmute": lambda p, _: c.AskUnmute(target=_id(p)),
    "mod.stop_camera": lambda p, _: c.StopCamera(target=_id(p)),
    "mod.remove": lambda p, _: c.Remove(target=_id(p), ban=bool(_opt_bool(p, "ban"))),
    "mod.lock": lambda p, _: c.Lock(locked=_bool(p, "locked")),
    "mod.waiting_room": lambda p, _: c.SetWaitingRoom(on=_bool(p, "on")),
    "mod.admit": lambda p, _: c.Admit(target=_id(p)),
    "mod.deny": lambda p, _: c.Deny(target=_id(p), ban=bool(_opt_bool(p, "ban"))),
    "mod.role": lambda p, _: _role(p),
    "mod.settings": lambda p, _: _settings(p),
    "mod.chat.remove": lambda p, _: c.RemoveChat(message_id=_id(p, "message_id")),
    "mod.end": lambda p, _: c.End(),
}


def too_large(data: object, limit: int) -> bool:
    """Whether ``data`` would take more than ``limit`` bytes as JSON (a close bound,
    computed without encoding, and stopping as soon as the limit is passed)."""
    size, stack = 0, [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str | bytes):
            size += len(item) * (1 if isinstance(item, bytes) or item.isascii() else 4) + 3
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        size += 2
        if size > limit:
            return True
    return False


def decode(event: str, data: object, fresh_id: str, max_bytes: int) -> c.Command:
    if too_large(data, max_bytes):
        raise bad(f"The payload is too large (over {max_bytes // 1024} KiB).")
    return DECODERS[event](_obj(data), fresh_id)
