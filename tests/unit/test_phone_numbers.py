"""Caller numbers: parsing, masking, withheld IDs, pseudonyms. Pure, fast."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.phone.numbers import Caller, pseudonyms


@pytest.mark.parametrize(
    ("raw", "number"),
    [
        ("+15550100042", "+15550100042"),
        ("+44 7700 900142", "+447700900142"),
        ("(555) 010-0042", "5550100042"),
        ("07700.900.142", "07700900142"),
    ],
)
def test_numbers(raw: str, number: str) -> None:
    c = Caller.parse(raw)
    assert c.number == number and not c.withheld
    assert c.masked == "******" + number[-2:]


@pytest.mark.parametrize(
    "raw",
    [
        "anonymous",
        "Anonymous",
        "Restricted",
        "RESTRICTED",
        "unknown",
        "private",
        "",
        "   ",
        None,
        42,
        ["+1555"],
        "+266696687",
        "266696687",
        "+7378742833",
        "+2562533",
        "+86282452253",
        "+8656696",
        "12",
        "sip:alice@example.org",
        "+1" + "5" * 30,
        "+1555\x000042",
        "\u0665\u0665\u0665\u0660\u0661",  # Arabic-Indic digits: not a dialable number
    ],
)
def test_withheld(raw: object) -> None:
    c = Caller.parse(raw)
    assert c.withheld and c.number is None
    assert c.masked == "withheld" and c.key("secret") is None
    assert pseudonyms(c)[0] == "Caller"


def test_repr_never_shows_the_number() -> None:
    c = Caller.parse("+15550199988")
    assert "5550199988" not in repr(c) and "5550199988" not in str(c)
    assert "5550199988" not in f"{c}"


def test_key_is_stable_per_secret_and_hides_the_number() -> None:
    a, b = Caller.parse("+15550100042"), Caller.parse("+1 555 010 0042")
    assert a.key("s1") == b.key("s1") != a.key("s2")
    assert "0042" not in (a.key("s1") or "")


def test_pseudonyms() -> None:
    names = pseudonyms(Caller.parse("+15550100042"))
    assert names[:3] == ["Caller 42", "Caller 42 (2)", "Caller 42 (3)"]
    assert len(set(names)) == len(names)
    assert all(len(n) <= 40 for n in names)


@given(st.text(max_size=80))
def test_any_text_parses_to_a_number_or_withheld(raw: str) -> None:
    c = Caller.parse(raw)
    if c.number is not None:
        assert c.number.lstrip("+").isascii() and c.number.lstrip("+").isdigit()
        assert 3 <= len(c.number.lstrip("+")) <= 20
        assert c.masked.endswith(c.number[-2:])
    else:
        assert c.masked == "withheld"
