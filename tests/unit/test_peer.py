"""Hands, floor, presence, chat and consent: what anyone may do for themselves."""

from __future__ import annotations

import pytest

from rooms import commands as c
from rooms.errors import ErrorCode, RoomError
from rooms.events import Consent, Transcribe, Unstore
from rooms.model import Role, Settings, Via
from rooms.peer import RECENT_MESSAGES_KEPT
from tests.unit.helpers import do, emits, join, live, payload, person, session


def test_raise_is_idempotent_and_reports_position() -> None:
    state = live(do(session("p1", "p2"), "p2", c.RaiseHand()))
    assert state is not None
    out = do(state, "p1", c.RaiseHand())
    assert out.reply == {"hand": True, "position": 2}
    again = do(out.state, "p1", c.RaiseHand())
    assert again.events == () and again.reply["position"] == 2


def test_lower_leaves_the_queue() -> None:
    state = live(do(session("p1"), "p1", c.RaiseHand()))
    out = do(state, "p1", c.LowerHand())
    assert payload(out.events, "hands") == {"seq": 4, "hands": [], "floor": None}
    assert out.reply == {"hand": False, "position": None}


def test_floor_next_takes_the_first_hand() -> None:
    state = session("p1", "p2")
    for pid in ("p2", "p1"):
        state = live(do(state, pid, c.RaiseHand()))
    out = do(state, "fac", c.FloorNext())
    assert payload(out.events, "hands")["hands"] == ["p1"]
    assert payload(out.events, "hands")["floor"] == "p2"
    assert person(out, "p2").turns == 1


def test_floor_next_passes_over_a_dropped_connection_which_keeps_its_place() -> None:
    state = session("p1", "p2")
    for pid in ("p1", "p2"):
        state = live(do(state, pid, c.RaiseHand()))
    state = live(do(state, "fac", c.Drop("p1", "sid-p1")))  # a low-end phone drops
    out = do(state, "fac", c.FloorNext())
    assert out.reply["floor"] == "p2" and out.reply["skipped"] == ["p1"]
    assert out.reply["note"] == "P2 has the floor. Skipped, keeping their place: P1 (reconnecting)."
    hands = payload(out.events, "hands")
    assert (hands["hands"], hands["floor"]) == (["p1"], "p2")
    assert person(out, "p1").turns == 0
    with pytest.raises(RoomError) as e:  # only p1 is left, still away
        do(live(out), "fac", c.FloorNext())
    assert e.value.code is ErrorCode.NOT_ALLOWED_NOW
    back = live(join(live(out), "new", resume_id="p1", conn="sid2-p1"))
    assert back.hands() == ["p1"]
    assert do(back, "fac", c.FloorNext()).reply == {"floor": "p1"}


def test_floor_next_passes_over_someone_away_who_keeps_their_place() -> None:
    """A hand up, then "away" (a child in the next room): "next" is not their turn."""
    state = session("p1", "p2", "p3")
    for pid in ("p1", "p2", "p3"):
        state = live(do(state, pid, c.RaiseHand()))
    state = live(do(state, "p1", c.SetPresence(away=True)))
    state = live(do(state, "fac", c.Drop("p2", "sid-p2")))
    out = do(state, "fac", c.FloorNext())
    assert out.reply["floor"] == "p3" and out.reply["skipped"] == ["p1", "p2"]
    assert out.reply["note"] == (
        "P3 has the floor. Skipped, keeping their place: P1 (away), P2 (reconnecting)."
    )
    assert person(out, "p1").hand and person(out, "p1").turns == 0
    state = live(do(live(out), "p1", c.SetPresence(away=False)))
    assert do(state, "fac", c.FloorNext()).reply == {"floor": "p1"}
    # The facilitator can still choose them: giving the floor is not "next".
    assert do(live(out), "fac", c.FloorGive("p1")).state.floor == "p1"  # type: ignore[union-attr]


def test_giving_the_floor_again_to_its_holder_is_not_another_turn() -> None:
    state = live(do(session("p1"), "fac", c.FloorGive("p1")))
    out = do(state, "fac", c.FloorGive("p1"))
    assert person(out, "p1").turns == 1
    assert emits(out.events, "hands") == []


def test_floor_next_with_no_hands_is_not_allowed_now() -> None:
    with pytest.raises(RoomError) as e:
        do(session("p1"), "fac", c.FloorNext())
    assert e.value.code is ErrorCode.NOT_ALLOWED_NOW


def test_floor_give_and_clear() -> None:
    out = do(session("p1"), "fac", c.FloorGive("p1"))
    assert payload(out.events, "hands")["floor"] == "p1"
    out = do(out.state, "fac", c.FloorClear())
    assert payload(out.events, "hands")["floor"] is None


def test_the_floor_goes_when_its_holder_leaves() -> None:
    state = live(do(session("p1"), "fac", c.FloorGive("p1")))
    out = do(state, "p1", c.Leave())
    assert payload(out.events, "hands")["floor"] is None


def test_presence_updates_only_what_is_given() -> None:
    out = do(session("p1"), "p1", c.SetPresence(away=True))
    p = payload(out.events, "participant.updated")["participant"]
    assert (p["away"], p["camera"], p["mic"]) == (True, False, False)
    same = do(out.state, "p1", c.SetPresence(away=True))
    assert same.events == ()


def test_a_phone_line_has_no_camera() -> None:
    state = live(join(session(), "ph", via=Via.PHONE))
    out = do(state, "ph", c.SetPresence(camera=True, mic=True))
    p = payload(out.events, "participant.updated")["participant"]
    assert (p["via"], p["camera"], p["mic"]) == ("phone", False, True)


def test_phone_toggles() -> None:
    state = live(join(session(), "ph", via=Via.PHONE))
    out = do(state, "ph", c.ToggleHand())
    assert out.reply == {"hand": True, "position": 1, "mic": False}
    out = do(out.state, "ph", c.ToggleMic())
    assert out.reply == {"hand": True, "position": 1, "mic": True}
    out = do(out.state, "ph", c.ToggleHand())
    assert out.reply == {"hand": False, "position": None, "mic": True}


def test_chat_broadcasts_with_the_contract_shape() -> None:
    out = do(session("p1"), "p1", c.SendChat("m1", "hello"), now=5)
    assert payload(out.events, "chat") == {
        "seq": 3,
        "message": {"id": "m1", "from": "p1", "name": "P1", "text": "hello", "ts": 5},
    }
    assert out.reply == {"id": "m1"}


def test_a_private_note_goes_to_moderators_and_sender_without_a_seq() -> None:
    state = session("p1", "p2")
    out = do(state, "p1", c.SendChat("m1", "can we talk after?", to_moderators=True))
    (emit,) = emits(out.events, "chat")
    assert emit.to == ("fac", "p1")
    assert emit.payload["seq"] == state.seq  # not consumed
    assert emit.payload["message"]["to"] == "moderators"
    assert out.state is not None and out.state.seq == state.seq
    assert not [e for e in out.events if isinstance(e, Transcribe)]


def test_a_private_note_with_no_facilitator_connected_is_refused_not_lost() -> None:
    """The facilitator's phone dropped: a note now would reach nobody (a resume brings
    no chat history), so the sender is told and can send it again."""
    state = session("p1", "p2")
    state = live(do(state, "fac", c.SetRole("p2", Role.COFACILITATOR)))
    state = live(do(state, "fac", c.Drop("fac", "sid-fac")))
    note = c.SendChat("m1", "can we talk after?", to_moderators=True)
    (emit,) = emits(do(state, "p1", note).events, "chat")  # the cofacilitator is here
    assert emit.to == ("fac", "p2", "p1")
    state = live(do(state, "p2", c.Drop("p2", "sid-p2")))
    with pytest.raises(RoomError) as e:
        do(state, "p1", note)
    assert e.value.code is ErrorCode.NOT_ALLOWED_NOW
    assert "No facilitator is connected right now" in e.value.message
    # The group's chat goes on as before.
    assert emits(do(state, "p1", c.SendChat("m2", "hello")).events, "chat")


def test_only_consenting_senders_are_transcribed() -> None:
    state = session("p1", "p2")
    state = live(do(state, "p1", c.SetConsent(on=True)))
    a = do(state, "p1", c.SendChat("m1", "kept"))
    b = do(state, "p2", c.SendChat("m2", "not kept"))
    assert [e.message_id for e in a.events if isinstance(e, Transcribe)] == ["m1"]
    assert not [e for e in b.events if isinstance(e, Transcribe)]


def test_the_stored_lines_kept_in_the_state_are_only_recent_ones() -> None:
    """Which recent lines were stored (so that a moderator's removal of one is erased
    from storage too) is kept in order among the recent lines: it leaves the window
    with them and goes with a removal, so the state never holds more than it needs."""
    state = live(do(session("p1", "p2"), "p1", c.SetConsent(on=True)))
    for n in range(RECENT_MESSAGES_KEPT + 50):
        sender = "p2" if n % 3 == 0 else "p1"  # p2 never opted in: not stored
        state = live(do(state, sender, c.SendChat(f"m{n}", "x")))
    recent, stored = state.recent_messages, state.transcribed
    assert len(recent) == RECENT_MESSAGES_KEPT and recent[-1] == f"m{RECENT_MESSAGES_KEPT + 49}"
    assert stored == tuple(m for m in recent if int(m[1:]) % 3)
    removed = do(state, "fac", c.RemoveChat(stored[0]))
    assert stored[0] not in live(removed).transcribed
    assert Unstore("s1", message_id=stored[0]) in removed.events
    unstored = do(state, "fac", c.RemoveChat(recent[-1]))  # p2's: 249 % 3 == 0
    assert not [e for e in unstored.events if isinstance(e, Unstore)]


def test_nothing_is_transcribed_when_the_room_does_not_allow_it() -> None:
    state = session("p1", settings=Settings(transcripts_allowed=False))
    with pytest.raises(RoomError) as e:
        do(state, "p1", c.SetConsent(on=True))
    assert e.value.code is ErrorCode.NOT_ALLOWED_NOW


def test_consent_is_broadcast_so_nobody_is_transcribed_silently() -> None:
    out = do(session("p1"), "p1", c.SetConsent(on=True), now=7)
    assert payload(out.events, "consent") == {"seq": 3, "consenting": ["p1"]}
    assert Consent("room1", "s1", "p1", True, 7) in out.events
    off = do(out.state, "p1", c.SetConsent(on=False))
    assert payload(off.events, "consent")["consenting"] == []


def test_erase_asks_storage_to_delete_my_lines() -> None:
    state = live(do(session("p1"), "p1", c.SetConsent(on=True)))
    state = live(do(state, "p1", c.SetConsent(on=False)))  # lines before this were kept
    out = do(state, "p1", c.EraseTranscript(), now=9.0)
    # Until now: lines sent after, having opted in again, are not erased by it.
    assert out.events == (Unstore("s1", participant_id="p1", ts=9.0),)


def test_an_erase_by_someone_who_never_opted_in_stores_nothing() -> None:
    """Nothing of theirs is stored, so there is nothing to erase. Before, the erase was
    kept all the same, and with it their id on disk (the consent rule forbids it)."""
    out = do(session("p1"), "p1", c.EraseTranscript(), now=9.0)
    assert out.events == () and out.reply == {"erased": 0}
