"""The JSON packet class: text always, orjson's encoding, bytes refused loudly."""

from __future__ import annotations

import pytest
from socketio import packet

from server.fanout import JsonPacket


def test_json_packets_are_text_and_bytes_in_a_payload_are_refused() -> None:
    p = JsonPacket(packet.EVENT, data=["chat", {"text": "ü", "n": [1, {"a": None}]}])
    assert p.encode() == '2["chat",{"text":"ü","n":[1,{"a":null}]}]'
    with pytest.raises(TypeError):
        JsonPacket(packet.EVENT, data=["chat", {"blob": b"\x00"}]).encode()
