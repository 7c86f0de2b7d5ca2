"""The fast copy of frozen values behaves exactly like ``dataclasses.replace``."""

from __future__ import annotations

import dataclasses

import pytest

from rooms.model import Participant, Role, Via
from tests.unit.helpers import session


@pytest.mark.parametrize(
    "changes",
    [{}, {"seq": 9}, {"floor": "p1", "next_ticket": 4}, {"participants": ()}],
)
def test_room_state_copy_matches_dataclasses_replace(changes: dict[str, object]) -> None:
    state = session("p1", "p2")
    assert state.copy_and_replace(**changes) == dataclasses.replace(state, **changes)  # type: ignore[arg-type]
    assert state.copy_and_replace(**changes) is not state


def test_participant_copy_matches_and_leaves_the_original_alone() -> None:
    p = Participant("p1", "Ann", Role.PEER, Via.WEB, "sid")
    q = p.copy_and_replace(mic=True, hand_ticket=3)
    assert q == dataclasses.replace(p, mic=True, hand_ticket=3)
    assert (p.mic, p.hand_ticket) == (False, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        q.mic = False  # type: ignore[misc]


def test_an_unknown_field_is_an_error() -> None:
    with pytest.raises(TypeError, match="no field 'nope'"):
        session().copy_and_replace(nope=1)
