"""Rough storage numbers on this machine (not a test): ``python -m tests.storage.measure``.

- ms per transcript line written directly (one autocommitted INSERT each);
- recorder throughput draining a backlog (what happens after an outage);
- chat.send ack latency over real Socket.IO with the sender transcribed, vs. not.

PostgreSQL runs in a throwaway database on 127.0.0.1:5432 (PEERROOM_TEST_PG_URL).
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import tempfile
import time
from pathlib import Path

import asyncpg

from rooms.events import Transcribe
from server.keys import RECORDER
from server.recorder import Recorder
from server.storage.base import SessionRecord, Storage, TranscriptLine
from server.storage.postgres import PostgresStorage
from server.storage.sqlite import SqliteStorage
from tests.storage.test_backends import room
from tests.support import PG_ADMIN_URL, Client, pg_database_url, start_server

N_DIRECT = 300
N_BACKLOG = 2000
N_CHAT = 200


async def direct(storage: Storage) -> float:
    t = time.perf_counter()
    for i in range(N_DIRECT):
        await storage.add_line(TranscriptLine(f"d{i}", "s1", "p1", "Bo", "x" * 120, float(i)))
    return (time.perf_counter() - t) / N_DIRECT * 1000


async def backlog(storage: Storage) -> float:
    recorder = Recorder(storage)
    for i in range(N_BACKLOG):
        recorder.submit(Transcribe("r1", "s1", f"b{i}", "p1", "Bo", "y" * 120, float(i)))
    t = time.perf_counter()
    recorder.start()
    assert await recorder.flush(120)
    took = time.perf_counter() - t
    await recorder.close()
    return N_BACKLOG / took


async def chat_latency(tmp: Path, database_url: str | None, consent: bool) -> float:
    server = await start_server(
        tmp / secrets.token_hex(4),
        database_url=database_url,
        chat_burst=10_000,
        chat_per_sec=10_000.0,
    )
    r = await server.create_room()
    c = Client(server.url)
    try:
        await c.join(r["invite_token"], "Bo")
        await c.ok("transcript.consent", {"on": consent})
        times = []
        for i in range(N_CHAT):
            t = time.perf_counter()
            await c.ok("chat.send", {"text": f"line {i}"})
            times.append(time.perf_counter() - t)
        assert await server.app[RECORDER].flush(30)
    finally:
        await c.close()
        await server.stop()
    return statistics.median(times) * 1000


async def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        admin = await asyncpg.connect(PG_ADMIN_URL)
        name = f"peerroom_measure_{secrets.token_hex(4)}"
        await admin.execute(f'CREATE DATABASE "{name}"')
        pg_url = pg_database_url(PG_ADMIN_URL, name)
        try:
            for label, opener in (
                ("sqlite", lambda: SqliteStorage.open(tmp / "m.sqlite3")),
                ("postgres", lambda: PostgresStorage.open(pg_url)),
            ):
                storage: Storage = await opener()
                await storage.create_room(room())
                await storage.record_session(SessionRecord("s1", "r1", 0.0))
                ms = await direct(storage)
                rate = await backlog(storage)
                await storage.close()
                print(f"{label:8} {ms:6.2f} ms/line direct; backlog drained at {rate:6.0f} lines/s")
            for label, url in (("sqlite", None), ("postgres", pg_url)):
                on = await chat_latency(tmp, url, True)
                off = await chat_latency(tmp, url, False)
                print(f"{label:8} chat.send ack median {on:5.2f} ms transcribed, {off:5.2f} ms not")
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
