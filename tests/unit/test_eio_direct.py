"""server.eio_direct's frames and its cut-off, over real loopback connections."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from server import eio_direct
from server.eio_direct import DirectConnection, ws_frame
from tests.support import free_port

# Around each length boundary of the frame header (7-bit, 16-bit, 64-bit lengths).
SIZES = (0, 1, 125, 126, 127, 65535, 65536, 70000)


async def _serve(handler: web.StreamResponse | object) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_get("/ws", handler)  # type: ignore[arg-type]
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/ws"


async def test_frames_of_every_length_class_are_read_by_a_real_client() -> None:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        assert request.transport is not None
        for n in SIZES:
            request.transport.write(ws_frame("é" * (n // 2) + "x" * (n % 2)))
            request.transport.write(ws_frame(bytes(range(256)) * (n // 256) + b"\x07" * (n % 256)))
        await ws.receive()  # until the client closes
        return ws

    runner, url = await _serve(handler)
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            for n in SIZES:
                text = await ws.receive(timeout=5)
                assert text.type is aiohttp.WSMsgType.TEXT
                assert text.data == "é" * (n // 2) + "x" * (n % 2)
                binary = await ws.receive(timeout=5)
                assert binary.type is aiohttp.WSMsgType.BINARY
                assert binary.data == bytes(range(256)) * (n // 256) + b"\x07" * (n % 256)
    finally:
        await runner.cleanup()


async def test_a_peer_that_stops_reading_is_cut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(eio_direct, "MAX_UNREAD_BYTES", 256 * 1024)
    outcome: asyncio.Future[tuple[bool, int]] = asyncio.get_running_loop().create_future()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        assert request.transport is not None
        conn = DirectConnection(SimpleNamespace(sid="slow"), ws, request)
        frame = ws_frame("x" * 16000)
        written = 0
        while conn.open and written < 64 * 1024 * 1024:  # bounded: 64 MiB at most
            conn.write_frame(frame)
            written += len(frame)
            await asyncio.sleep(0)  # let the kernel take what it will
        outcome.set_result((conn.open, written))
        return ws

    runner, url = await _serve(handler)
    try:
        async with aiohttp.ClientSession() as http:
            # The client reads the handshake, then nothing more.
            ws = await http.ws_connect(url, max_msg_size=0)
            assert ws._conn is not None
            transport = ws._conn.protocol.transport  # type: ignore[union-attr]
            assert transport is not None
            transport.pause_reading()
            still_open, written = await asyncio.wait_for(outcome, 20)
            transport.resume_reading()  # to see the server's abort, not wait for a close
            await ws.close()
        assert not still_open
        # Cut off after the kernel's buffers and the cap filled, long before the bound.
        assert 256 * 1024 < written < 64 * 1024 * 1024
    finally:
        await runner.cleanup()


# Corking: a fake transport records each write (what is asserted is the number of writes).


class Transport:
    """What DirectConnection uses of an asyncio transport, recording each write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def abort(self) -> None:
        self.closing = True


def connection() -> tuple[DirectConnection, Transport]:
    t = Transport()
    request: Any = SimpleNamespace(transport=t, protocol=SimpleNamespace(writing_paused=False))
    return DirectConnection(SimpleNamespace(sid="s1"), ws=None, request=request), t  # type: ignore[arg-type]


async def test_frames_held_while_corked_leave_in_one_write_in_order() -> None:
    conn, t = connection()
    conn.write_frame(b"before")
    conn.cork()
    conn.write_frame(b"[broadcast]")
    conn.write_frame(b"[ack]")
    assert t.writes == [b"before"]
    conn.uncork()
    assert t.writes == [b"before", b"[broadcast][ack]"]
    conn.write_frame(b"after")
    assert t.writes[-1] == b"after"


async def test_a_cork_lasts_one_loop_turn_at_most() -> None:
    """A handler that waits on something (Redis, a phone provider) does not hold the
    connection's other frames while it waits."""
    conn, t = connection()
    conn.cork()
    conn.write_frame(b"a")
    await asyncio.sleep(0)  # the turn ends: held frames leave
    assert t.writes == [b"a"]
    conn.write_frame(b"b")
    assert t.writes == [b"a", b"b"]
    conn.uncork()  # the handler's own uncork, later: nothing left to write
    assert t.writes == [b"a", b"b"]


async def test_nothing_is_written_after_an_abort() -> None:
    conn, t = connection()
    conn.cork()
    conn.write_frame(b"a")
    conn.abort()
    conn.uncork()
    assert t.writes == [] and t.closing


def test_pings_are_due_within_the_interval_and_spread_over_its_last_quarter() -> None:
    from server.eio_direct import PING_SPREAD, ping_later

    interval = 20.0
    socks = [SimpleNamespace() for _ in range(400)]
    before = time.monotonic()
    for s in socks:
        ping_later(s, interval)
    after = time.monotonic()
    due = sorted(s.peerroom_ping_at for s in socks)
    assert before + interval * (1 - PING_SPREAD) <= due[0]
    assert due[-1] <= after + interval
    # Spread, not all at once: a group that joined together is not pinged together.
    assert due[-1] - due[0] > interval * PING_SPREAD / 2
