"""When two pseudonyms are the same name, and whether a name can be seen at all.

A name is shown as typed (NFC), but compared by :func:`name_key`: compatibility forms
folded (fullwidth letters are the plain ones), case folded, invisible characters dropped
(a zero-width joiner inside "Bob", a variation selector after "Maria" change nothing)
and spaces collapsed. ``name_taken``
and bans by name use the key, so neither can be got round with a look-alike spelling.
"""

from __future__ import annotations

import functools
import unicodedata
from typing import Final

# A ban key made of a name (``name:<name_key>``): one who was removed and kept out
# cannot come back under the same name, however it is spelt.
NAME_BAN_PREFIX: Final = "name:"

# Characters that render as nothing (or a blank) without being Unicode format or space
# characters: Hangul fillers and the blank Braille pattern, seen used as "empty" names.
_BLANKS: Final = frozenset("\u115f\u1160\u3164\uffa0\u2800")
# Unicode's Default_Ignorable_Code_Point characters that are not format (Cf) characters:
# combining marks that draw nothing (the grapheme joiner, variation selectors, Khmer and
# Mongolian ones) and reserved ranges. "Maria" + U+FE0F or "Bob" + U+034F look the same
# as the name without it, so the key drops them.
_IGNORABLE_RANGES: Final = (
    (0x034F, 0x034F),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0xFE00, 0xFE0F),
    (0xFFF0, 0xFFF8),
    (0xE0000, 0xE0FFF),
)


def _ignorable(ch: str) -> bool:
    if ch < "\x80":  # ASCII: none is a format character, a blank or in the ranges
        return False
    if ch in _BLANKS or unicodedata.category(ch) == "Cf":
        return True
    code = ord(ch)
    return any(lo <= code <= hi for lo, hi in _IGNORABLE_RANGES)


# General categories that show nothing by themselves: format (zero-width joiners, soft
# hyphen, bidi marks), separators, combining marks with no base, controls. Not Cn, the
# code points this Python does not know: emoji newer than its Unicode tables are Cn here
# (and an unknown character shows as a box, which can be seen), except noncharacters.
_UNSEEN: Final = frozenset(("Cf", "Zs", "Zl", "Zp", "Mn", "Me", "Cc", "Co", "Cs"))


def _noncharacter(ch: str) -> bool:
    code = ord(ch)
    return 0xFDD0 <= code <= 0xFDEF or code & 0xFFFE == 0xFFFE


@functools.lru_cache(maxsize=4096)
def name_key(name: str) -> str:
    """The form two names are compared in (see the module's docstring). Kept for the
    names seen last: every join compares the new name with everyone's in the room."""
    folded = unicodedata.normalize("NFKC", name).casefold()
    kept = "".join(" " if ch.isspace() else ch for ch in folded if not _ignorable(ch))
    return " ".join(kept.split())


def is_visible(name: str) -> bool:
    """Whether the name has a character a person can see (a letter, digit, symbol or
    punctuation): a name of joiners, fillers and spaces alone shows as nothing."""
    return any(
        not _ignorable(ch) and unicodedata.category(ch) not in _UNSEEN and not _noncharacter(ch)
        for ch in unicodedata.normalize("NFKC", name)
    )
