"""Loss is counted per recipient, on made-up deliveries (no network).

A fake server stands in for the websocket: a participant's ``send_chat`` hands the
chat frame straight to the frame callback of each member of its room, and each test
changes what that server does wrong (a duplicate, a miss, a delivery to the wrong room,
a late or stray frame, an order other than the send order).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import cast

import pytest
from picows import WSFrame, WSMsgType

from bench import workloads
from bench.loadgen import LoadGen, Participant, Room
from bench.workloads import FanoutPoint, count_deliveries, count_late, fanout_step

ROOM = 3


class _Frame:
    """What the frame callback reads of a picows frame."""

    msg_type = WSMsgType.TEXT

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def get_payload_as_bytes(self) -> bytes:
        return self.payload


def deliver(p: Participant, msgno: int, intended_us: int = 0) -> None:
    """One chat frame carrying message ``msgno``, as the server would send it."""
    text = f"~B~{msgno}~{intended_us}~"
    payload = f'42["chat",{{"seq":1,"message":{{"text":"{text}"}}}}]'.encode()
    p.on_ws_frame(None, cast(WSFrame, _Frame(payload)))  # type: ignore[arg-type]


# What the fake server does with message m (intended at t) sent to a room's members:
# (m, t, members) -> whom it delivers m to, at once.
Route = Callable[[int, int, list[Participant]], list[Participant]]


@pytest.fixture
async def gen() -> AsyncIterator[LoadGen]:
    gen = LoadGen("json")
    for i in range(2):
        room = Room(i, f"token{i}", ["ws://127.0.0.1:9/"])
        room.members = [Participant(gen, room, f"p{i}-{j}") for j in range(ROOM)]
        gen.participants += room.members
    yield gen
    gen.close_all()  # lets go of what settle() froze


def _rooms(gen: LoadGen) -> list[Room]:
    return [gen.participants[0].room, gen.participants[ROOM].room]


def _serve(monkeypatch: pytest.MonkeyPatch, route: Route) -> None:
    """Make every ``send_chat`` deliver at once to whomever ``route`` picks."""

    def send_chat(self: Participant, msgno: int, intended_us: int) -> None:
        for p in route(msgno, intended_us, self.room.members):
            deliver(p, msgno, intended_us)

    monkeypatch.setattr(Participant, "send_chat", send_chat)


async def _step(gen: LoadGen) -> FanoutPoint:
    """A step of 20 messages (10 per room, 60 deliveries expected), then the quiet wait's
    count of what came after it."""
    pt = await fanout_step(gen, _rooms(gen), "test", 600.0, 0.1, 0.2, [])
    count_late(gen, pt)
    return pt


async def test_a_clean_step_passes_even_out_of_send_order(
    gen: LoadGen, monkeypatch: pytest.MonkeyPatch
) -> None:
    held: dict[int, tuple[int, int]] = {}  # room -> a message held until its next one

    def swap_pairs(m: int, t: int, members: list[Participant]) -> list[Participant]:
        room = members[0].room.index
        if room not in held:
            held[room] = (m, t)
            return []
        for p in members:
            deliver(p, m, t)
            deliver(p, *held[room])  # the earlier message after the later one
        del held[room]
        return []

    _serve(monkeypatch, swap_pairs)
    pt = await _step(gen)
    assert (pt.expected, pt.delivered, pt.lost) == (60, 60, 0)
    assert (pt.duplicates, pt.misrouted, pt.stray, pt.late) == (0, 0, 0, 0)
    assert pt.passed, pt


async def test_a_duplicate_does_not_hide_a_miss(
    gen: LoadGen, monkeypatch: pytest.MonkeyPatch
) -> None:
    def dup_and_miss(m: int, t: int, members: list[Participant]) -> list[Participant]:
        if m % 20 == 4:  # one message of room 0: its first member twice, its second never
            return [members[0], members[0], members[2]]
        return members

    _serve(monkeypatch, dup_and_miss)
    pt = await _step(gen)
    # Counted per message, that message reached 3 = the room's size: nothing lost.
    assert (pt.lost, pt.duplicates, pt.delivered) == (1, 1, 59)
    assert len(gen.latencies) == 59  # the repeat is no delivery and has no latency
    assert not pt.passed


async def test_duplicates_alone_fail_the_step(
    gen: LoadGen, monkeypatch: pytest.MonkeyPatch
) -> None:
    _serve(monkeypatch, lambda m, t, members: members + members[:1])
    pt = await _step(gen)
    assert (pt.lost, pt.duplicates, pt.delivered) == (0, 20, 60)
    assert not pt.passed


async def test_a_delivery_to_another_room_is_misrouted(
    gen: LoadGen, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = gen.participants[ROOM]  # a member of room 1
    _serve(monkeypatch, lambda m, t, members: [*members, other] if m % 20 == 2 else members)
    pt = await _step(gen)
    assert (pt.lost, pt.duplicates, pt.misrouted, pt.delivered) == (0, 0, 1, 60)
    assert not pt.passed


async def test_stray_and_late_frames_are_counted_where_they_arrive(
    gen: LoadGen, monkeypatch: pytest.MonkeyPatch
) -> None:
    late: list[int] = []

    def hold_one(m: int, t: int, members: list[Participant]) -> list[Participant]:
        if not late:
            late.append(m)
            return members[1:]  # its first member gets it after the step
        return members

    _serve(monkeypatch, hold_one)
    first = await fanout_step(gen, _rooms(gen), "test", 600.0, 0.1, 0.05, [])
    assert first.lost == 1 and not first.passed
    deliver(gen.participants[0], late[0])  # during the quiet wait: late
    count_late(gen, first)
    assert (first.late, first.stray, first.duplicates) == (1, 0, 0)
    second = await fanout_step(gen, _rooms(gen), "test", 600.0, 0.1, 0.2, [])
    deliver(gen.participants[1], late[0])  # the first step's, during the second: stray
    count_late(gen, second)
    assert (second.lost, second.late, second.stray) == (0, 0, 1)
    assert second.passed


async def test_count_deliveries_member_by_member(gen: LoadGen) -> None:
    rooms = _rooms(gen)
    gen.reset_chat(100, 4)  # 100, 102 to room 0; 101, 103 to room 1
    a, b, c, d, e, f = gen.participants
    a.seen |= {100, 102}
    b.seen |= {100}  # missed 102
    c.seen |= {100, 102, 101}  # 101 is room 1's
    d.seen |= {101, 103}
    e.seen |= {101, 103}
    f.seen |= {103}  # missed 101
    assert count_deliveries(gen, rooms, 100, 4) == (10, 2, 1)
    outsider = Participant(gen, Room(9, "t", []), "x")  # in no room of the step
    gen.participants.append(outsider)
    outsider.seen.add(100)
    assert count_deliveries(gen, rooms, 100, 4) == (10, 2, 2)


async def test_the_search_counts_late_frames_after_its_quiet_wait(
    gen: LoadGen, monkeypatch: pytest.MonkeyPatch
) -> None:
    """_measured folds in what arrived during the quiet wait, a late duplicate too."""
    _serve(monkeypatch, lambda m, t, members: members)
    victim = gen.participants[0]

    async def quiet_with_a_late_repeat(g: LoadGen, quiet: float, limit: float) -> None:
        deliver(victim, next(iter(victim.seen)))
        await asyncio.sleep(0)

    monkeypatch.setattr(workloads, "_wait_quiet", quiet_with_a_late_repeat)
    points: list[FanoutPoint] = []
    pt = await workloads._measured(
        gen, _rooms(gen), [], "fraction", 600.0, (0.1, 0.2, 0.0), points, 0.5
    )
    assert points[0].duplicates == 1 and not points[0].passed
    assert pt is points[-1]  # more tries only if other processes were busy meanwhile
