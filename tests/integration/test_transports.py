"""Both ways onto a connection: straight to websocket (taken over by server.eio_direct)
and long-polling (a browser starts there; the library's own path)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from server.app import SIO
from server.eio_direct import direct_connection
from tests.support import Client, LiveServer


@pytest.mark.parametrize("wire", ["json", "msgpack"])
async def test_polling_and_websocket_clients_share_a_room(
    server_factory: Any, clients: Callable[..., Client], wire: str
) -> None:
    live_server: LiveServer = await server_factory(wire=wire)
    room = await live_server.create_room()
    fac, polled, direct = (clients(live_server.url, wire=wire) for _ in range(3))
    await fac.join(room["facilitator_token"], "Ann")
    await polled.join(room["invite_token"], "Bo", transports=("polling",))
    direct_id = (await direct.join(room["invite_token"], "Cy"))["you"]["id"]
    eio = live_server.app[SIO].eio
    kinds = {direct_connection(s) is not None for s in eio.sockets.values()}
    assert kinds == {True, False}  # one connection on the library's path, two direct

    # Every one hears every line, in order (Client checks the seq has no gaps).
    for i in range(5):
        await polled.ok("chat.send", {"text": f"from polling {i}"})
        await direct.ok("chat.send", {"text": f"from websocket {i}"})
    for c in (fac, polled, direct):
        await c.wait_for("chat", lambda d: d["message"]["text"] == "from websocket 4")
        texts = [d["message"]["text"] for e, d in c.events if e == "chat"]
        assert texts == [f"from {w} {i}" for i in range(5) for w in ("polling", "websocket")]

    # A direct connection's close is seen like any other.
    await direct.sio.disconnect()
    cy = direct_id
    await fac.wait_for(
        "participant.updated",
        lambda d: d["participant"]["id"] == cy and d["participant"]["connected"] is False,
    )


async def test_clients_that_stop_answering_pings_are_closed_on_both_transports(
    live_server: LiveServer,
) -> None:
    """python-engineio's own service task is off (eio_direct.monitor does its work at a
    fraction of the cost): a silent client is still closed, websocket or long-polling."""
    import asyncio
    import json
    import time

    import aiohttp

    eio = live_server.app[SIO].eio
    assert eio.start_service_task is False
    eio.ping_interval, eio.ping_timeout = 0.3, 0.3
    room = await live_server.create_room()
    base = live_server.url + "/socket.io/?EIO=4"
    async with aiohttp.ClientSession() as http:
        # Long-polling: open, connect to Socket.IO, then never poll again.
        async with http.get(base + "&transport=polling") as r:
            opened = json.loads((await r.text())[1:])
        sid = opened["sid"]
        url = f"{base}&transport=polling&sid={sid}"
        async with http.post(url, data="40" + json.dumps({"token": room["invite_token"]})) as r:
            assert r.status == 200
        # Websocket: the Engine.IO open arrives; the ping that follows is never answered.
        ws = await http.ws_connect(base.replace("http", "ws") + "&transport=websocket")
        ws_sid = json.loads((await ws.receive(timeout=5)).data[1:])["sid"]
        assert {sid, ws_sid} <= set(eio.sockets)
        start = time.monotonic()
        while {sid, ws_sid} & set(eio.sockets) and time.monotonic() - start < 10:
            await asyncio.sleep(0.1)
        assert not {sid, ws_sid} & set(eio.sockets)
        msg = await ws.receive(timeout=5)
        while msg.type is aiohttp.WSMsgType.TEXT:  # the ping, then Engine.IO's close
            msg = await ws.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        await ws.close()


async def test_answered_pings_go_on_from_the_sweep_with_no_task_per_connection(
    live_server: LiveServer,
) -> None:
    """python-engineio pings from a task per connection that sleeps the interval; here
    the sweep sends them (eio_direct.ping_later). A client that answers keeps getting
    pings, each within the interval, on both transports, and no ping task is left."""
    import asyncio
    import json
    import time

    import aiohttp
    from engineio.async_socket import AsyncSocket

    from server.eio_direct import MONITOR_SECS

    eio = live_server.app[SIO].eio
    eio.ping_interval, eio.ping_timeout = 0.5, 5
    base = live_server.url + "/socket.io/?EIO=4"
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(base.replace("http", "ws") + "&transport=websocket")
        ws_sid = json.loads((await ws.receive(timeout=5)).data[1:])["sid"]
        async with http.get(base + "&transport=polling") as r:
            poll_sid = json.loads((await r.text())[1:])["sid"]

        async def polled_ping() -> None:
            async with http.get(f"{base}&transport=polling&sid={poll_sid}") as r:
                assert await r.text() == "2"  # a long-poll returns when the ping is queued
            async with http.post(f"{base}&transport=polling&sid={poll_sid}", data="3") as r:
                assert r.status == 200

        pinged_at: list[float] = []
        start = time.monotonic()
        for _ in range(3):
            msg = await ws.receive(timeout=5)
            assert msg.data == "2"
            pinged_at.append(time.monotonic())
            await asyncio.wait_for(polled_ping(), 5)
            await ws.send_str("3")
        # Each within the interval after the last pong, give or take a sweep.
        gaps = [b - a for a, b in zip([start, *pinged_at], pinged_at, strict=False)]
        assert all(gap <= eio.ping_interval + MONITOR_SECS + 0.5 for gap in gaps), gaps
        await asyncio.sleep(0.1)
        assert {ws_sid, poll_sid} <= set(eio.sockets)
        ping_tasks = [
            t
            for t in asyncio.all_tasks()
            if getattr(t.get_coro(), "__qualname__", "") == AsyncSocket._send_ping.__qualname__
        ]
        assert ping_tasks == []
        await ws.close()


async def test_a_broadcast_that_finds_a_polling_member_gone_does_not_stall_the_room(
    live_server: LiveServer, clients: Callable[..., Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    """python-engineio checks a long-polling member's pings on every send to it and, if
    its client went silent, closes it there, running the disconnect handler inline: in
    the middle of the broadcast, while the room is held. Its Drop must not wait for the
    room (it waited for ever, and every later event of the room with it)."""
    import asyncio
    import time

    from server import eio_direct

    async def no_sweep(eio_server: Any) -> int:  # so that the broadcast finds it first
        return 0

    monkeypatch.setattr(eio_direct, "sweep", no_sweep)
    room = await live_server.create_room()
    ann, bo = clients(), clients()
    await ann.join(room["facilitator_token"], "Ann")
    bo_id = (await bo.join(room["invite_token"], "Bo", transports=("polling",)))["you"]["id"]
    eio = live_server.app[SIO].eio
    (polled,) = [s for s in eio.sockets.values() if direct_connection(s) is None]
    polled.last_ping = time.time() - eio.ping_timeout - 1  # its client has gone silent

    ack = await asyncio.wait_for(ann.call("chat.send", {"text": "anyone there?"}), 5)
    assert ack["ok"] is True, ack
    await ann.wait_for(
        "participant.updated",
        lambda d: d["participant"]["id"] == bo_id and d["participant"]["connected"] is False,
    )
    await ann.ok("hand.raise")  # and the room goes on
    # Bo's client never heard (the library's CLOSE is lost when it closes a silent
    # socket from a send): let it go without waiting for its long-poll to time out.
    await bo.sio.eio.disconnect(abort=True)


async def test_a_polling_client_that_never_fetches_is_cut_off(
    server_factory: Any, clients: Callable[..., Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long-polling client that answers nothing and never asks for its messages: the
    room's every line was queued for it without bound (a direct websocket is cut off
    past MAX_UNREAD_BYTES; this is the library's path)."""
    import json

    import aiohttp

    from server import fanout

    monkeypatch.setattr(fanout, "MAX_QUEUED_PACKETS", 20)
    live_server: LiveServer = await server_factory(chat_burst=100)
    room = await live_server.create_room()
    ann = clients(live_server.url)
    await ann.join(room["facilitator_token"], "Ann")
    base = live_server.url + "/socket.io/?EIO=4&transport=polling"
    async with aiohttp.ClientSession() as http:
        async with http.get(base) as r:
            sid = json.loads((await r.text())[1:])["sid"]
        auth = {"token": room["invite_token"], "name": "Never"}
        async with http.post(f"{base}&sid={sid}", data="40" + json.dumps(auth)) as r:
            assert r.status == 200
        joined = await ann.wait_for("participant.joined")
        never = joined["participant"]["id"]
        socket = live_server.app[SIO].eio.sockets[sid]
        for i in range(30):
            await ann.ok("chat.send", {"text": f"line {i}"})
        await ann.wait_for(
            "participant.updated",
            lambda d: d["participant"]["id"] == never and d["participant"]["connected"] is False,
        )
        assert socket.closed
        assert socket.queue.qsize() <= 20


async def test_a_polling_client_that_never_fetches_its_refusals_is_cut_off(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without joining anything: every packet asking for a namespace that is not there
    earns a refusal, queued for a client that never fetches."""
    import json

    import aiohttp

    from server import fanout

    monkeypatch.setattr(fanout, "MAX_QUEUED_PACKETS", 20)
    base = live_server.url + "/socket.io/?EIO=4&transport=polling"
    async with aiohttp.ClientSession() as http:
        async with http.get(base) as r:
            sid = json.loads((await r.text())[1:])["sid"]
        socket = live_server.app[SIO].eio.sockets[sid]
        asks = "\x1e".join(["40/nowhere,"] * 10)  # ten packets in one long-polling POST
        for _ in range(5):
            async with http.post(f"{base}&sid={sid}", data=asks) as r:
                if r.status != 200:
                    break
        assert socket.closed
        assert socket.queue.qsize() <= 20


def _readers() -> list[Any]:
    """The frames of the running eio_direct reader loops (``_run``), found by following
    each task's chain of awaited coroutines."""
    import asyncio

    frames = []
    for task in asyncio.all_tasks():
        coro: Any = task.get_coro()
        while coro is not None:
            code = getattr(coro, "cr_code", None)
            if code is not None and code.co_name == "_run" and "eio_direct" in code.co_filename:
                frames.append(coro.cr_frame)
            coro = getattr(coro, "cr_await", None)
    return frames


async def test_an_idle_connection_keeps_nothing_of_its_last_message(
    live_server: LiveServer, clients: Callable[..., Client]
) -> None:
    """A direct connection's reader, waiting for the next frame, holds no reference to the
    one before (its text, the websocket message, the Engine.IO packet): with thousands
    connected, each kept its last message in memory and in the collector's way."""
    room = await live_server.create_room()
    a, b = clients(live_server.url), clients(live_server.url)
    await a.join(room["facilitator_token"], "Ann")
    await b.join(room["invite_token"], "Bo")
    marker = "a line nobody should keep " * 20
    sio = live_server.app[SIO]
    handled = sio.handled  # what gctune's quiet collector watches for
    await b.ok("chat.send", {"text": marker})
    assert sio.handled == handled + 1
    await a.wait_for("chat", lambda d: d["message"]["text"] == marker)
    readers = _readers()
    assert len(readers) == 2
    for frame in readers:
        kept = {name for name in ("msg", "pkt", "data") if name in frame.f_locals}
        assert kept == set()
