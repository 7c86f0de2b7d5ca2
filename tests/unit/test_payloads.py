"""What text a chat line, a name and a title may hold (protocol.md: "no control
characters"): real writing and emoji pass, controls that hide or reorder text do not."""

from __future__ import annotations

import pytest

from rooms.commands import SendChat
from rooms.errors import ErrorCode, RoomError
from server.payloads import decode, validate_name, validate_title

MAX_BYTES = 16 * 1024

# Each of these was refused as "control characters" while format characters (Cf) and
# code points Python 3.11 does not know (Cn) were: people write like this every day.
EVERYDAY = [
    "thank you \U0001fa77",  # Unicode 15 emoji: unassigned in Python 3.11's tables
    "\u0639\u0644\u06cc\u200c\u0631\u0636\u0627",  # a Persian name with its joiner ZWNJ
    "\u05e9\u05dc\u05d5\u05dd\u200f!",  # Hebrew with a right-to-left mark
    "\U0001f3f4\U000e0067\U000e0062\U000e0077\U000e006c\U000e0073\U000e007f",  # Wales flag
    "\U0001f469\u200d\U0001f469\u200d\U0001f467",  # a family: joined emoji
    "co\u00adoperate",  # a soft hyphen, pasted from a web page
]


def chat_text(text: str) -> str:
    command = decode("chat.send", {"text": text}, "m1", MAX_BYTES)
    assert isinstance(command, SendChat)
    return command.text


@pytest.mark.parametrize("text", EVERYDAY)
def test_everyday_writing_is_a_chat_line(text: str) -> None:
    assert chat_text(text) == text


@pytest.mark.parametrize("text", EVERYDAY)
def test_everyday_writing_is_a_name_and_a_title(text: str) -> None:
    assert validate_name(text) == text
    assert validate_title(text) == text


def test_a_chat_line_keeps_its_lines_whatever_the_system_types() -> None:
    assert chat_text("one\r\ntwo\rthree\nfour\tend") == "one\ntwo\nthree\nfour\tend"


def test_a_chat_line_may_set_its_own_direction() -> None:
    # A line is a paragraph of its own in every client: an isolate or an override in it
    # cannot reorder anything around it, and right-to-left writers may need them.
    assert (
        chat_text("\u2067\u05e9\u05dc\u05d5\u05dd\u2069 ok")
        == "\u2067\u05e9\u05dc\u05d5\u05dd\u2069 ok"
    )


@pytest.mark.parametrize(
    "text", ["a\x00b", "bell\x07", "\x1b[31mred", "next\x85line", "half \ud800 a pair"]
)
def test_controls_are_not_a_chat_line(text: str) -> None:
    with pytest.raises(RoomError) as refused:
        chat_text(text)
    assert refused.value.code is ErrorCode.BAD_REQUEST


@pytest.mark.parametrize(
    "name",
    [
        "Sam\u202e",  # right-to-left override: "Sam" then everything after it reversed
        "\u2066Sam",  # an isolate left open
        "Sam\u2028Bo",  # a line separator
        "Sam\tBo",
        "Sam\x00",
        "S\ud800m",
    ],
)
def test_a_name_is_one_line_in_its_own_direction(name: str) -> None:
    with pytest.raises(RoomError) as refused:
        validate_name(name)
    assert refused.value.code is ErrorCode.NAME_INVALID
    with pytest.raises(RoomError) as refused:
        validate_title(name)
    assert refused.value.code is ErrorCode.BAD_REQUEST


def test_a_name_of_a_new_emoji_alone_can_be_seen() -> None:
    assert validate_name(" \U0001fa77 ") == "\U0001fa77"
