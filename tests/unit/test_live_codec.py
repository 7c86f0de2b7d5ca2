"""The live-state codec: every state and event survives bytes and back, unchanged."""

from __future__ import annotations

from dataclasses import replace

import msgpack
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from rooms.events import (
    Audit,
    Consent,
    Disconnect,
    Emit,
    Event,
    SessionClosed,
    Transcribe,
    Unstore,
    Welcome,
)
from rooms.machine import Rules, due
from rooms.model import Participant, QueueOrder, Role, RoomState, Settings, Via, Waiting
from server.live_codec import (
    TRANSPORT_EVENTS,
    CodecError,
    OpenMessage,
    PartsCache,
    decode_message,
    decode_state,
    encode_header,
    encode_state,
    event_from_list,
    event_to_list,
)
from server.redis_scripts import next_due

text = st.text(max_size=12)
ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=16)
times = st.floats(min_value=0, max_value=4e9, allow_nan=False)
conns = st.none() | st.builds(lambda n, s: f"{n}/{s}", ids, ids)
keys = st.frozensets(text, max_size=3)

settings = st.builds(
    Settings,
    locked=st.booleans(),
    waiting_room=st.booleans(),
    transcripts_allowed=st.booleans(),
    chat_enabled=st.booleans(),
    queue_order=st.sampled_from(QueueOrder),
)
participants = st.builds(
    Participant,
    id=ids,
    name=text,
    role=st.sampled_from(Role),
    via=st.sampled_from(Via),
    conn=conns,
    camera=st.booleans(),
    mic=st.booleans(),
    away=st.booleans(),
    connected=st.booleans(),
    consent=st.booleans(),
    hand_ticket=st.none() | st.integers(1, 2**40),
    turns=st.integers(0, 1000),
    dropped_at=st.none() | times,
    ban_keys=keys,
)
waiting = st.builds(
    Waiting,
    id=ids,
    name=text,
    role=st.sampled_from(Role),
    via=st.sampled_from(Via),
    conn=conns,
    ban_keys=keys,
    dropped_at=st.none() | times,
)
states = st.builds(
    RoomState,
    room_id=ids,
    title=text,
    session_id=ids,
    started_at=times,
    settings=settings,
    seq=st.integers(0, 2**40),
    participants=st.lists(participants, max_size=8).map(tuple),
    waiting=st.lists(waiting, max_size=3).map(tuple),
    floor=st.none() | ids,
    next_ticket=st.integers(1, 2**40),
    banned=keys,
    recent_messages=st.lists(ids, max_size=5).map(tuple),
    empty_since=st.none() | times,
    consented=st.frozensets(ids, max_size=4),
    transcribed=st.lists(ids, max_size=5).map(tuple),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
events: st.SearchStrategy[Event] = st.one_of(
    st.builds(
        Emit,
        name=text,
        payload=st.dictionaries(text, json_values, max_size=4),
        to=st.none() | st.lists(ids, max_size=3).map(tuple),
    ),
    st.builds(Welcome, participant_id=ids),
    st.builds(Disconnect, participant_id=ids, conn=conns),
    st.builds(Transcribe, ids, ids, ids, ids, text, text, times),
    st.builds(Unstore, ids, st.none() | ids, st.none() | ids),
    st.builds(Consent, ids, ids, ids, st.booleans(), times),
    st.builds(Audit, ids, ids, ids, text, st.none() | ids, times),
    st.builds(SessionClosed, ids, ids, text, times),
)


@given(states)
def test_state_round_trip(state: RoomState) -> None:
    assert decode_state(encode_state(state)) == state


@given(states)
def test_equal_states_encode_to_equal_bytes(state: RoomState) -> None:
    again = decode_state(encode_state(state))
    assert encode_state(again) == encode_state(state)


@given(st.lists(states, min_size=1, max_size=6))
def test_a_room_cache_on_each_side_never_gives_stale_participants(seq: list[RoomState]) -> None:
    """Sender and receiver each keep one PartsCache for the room: whatever the order of
    states (participants changed, unchanged, changed back), bytes and states are those
    of the uncached codec."""
    sent, received = PartsCache(), PartsCache()
    for state in seq:
        data = encode_state(state, sent)
        assert data == encode_state(state)
        assert decode_state(data, received) == state
        assert decode_state(data, received) == state  # a hit


def test_unchanged_participants_are_neither_packed_nor_unpacked_again() -> None:
    p = Participant("p1", "Ana", Role.PEER, Via.WEB, "n1/s1")
    one = RoomState("r", "Room", "s", 1.0, participants=(p,))
    two = replace(one, seq=1, recent_messages=("m1",))  # a chat line: same tuple
    sent, received = PartsCache(), PartsCache()
    a = decode_state(encode_state(one, sent), received)
    b = decode_state(encode_state(two, sent), received)
    assert b == two
    assert b.participants is a.participants  # reused, not rebuilt
    moved = replace(two, participants=(replace(p, camera=True),))
    assert decode_state(encode_state(moved, sent), received).participants[0].camera


@given(states, st.sampled_from([1, 2]))
def test_states_of_the_codecs_before_are_still_read(state: RoomState, version: int) -> None:
    """Version 1 wrote participants inline, and neither 1 nor 2 who consented or which
    lines were stored: new nodes read what old nodes left in Redis, erring on the side
    of an erase (everyone present may have consented, every recent line been stored)."""
    v = msgpack.unpackb(encode_state(state), raw=False)[:-2]
    v[0] = version
    if version == 1:
        v[7] = msgpack.unpackb(v[7], raw=False)
    assert decode_state(msgpack.packb(v, use_bin_type=True)) == replace(
        state,
        consented=frozenset(p.id for p in state.participants),
        transcribed=state.recent_messages,
    )


def test_a_state_of_the_wrong_length_for_its_version_is_refused() -> None:
    v = msgpack.unpackb(encode_state(RoomState("r", "Room", "s", 1.0)), raw=False)
    with pytest.raises(CodecError):
        decode_state(msgpack.packb(v[:-2], use_bin_type=True))  # version 3, two short


@given(events)
def test_event_round_trip(ev: Event) -> None:
    packed = msgpack.packb(event_to_list(ev), use_bin_type=True)
    assert event_from_list(msgpack.unpackb(packed, raw=False)) == ev


@given(st.integers(1, 2**40), ids, st.lists(events, max_size=5), st.none() | states)
def test_message_round_trip(
    version: int, origin: str, evs: list[Event], state: RoomState | None
) -> None:
    transport = tuple(e for e in evs if isinstance(e, TRANSPORT_EVENTS))
    data = encode_header(version, origin, transport) + (
        b"" if state is None else encode_state(state)
    )
    m = decode_message(data)
    assert (m.version, m.tag, m.events, m.state) == (version, origin, transport, state)
    opened = OpenMessage(data)
    assert (opened.version, opened.tag) == (version, origin)
    assert opened.decode() == m  # the header read once, the rest after it


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        msgpack.packb([1, "v", "t", []]),
        msgpack.packb([9, 1, "t", []]),
        msgpack.packb({"a": 1}),
        msgpack.packb([2, 1, "t"]),
        msgpack.packb([2, 1, "t", []])[:4],  # cut inside the tag
    ],
)
def test_unreadable_headers_are_refused(data: bytes) -> None:
    with pytest.raises(CodecError):
        OpenMessage(data)


@pytest.mark.parametrize(
    "data",
    [b"", b"\xc1", msgpack.packb([2, "r"]), msgpack.packb([1, "r"]), msgpack.packb({"a": 1})],
)
def test_foreign_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(CodecError):
        decode_state(data)


@given(states, times, st.floats(min_value=0, max_value=3600))
def test_next_due_agrees_with_due(state: RoomState, now: float, grace: float) -> None:
    """The Redis due index (next_due) and the machine's ``due`` never disagree."""
    at = next_due(state, grace)
    assume(at is None or abs(now - at) > 1e-3)  # float rounding at the very edge
    assert due(state, now, Rules(grace_secs=grace)) == (at is not None and now >= at)


def test_a_waiting_entry_of_the_version_before_reads_as_connected() -> None:
    """Nodes of the version before wrote six fields for a waiting entry (no dropped_at);
    a state they wrote still reads, its waiting people connected."""
    w = Waiting("w1", "Wen", Role.PEER, Via.WEB, "n1:sid", frozenset({"name:wen"}))
    state = RoomState(room_id="r", title="t", session_id="s", started_at=1.0, waiting=(w,))
    fields = msgpack.unpackb(encode_state(state), raw=False, strict_map_key=False)
    waiting_index = [i for i, f in enumerate(fields) if f == [[*_waiting_fields(w)]]]
    assert len(waiting_index) == 1
    fields[waiting_index[0]] = [_waiting_fields(w)[:6]]
    old = msgpack.packb(fields, use_bin_type=True)
    assert decode_state(old).waiting == (w,)


def _waiting_fields(w: Waiting) -> list[object]:
    return [w.id, w.name, w.role.value, w.via.value, w.conn, sorted(w.ban_keys), w.dropped_at]
