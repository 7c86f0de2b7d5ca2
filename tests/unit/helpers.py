"""Build sessions for unit tests of the pure machine."""

from __future__ import annotations

from typing import Any

from rooms import commands as c
from rooms.events import Emit, Event
from rooms.machine import Outcome, Rules, apply
from rooms.model import Participant, Role, RoomState, Settings, Via

RULES = Rules(grace_secs=60, max_participants=5)
INFO = c.RoomInfo("room1", "Tuesday circle", Settings())


def join(
    state: RoomState | None,
    pid: str,
    name: str | None = None,
    role: Role = Role.PEER,
    *,
    now: float = 0.0,
    via: Via = Via.WEB,
    info: c.RoomInfo = INFO,
    resume_id: str | None = None,
    resume_only: bool = False,
    conn: str | None = None,
    ban_keys: frozenset[str] | None = None,
    rules: Rules = RULES,
) -> Outcome:
    name = name or pid.upper()
    return apply(
        state,
        None,
        c.Join(
            room=info,
            new_session_id="s1",
            participant_id=pid,
            name=name,
            role=role,
            via=via,
            conn=conn or f"sid-{pid}",
            ban_keys=ban_keys if ban_keys is not None else frozenset({f"name:{name.casefold()}"}),
            resume_id=resume_id,
            resume_only=resume_only,
        ),
        now=now,
        rules=rules,
    )


def session(*peers: str, facilitator: str = "fac", settings: Settings | None = None) -> RoomState:
    """A live session with a facilitator and the given peers, all connected."""
    info = c.RoomInfo("room1", "Tuesday circle", settings or Settings())
    state = join(None, facilitator, role=Role.FACILITATOR, info=info).state
    for pid in peers:
        state = join(state, pid, info=info).state
    assert state is not None
    return state


def do(state: RoomState | None, actor: str, command: c.Command, now: float = 1.0) -> Outcome:
    assert state is not None, "the session ended earlier in this test"
    return apply(state, actor, command, now=now, rules=RULES)


def person(out: Outcome, pid: str) -> Participant:
    """A participant who must still be in the session after ``out``."""
    p = live(out).get(pid)
    assert p is not None
    return p


def live(out: Outcome) -> RoomState:
    """The state after a transition that must leave the session running."""
    assert out.state is not None
    return out.state


def emits(events: tuple[Event, ...], name: str | None = None) -> list[Emit]:
    return [e for e in events if isinstance(e, Emit) and (name is None or e.name == name)]


def payload(events: tuple[Event, ...], name: str) -> dict[str, Any]:
    found = emits(events, name)
    assert len(found) == 1, f"expected one {name}, got {[e.name for e in emits(events)]}"
    return found[0].payload
