"""Retention: the running server purges old lines and check-ins by itself."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable

import pytest

from rooms.events import Consent
from server.keys import RECORDER, STORAGE
from server.retention import DAY_SECS, purge_expired, run_retention
from server.storage.base import (
    CheckinRecord,
    SessionRecord,
    Storage,
    TranscriptLine,
)
from tests.storage.helpers import scrub_fails_once
from tests.storage.test_backends import room
from tests.support import LiveServer

Servers = Callable[..., Awaitable[LiveServer]]


async def seed(storage: Storage, room_id: str, now: float) -> None:
    old, new = now - 31 * DAY_SECS, now - 29 * DAY_SECS
    await storage.record_session(SessionRecord("s-old", room_id, old))
    await storage.record_session(SessionRecord("s-new", room_id, new))
    await storage.add_line(TranscriptLine("l-old", "s-old", "p1", "Bo", "old line", old))
    await storage.add_line(TranscriptLine("l-new", "s-new", "p1", "Bo", "new line", new))
    full = "+4791234567"
    for cid, status, at, resolved in (
        ("k-ok", "ok", old, None),
        ("k-called", "callback", old, old + 600),
        ("k-waiting", "callback", old, None),  # nobody called back yet: kept
        ("k-new", "talk", new, None),
    ):
        masked = "*********67"
        number = full if status != "ok" else None
        await storage.create_checkin(
            CheckinRecord(cid, room_id, f"call-{cid}", status, masked, number, at, resolved)
        )


async def test_running_server_purges_by_itself(servers: Servers) -> None:
    server = await servers(retention_days=30, retention_sweep_secs=0.2)
    room = await server.create_room()
    storage = server.app[STORAGE]
    await seed(storage, room["room_id"], time.time())

    async def kept_checkins() -> set[str]:
        return {c.id for c in await storage.list_checkins(include_resolved=True)}

    # Files the sweep looks after too: set aside as unreadable (they may hold phone
    # numbers; their age is the time in the name, a rename keeps the file's own), and
    # temporary ones a crash left; each with one too new to go.
    data = server.settings.data_dir
    now, day = time.time(), 86_400
    old_file = f"checkins-pending-ab12.unreadable-{int(now - 31 * day)}"
    files = {  # name -> the file's own time
        old_file: now,
        f"storage-pending-cd34.unreadable-{int(now - 29 * day)}": now - 40 * day,
        f"checkins-pending-ef56.unreadable-{int(now)}": now - 40 * day,  # just set aside
        ".checkins-pending-ab12.json.0123456789ab.tmp": now - 7200,
        ".storage-pending-cd34.json.ba9876543210.tmp": now - 60,
        "notes.unreadable-later.txt": now - 40 * day,  # not one of ours
    }
    for name, mtime in files.items():
        (data / name).write_text("+15551234567")
        os.utime(data / name, (mtime, mtime))
    deadline = time.monotonic() + 5
    while await storage.get_session("s-old") is not None or len(await kept_checkins()) > 2:
        assert time.monotonic() < deadline, "the retention sweep did not run"
        await asyncio.sleep(0.1)
    while (data / old_file).exists():
        assert time.monotonic() < deadline, "the sweep left the old unreadable file"
        await asyncio.sleep(0.1)
    gone = {name for name in files if not (data / name).exists()}
    assert gone == {old_file, ".checkins-pending-ab12.json.0123456789ab.tmp"}
    assert await storage.list_lines("s-old") == []
    assert [x.id for x in await storage.list_lines("s-new")] == ["l-new"]
    assert await kept_checkins() == {"k-waiting", "k-new"}


async def test_purge_counts_and_cutoff(servers: Servers) -> None:
    server = await servers()  # default: 30 days, hourly sweeps (not reached here)
    room = await server.create_room()
    storage = server.app[STORAGE]
    now = time.time()
    await seed(storage, room["room_id"], now)
    purged = await purge_expired(storage, now=now, retention_days=30)
    assert (purged.lines, purged.sessions, purged.checkins) == (1, 1, 2)
    again = await purge_expired(storage, now=now, retention_days=30)
    assert again.total == 0
    # A shorter period reaches the newer rows too; the open callback is still kept.
    purged = await purge_expired(storage, now=now, retention_days=28)
    assert (purged.lines, purged.sessions, purged.checkins) == (1, 1, 0)
    assert {c.id for c in await storage.list_checkins()} == {"k-waiting", "k-new"}


async def test_a_sweep_whose_scrub_failed_scrubs_at_the_next(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next sweep finds nothing left to delete; it must scrub all the same, or the
    deleted lines stay readable in the file's free pages."""
    await storage.create_room(room())
    now = time.time()
    await seed(storage, "r1", now)
    scrubs = scrub_fails_once(storage, monkeypatch)
    sweeping = asyncio.get_running_loop().create_task(
        run_retention(storage, retention_days=30, every_secs=0.05, clock=lambda: now, first_secs=0)
    )
    try:
        for _ in range(100):
            if len(scrubs) >= 2:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)  # later sweeps: nothing deleted, nothing owed
    finally:
        sweeping.cancel()
        await asyncio.gather(sweeping, return_exceptions=True)
    assert scrubs == ["failed", "done"]
    assert await storage.list_lines("s-old") == []


async def test_a_live_session_quiet_past_the_retention_keeps_recording(servers: Servers) -> None:
    """Still live but nothing stored since the cutoff (nobody opted in for a day): the
    sweep deletes its row. Its next consent change must still be stored: the recorder
    records the session again after a sweep instead of trusting its memory of it."""
    server = await servers(retention_days=30, retention_sweep_secs=0.2)
    room = await server.create_room()
    storage, recorder = server.app[STORAGE], server.app[RECORDER]
    old = time.time() - 31 * DAY_SECS
    recorder.session_seen(room["room_id"], "s-live", old)  # recorded, and remembered
    assert await recorder.flush(5)
    assert await storage.get_session("s-live") is not None
    deadline = time.monotonic() + 5
    while await storage.get_session("s-live") is not None:
        assert time.monotonic() < deadline, "the retention sweep did not run"
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.3)  # the sweep's end, when the recorder is told
    recorder.session_seen(room["room_id"], "s-live", old)  # the session's next event
    recorder.submit(Consent(room["room_id"], "s-live", "p1", True, time.time()))
    assert await recorder.flush(5)
    assert await storage.latest_consent("s-live", "p1") is True
