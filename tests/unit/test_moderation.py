"""Every moderator control and who may use it: protocol.md "Client to server"."""

from __future__ import annotations

import pytest

from rooms import commands as c
from rooms.errors import ErrorCode, RoomError
from rooms.events import Audit, Disconnect, Unstore
from rooms.machine import apply
from rooms.model import Participant, QueueOrder, Role, RoomState, Settings, Via
from tests.unit.helpers import RULES, do, emits, join, live, payload, person, session

MOD_COMMANDS: list[c.Command] = [
    c.ModLowerHand("p2"),
    c.ClearHands(),
    c.FloorNext(),
    c.FloorGive("p2"),
    c.FloorClear(),
    c.Mute("p2"),
    c.MuteAll(),
    c.AskUnmute("p2"),
    c.StopCamera("p2"),
    c.Remove("p2"),
    c.Lock(locked=True),
    c.SetWaitingRoom(on=True),
    c.Admit("p2"),
    c.Deny("p2"),
    c.SetRole("p2", Role.COFACILITATOR),
    c.ChangeSettings(chat_enabled=False),
    c.RemoveChat("m1"),
    c.End(),
]


@pytest.mark.parametrize("command", MOD_COMMANDS, ids=lambda x: type(x).__name__)
def test_peers_cannot_use_moderator_controls(command: c.Command) -> None:
    with pytest.raises(RoomError) as e:
        do(session("p1", "p2"), "p1", command)
    assert e.value.code is ErrorCode.FORBIDDEN


FACILITATOR_ONLY = [c.SetRole("p2", Role.PEER), c.End()]


@pytest.mark.parametrize("command", FACILITATOR_ONLY, ids=lambda x: type(x).__name__)
def test_cofacilitators_cannot_change_roles_or_end(command: c.Command) -> None:
    state = live(do(session("co", "p2"), "fac", c.SetRole("co", Role.COFACILITATOR)))
    assert state is not None
    with pytest.raises(RoomError) as e:
        do(state, "co", command)
    assert e.value.code is ErrorCode.FORBIDDEN


@pytest.mark.parametrize(
    "command", [c.Mute("fac"), c.Remove("fac"), c.StopCamera("fac"), c.AskUnmute("fac")]
)
def test_a_cofacilitator_cannot_act_on_a_facilitator(command: c.Command) -> None:
    state = live(do(session("co"), "fac", c.SetRole("co", Role.COFACILITATOR)))
    assert state is not None
    with pytest.raises(RoomError) as e:
        do(state, "co", command)
    assert e.value.code is ErrorCode.FORBIDDEN


def test_a_cofacilitator_can_moderate_peers() -> None:
    state = live(do(session("co", "p1"), "fac", c.SetRole("co", Role.COFACILITATOR)))
    assert state is not None
    out = do(state, "co", c.Mute("p1"))
    assert emits(out.events, "you.muted")[0].to == ("p1",)


def test_mute_turns_the_mic_off_and_tells_the_target() -> None:
    state = live(do(session("p1"), "p1", c.SetPresence(mic=True)))
    assert state is not None
    out = do(state, "fac", c.Mute("p1"))
    assert payload(out.events, "participant.updated")["participant"]["mic"] is False
    assert emits(out.events, "you.muted")[0].payload == {"by": "fac"}
    assert not [a for a in out.events if isinstance(a, Audit)]  # nothing the access rule reads


def test_mute_all_spares_moderators() -> None:
    state = session("p1", "p2")
    for pid in ("fac", "p1", "p2"):
        state = live(do(state, pid, c.SetPresence(mic=True)))
    out = do(state, "fac", c.MuteAll())
    assert out.state is not None
    assert [p.mic for p in out.state.participants] == [True, False, False]
    assert {e.to for e in emits(out.events, "you.muted")} == {("p1",), ("p2",)}


def test_ask_unmute_never_turns_a_mic_on() -> None:
    out = do(session("p1"), "fac", c.AskUnmute("p1"))
    assert person(out, "p1").mic is False
    assert emits(out.events, "you.asked_to_unmute")[0].to == ("p1",)
    assert not emits(out.events, "participant.updated")


def test_stop_camera() -> None:
    state = live(do(session("p1"), "p1", c.SetPresence(camera=True)))
    assert state is not None
    out = do(state, "fac", c.StopCamera("p1"))
    assert payload(out.events, "participant.updated")["participant"]["camera"] is False
    assert emits(out.events, "you.camera_stopped")[0].to == ("p1",)


def test_remove_tells_broadcasts_and_disconnects() -> None:
    state = live(do(session("p1"), "p1", c.RaiseHand()))
    assert state is not None
    out = do(state, "fac", c.Remove("p1"))
    names = [e.name for e in emits(out.events)]
    assert names.index("you.removed") < names.index("participant.left")
    assert payload(out.events, "participant.left")["reason"] == "removed"
    assert payload(out.events, "hands")["hands"] == []
    assert Disconnect("p1", "sid-p1") in out.events
    assert join(out.state, "p1b", "P1").state is not None  # not banned: may come back


def test_ban_keeps_them_out_of_this_session() -> None:
    out = do(session("p1"), "fac", c.Remove("p1", ban=True))
    with pytest.raises(RoomError) as e:
        join(out.state, "p1b", "p1")  # same name, any case
    assert e.value.code is ErrorCode.BANNED
    with pytest.raises(RoomError):
        join(out.state, "p1c", "Other", ban_keys=frozenset({"device:d1", "name:p1"}))


def test_a_ban_by_name_does_not_keep_a_facilitator_link_out() -> None:
    """A troll called "Sam" was kept out; a co-facilitator also called Sam, on the
    facilitator link, still gets in (a facilitator must always reach their room). A
    ban by their device holds for them too."""
    state = live(join(session("p1"), "sam", "Sam", ban_keys=frozenset({"name:sam", "device:t"})))
    out = do(state, "fac", c.Remove("sam", ban=True))
    with pytest.raises(RoomError) as e:
        join(out.state, "sam2", "SAM", ban_keys=frozenset({"name:sam", "device:x"}))
    assert e.value.code is ErrorCode.BANNED
    back = join(out.state, "fac2", "Sam", role=Role.FACILITATOR)
    assert live(back).get("fac2") is not None
    with pytest.raises(RoomError) as e:
        join(out.state, "fac3", "Kim", role=Role.FACILITATOR, ban_keys=frozenset({"device:t"}))
    assert e.value.code is ErrorCode.BANNED


def test_a_ban_that_cannot_hold_is_said_not_pretended() -> None:
    """A caller with a hidden number has nothing to be kept out by: removed, and the
    facilitator is told (ban: false, a note), not acked as if the ban held."""
    state = live(join(session("p1"), "ph", "Caller", via=Via.PHONE, ban_keys=frozenset()))
    out = do(state, "fac", c.Remove("ph", ban=True))
    assert live(out).get("ph") is None and live(out).banned == state.banned
    assert out.reply["banned"] is False and "hidden" in out.reply["note"]
    assert [a for a in out.events if isinstance(a, Audit)] == []  # never opted in: no row
    again = join(live(out), "ph2", "Caller", via=Via.PHONE, ban_keys=frozenset())
    assert live(again).get("ph2") is not None  # what the note says: lock the room
    out = do(state, "fac", c.Remove("p1", ban=True))
    assert out.reply == {"banned": True}


def test_someone_denied_from_the_waiting_room_can_be_kept_out() -> None:
    """A troll in the waiting room: "Not now" lets them queue again at once; deny with
    ban keeps them out of this session, as a removal with ban would."""
    waiting = Settings(waiting_room=True)
    state = live(join(session(settings=waiting), "tr", "Troll"))
    out = do(state, "fac", c.Deny("tr"))
    assert "banned" not in out.reply
    assert live(join(live(out), "tr2", "Troll")).get_waiting("tr2") is not None
    out = do(state, "fac", c.Deny("tr", ban=True))
    assert out.reply == {"banned": True} and live(out).get_waiting("tr") is None
    assert [a for a in out.events if isinstance(a, Audit)] == []  # never opted in: no row
    with pytest.raises(RoomError) as e:
        join(live(out), "tr3", "troll")
    assert e.value.code is ErrorCode.BANNED


def test_a_moderator_cannot_remove_themselves() -> None:
    with pytest.raises(RoomError) as e:
        do(session(), "fac", c.Remove("fac"))
    assert e.value.code is ErrorCode.NOT_ALLOWED_NOW


def test_removing_someone_absent_is_not_found() -> None:
    with pytest.raises(RoomError) as e:
        do(session(), "fac", c.Mute("ghost"))
    assert e.value.code is ErrorCode.NOT_FOUND


def test_lock_and_unlock_broadcast_settings() -> None:
    out = do(session(), "fac", c.Lock(locked=True))
    assert payload(out.events, "settings")["settings"]["locked"] is True
    again = do(out.state, "fac", c.Lock(locked=True))
    assert not emits(again.events, "settings")


def test_handover_is_reversible_and_never_to_oneself() -> None:
    out = do(session("p1"), "fac", c.SetRole("p1", Role.FACILITATOR))
    assert payload(out.events, "participant.updated")["participant"]["role"] == "facilitator"
    back = do(out.state, "p1", c.SetRole("fac", Role.PEER))
    assert person(back, "fac").role is Role.PEER
    with pytest.raises(RoomError) as e:
        do(session(), "fac", c.SetRole("fac", Role.PEER))
    assert e.value.code is ErrorCode.NOT_ALLOWED_NOW


def test_a_new_moderator_gets_the_waiting_list() -> None:
    state = live(join(session("p1"), "fac2", role=Role.FACILITATOR))
    state = live(do(state, "fac", c.SetWaitingRoom(on=True)))
    state = live(join(state, "p2"))
    out = do(state, "fac", c.SetRole("p1", Role.COFACILITATOR))
    assert emits(out.events, "waiting.updated")[0].to == ("p1",)


def test_settings_change_broadcasts_once_and_reorders_hands() -> None:
    state = session("p1", "p2")
    state = live(do(state, "p1", c.RaiseHand()))
    state = live(do(state, "fac", c.FloorNext()))
    state = live(do(state, "p1", c.RaiseHand()))
    state = live(do(state, "p2", c.RaiseHand()))
    assert state is not None and state.hands() == ["p1", "p2"]
    out = do(state, "fac", c.ChangeSettings(queue_order=QueueOrder.QUIETER_FIRST))
    assert payload(out.events, "settings")["settings"]["queue_order"] == "quieter_first"
    assert payload(out.events, "hands")["hands"] == ["p2", "p1"]


def test_transcripts_off_withdraws_everyone() -> None:
    state = live(do(session("p1"), "p1", c.SetConsent(on=True)))
    assert state is not None
    out = do(state, "fac", c.ChangeSettings(transcripts_allowed=False))
    assert payload(out.events, "consent")["consenting"] == []


def test_remove_chat_deletes_everywhere() -> None:
    state = live(do(session("p1"), "p1", c.SetConsent(on=True)))
    state = live(do(state, "p1", c.SendChat("m1", "hello")))
    out = do(state, "fac", c.RemoveChat("m1"))
    assert payload(out.events, "chat.removed")["message_id"] == "m1"
    assert Unstore("s1", message_id="m1") in out.events
    with pytest.raises(RoomError) as e:
        do(out.state, "fac", c.RemoveChat("m1"))
    assert e.value.code is ErrorCode.NOT_FOUND


@pytest.mark.parametrize(
    "line",
    [
        "sent by someone who never opted in",
        "sent before opting in",
        "to the moderators",
        "in a room without transcripts",
    ],
)
def test_removing_a_line_that_was_never_stored_puts_nothing_on_disk(line: str) -> None:
    """Before, every removal kept an erase (the line's id) and an audit row (the
    moderator's id, the line's id) on disk, for a line that was never stored."""
    settings = Settings(transcripts_allowed=line != "in a room without transcripts")
    state = session("p1", settings=settings)
    if line == "sent before opting in":
        state = live(do(state, "p1", c.SendChat("m1", "hello")))
        state = live(do(state, "p1", c.SetConsent(on=True)))
    else:
        if line == "to the moderators":
            state = live(do(state, "p1", c.SetConsent(on=True)))
        state = live(do(state, "p1", c.SendChat("m1", "hello", line == "to the moderators")))
    out = do(state, "fac", c.RemoveChat("m1"))
    assert payload(out.events, "chat.removed")["message_id"] == "m1"
    assert not [e for e in out.events if isinstance(e, Unstore | Audit)]
    assert out.reply == {"erased": 0}


def test_only_the_removal_of_someone_who_opted_in_is_kept() -> None:
    """The transcript access rule reads removals and bans of people who opted in (their
    resume token must stop reading); nothing else is kept, and the moderator's id only
    if they opted in too."""
    state = session("p1", "p2", "p3")
    state = live(do(state, "p1", c.SetConsent(on=True)))
    state = live(do(state, "p1", c.SetConsent(on=False)))  # opted in once: enough
    out = do(state, "fac", c.Remove("p1"))
    assert [e for e in out.events if isinstance(e, Audit)] == [
        Audit("room1", "s1", "", "remove", "p1", 1.0)
    ]
    state = live(do(live(out), "fac", c.SetConsent(on=True)))
    state = live(do(state, "p2", c.SetConsent(on=True)))
    out = do(state, "fac", c.Remove("p2", ban=True))
    assert [e for e in out.events if isinstance(e, Audit)] == [
        Audit("room1", "s1", "fac", "ban", "p2", 1.0)
    ]
    for command in (c.Mute("p3"), c.Remove("p3"), c.Lock(True), c.End()):
        assert not [e for e in do(live(out), "fac", command).events if isinstance(e, Audit)]


def test_moderators_chat_even_when_chat_is_paused() -> None:
    state = live(do(session("p1"), "fac", c.ChangeSettings(chat_enabled=False)))
    assert state is not None
    with pytest.raises(RoomError) as e:
        do(state, "p1", c.SendChat("m1", "hi"))
    assert e.value.code is ErrorCode.NOT_ALLOWED_NOW
    assert do(state, "fac", c.SendChat("m2", "we pause chat for a moment")).reply["id"] == "m2"
    note = do(state, "p1", c.SendChat("m3", "can we talk after?", to_moderators=True))
    assert note.reply["id"] == "m3"  # a private note to the facilitators still goes through


def test_waiting_room_setting_is_remembered_in_snapshot() -> None:
    out = do(session(settings=Settings()), "fac", c.SetWaitingRoom(on=True))
    assert out.state is not None and out.state.settings.waiting_room is True


def test_when_the_last_facilitator_leaves_a_cofacilitator_takes_over() -> None:
    state = session("p1", "p2", "p3")
    state = live(do(state, "fac", c.SetRole("p2", Role.COFACILITATOR)))
    state = live(do(state, "fac", c.SetRole("p3", Role.COFACILITATOR)))
    state = live(do(state, "p2", c.Leave(), now=2.0))
    # p3 is the only cofacilitator left; nothing changes while the facilitator is here.
    assert person(do(state, "p1", c.Leave(), now=3.0), "fac").role is Role.FACILITATOR
    out = do(state, "fac", c.Leave(), now=3.0)
    assert person(out, "p3").role is Role.FACILITATOR
    left, promoted = emits(out.events, "participant.left"), emits(out.events, "participant.updated")
    assert [e.payload["id"] for e in left] == ["fac"]
    assert [e.payload["participant"]["role"] for e in promoted] == ["facilitator"]
    assert left[0].payload["seq"] < promoted[0].payload["seq"]
    # The new facilitator can do what only a facilitator can.
    assert do(live(out), "p3", c.End()).state is None


def test_a_dropped_facilitator_keeps_the_role_until_the_grace_is_over() -> None:
    state = session("p1", "p2")
    state = live(do(state, "fac", c.SetRole("p1", Role.COFACILITATOR)))
    state = live(do(state, "fac", c.SetRole("p2", Role.COFACILITATOR)))
    state = live(apply(state, None, c.Drop("fac", "sid-fac"), now=5.0, rules=RULES))
    state = live(apply(state, None, c.Drop("p1", "sid-p1"), now=6.0, rules=RULES))
    still = live(apply(state, None, c.Tick(), now=30.0, rules=RULES))
    assert person_in(still, "fac").role is Role.FACILITATOR
    later = live(apply(still, None, c.Tick(), now=5.0 + RULES.grace_secs, rules=RULES))
    assert later.get("fac") is None
    # The connected cofacilitator (p2) is chosen over the one who dropped first (p1).
    assert person_in(later, "p2").role is Role.FACILITATOR
    assert person_in(later, "p1").role is Role.COFACILITATOR


def test_a_web_cofacilitator_is_chosen_over_a_caller() -> None:
    """A caller has only the hand and mic keys: promoted first, they could not end the
    session or unlock it, and the web cofacilitator could not either."""
    state = live(join(session("p1"), "ph", via=Via.PHONE))
    state = live(join(state, "web"))
    state = live(do(state, "fac", c.SetRole("ph", Role.COFACILITATOR)))
    state = live(do(state, "fac", c.SetRole("web", Role.COFACILITATOR)))
    out = do(state, "fac", c.Leave(), now=3.0)
    assert person(out, "web").role is Role.FACILITATOR
    assert person(out, "ph").role is Role.COFACILITATOR
    assert do(live(out), "web", c.End()).state is None


def test_with_no_cofacilitator_nobody_is_promoted() -> None:
    out = do(session("p1"), "fac", c.Leave())
    assert person(out, "p1").role is Role.PEER
    assert emits(out.events, "participant.updated") == []


def person_in(state: RoomState, pid: str) -> Participant:
    p = state.get(pid)
    assert p is not None
    return p
