"""Caller numbers: parsed once, shown masked, never logged.

- A caller ID is a number if it is 3 to 20 digits after dropping spaces, dashes, dots
  and brackets, with an optional leading ``+``. Anything else ("anonymous",
  "Restricted", an empty string, a SIP address, the keypad spellings providers use
  for withheld numbers) is *withheld*: we cannot call it back and do not keep it.
- Everyone in a room sees only the last two digits ("Caller 42"). The full number is
  kept in memory as a keyed hash (to resume a dropped call and to enforce a ban), and
  stored in full only on a check-in that asks to be called back.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Final

MAX_CALLER_CHARS: Final = 64  # a caller field longer than this is garbage, not a number
_NUMBER: Final = re.compile(r"\+?[0-9]{3,20}")
_SEPARATORS: Final = re.compile(r"[\s\-.()/]")
# Providers put these in From when the caller hid their number; they spell ANONYMOUS,
# RESTRICTED, BLOCKED, UNAVAILABLE and UNKNOWN on a keypad.
WITHHELD_NUMBERS: Final = frozenset(
    {"+266696687", "266696687", "+7378742833", "+2562533", "+86282452253", "+8656696"}
)
MASK: Final = "******"
WITHHELD_MASK: Final = "withheld"


@dataclass(frozen=True, slots=True)
class Caller:
    number: str | None  # None: withheld

    @classmethod
    def parse(cls, raw: object) -> Caller:
        if not isinstance(raw, str) or len(raw) > MAX_CALLER_CHARS:
            return cls(None)
        cleaned = _SEPARATORS.sub("", raw.strip())
        if not _NUMBER.fullmatch(cleaned) or cleaned in WITHHELD_NUMBERS:
            return cls(None)
        return cls(cleaned)

    @property
    def withheld(self) -> bool:
        return self.number is None

    @property
    def last_two(self) -> str | None:
        return self.number[-2:] if self.number else None

    @property
    def masked(self) -> str:
        """What a person may see: ``******42``, or ``withheld``."""
        return f"{MASK}{self.last_two}" if self.number else WITHHELD_MASK

    def key(self, secret: str) -> str | None:
        """A keyed hash of the number: matches the same caller without keeping the number."""
        if self.number is None:
            return None
        digest = hmac.new(secret.encode(), self.number.encode(), hashlib.sha256)
        return digest.hexdigest()[:32]

    def __repr__(self) -> str:  # never print a full number, even in a traceback
        return f"Caller({self.masked})"

    __str__ = __repr__


def pseudonyms(caller: Caller) -> list[str]:
    """Names to try in order until one is free in the room: "Caller 42", "Caller 42 (2)"."""
    base = f"Caller {caller.last_two}" if caller.last_two else "Caller"
    return [base] + [f"{base} ({n})" for n in range(2, 100)]
