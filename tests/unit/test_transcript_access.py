"""Pure parts of transcripts: the access rule, live facts, the renderings."""

from __future__ import annotations

import pytest

from rooms.events import Audit, Consent
from server.recorder import record_id
from server.storage.base import TranscriptLine
from server.transcript_access import SessionFacts, newer_consent, participant_may_read
from server.transcripts import as_json, as_markdown, as_text


@pytest.mark.parametrize(
    ("consent", "actions", "allowed"),
    [
        (True, set(), True),
        (True, {"mute", "floor.give"}, True),
        (False, set(), False),  # withdrew
        (None, set(), False),  # never opted in
        (True, {"remove"}, False),
        (True, {"ban"}, False),
        (False, {"remove"}, False),
    ],
)
def test_participant_may_read(consent: bool | None, actions: set[str], allowed: bool) -> None:
    assert participant_may_read(consent, actions) is allowed


def test_facts_keep_the_newest_state_and_are_bounded() -> None:
    facts = SessionFacts(kept=2)
    facts.note(Consent("r", "s1", "p1", True, 1.0))
    facts.note(Consent("r", "s1", "p1", False, 2.0))
    facts.note(Audit("r", "s1", "f", "remove", "p2", 3.0))
    facts.note(Audit("r", "s1", "f", "lock", None, 3.0))
    assert facts.room_of("s1") == "r"
    assert facts.consent("s1", "p1") is False
    assert facts.consent("s1", "p2") is None
    assert facts.actions_on("s1", "p2") == {"remove"}
    facts.note(Consent("r", "s2", "p1", True, 4.0))
    facts.note(Consent("r", "s3", "p1", True, 5.0))
    assert facts.room_of("s1") is None  # the oldest session was let go
    assert facts.consent("s3", "p1") is True


@pytest.mark.parametrize(
    ("mine", "stored", "consent"),
    [
        (None, None, None),
        ((True, 1.0), None, True),
        (None, (False, 1.0), False),
        ((True, 1.0), (False, 2.0), False),  # withdrawn through another node, later
        ((False, 1.0), (True, 2.0), True),  # and opted in again there
        ((False, 2.0), (True, 1.0), False),  # storage behind this node
        ((True, 2.0), (False, 2.0), False),  # a tie: off
    ],
)
def test_the_later_consent_change_wins(
    mine: tuple[bool, float] | None, stored: tuple[bool, float] | None, consent: bool | None
) -> None:
    assert newer_consent(mine, stored) is consent


def test_record_ids_are_stable() -> None:
    assert record_id("a", 1, None) == record_id("a", 1, None)
    assert record_id("a", 1, None) != record_id("a", 1, "x")


LINES = [
    TranscriptLine("m1", "s", "p", "Bo*", "hi <script>\nsecond", 0.0),
    TranscriptLine("m2", "s", "p", "Bo*", "", 61.0),
]


def test_renderings() -> None:
    assert as_json("s", "r", LINES[:1]) == {
        "session_id": "s",
        "room_id": "r",
        "lines": [{"id": "m1", "from_name": "Bo*", "text": "hi <script>\nsecond", "ts": 0.0}],
    }
    md = as_markdown("Title #1", "s", LINES)
    assert md.startswith("# Transcript: Title \\#1\n")
    assert "- **Bo\\*** (00:00:00): hi \\<script\\>\n  second\n" in md
    assert "- **Bo\\*** (00:01:01): \n" in md
    txt = as_text("T", "s", LINES)
    assert "[00:00:00] Bo*: hi <script>\n    second\n" in txt
