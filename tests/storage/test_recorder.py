"""The recorder against a real backend: order, batching, idempotence, refused rows."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from rooms.events import Audit, Consent, SessionClosed, Transcribe, Unstore
from server.recorder import SPILL_FILE, Recorder
from server.storage.base import SessionRecord, Storage, TranscriptLine
from server.storage.postgres import PostgresStorage
from server.storage.sqlite import SqliteStorage
from tests.storage.helpers import scrub_fails_once
from tests.storage.test_backends import room


def said(n: int, sender: str = "p1", session: str = "s1") -> Transcribe:
    return Transcribe("r1", session, f"m{n}", sender, f"Name-{sender}", f"text {n}", float(n))


async def test_order_batches_and_erase_counts(storage: Storage) -> None:
    await storage.create_room(room())
    recorder = Recorder(storage)
    recorder.session_seen("r1", "s1", 0.0)
    recorder.session_seen("r1", "s1", 0.0)  # once per session
    for n in range(250):
        recorder.submit(said(n, sender="p1" if n % 2 else "p2"))
    erase = Unstore("s1", participant_id="p1")
    recorder.submit(erase)
    recorder.submit(said(300))  # after the erase: kept
    recorder.submit(Consent("r1", "s1", "p1", True, 1.0))
    recorder.submit(Consent("r1", "s1", "p1", True, 1.0))  # the same event twice: one row
    recorder.submit(Audit("r1", "s1", "f1", "remove", "p1", 2.0))
    recorder.submit(SessionClosed("r1", "s1", "ended", 3.0))
    assert recorder.backlog == 257  # the session, 250 lines, erase, line, 2+1+1
    recorder.start()
    try:
        assert await recorder.flush(10)
        done = recorder.erase_result(erase)
        assert done is not None and await done == 125
        assert recorder.erase_result(erase) is None  # asked once
        lines = await storage.list_lines("s1")
        assert len(lines) == 126 and {x.sender_id for x in lines} == {"p2", "p1"}
        assert [x.id for x in lines if x.sender_id == "p1"] == ["m300"]
        assert await storage.latest_consent("s1", "p1") is True
        assert await storage.audit_actions_on("s1", "p1") == {"remove"}
        assert await storage.get_session("s1") == SessionRecord("s1", "r1", 0.0, 3.0, "ended")
    finally:
        await recorder.close()


async def test_a_refused_line_is_reported_and_the_rest_kept(storage: Storage) -> None:
    await storage.create_room(room())
    recorder = Recorder(storage)
    unsaved: list[tuple[str, str]] = []
    recorder.set_unsaved(lambda line, reason: unsaved.append((line.message_id, reason)))
    recorder.session_seen("r1", "s1", 0.0)
    recorder.submit(said(1))
    # Refused: no session row, and none can be made (its room is not there either).
    recorder.submit(Transcribe("no-such-room", "s9", "m2", "p1", "Name-p1", "text 2", 2.0))
    recorder.submit(said(3))
    recorder.start()
    try:
        assert await recorder.flush(10)
        assert [x.id for x in await storage.list_lines("s1")] == ["m1", "m3"]
        assert unsaved == [("m2", "error")]
        assert not recorder.failing
    finally:
        await recorder.close()


async def test_rooms_starting_together_are_recorded_in_few_statements(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A morning's groups, or a node taking over rooms: consecutive session records are
    written in batches; a refused one (here: a room that is not there yet) is then
    written one by one, and retried, never dropped, until it is taken."""
    await storage.create_room(room())
    statements: list[int] = []
    batch, single = storage.record_sessions, storage.record_session

    async def record_sessions(sessions: Sequence[SessionRecord]) -> None:
        statements.append(len(sessions))
        await batch(sessions)

    async def record_session(session: SessionRecord) -> None:
        statements.append(1)
        await single(session)

    monkeypatch.setattr(storage, "record_sessions", record_sessions)
    monkeypatch.setattr(storage, "record_session", record_session)
    recorder = Recorder(storage)
    recorder.refused_retry_secs = (0.01, 0.05)
    for n in range(250):
        recorder.session_seen("late-room" if n == 7 else "r1", f"s{n}", float(n))
    recorder.submit(said(1, session="s3"))
    recorder.start()
    try:
        assert not await recorder.flush(0.3)  # s7 is refused, and the rest waits
        assert await storage.get_session("s8") is None
        await storage.create_room(room("late-room", pin="654321"))
        assert await recorder.flush(10)
        for n in (0, 6, 7, 8, 99, 100, 249):
            want = SessionRecord(f"s{n}", "late-room" if n == 7 else "r1", float(n))
            assert await storage.get_session(f"s{n}") == want
        assert [x.id for x in await storage.list_lines("s3")] == ["m1"]
        # 100 refused as a batch, then one by one (s7 until its room came); then 100, 50.
        assert statements[0] == 100 and statements[-2:] == [100, 50]
        assert set(statements[1:-2]) == {1} and len(statements) - 3 > 100
    finally:
        await recorder.close()


async def test_a_refused_erase_consent_change_or_audit_row_is_retried_never_dropped(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, an event the database refused (not an outage) was skipped for good, while
    the erase's ack had said it stays queued (``erased: null``)."""
    await storage.create_room(room())
    await storage.record_session(SessionRecord("s1", "r1", 0.0))
    await storage.add_lines([said_line(1), said_line(2)])
    for name in ("delete_sender_lines", "add_consent_change", "add_audit"):
        refuse_twice(storage, name, monkeypatch)
    registry = CollectorRegistry()
    recorder = Recorder(storage, registry=registry)
    recorder.refused_retry_secs = (0.01, 0.05)
    erase = Unstore("s1", participant_id="p1", ts=5.0)
    recorder.submit(erase)
    recorder.submit(Consent("r1", "s1", "p1", True, 6.0))
    recorder.submit(Audit("r1", "s1", "f1", "remove", "p1", 7.0))
    recorder.start()
    try:
        assert await recorder.flush(10)
        done = recorder.erase_result(erase)
        assert done is not None and await done == 2
        assert await storage.list_lines("s1") == []
        assert await storage.latest_consent("s1", "p1") is True
        assert await storage.audit_actions_on("s1", "p1") == {"remove"}
        for kind in ("Unstore", "Consent", "Audit"):
            assert registry.get_sample_value("peerroom_storage_refused_total", {"kind": kind}) == 2
    finally:
        await recorder.close()


async def test_the_lines_of_a_session_whose_record_was_refused_are_kept(storage: Storage) -> None:
    """Before, the refused session record was skipped but still counted as recorded, so
    every later line of the session was refused too (no session row) and reported lost."""
    recorder = Recorder(storage)
    recorder.refused_retry_secs = (0.01, 0.05)
    unsaved: list[str] = []
    recorder.set_unsaved(lambda line, reason: unsaved.append(line.message_id))
    recorder.session_seen("r1", "s1", 0.0)  # room r1 is not stored yet: refused
    recorder.submit(said(1))
    recorder.start()
    try:
        assert not await recorder.flush(0.2)
        await storage.create_room(room())
        recorder.session_seen("r1", "s1", 0.0)
        recorder.submit(said(2))
        assert await recorder.flush(10)
        assert [x.id for x in await storage.list_lines("s1")] == ["m1", "m2"]
        assert unsaved == []
    finally:
        await recorder.close()


async def test_rows_of_a_session_another_node_deleted_record_it_again(storage: Storage) -> None:
    """Another node's retention sweep deleted a quiet live session this node had
    recorded: its next consent change, audit row and line were refused for want of it
    (the first two dropped for good). The session is recorded again and they are kept."""
    await storage.create_room(room())
    recorder = Recorder(storage)
    recorder.refused_retry_secs = (0.01, 0.05)
    unsaved: list[str] = []
    recorder.set_unsaved(lambda line, reason: unsaved.append(line.message_id))
    recorder.session_seen("r1", "s1", 0.0)
    recorder.start()
    try:
        assert await recorder.flush(10)
        assert await storage.delete_sessions_before(1e12) == 1  # the other node's sweep
        recorder.session_seen("r1", "s1", 0.0)  # known: not recorded again
        recorder.submit(Consent("r1", "s1", "p1", True, 8.0))
        recorder.submit(Audit("r1", "s1", "f1", "remove", "p2", 9.0))
        recorder.submit(said(10))
        assert await recorder.flush(10)
        assert await storage.latest_consent("s1", "p1") is True
        assert await storage.audit_actions_on("s1", "p2") == {"remove"}
        assert [x.id for x in await storage.list_lines("s1")] == ["m10"]
        assert unsaved == []
    finally:
        await recorder.close()


def refuse_twice(storage: Storage, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``storage.<name>`` refuses its first two calls (a bug, a schema out of step)."""
    real = getattr(storage, name)
    calls: list[None] = []

    async def refusing(*args: object, **kwargs: object) -> object:
        calls.append(None)
        if len(calls) <= 2:
            raise RuntimeError("refused")
        return await real(*args, **kwargs)

    monkeypatch.setattr(storage, name, refusing)


async def test_submit_never_waits(storage: Storage) -> None:
    """Submitting is synchronous: it cannot make a room wait, whatever storage does."""
    recorder = Recorder(storage)
    assert not asyncio.iscoroutinefunction(recorder.submit)
    assert not asyncio.iscoroutinefunction(recorder.session_seen)


async def test_a_restart_during_an_outage_keeps_erases_not_text(
    storage: Storage, tmp_path: Path
) -> None:
    # The database is away: this run cannot write anything, then stops.
    first, spill = await recorder_with_database_away(storage, tmp_path)
    secret = "text that must not be spilled"
    first.submit(Transcribe("r1", "s1", "m9", "p1", "Name-p1", secret, 9.0))
    first.submit(Unstore("s1", participant_id="p1"))
    first.submit(Audit("r1", "s1", "f1", "remove", "p1", 10.0))
    await first.close()
    kept = spill.read_text()
    assert secret not in kept and "Name-p1" not in kept
    assert spill.stat().st_mode & 0o777 == 0o600

    # The next start, with the database back, replays the erase and the removal.
    await replay_erase_and_removal(storage, spill)


async def test_the_event_being_retried_at_a_stop_is_kept_too(
    storage: Storage, tmp_path: Path
) -> None:
    """The writer takes an event off the queue to write it; while the database is away
    it retries that one. A stop then must keep it with the rest, or an erase asked for
    during the outage would be forgotten and the lines stay stored."""
    first, spill = await recorder_with_database_away(storage, tmp_path)
    first.submit(Unstore("s1", participant_id="p1"))  # taken at once, then retried
    first.submit(Audit("r1", "s1", "f1", "remove", "p1", 10.0))
    for _ in range(100):
        if first.failing:
            break
        await asyncio.sleep(0.01)
    assert first.failing and first.backlog == 2
    await first.close()
    assert [e["kind"] for e in json.loads(spill.read_text())] == ["Unstore", "Audit"]
    await replay_erase_and_removal(storage, spill)


async def recorder_with_database_away(storage: Storage, tmp_path: Path) -> tuple[Recorder, Path]:
    """p1's two lines stored in ``storage``; then a started recorder whose database is
    gone (it cannot write anything) and the spill file it will keep at its stop."""
    await storage.create_room(room())
    await storage.record_session(SessionRecord("s1", "r1", 0.0))
    await storage.add_lines([said_line(1), said_line(2)])
    down = await SqliteStorage.open(tmp_path / "elsewhere.sqlite3")
    await down.close()
    first = Recorder(down, spill_path=tmp_path / SPILL_FILE)
    first.flush_on_close_secs = 0.3
    first.start()
    assert first.spill_path is not None
    return first, first.spill_path


async def replay_erase_and_removal(storage: Storage, spill: Path) -> None:
    """Start a recorder on ``storage`` (the database back) and check that it replays the
    spilled erase of p1's lines and p1's removal, then forgets the spill file."""
    second = Recorder(storage, spill_path=spill.parent / SPILL_FILE)
    second.start()
    try:
        for _ in range(100):
            if not spill_files(spill.parent):
                break
            await asyncio.sleep(0.02)
        assert not spill_files(spill.parent)
        assert await storage.list_lines("s1") == []
        assert await storage.audit_actions_on("s1", "p1") == {"remove"}
    finally:
        await second.close()


async def test_an_erase_whose_clean_up_failed_is_cleaned_up_later(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The delete went through, then the clean-up met an outage: the erase is done (its
    ack counts its lines, the writer goes on) and the clean-up stays owed until done."""
    await storage.create_room(room())
    await storage.record_session(SessionRecord("s1", "r1", 0.0))
    await storage.add_lines([said_line(1), said_line(2)])
    scrubs = scrub_fails_once(storage, monkeypatch)
    recorder = quick_cleanups(Recorder(storage))
    erase = Unstore("s1", participant_id="p1")
    recorder.submit(erase)
    recorder.start()
    try:
        assert await recorder.flush(10)
        done = recorder.erase_result(erase)
        assert done is not None and await done == 2
        assert await recorder.clean(10)
        assert scrubs == ["failed", "done"]
        assert await storage.list_lines("s1") == []
    finally:
        await recorder.close()


async def test_a_slow_clean_up_never_holds_the_writer(
    storage: Storage, backend: str, tmp_path: Path
) -> None:
    """A VACUUM waiting for a lock (or a long one), or SQLite's WAL held by a reader:
    before, the writer ran the clean-up itself, and every event waited behind it (on
    PostgreSQL until the query timed out, then again, for ever). Now the erase is done,
    the next events are written, and the clean-up stays owed until it can finish."""
    await storage.create_room(room())
    await storage.record_session(SessionRecord("s1", "r1", 0.0))
    await storage.add_lines([said_line(1), said_line(2)])
    recorder = quick_cleanups(Recorder(storage))
    recorder.start()
    async with holding_back_the_clean_up(storage, backend, tmp_path):
        erase = Unstore("s1", participant_id="p1", ts=5.0)
        recorder.submit(erase)
        recorder.submit(Consent("r1", "s1", "p2", True, 6.0))
        assert await recorder.flush(3)
        done = recorder.erase_result(erase)
        assert done is not None and await done == 2
        assert await storage.latest_consent("s1", "p2") is True
        assert not await recorder.clean(0.5)
        assert recorder.cleanup_owed
    try:
        assert await recorder.clean(10)
        assert not recorder.cleanup_owed
    finally:
        await recorder.close()


async def test_a_burst_of_erases_shares_one_clean_up(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    await storage.create_room(room())
    await storage.record_session(SessionRecord("s1", "r1", 0.0))
    await storage.add_lines([said_line(n) for n in range(1, 6)])
    scrubs = scrub_fails_once(storage, monkeypatch)
    scrubs.append("(not failing)")
    recorder = quick_cleanups(Recorder(storage))
    recorder.cleanup_delay_secs = 0.3
    recorder.start()
    try:
        for n in range(1, 6):
            recorder.submit(Unstore("s1", message_id=f"m{n}"))
        assert await recorder.flush(10)
        assert await recorder.clean(10)
        assert scrubs == ["(not failing)", "done"]
    finally:
        await recorder.close()


def quick_cleanups(recorder: Recorder) -> Recorder:
    recorder.cleanup_delay_secs = 0.05
    recorder.cleanup_retry_secs = (0.05, 0.2)
    return recorder


@contextlib.asynccontextmanager
async def holding_back_the_clean_up(
    storage: Storage, backend: str, tmp_path: Path
) -> AsyncIterator[None]:
    """PostgreSQL: a lock VACUUM must wait for, held in an open transaction. SQLite: a
    reader on another connection holding a snapshot, so the WAL cannot be truncated."""
    if backend == "postgres":
        assert isinstance(storage, PostgresStorage)
        async with storage._pool.acquire() as con, con.transaction():
            await con.execute("LOCK TABLE transcript_lines IN SHARE UPDATE EXCLUSIVE MODE")
            yield
        return
    reader = sqlite3.connect(tmp_path / "peerroom.sqlite3", isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM transcript_lines").fetchall()
        yield
    finally:
        reader.close()


async def test_a_line_one_node_writes_after_another_wrote_its_erase_stays_erased(
    storage: Storage,
) -> None:
    """Node A records the erase; node B, behind (an outage), records the line only now."""
    await storage.create_room(room())
    node_a, node_b = Recorder(storage), Recorder(storage)
    node_a.session_seen("r1", "s1", 0.0)
    node_a.submit(Unstore("s1", participant_id="p1", ts=10.0))
    node_b.session_seen("r1", "s1", 0.0)
    node_b.submit(said(5))  # sent at 5, before the erase
    node_b.submit(said(20))  # sent at 20: opted in again after erasing
    node_a.start()
    try:
        assert await node_a.flush(10)
        node_b.start()
        assert await node_b.flush(10)
    finally:
        await node_a.close()
        await node_b.close()
    assert [x.id for x in await storage.list_lines("s1")] == ["m20"]


def spill_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("storage-pending"))


def said_line(n: int) -> TranscriptLine:
    return TranscriptLine(f"m{n}", "s1", "p1", "Name-p1", f"text {n}", float(n))
