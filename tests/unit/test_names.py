"""Pseudonyms compared as people see them: look-alikes are the same name."""

from __future__ import annotations

import unicodedata

import pytest

from rooms.names import _BLANKS, _IGNORABLE_RANGES, _ignorable, is_visible, name_key

ZWJ = "\u200d"


@pytest.mark.parametrize(
    "same",
    [
        "bob",
        "BOB",
        f"B{ZWJ}ob",
        "B\u200bob",  # zero-width space
        "\uff22\uff4f\uff42",  # fullwidth
        " Bob ",
        "B\u00adob",  # soft hyphen
        "Bob\u034f",  # combining grapheme joiner
        "Bob\ufe0f",  # variation selector
        "B\U000e0100ob",  # variation selector supplement
        "Bo\u180bb",  # Mongolian free variation selector
        "B\u17b4ob",  # Khmer inherent vowel
    ],
)
def test_look_alikes_have_one_key(same: str) -> None:
    assert name_key(same) == name_key("Bob") == "bob"


def test_different_names_stay_different() -> None:
    assert name_key("Bo b") != name_key("Bob")
    assert name_key("Bo  b") == name_key("Bo b")
    assert name_key("Jos\u00e9") == name_key("Jose\u0301")  # composed or not: one name
    assert name_key("Jos\u00e9") != name_key("Jose")
    assert name_key(f"\U0001f468{ZWJ}\U0001f469") == "\U0001f468\U0001f469"
    assert name_key("\u2764\ufe0f") == name_key("\u2764") != name_key("\u2763")


@pytest.mark.parametrize(
    "blank",
    [ZWJ, "\u3164", "\u2800", " \u200b ", "\u0301", "\u115f", "\u034f\ufe0f", "\ufdd0", "\uffff"],
)
def test_names_of_nothing_visible(blank: str) -> None:
    assert not is_visible(blank)


# U+1FA77 (pink heart) is Unicode 15: unknown to Python 3.11's tables, which call it
# unassigned (Cn), but on every recent phone's keyboard.
@pytest.mark.parametrize("name", ["Bo", "\u674e", "\U0001f33b", "J.", "7", "\U0001fa77"])
def test_visible_names(name: str) -> None:
    assert is_visible(name)


def test_ignorable_is_unicodes_definition_for_every_code_point_checked() -> None:
    """The fast path (ASCII first, no generator) answers as the plain definition: a
    blank, a format character (Cf) or in one of the ignorable ranges."""

    def reference(ch: str) -> bool:
        code = ord(ch)
        return (
            ch in _BLANKS
            or unicodedata.category(ch) == "Cf"
            or any(lo <= code <= hi for lo, hi in _IGNORABLE_RANGES)
        )

    points = [*range(0x30000), *range(0xE0000, 0xE1100)]
    assert [cp for cp in points if _ignorable(chr(cp)) != reference(chr(cp))] == []
