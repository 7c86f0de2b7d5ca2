"""Hand-made Socket.IO packets over a raw websocket: what no client library sends."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
import msgpack
import pytest

from server.settings import MAX_MESSAGE_BYTES
from tests.support import Client, LiveServer

WAIT = 5


async def next_packet(ws: aiohttp.ClientWebSocketResponse, head: str, event: str = "") -> Any:
    """The JSON after ``head`` in the next text frame that starts with it (and, given
    ``event``, is that event), answering Engine.IO pings meanwhile."""
    while True:
        msg = await ws.receive(timeout=WAIT)
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        text: str = msg.data
        if text == "2":  # Engine.IO ping
            await ws.send_str("3")
        elif text.startswith(head) and text[len(head) :].startswith(f'["{event}"' if event else ""):
            return json.loads(text[len(head) :] or "null")


def ws_url(server: LiveServer) -> str:
    return server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"


async def raw_join(ws: aiohttp.ClientWebSocketResponse, token: str, name: str) -> Any:
    """The JSON wire's handshake by hand: Engine.IO open, Socket.IO connect; the welcome."""
    await next_packet(ws, "0")
    await ws.send_str("40" + json.dumps({"token": token, "name": name}))
    await next_packet(ws, "40")
    _, welcome = await next_packet(ws, "42", "welcome")
    return welcome


async def test_unreadable_packets_cost_nothing_but_themselves(
    live_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="server")
    room = await live_server.create_room()
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(live_server)) as ws:
        welcome = await raw_join(ws, room["invite_token"], "Raw")
        assert welcome["you"]["name"] == "Raw"
        for junk in (
            '421["chat.send",{"text":NaN}]',  # not JSON (a JavaScript value)
            '422["chat.send",{"text":"cut off"',  # truncated
            '423["chat.send",{"text":"x"}]]]',  # trailing garbage
            "42" + "9" * 120 + '["chat.send",{}]',  # an ack id too long
            "4\xff\xfe",  # not a packet at all
        ):
            await ws.send_str(junk)
        # The connection is still there, and the next good packet is answered in order.
        text = 'über ✓ 🙂 \u2028 "quoted"'
        await ws.send_str("424" + json.dumps(["chat.send", {"text": text}]))
        # (The room's broadcast goes out before the sender's ack.)
        _, line = await next_packet(ws, "42", "chat")
        assert line["message"]["text"] == text
        (ack,) = await next_packet(ws, "434")
        assert ack == {"ok": True, "id": line["message"]["id"]}
    dropped = [r for r in caplog.records if "unreadable packet dropped" in r.getMessage()]
    assert len(dropped) == 5
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "cut off" not in caplog.text and "NaN" not in caplog.text  # no content logged


async def test_a_stream_of_unreadable_packets_is_logged_briefly_then_closed(
    live_server: LiveServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nobody needs to join to send junk: a log line for each would let anyone fill the
    disk (or trip journald's rate limit, which then drops the warnings that matter)."""
    from server import fanout

    monkeypatch.setattr(fanout, "UNREADABLE_LOGGED", 3)
    monkeypatch.setattr(fanout, "MAX_UNREADABLE_PACKETS", 8)
    caplog.set_level(logging.INFO, logger="server")
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(live_server)) as ws:
        await next_packet(ws, "0")
        for _ in range(20):
            try:
                await ws.send_str("4\xff\xfe")  # an Engine.IO message that is no packet
            except ConnectionResetError:
                break
        msg = await ws.receive(timeout=5)
        while msg.type is aiohttp.WSMsgType.TEXT:  # anything the server sent before
            msg = await ws.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    dropped = [r for r in caplog.records if "unreadable packet dropped" in r.getMessage()]
    assert len(dropped) == 3
    assert "unlogged" in caplog.text and "8 unreadable packets: closing" in caplog.text


async def test_unreadable_msgpack_packets_too(
    server_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="server")
    server: LiveServer = await server_factory(wire="msgpack")
    room = await server.create_room()

    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(server)) as ws:
        await next_packet(ws, "0")
        auth = {"token": room["invite_token"], "name": "Raw"}
        await ws.send_bytes(msgpack.packb({"type": 0, "data": auth, "nsp": "/"}))
        await next_msgpack(ws, 0)
        for junk in (b"\xc1", msgpack.packb([1, 2]), msgpack.packb({"type": 2}), b"\x92\x01"):
            await ws.send_bytes(junk)
        event = {"type": 2, "data": ["chat.send", {"text": "after junk"}], "nsp": "/", "id": 7}
        await ws.send_bytes(msgpack.packb(event))
        ack = await next_msgpack(ws, 3)
        assert ack["id"] == 7 and ack["data"][0]["ok"] is True
    dropped = [r for r in caplog.records if "unreadable packet dropped" in r.getMessage()]
    assert len(dropped) == 4
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_transport_message_over_1_mb_closes_only_that_connection(
    live_server: LiveServer, clients: Callable[..., Client]
) -> None:
    room = await live_server.create_room()
    fac = clients()
    await fac.join(room["facilitator_token"], "Ann")
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(live_server)) as ws:
        welcome = await raw_join(ws, room["invite_token"], "Big")
        await ws.send_str('42["chat.send",{"text":"' + "x" * MAX_MESSAGE_BYTES + '"}]')
        while (msg := await ws.receive(timeout=WAIT)).type is aiohttp.WSMsgType.TEXT:
            pass  # what was already on its way
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    big = welcome["you"]["id"]
    await fac.wait_for(
        "participant.updated",
        lambda d: d["participant"]["id"] == big and d["participant"]["connected"] is False,
    )
    assert not fac.received("chat")
    await fac.ok("chat.send", {"text": "the room goes on"})


async def test_a_frame_that_is_not_engine_io_closes_that_connection_quietly(
    live_server: LiveServer, clients: Callable[..., Client], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="server")
    room = await live_server.create_room()
    fac = clients()
    await fac.join(room["facilitator_token"], "Ann")
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(live_server)) as ws:
        await raw_join(ws, room["invite_token"], "Odd")
        await ws.send_str("x")  # no Engine.IO packet type
        while (msg := await ws.receive(timeout=WAIT)).type is aiohttp.WSMsgType.TEXT:
            pass
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert "not an Engine.IO packet (ValueError): closing" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    await fac.ok("chat.send", {"text": "the room goes on"})


async def test_a_binary_event_on_the_json_wire_is_refused_with_a_code(
    live_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    """peerroom's events carry no bytes. python-socketio gathered the attachments a
    binary event announced, every later message of the connection, with no bound on
    their count (451000000000-...) or size: memory for anyone with an invite link, and
    the connection's own events never handled again. Now refused at once, with an ack."""
    caplog.set_level(logging.INFO, logger="server")
    room = await live_server.create_room()
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(live_server)) as ws:
        await raw_join(ws, room["invite_token"], "Raw")
        await ws.send_str('451000000000-5["chat.send",{"text":{"_placeholder":true,"num":0}}]')
        (ack,) = await next_packet(ws, "435")
        assert ack["ok"] is False and ack["error"]["code"] == "bad_request"
        for _ in range(3):  # attachments no packet waits for: each dropped on its own
            await ws.send_bytes(b"\x00\x01binary" * 1000)
        await ws.send_str('426["chat.send",{"text":"after"}]')
        (ok,) = await next_packet(ws, "436")
        assert ok["ok"] is True
    dropped = [r for r in caplog.records if "unreadable packet dropped" in r.getMessage()]
    assert len(dropped) == 4
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_binary_event_on_the_msgpack_wire_is_refused_too(server_factory: Any) -> None:
    """Before, the packet was parked waiting for attachments that never come, and every
    later message of the connection raised: no event of it was handled again."""
    server: LiveServer = await server_factory(wire="msgpack")
    room = await server.create_room()
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(server)) as ws:
        await next_packet(ws, "0")
        auth = {"token": room["invite_token"], "name": "Raw"}
        await ws.send_bytes(msgpack.packb({"type": 0, "data": auth, "nsp": "/"}))
        await next_msgpack(ws, 0)
        binary = {"type": 5, "data": ["chat.send", {"text": "x"}], "nsp": "/", "id": 3}
        await ws.send_bytes(msgpack.packb(binary))
        ack = await next_msgpack(ws, 3)
        assert ack["id"] == 3 and ack["data"][0]["error"]["code"] == "bad_request"
        event = {"type": 2, "data": ["chat.send", {"text": "after"}], "nsp": "/", "id": 4}
        await ws.send_bytes(msgpack.packb(event))
        ack = await next_msgpack(ws, 3)
        assert ack["id"] == 4 and ack["data"][0]["ok"] is True


async def next_msgpack(ws: aiohttp.ClientWebSocketResponse, kind: int) -> Any:
    """The next msgpack Socket.IO packet of type ``kind``, answering pings meanwhile."""
    while True:
        msg = await ws.receive(timeout=WAIT)
        if msg.type is aiohttp.WSMsgType.TEXT:
            if msg.data == "2":
                await ws.send_str("3")
            continue
        assert msg.type is aiohttp.WSMsgType.BINARY, msg
        packet = msgpack.unpackb(msg.data)
        if packet["type"] == kind:
            return packet


async def test_frames_that_are_no_socket_io_packet_are_dropped_without_a_traceback(
    server_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Each of these once cost an ERROR with a traceback in the log (anyone could fill
    it), and the last two an event never acked."""
    caplog.set_level(logging.INFO, logger="server")
    for wire, junk in (
        (
            "json",
            # Engine.IO reads the JSON after "4" and hands on a list, null, a dict; an
            # empty message; a text frame sent as binary; a type that is a list.
            ["4", "4[]", "4null", "4{}", "4[1]", '4{"a":1}'],
        ),
        (
            "msgpack",
            [
                msgpack.packb({"type": [1], "nsp": "/"}),
                msgpack.packb({"type": 2, "nsp": ["/"], "data": ["chat.send", {}]}),
                msgpack.packb({"type": 2, "nsp": "/", "data": ["chat.send", {}], "id": "7"}),
                msgpack.packb({"type": 99, "nsp": "/"}),
            ],
        ),
    ):
        server: LiveServer = await server_factory(wire=wire)
        room = await server.create_room()
        async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(server)) as ws:
            if wire == "json":
                await raw_join(ws, room["invite_token"], "Raw")
                await ws.send_bytes(b'2["a"]')
                for frame in junk:
                    await ws.send_str(frame)
                # Reserved names sent as events: refused with a code, not a TypeError.
                await ws.send_str('421["connect"]')
                await ws.send_str('422["*"]')
                for n in (1, 2):
                    (ack,) = await next_packet(ws, f"43{n}")
                    assert ack["error"]["code"] == "bad_request", ack
                await ws.send_str('423["chat.send",{"text":"after"}]')
                (ok,) = await next_packet(ws, "433")
                assert ok["ok"] is True
            else:
                await next_packet(ws, "0")
                auth = {"token": room["invite_token"], "name": "Raw"}
                await ws.send_bytes(msgpack.packb({"type": 0, "data": auth, "nsp": "/"}))
                await next_msgpack(ws, 0)
                for frame in junk:
                    await ws.send_bytes(frame)  # type: ignore[arg-type]
                event = {"type": 2, "data": ["chat.send", {"text": "after"}], "nsp": "/", "id": 8}
                await ws.send_bytes(msgpack.packb(event))
                ack = await next_msgpack(ws, 3)
                assert ack["id"] == 8 and ack["data"][0]["ok"] is True
    dropped = [r for r in caplog.records if "unreadable packet dropped" in r.getMessage()]
    assert len(dropped) == 7 + 4
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_lone_surrogate_gets_a_code_not_silence(
    live_server: LiveServer, clients: Callable[..., Client]
) -> None:
    """A browser's JSON.stringify sends an emoji cut in half as a lone "\\ud83d". orjson
    refuses it, and the packet was dropped unread: a chat line got no ack (the page said
    "no answer"), a name with one no refusal (the join hung)."""
    room = await live_server.create_room()
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(live_server)) as ws:
        await next_packet(ws, "0")
        token = json.dumps(room["invite_token"])
        await ws.send_str('40{"token":' + token + ',"name":"Cut \\ud83d"}')
        refusal = await next_packet(ws, "44")
        assert refusal["data"]["code"] == "name_invalid", refusal
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(live_server)) as ws:
        await raw_join(ws, room["invite_token"], "Raw")
        await ws.send_str('421["chat.send",{"text":"half an emoji \\ud83d"}]')
        (ack,) = await next_packet(ws, "431")
        assert ack["ok"] is False and ack["error"]["code"] == "bad_request"
        await ws.send_str('422["chat.send",{"text":NaN}]')  # still no JSON
        await ws.send_str('423["chat.send",{"text":"\\ud83d\\ude42 whole"}]')
        (ok,) = await next_packet(ws, "433")
        assert ok["ok"] is True


async def test_an_engine_io_close_from_the_client_ends_its_connection(
    live_server: LiveServer, clients: Callable[..., Client]
) -> None:
    """Engine.IO's CLOSE packet ("1") closes the socket; the direct reader went on
    waiting for frames from a connection no ping would ever check again."""
    room = await live_server.create_room()
    ann = clients()
    await ann.join(room["facilitator_token"], "Ann")
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(live_server)) as ws:
        raw_id = (await raw_join(ws, room["invite_token"], "Raw"))["you"]["id"]
        await ws.send_str("1")
        while (msg := await ws.receive(timeout=WAIT)).type is aiohttp.WSMsgType.TEXT:
            pass
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    await ann.wait_for(
        "participant.updated",
        lambda d: d["participant"]["id"] == raw_id and d["participant"]["connected"] is False,
    )


async def test_connect_and_disconnect_sent_as_events_change_nothing(
    live_server: LiveServer, clients: Callable[..., Client]
) -> None:
    """python-socketio runs the connect and disconnect handlers for events of those names
    from a connected client too. Before, 42["disconnect"] forgot the sender while their
    socket stayed in the room's broadcasts (a removed person could go on reading), and
    42["connect", {}, auth] added a second participant on the same socket."""
    room = await live_server.create_room()
    ann = clients()
    await ann.join(room["facilitator_token"], "Ann")
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(live_server)) as ws:
        welcome = await raw_join(ws, room["invite_token"], "Raw")
        raw_id = welcome["you"]["id"]
        await ann.wait_for("participant.joined", lambda d: d["participant"]["id"] == raw_id)
        mark = ann.mark()
        auth = {"token": room["invite_token"], "name": "Second"}
        await ws.send_str('421["disconnect"]')
        await ws.send_str('422["disconnect","client disconnect"]')
        await ws.send_str("423" + json.dumps(["connect", {}, auth]))
        for n in (1, 2, 3):
            (ack,) = await next_packet(ws, f"43{n}")
            assert ack["ok"] is False and ack["error"]["code"] == "bad_request"
        # Still one participant, still connected: a line goes through and is heard.
        await ws.send_str('424["chat.send",{"text":"still me"}]')
        (ok,) = await next_packet(ws, "434")
        assert ok["ok"] is True
        line = await ann.wait_for("chat", lambda d: d["message"]["text"] == "still me", after=mark)
        assert line["message"]["from"] == raw_id
        assert ann.received("participant.joined", mark) == []
        assert ann.received("participant.updated", mark) == []
        # Removed: out of the namespace (41), and nothing more of the room reaches it.
        await ann.ok("mod.remove", {"id": raw_id})
        frames: list[str] = []
        with contextlib.suppress(TimeoutError):
            while "41" not in frames:
                msg = await ws.receive(timeout=WAIT)
                assert msg.type is aiohttp.WSMsgType.TEXT, (msg, frames)
                frames.append(msg.data)
                if msg.data == "2":
                    await ws.send_str("3")
        assert "41" in frames, (frames, ann.events[mark:])
        await ann.ok("chat.send", {"text": "after the removal"})
        await ann.wait_for("chat", lambda d: d["message"]["text"] == "after the removal")
        heard = []
        with contextlib.suppress(TimeoutError):
            while True:
                msg = await ws.receive(timeout=0.5)
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    break
                heard.append(msg.data)
        assert [t for t in heard if t.startswith("42")] == []


async def test_an_event_whose_name_is_not_text_is_dropped_quietly(
    live_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="server")
    room = await live_server.create_room()
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(live_server)) as ws:
        await raw_join(ws, room["invite_token"], "Raw")
        for junk in ("421[123,{}]", '422[["a"],{}]', "423[]", '424{"a":1}'):
            await ws.send_str(junk)
        await ws.send_str('425["chat.send",{"text":"after"}]')
        (ok,) = await next_packet(ws, "435")
        assert ok["ok"] is True
    dropped = [r for r in caplog.records if "unreadable packet dropped" in r.getMessage()]
    assert len(dropped) == 4
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
