"""The storage interface, against SQLite and the real PostgreSQL alike."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from rooms.model import QueueOrder
from server.storage.base import (
    RETRY_WINDOW_SECS,
    AuditEntry,
    CheckinRecord,
    ConsentChange,
    PinTaken,
    RoomRecord,
    SessionRecord,
    Storage,
    StorageUnavailable,
    TranscriptLine,
)
from server.storage.migrate import all_migrations
from server.storage.postgres import PostgresStorage, numbered
from server.storage.sqlite import SqliteStorage

DAY = 86400.0


def room(room_id: str = "r1", pin: str = "123456") -> RoomRecord:
    return RoomRecord(
        id=room_id,
        title="Tuesday circle",
        phone_pin=pin,
        waiting_room=False,
        transcripts_allowed=True,
        chat_enabled=True,
        queue_order=QueueOrder.QUIETER_FIRST,
        created_at=1000.0,
    )


def line(
    n: int, sender: str = "p1", session: str = "s1", ts: float | None = None
) -> TranscriptLine:
    return TranscriptLine(f"m{n}", session, sender, f"Name-{sender}", f"line {n}", ts or 2000.0 + n)


async def with_session(storage: Storage, session_id: str = "s1", started: float = 2000.0) -> None:
    if await storage.get_room("r1") is None:
        await storage.create_room(room())
    await storage.record_session(SessionRecord(session_id, "r1", started))


async def test_rooms(storage: Storage) -> None:
    await storage.create_room(room())
    got = await storage.get_room("r1")
    assert got == room()
    assert await storage.get_room_by_pin("123456") == room()
    assert await storage.get_room("nope") is None
    with pytest.raises(PinTaken):
        await storage.create_room(room("r2", "123456"))


async def test_migrations_are_recorded_and_idempotent(
    storage: Storage, backend_url: str | None, tmp_path: Path
) -> None:
    # Opening the same database again applies nothing twice.
    again: Storage
    if backend_url:
        again = await PostgresStorage.open(backend_url)
    else:
        again = await SqliteStorage.open(tmp_path / "peerroom.sqlite3")
    await again.close()
    rows = await storage._fetch("SELECT version FROM schema_migrations ORDER BY version")  # type: ignore[attr-defined]
    assert [r[0] for r in rows] == [m.version for m in all_migrations()]
    assert [m.version for m in all_migrations()][:3] == [1, 2, 3]


async def test_sessions(storage: Storage) -> None:
    await with_session(storage)
    await storage.record_session(SessionRecord("s1", "r1", 9999.0))  # idempotent
    assert await storage.get_session("s1") == SessionRecord("s1", "r1", 2000.0)
    await storage.close_session("s1", ended_at=3000.0, reason="ended")
    assert await storage.get_session("s1") == SessionRecord("s1", "r1", 2000.0, 3000.0, "ended")
    assert await storage.get_session("s2") is None


async def test_lines_add_list_and_delete(storage: Storage) -> None:
    await with_session(storage)
    await with_session(storage, "s2")
    for n in (3, 1, 2):
        await storage.add_line(line(n))
    await storage.add_line(line(1))  # a retried write is not a second line
    await storage.add_line(line(4, sender="p2"))
    await storage.add_line(line(5, session="s2"))
    assert [x.id for x in await storage.list_lines("s1")] == ["m1", "m2", "m3", "m4"]
    assert await storage.list_lines("s1") == [line(1), line(2), line(3), line(4, sender="p2")]

    assert await storage.delete_line("s1", "m2") == 1
    assert await storage.delete_line("s1", "m2") == 0
    assert await storage.delete_line("s2", "m1") == 0  # only within its session
    assert await storage.delete_sender_lines("s1", "p1") == 2
    assert [x.id for x in await storage.list_lines("s1")] == ["m4"]
    assert [x.id for x in await storage.list_lines("s2")] == ["m5"]
    assert await storage.scrub()


async def test_lines_in_one_statement(storage: Storage) -> None:
    await with_session(storage)
    await storage.add_line(line(2))
    await storage.add_lines([line(n) for n in range(1, 101)])  # m2 is there already
    await storage.add_lines([])
    got = await storage.list_lines("s1")
    assert len(got) == 100 and got[0] == line(1) and got[-1] == line(100)


async def test_sessions_in_one_statement(storage: Storage) -> None:
    await storage.create_room(room())
    await storage.record_session(SessionRecord("s0", "r1", 1.0))
    await storage.close_session("s0", ended_at=2.0, reason="ended")
    sessions = [SessionRecord(f"s{n}", "r1", float(n)) for n in range(100)]
    await storage.record_sessions(sessions)  # s0 is there already: left as it was
    await storage.record_sessions([])
    assert await storage.get_session("s0") == SessionRecord("s0", "r1", 1.0, 2.0, "ended")
    for n in (1, 50, 99):
        assert await storage.get_session(f"s{n}") == SessionRecord(f"s{n}", "r1", float(n))


async def test_long_and_unusual_text_round_trips(storage: Storage) -> None:
    await with_session(storage)
    text = "Ünïcødé ? $1 '; DROP TABLE rooms; -- \n" + "x" * 1960
    await storage.add_line(TranscriptLine("m1", "s1", "p1", "Zoë ?", text, 1.5))
    (got,) = await storage.list_lines("s1")
    assert got.text == text and got.from_name == "Zoë ?"


async def test_consent_history(storage: Storage) -> None:
    await with_session(storage)
    assert await storage.latest_consent("s1", "p1") is None
    await storage.add_consent_change(ConsentChange("c1", "s1", "p1", True, 10.0))
    assert await storage.latest_consent("s1", "p1") is True
    await storage.add_consent_change(ConsentChange("c2", "s1", "p1", False, 11.0))
    await storage.add_consent_change(ConsentChange("c2", "s1", "p1", False, 11.0))
    assert await storage.latest_consent("s1", "p1") is False
    assert await storage.latest_consent("s1", "p2") is None


async def test_audit_log(storage: Storage) -> None:
    await with_session(storage)
    await storage.add_audit(AuditEntry("a1", "s1", "f1", "mute", "p1", 10.0))
    await storage.add_audit(AuditEntry("a2", "s1", "f1", "remove", "p1", 11.0))
    await storage.add_audit(AuditEntry("a2", "s1", "f1", "remove", "p1", 11.0))
    await storage.add_audit(AuditEntry("a3", "s1", "f1", "lock", None, 12.0))
    assert [a.id for a in await storage.list_audit("s1")] == ["a1", "a2", "a3"]
    assert await storage.audit_actions_on("s1", "p1") == {"mute", "remove"}
    assert await storage.audit_actions_on("s1", "p2") == set()


async def test_checkins(storage: Storage) -> None:
    c = CheckinRecord("k1", None, "call1", "callback", "********42", "+4712345642", 10.0)
    assert await storage.create_checkin(c) == c
    assert await storage.create_checkin(c) == c
    assert await storage.list_checkins() == [c]
    assert await storage.resolve_checkin("k1", by="f1", at=20.0)
    assert not await storage.resolve_checkin("k2", by="f1", at=20.0)
    assert await storage.list_checkins() == []
    assert len(await storage.list_checkins(include_resolved=True)) == 1
    got = await storage.get_checkin("k1")
    assert got is not None and got.resolved_by == "f1" and got.resolved_at == 20.0
    assert await storage.get_checkin("k2") is None


async def test_a_reused_call_id_is_a_new_checkin_unless_it_is_a_retry(storage: Storage) -> None:
    """A bridge may reuse call ids (a counter reset by its restart): only the same call,
    status and caller within the retry window is the same check-in."""
    first = CheckinRecord("k1", None, "call1", "callback", "********42", "+4712345642", 1000.0)
    assert await storage.create_checkin(first) == first
    retry = replace(first, id="k2", created_at=1000.0 + RETRY_WINDOW_SECS - 1)
    assert await storage.create_checkin(retry) == first  # a bridge resending: the first
    assert await storage.create_checkin(replace(first, created_at=5e9)) == first  # same id
    someone_else = replace(first, id="k3", caller_masked="********77", caller_full="+4799999977")
    later = replace(first, id="k4", created_at=1000.0 + RETRY_WINDOW_SECS + 1)
    talk = replace(first, id="k5", status="talk")
    for new in (someone_else, later, talk):
        assert await storage.create_checkin(new) == new
    listed = await storage.list_checkins()
    assert sorted(c.id for c in listed) == ["k1", "k3", "k4", "k5"]
    assert (await storage.get_checkin("k3")) == someone_else


async def test_a_run_of_oks_never_hides_someone_waiting_for_a_call(storage: Storage) -> None:
    """Open requests for a call come first, the longest waiting first, and are never
    cut by the limit (before: newest first and cut, so the callers who had waited
    longest fell off the list); the rest follow, newest first, up to the limit."""
    waiting = CheckinRecord("w", None, "call-w", "callback", "********42", None, 1.0)
    await storage.create_checkin(waiting)
    talk = CheckinRecord("t", None, "call-t", "talk", "********43", None, 2.0)
    await storage.create_checkin(talk)
    for n in range(5):  # newer, and nobody resolves an "I'm OK"
        ok = CheckinRecord(f"ok{n}", None, f"call{n}", "ok", "********44", None, 10.0 + n)
        await storage.create_checkin(ok)
    for n in range(3):  # newer requests for a call still
        late = CheckinRecord(f"c{n}", None, f"call-c{n}", "callback", "********45", None, 20.0 + n)
        await storage.create_checkin(late)
    listed = await storage.list_checkins(limit=2)
    assert [c.id for c in listed] == ["w", "t", "c0", "c1", "c2", "ok4", "ok3"]
    await storage.resolve_checkin("t", by="f1", at=30.0)
    listed = await storage.list_checkins(include_resolved=True, limit=6)
    assert [c.id for c in listed] == ["w", "c0", "c1", "c2", "ok4", "ok3", "ok2", "ok1", "ok0", "t"]


async def test_retention_deletes(storage: Storage) -> None:
    now = time.time()
    old, new = now - 40 * DAY, now - DAY
    await with_session(storage, "old", started=old)
    await with_session(storage, "new", started=new)
    await storage.add_line(line(1, session="old", ts=old))
    await storage.add_consent_change(ConsentChange("c1", "old", "p1", True, old))
    await storage.add_audit(AuditEntry("a1", "old", "f1", "mute", "p1", old))
    await storage.add_line(line(2, session="new", ts=old))  # an old line in a new session
    await storage.add_line(line(3, session="new", ts=new))
    # Never ended and begun before the cutoff, but people still write to it (a room
    # kept open over a night, a one-day retention): kept, or its next rows would fail.
    await with_session(storage, "live", started=old)
    await storage.add_consent_change(ConsentChange("c2", "live", "p2", True, new))
    await with_session(storage, "quiet", started=old)  # never ended, nothing since: gone
    await storage.delete_line("old", "m9")  # erases: deleted with their session only
    await storage.delete_line("live", "m8")
    cutoff = now - 30 * DAY
    assert await storage.delete_lines_before(cutoff) == 2
    assert await storage.delete_sessions_before(cutoff) == 2
    assert await storage.get_session("old") is None and await storage.get_session("quiet") is None
    assert await storage.get_session("live") is not None
    await storage.add_line(line(4, session="live", ts=now))
    await storage.add_line(line(8, session="live", ts=now))  # erased: still refused
    assert [x.id for x in await storage.list_lines("live")] == ["m4"]
    await with_session(storage, "old", started=now)  # the same id again (a test's shortcut)
    await storage.add_line(line(9, session="old", ts=now))  # its erase went with it
    assert [x.id for x in await storage.list_lines("old")] == ["m9"]
    assert await storage.list_audit("old") == []
    assert await storage.latest_consent("old", "p1") is None
    assert [x.id for x in await storage.list_lines("new")] == ["m3"]

    def checkin(n: int, status: str, at: float, resolved: float | None = None) -> CheckinRecord:
        full = "+4712345678" if status != "ok" else None
        return CheckinRecord(f"k{n}", None, f"call{n}", status, "*****78", full, at, resolved)

    await storage.create_checkin(checkin(1, "ok", old))
    await storage.create_checkin(checkin(2, "callback", old, resolved=old + 60))
    await storage.create_checkin(checkin(3, "callback", old))  # still waiting for a call
    await storage.create_checkin(checkin(4, "callback", new))
    n = await storage.delete_checkins_before(cutoff, keep_open=("callback", "talk"))
    assert n == 2
    left = {c.id for c in await storage.list_checkins(include_resolved=True)}
    assert left == {"k3", "k4"}
    assert await storage.delete_checkins_before(cutoff, keep_open=()) == 1
    assert await storage.scrub()


async def test_closed_storage_is_unavailable(storage: Storage) -> None:
    await storage.close()
    with pytest.raises(StorageUnavailable):
        await storage.get_room("r1")
    assert not await storage.healthy()


def test_placeholders_are_numbered() -> None:
    assert numbered("a = ? AND b IN (?, ?)") == "a = $1 AND b IN ($2, $3)"


async def test_sqlite_nodes_opening_one_new_file_together(tmp_path: Path) -> None:
    # Two nodes sharing a data dir start at once: one applies each migration, the
    # other sees it applied (seen failing before: "table rooms already exists").
    path = tmp_path / "shared" / "peerroom.sqlite3"
    opened = await asyncio.gather(*(SqliteStorage.open(path) for _ in range(8)))
    rows = await opened[0]._fetch("SELECT version FROM schema_migrations ORDER BY version")
    for s in opened:
        await s.close()
    assert [r[0] for r in rows] == [m.version for m in all_migrations()]


async def test_an_erased_line_is_not_stored_again_by_a_late_copy(storage: Storage) -> None:
    """Another node may write a line after its erase (it held it through an outage):
    the erase is kept, so that copy is refused; lines sent after a participant erased
    their own (having opted in again) are kept."""
    await with_session(storage, started=50.0)
    await storage.add_line(TranscriptLine("m1", "s1", "p1", "Bo", "one", 1.0))
    assert await storage.delete_line("s1", "m1") == 1
    await storage.add_line(TranscriptLine("m1", "s1", "p1", "Bo", "one", 1.0))
    assert await storage.list_lines("s1") == []
    assert await storage.delete_sender_lines("s1", "p1", up_to=10.0) == 0
    late = [
        TranscriptLine("m2", "s1", "p1", "Bo", "before the erase", 5.0),
        TranscriptLine("m3", "s1", "p1", "Bo", "after it", 20.0),
        TranscriptLine("m4", "s1", "p2", "Cy", "someone else", 5.0),
    ]
    await storage.add_lines(late)
    assert [x.id for x in await storage.list_lines("s1")] == ["m4", "m3"]
    # The erases go with their session at retention.
    assert await storage.delete_sessions_before(100.0) == 1
    await with_session(storage)
    await storage.add_line(TranscriptLine("m1", "s1", "p1", "Bo", "a new session", 1.0))
    assert [x.id for x in await storage.list_lines("s1")] == ["m1"]


@pytest.mark.postgres
async def test_an_erase_never_misses_a_line_another_node_is_storing(pg_url: str) -> None:
    """Node A's insert of a line is in flight (its check for an erase already made) when
    node B erases the sender's lines. Before, B's delete could not see A's uncommitted
    line and A's check had not seen B's erase: the line stayed stored after its erase.
    A trigger (this test's own) holds A's insert until the test lets it go."""
    node_a, node_b = await PostgresStorage.open(pg_url), await PostgresStorage.open(pg_url)
    admin = await asyncpg.connect(pg_url)
    try:
        await with_session(node_a, started=50.0)
        await hold_inserts(admin, "transcript_lines")
        storing = asyncio.create_task(
            node_a.add_line(TranscriptLine("m1", "s1", "p1", "Bo", "one", 1.0))
        )
        await waiting_for_locks(admin, 1)  # A's insert is held in the trigger
        erasing = asyncio.create_task(node_b.delete_sender_lines("s1", "p1", up_to=10.0))
        # Old code: the erase runs to its end now. Now: it waits for A's transaction.
        await done_or_waiting(erasing, admin, 2)
        await admin.execute("SELECT pg_advisory_unlock(4242)")
        await storing
        await erasing
        assert await node_a.list_lines("s1") == []
        await node_a.add_line(TranscriptLine("m1", "s1", "p1", "Bo", "one", 1.0))  # a late copy
        assert await node_a.list_lines("s1") == []
    finally:
        await admin.close()
        await node_a.close()
        await node_b.close()


async def locks_waiting(con: asyncpg.Connection) -> int:
    """Advisory locks someone in this database is waiting for."""
    n: int = await con.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    return n


async def waiting_for_locks(con: asyncpg.Connection, n: int) -> None:
    for _ in range(250):
        if await locks_waiting(con) == n:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not {n} advisory locks waited for")


async def hold_inserts(admin: asyncpg.Connection, table: str) -> None:
    """Every insert into ``table`` waits, after its statement's snapshot and checks, in
    a trigger of the test's own, until ``admin`` unlocks advisory lock 4242."""
    await admin.execute(
        "CREATE OR REPLACE FUNCTION test_hold() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN PERFORM pg_advisory_lock(4242); PERFORM pg_advisory_unlock(4242); "
        "RETURN NEW; END $$"
    )
    await admin.execute(
        f"CREATE TRIGGER test_hold BEFORE INSERT ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION test_hold()"
    )
    await admin.execute("SELECT pg_advisory_lock(4242)")


async def done_or_waiting(task: asyncio.Task[Any], admin: asyncpg.Connection, n: int) -> None:
    """Until ``task`` has ended (the old code) or ``n`` advisory locks are waited for."""
    for _ in range(250):
        if task.done() or await locks_waiting(admin) == n:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the task neither finished nor waited ({n} locks waited for)")


@pytest.mark.postgres
async def test_a_retry_reaching_two_nodes_at_once_is_one_checkin(pg_url: str) -> None:
    """Before, each node looked for the first record, found none (the other's insert
    not committed yet), and inserted its own: two rows for one request for a call."""
    node_a, node_b = await PostgresStorage.open(pg_url), await PostgresStorage.open(pg_url)
    admin = await asyncpg.connect(pg_url)
    first = CheckinRecord("k1", None, "call1", "callback", "********42", "+4712345642", 1000.0)
    retry = replace(first, id="k2", created_at=1001.0)  # each node draws its own id
    try:
        await hold_inserts(admin, "checkins")
        creating = asyncio.create_task(node_a.create_checkin(first))
        await waiting_for_locks(admin, 1)  # A's insert is held in the trigger
        retrying = asyncio.create_task(node_b.create_checkin(retry))
        await done_or_waiting(retrying, admin, 2)
        await admin.execute("SELECT pg_advisory_unlock(4242)")
        assert await creating == first
        assert await retrying == first
        assert [c.id for c in await node_a.list_checkins()] == ["k1"]
    finally:
        await admin.close()
        await node_a.close()
        await node_b.close()
