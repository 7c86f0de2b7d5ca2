"""Unit tests of the benchmark's EIO/SIO codec and percentile helper (no network)."""

from __future__ import annotations

import math

import msgpack
import pytest

from bench import wire
from bench.stats import percentiles
from bench.wire import Packet


def test_json_event_with_ack_round_trips() -> None:
    frame = wire.encode("json", Packet(wire.EVENT, ["chat.send", {"text": "hi"}], 12))
    assert frame == '4212["chat.send",{"text":"hi"}]'
    assert isinstance(frame, str)
    pkt = wire.decode_text(frame.encode())
    assert pkt == Packet(wire.EVENT, ["chat.send", {"text": "hi"}], 12)


def test_json_connect_and_ack_without_id() -> None:
    assert wire.encode("json", Packet(wire.CONNECT, {"token": "t", "name": "n"})) == (
        '40{"token":"t","name":"n"}'
    )
    assert wire.decode_text(b'43[{"ok":true}]') == Packet(wire.ACK, [{"ok": True}], None)
    assert wire.decode_text(b"2") is None  # an Engine.IO ping is not a Socket.IO packet


def test_msgpack_matches_python_socketio_layout() -> None:
    frame = wire.encode("msgpack", Packet(wire.EVENT, ["hand.raise", {}], 3))
    assert isinstance(frame, bytes)
    assert msgpack.unpackb(frame) == {
        "type": 2,
        "nsp": "/",
        "data": ["hand.raise", {}],
        "id": 3,
    }
    assert wire.decode_binary(frame) == Packet(wire.EVENT, ["hand.raise", {}], 3)


@pytest.mark.parametrize("codec", ["json", "msgpack"])
def test_marker_is_found_without_decoding(codec: wire.Wire) -> None:
    text = wire.make_marker(4711, 123_456_789)
    payload = {"seq": 9, "message": {"id": "m1", "text": text}}
    frame = wire.encode(codec, Packet(wire.EVENT, ["chat", payload]))
    raw = frame.encode() if isinstance(frame, str) else frame
    assert wire.find_marker(raw) == (4711, 123_456_789)
    assert wire.find_marker(b'42["hands",{"hands":[]}]') is None


def test_percentiles_nearest_rank_and_empty() -> None:
    samples = list(range(1, 1001))  # microseconds
    p50, p99, p999, pmax = percentiles(samples, (50, 99, 99.9, 100))
    assert (p50, p99, p999, pmax) == (0.5, 0.99, 1.0, 1.0)
    assert all(math.isnan(x) for x in percentiles([], (50, 99)))
