"""Joining, waiting, resuming, dropping and ending: protocol.md "Connecting" and "Words"."""

from __future__ import annotations

import pytest

from rooms import commands as c
from rooms.errors import ErrorCode, RoomError
from rooms.events import Disconnect, SessionClosed, Welcome
from rooms.machine import apply, due
from rooms.model import Participant, Role, RoomState, Settings, Via
from tests.unit.helpers import RULES, do, emits, join, live, payload, person, session


def person_in(state: RoomState, pid: str) -> Participant:
    p = state.get(pid)
    assert p is not None
    return p


def test_first_join_starts_a_session_with_seq_1() -> None:
    out = join(None, "fac", role=Role.FACILITATOR)
    assert out.state is not None
    assert out.state.session_id == "s1"
    assert payload(out.events, "participant.joined")["seq"] == 1
    assert Welcome("fac") in out.events


def test_snapshot_has_contract_fields_and_hides_waiting_from_peers() -> None:
    state = session("p1", settings=Settings(waiting_room=True))
    state = live(join(state, "p2"))
    assert state is not None
    snap = state.snapshot(for_moderator=False)
    assert set(snap) == {
        "id", "title", "session_id", "seq", "settings", "participants", "hands", "floor",
        "consenting", "waiting",
    }  # fmt: skip
    assert set(snap["settings"]) == {  # type: ignore[call-overload]
        "locked",
        "waiting_room",
        "transcripts_allowed",
        "chat_enabled",
        "queue_order",
    }
    assert set(snap["participants"][0]) == {  # type: ignore[index]
        "id", "name", "role", "via", "camera", "mic", "away", "connected", "hand"
    }  # fmt: skip
    assert snap["waiting"] == []
    assert state.snapshot(for_moderator=True)["waiting"] == [
        {"id": "p1", "name": "P1", "connected": True},
        {"id": "p2", "name": "P2", "connected": True},
    ]


@pytest.mark.parametrize("name", ["ann", "ANN", "Ann"])
def test_name_taken_is_case_insensitive(name: str) -> None:
    state = session()
    state = live(join(state, "p1", "Ann"))
    with pytest.raises(RoomError) as e:
        join(state, "p2", name)
    assert e.value.code is ErrorCode.NAME_TAKEN


def test_locked_room_refuses_peers_but_not_facilitators() -> None:
    state = live(do(session(), "fac", c.Lock(locked=True)))
    with pytest.raises(RoomError) as e:
        join(state, "p1")
    assert e.value.code is ErrorCode.ROOM_LOCKED
    assert join(state, "fac2", role=Role.FACILITATOR).state is not None


def test_full_room_refuses_peers_but_not_facilitators() -> None:
    state = session("p1", "p2", "p3", "p4")  # RULES.max_participants == 5
    with pytest.raises(RoomError) as e:
        join(state, "p5")
    assert e.value.code is ErrorCode.ROOM_FULL
    assert join(state, "fac2", role=Role.FACILITATOR).state is not None


def test_waiting_room_holds_peers_until_admitted() -> None:
    state = session(settings=Settings(waiting_room=True))
    out = join(state, "p1")
    assert out.reply["waiting"] is True
    assert out.state is not None and out.state.get("p1") is None
    assert emits(out.events, "waiting")[0].to == ("p1",)
    assert payload(out.events, "waiting.updated")["waiting"] == [
        {"id": "p1", "name": "P1", "connected": True}
    ]
    assert emits(out.events, "waiting.updated")[0].to == ("fac",)
    assert not emits(out.events, "participant.joined")
    out = do(out.state, "fac", c.Admit("p1"))
    assert emits(out.events, "admitted")[0].to == ("p1",)
    assert payload(out.events, "participant.joined")["participant"]["name"] == "P1"
    assert Welcome("p1") in out.events
    assert out.state is not None and out.state.waiting == ()


def test_moderators_skip_the_waiting_room() -> None:
    state = session(settings=Settings(waiting_room=True))
    out = join(state, "fac2", role=Role.FACILITATOR)
    assert out.reply["waiting"] is False


def test_deny_tells_and_disconnects_the_waiting_person() -> None:
    state = live(join(session(settings=Settings(waiting_room=True)), "p1"))
    assert state is not None
    out = do(state, "fac", c.Deny("p1"))
    assert emits(out.events, "denied")[0].to == ("p1",)
    assert Disconnect("p1", "sid-p1") in out.events
    assert out.state is not None and out.state.waiting == ()


def test_turning_the_waiting_room_off_admits_everyone_waiting() -> None:
    state = live(join(session(settings=Settings(waiting_room=True)), "p1"))
    state = live(join(state, "p2"))
    assert state is not None
    out = do(state, "fac", c.SetWaitingRoom(on=False))
    assert out.state is not None
    assert [p.id for p in out.state.participants] == ["fac", "p1", "p2"]
    assert out.state.waiting == ()


def test_a_waiting_caller_who_drops_is_gone() -> None:
    """The phone line keeps no waiting place: a caller calls again."""
    state = live(join(session(settings=Settings(waiting_room=True)), "p1", via=Via.PHONE))
    out = do(state, "fac", c.Drop("p1", "sid-p1"))
    assert out.state is not None and out.state.waiting == ()
    assert payload(out.events, "waiting.updated")["waiting"] == []


def test_a_waiting_place_is_kept_through_a_drop_and_a_lock() -> None:
    """A phone on a bad signal, waiting to be let in: its line drops while the
    facilitator locks the room ("no more newcomers"). Back within the grace it has its
    place in line; it was let wait before the lock."""
    state = live(join(session(settings=Settings(waiting_room=True)), "p1"))
    state = live(join(state, "p2"))
    out = do(state, "fac", c.Drop("p1", "sid-p1"), now=10)
    assert [w.id for w in live(out).waiting] == ["p1", "p2"]
    assert payload(out.events, "waiting.updated")["waiting"][0] == {
        "id": "p1",
        "name": "P1",
        "connected": False,
    }
    state = live(do(live(out), "fac", c.Lock(locked=True), now=11))
    with pytest.raises(RoomError) as e:  # someone new: locked out
        join(state, "p3", now=12)
    assert e.value.code is ErrorCode.ROOM_LOCKED
    back = join(state, "new", resume_id="p1", conn="sid2-p1", now=20)
    assert back.reply == {"participant_id": "p1", "waiting": True, "resumed": True}
    first = live(back).waiting[0]
    assert (first.id, first.conn, first.dropped_at) == ("p1", "sid2-p1", None)
    assert payload(back.events, "waiting.updated")["waiting"][0]["connected"] is True
    # Let in: a participant on the new line.
    admitted = live(do(live(back), "fac", c.Admit("p1"), now=21))
    assert person_in(admitted, "p1").connected and person_in(admitted, "p1").conn == "sid2-p1"


def test_a_waiting_place_dropped_past_the_grace_is_let_go() -> None:
    state = live(join(session(settings=Settings(waiting_room=True)), "p1"))
    state = live(do(state, "fac", c.Drop("p1", "sid-p1"), now=10))
    assert due(state, 10 + RULES.grace_secs - 1, RULES) is False
    assert due(state, 10 + RULES.grace_secs, RULES) is True
    out = apply(state, None, c.Tick(), now=10 + RULES.grace_secs, rules=RULES)
    assert live(out).waiting == ()
    assert payload(out.events, "waiting.updated")["waiting"] == []
    # Its token now restores nothing: a fresh join (held by the lock, if on).
    again = join(live(out), "p1b", "P1", resume_id="p1", now=100)
    assert again.reply["participant_id"] == "p1b"


def test_someone_let_in_while_their_line_was_down_keeps_the_rest_of_the_grace() -> None:
    state = live(join(session(settings=Settings(waiting_room=True)), "p1"))
    state = live(do(state, "fac", c.Drop("p1", "sid-p1"), now=10))
    out = do(state, "fac", c.Admit("p1"), now=12)
    p = person_in(live(out), "p1")
    assert (p.connected, p.dropped_at) == (False, 10)
    back = join(live(out), "new", resume_id="p1", conn="sid2-p1", now=20)
    assert back.reply["resumed"] is True and person_in(live(back), "p1").connected


def test_someone_waiting_may_leave() -> None:
    """protocol.md: session.leave is for anyone, someone in the waiting room too."""
    state = live(join(session(settings=Settings(waiting_room=True)), "p1"))
    state = live(join(state, "p2"))
    out = do(state, "p1", c.Leave())
    assert live(out).waiting[0].id == "p2" and len(live(out).waiting) == 1
    assert payload(out.events, "waiting.updated")["waiting"] == [
        {"id": "p2", "name": "P2", "connected": True}
    ]
    assert Disconnect("p1", "sid-p1") in out.events
    # Anything else from someone waiting is still refused.
    with pytest.raises(RoomError) as e:
        do(state, "p1", c.RaiseHand())
    assert e.value.code is ErrorCode.FORBIDDEN


def test_drop_keeps_the_place_and_resume_restores_it() -> None:
    state = session("p1", "p2")
    state = live(do(state, "p1", c.RaiseHand()))
    state = live(do(state, "p2", c.RaiseHand()))
    state = live(do(state, "p1", c.SetConsent(on=True)))
    state = live(do(state, "p1", c.SetPresence(camera=True, mic=True)))
    assert state is not None
    out = do(state, "p1", c.Drop("p1", "sid-p1"), now=10)
    assert payload(out.events, "participant.updated")["participant"]["connected"] is False
    out = join(out.state, "new-id", "Whatever", resume_id="p1", conn="sid-new", now=50)
    assert out.reply == {"participant_id": "p1", "waiting": False, "resumed": True}
    assert out.state is not None
    p = out.state.get("p1")
    assert p is not None
    assert (p.name, p.connected, p.consent, p.conn) == ("P1", True, True, "sid-new")
    assert (p.camera, p.mic) == (False, False)  # a reconnect never turns them on
    assert out.state.hands() == ["p1", "p2"]
    assert out.state.get("new-id") is None


def test_resume_on_a_new_connection_closes_the_old_one() -> None:
    state = session("p1")
    out = join(state, "x", resume_id="p1", conn="sid-2")
    assert Disconnect("p1", "sid-p1") in out.events


def test_a_stale_drop_from_an_old_connection_is_ignored() -> None:
    state = live(join(session("p1"), "x", resume_id="p1", conn="sid-2"))
    assert state is not None
    out = do(state, "fac", c.Drop("p1", "sid-p1"))
    assert out.events == ()
    assert person(out, "p1").connected


def test_resume_of_an_unknown_participant_is_a_fresh_join() -> None:
    out = join(session(), "p9", "Nine", resume_id="gone")
    assert out.reply["participant_id"] == "p9"


def test_resume_only_restores_a_participant_still_in_the_session() -> None:
    state = live(do(session("p1"), "p1", c.Drop("p1", "sid-p1"), now=10))
    out = join(state, "x", resume_id="p1", resume_only=True, conn="sid-2", now=20)
    assert out.reply == {"participant_id": "p1", "waiting": False, "resumed": True}
    assert person(out, "p1").connected


@pytest.mark.parametrize("resume_id", ["gone", None])
def test_resume_only_that_restores_nobody_is_refused_and_changes_nothing(
    resume_id: str | None,
) -> None:
    """A place past the grace (or no place at all) is not turned into a new join: nobody
    hears of a participant.joined, the name is not taken, no seq is used."""
    state = session("p1", settings=Settings(waiting_room=True))
    with pytest.raises(RoomError) as e:
        join(state, "p9", "Nine", resume_id=resume_id, resume_only=True)
    assert e.value.code is ErrorCode.RESUME_EXPIRED
    assert "join again" in e.value.message


def test_resume_only_with_no_session_live_starts_none() -> None:
    with pytest.raises(RoomError) as e:
        join(None, "p1", resume_id="p1", resume_only=True)
    assert e.value.code is ErrorCode.RESUME_EXPIRED


def test_resume_only_of_someone_kept_out_says_so() -> None:
    state = live(do(session("p1"), "fac", c.Remove("p1", ban=True)))
    with pytest.raises(RoomError) as e:
        join(state, "p1", resume_id="p1", resume_only=True)
    assert e.value.code is ErrorCode.BANNED


def test_after_the_grace_period_a_dropped_participant_leaves_with_timeout() -> None:
    state = live(do(session("p1"), "p1", c.RaiseHand()))
    state = live(do(state, "fac", c.Drop("p1", "sid-p1"), now=100))
    assert state is not None
    out = do(state, "fac", c.Tick(), now=159)
    assert out.events == ()
    out = do(state, "fac", c.Tick(), now=160)
    assert payload(out.events, "participant.left") == {"seq": 6, "id": "p1", "reason": "timeout"}
    assert payload(out.events, "hands")["hands"] == []
    assert out.state is not None and out.state.get("p1") is None


def test_leave_is_immediate() -> None:
    out = do(session("p1"), "p1", c.Leave())
    assert payload(out.events, "participant.left")["reason"] == "left"
    assert Disconnect("p1", "sid-p1") in out.events


def test_an_empty_session_ends_after_the_grace_period() -> None:
    state = live(do(session(), "fac", c.Leave(), now=10))
    assert state is not None and state.empty_since == 10
    assert do(state, "fac", c.Tick(), now=69).state is not None
    out = do(state, "fac", c.Tick(), now=70)
    assert out.state is None
    assert SessionClosed("room1", "s1", "empty", 70) in out.events


def test_end_tells_everyone_and_disconnects_all() -> None:
    state = live(join(session("p1", settings=Settings(waiting_room=True)), "p2"))
    assert state is not None
    out = do(state, "fac", c.End())
    assert out.state is None
    ended = emits(out.events, "session.ended")
    assert ended[0].to == ("fac", "p1", "p2") and ended[0].payload == {"reason": "ended"}
    assert {e.participant_id for e in out.events if isinstance(e, Disconnect)} == {
        "fac", "p1", "p2"
    }  # fmt: skip


@pytest.mark.parametrize("how", ["mod.end", "empty"])
def test_a_new_session_after_the_end_starts_at_seq_1_again(how: str) -> None:
    state = live(do(session("p1", "p2"), "p1", c.RaiseHand()))
    assert state.seq > 1 and state.hands() == ["p1"]
    if how == "mod.end":
        out = do(state, "fac", c.End(), now=5)
    else:  # everyone leaves, and the grace passes
        for pid in ("p1", "p2", "fac"):
            state = live(do(state, pid, c.Leave(), now=5))
        out = do(state, "fac", c.Tick(), now=65)
    assert out.state is None
    again = join(out.state, "p1", resume_id="p1", now=100)  # the old id resumes nothing
    fresh = live(again)
    assert payload(again.events, "participant.joined")["seq"] == 1 and fresh.seq == 1
    assert again.reply.get("resumed") is None
    assert [p.id for p in fresh.participants] == ["p1"] and fresh.hands() == []
    assert fresh.started_at == 100 and fresh.empty_since is None


def test_commands_without_a_session_are_refused() -> None:
    from rooms.machine import apply

    with pytest.raises(RoomError) as e:
        apply(None, "p1", c.RaiseHand(), now=0)
    assert e.value.code is ErrorCode.NOT_FOUND


def test_a_stranger_cannot_act() -> None:
    with pytest.raises(RoomError) as e:
        do(session(), "nobody", c.RaiseHand())
    assert e.value.code is ErrorCode.FORBIDDEN
