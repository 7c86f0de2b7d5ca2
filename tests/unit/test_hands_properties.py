"""Properties of the hand queue under any sequence of actions (hypothesis).

Invariants checked after every step:
- the queue has no duplicates and holds exactly the participants whose hand is up;
- ``time`` order is raise order; ``quieter_first`` is (turns, raise order);
- a lowered hand (by its owner, a moderator, the floor, or clear) is gone;
- every room broadcast's seq is exactly one more than the previous one.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rooms import commands as c
from rooms.errors import RoomError
from rooms.events import Emit
from rooms.model import QueueOrder, RoomState
from tests.unit.helpers import do, live, session

PEERS = ["p1", "p2", "p3", "p4"]

actions = st.one_of(
    st.tuples(st.sampled_from(PEERS), st.just("raise")),
    st.tuples(st.sampled_from(PEERS), st.just("lower")),
    st.tuples(st.sampled_from(PEERS), st.just("mod_lower")),
    st.tuples(st.sampled_from(PEERS), st.just("give")),
    st.tuples(st.just("-"), st.just("next")),
    st.tuples(st.just("-"), st.just("clear")),
    st.tuples(st.sampled_from(list(QueueOrder)), st.just("order")),
)


def step(state: RoomState, who: str, what: str) -> tuple[RoomState, list[Emit]]:
    command: c.Command
    actor = "fac"
    if what == "raise":
        actor, command = who, c.RaiseHand()
    elif what == "lower":
        actor, command = who, c.LowerHand()
    elif what == "mod_lower":
        command = c.ModLowerHand(who)
    elif what == "give":
        command = c.FloorGive(who)
    elif what == "next":
        command = c.FloorNext()
    elif what == "clear":
        command = c.ClearHands()
    else:
        command = c.ChangeSettings(queue_order=QueueOrder(who))
    try:
        out = do(state, actor, command)
    except RoomError:
        return state, []
    assert out.state is not None
    return out.state, [e for e in out.events if isinstance(e, Emit) and e.to is None]


@settings(max_examples=300, deadline=None)
@given(st.lists(actions, max_size=40))
def test_queue_invariants(steps: list[tuple[str, str]]) -> None:
    state = session(*PEERS)
    seq = state.seq
    raise_order: list[str] = []  # our own model of who raised when
    for who, what in steps:
        before = state
        state, broadcasts = step(state, who, what)
        for e in broadcasts:
            assert e.payload["seq"] == seq + 1
            seq += 1
        # model the raise order
        up = {p.id for p in state.participants if p.hand}
        raise_order = [pid for pid in raise_order if pid in up]
        raise_order += [pid for pid in PEERS if pid in up and pid not in raise_order]
        queue = state.hands()
        assert len(queue) == len(set(queue))
        assert set(queue) == up
        if state.settings.queue_order is QueueOrder.TIME:
            assert queue == raise_order
        else:
            turns = {p.id: p.turns for p in state.participants}
            assert queue == sorted(raise_order, key=lambda pid: turns[pid])  # stable
        if what in ("lower", "mod_lower") and before.get(who) is not None:
            assert who not in queue
        if what == "clear":
            assert queue == []
        if what in ("give", "next") and state.floor is not None:
            assert state.floor not in queue


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(PEERS), min_size=1, max_size=12))
def test_a_raised_hand_keeps_its_place_through_a_reconnect(raisers: list[str]) -> None:
    state = session(*PEERS)
    for pid in raisers:
        state, _ = step(state, pid, "raise")
    queue = state.hands()
    for pid in PEERS:
        state = live(do(state, "fac", c.Drop(pid, f"sid-{pid}")))
    from tests.unit.helpers import join

    for pid in reversed(PEERS):  # come back in another order
        state = live(join(state, "new", resume_id=pid, conn=f"sid2-{pid}"))
    assert state.hands() == queue
