"""PostgreSQL goes away mid-session and comes back.

The server under test reaches PostgreSQL through a TCP proxy on 127.0.0.1 that the test
cuts (every connection aborted, new ones refused) and restores on the same port. The
machine's PostgreSQL itself is never touched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from server.keys import RECORDER
from tests.storage.helpers import TcpProxy, healthz, lines_of, transcript
from tests.support import Client, LiveServer, start_server

pytestmark = pytest.mark.postgres

ACK_FAST_SECS = 1.5  # the room must not wait for a dead database (a connect waits 3 s)
RECOVERY_SECS = 10.0


@pytest.fixture
async def proxy(pg_url: str) -> AsyncIterator[TcpProxy]:
    parts = urlsplit(pg_url)
    p = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await p.start()
    yield p
    await p.stop()


@pytest.fixture
async def server(pg_url: str, proxy: TcpProxy, tmp_path: Path) -> AsyncIterator[LiveServer]:
    parts = urlsplit(pg_url)
    via_proxy = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
    s = await start_server(tmp_path / "data", database_url=via_proxy)
    yield s
    await s.stop()


async def until(within_secs: float, check: Callable[[], Awaitable[bool]]) -> float:
    """Poll ``check()`` until true; returns the seconds it took."""
    start = time.monotonic()
    while True:
        if await check():
            return time.monotonic() - start
        assert time.monotonic() - start < within_secs, "timed out"
        await asyncio.sleep(0.05)


async def test_room_goes_on_and_storage_catches_up(
    server: LiveServer, proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    room = await server.create_room()
    fac, bo, cy, ed, late = (Client(server.url) for _ in range(5))
    try:
        w = await fac.join(room["facilitator_token"], "Ann")
        sid, token = w["room"]["session_id"], room["facilitator_token"]
        await bo.join(room["invite_token"], "Bo")
        wc = await cy.join(room["invite_token"], "Cy")
        await ed.join(room["invite_token"], "Ed")
        for c in (bo, ed):
            await c.ok("transcript.consent", {"on": True})
        await bo.ok("chat.send", {"text": "before"})
        assert await lines_of(server, sid, token) == ["before"]
        assert (await healthz(server))[0] == 200

        await proxy.stop()  # PostgreSQL is gone

        for text in ("during 1", "during 2"):
            t = time.monotonic()
            await bo.ok("chat.send", {"text": text})
            assert time.monotonic() - t < ACK_FAST_SECS
        await ed.ok("chat.send", {"text": "ed during"})
        await cy.ok("hand.raise")
        await fac.ok("mod.floor.next")
        await bo.wait_for("hands", lambda d: d["floor"] == wc["you"]["id"])
        await late.join(room["invite_token"], "Late")  # the room's record is cached

        await until(5, lambda: _status_is(server, 503))
        status, body, _ = await transcript(server, sid, token)
        assert status == 503 and body["error"]["code"] == "unavailable"
        # An erase during the outage: acked at once as pending, done on recovery.
        t = time.monotonic()
        ack = await ed.ok("transcript.erase")
        assert ack["erased"] is None and time.monotonic() - t < 3.0
        assert bo.received("transcript.unsaved") == []
        assert server.app[RECORDER].backlog >= 3

        await proxy.start()  # PostgreSQL is back, same address
        recovered = await until(RECOVERY_SECS, lambda: _caught_up(server))
        print(f"storage caught up {recovered:.2f}s after PostgreSQL returned")
        assert recovered < RECOVERY_SECS
        await until(5, lambda: _status_is(server, 200))
        assert await lines_of(server, sid, token) == ["before", "during 1", "during 2"]
        assert "storage unavailable" in caplog.text  # the outage was logged...
        for secret in ("during 1", "ed during", token, server.admin_token):
            assert secret not in caplog.text  # ...without text or tokens
    finally:
        for c in (fac, bo, cy, ed, late):
            await c.close()


async def _status_is(server: LiveServer, status: int) -> bool:
    return (await healthz(server))[0] == status


async def _caught_up(server: LiveServer) -> bool:
    recorder = server.app[RECORDER]
    return recorder.idle and not recorder.failing


async def test_a_read_only_primary_is_an_outage_not_a_refusal(pg_url: str) -> None:
    """During a failover the old primary answers writes with "read-only transaction"
    (and a busy one with serialization or deadlock errors): all are retried like an
    unreachable database. Before, an erase meeting one was skipped for good."""
    import asyncpg

    from rooms.events import Unstore
    from server.recorder import Recorder
    from server.storage.base import SessionRecord, StorageUnavailable, TranscriptLine
    from server.storage.postgres import PostgresStorage
    from tests.storage.test_backends import room

    writable = await PostgresStorage.open(pg_url)
    read_only = PostgresStorage(
        await asyncpg.create_pool(
            pg_url, min_size=1, max_size=2, server_settings={"default_transaction_read_only": "on"}
        )
    )
    try:
        await writable.create_room(room())
        await writable.record_session(SessionRecord("s1", "r1", 0.0))
        line = TranscriptLine("m1", "s1", "p1", "Bo", "text", 1.0)
        await writable.add_line(line)
        with pytest.raises(StorageUnavailable):
            await read_only.add_line(TranscriptLine("m2", "s1", "p1", "Bo", "more", 2.0))
        recorder = Recorder(read_only)
        recorder.flush_on_close_secs = 0.3
        recorder.submit(Unstore("s1", participant_id="p1"))
        recorder.start()
        assert not await recorder.flush(0.5)
        assert recorder.failing and recorder.backlog == 1  # kept and retried, not skipped
        await recorder.close()
        assert [x.id for x in await writable.list_lines("s1")] == ["m1"]
    finally:
        await read_only.close()
        await writable.close()
