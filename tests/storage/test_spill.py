"""The recorder's spill files on a data directory that nodes may share (docs/deploy.md,
scripts/two-nodes.sh): each process keeps its own, a start replays them all, and
nothing kept is overwritten, deleted by another node or lost to a missing directory.

SQLite only: the files are the subject here, not the database (test_recorder.py runs the
replay against PostgreSQL too).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rooms.events import Audit, Consent, Unstore
from server.durable import write_atomic
from server.recorder import SPILL_FILE, Recorder
from server.storage.base import AuditEntry, SessionRecord
from server.storage.sqlite import SqliteStorage
from tests.storage.test_backends import room
from tests.storage.test_recorder import said_line, spill_files


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[SqliteStorage]:
    """The database, with room r1, session s1 and p1's two lines in it."""
    s = await SqliteStorage.open(tmp_path / "db" / "peerroom.sqlite3")
    await s.create_room(room())
    await s.record_session(SessionRecord("s1", "r1", 0.0))
    await s.add_lines([said_line(1), said_line(2)])
    yield s
    await s.close()


async def away(tmp_path: Path) -> SqliteStorage:
    """A storage whose database is gone: every write is an outage."""
    down = await SqliteStorage.open(tmp_path / "gone.sqlite3")
    await down.close()
    return down


async def running_during_an_outage(tmp_path: Path, data_dir: Path) -> Recorder:
    """A node started while the database is away: it can write nothing."""
    node = Recorder(await away(tmp_path), spill_path=data_dir / SPILL_FILE)
    node.flush_on_close_secs = 0.2
    node.start()
    return node


async def stopped_with(node: Recorder, *events: Unstore | Audit) -> Recorder:
    """``events`` submitted, then the node stopped: they are in its spill file."""
    for ev in events:
        node.submit(ev)
    await node.close()
    return node


async def stopped_during_an_outage(
    tmp_path: Path, data_dir: Path, *events: Unstore | Audit
) -> Recorder:
    return await stopped_with(await running_during_an_outage(tmp_path, data_dir), *events)


async def replayed(storage: SqliteStorage, data_dir: Path) -> None:
    """Start a node on the working database; wait until it has replayed every spill."""
    node = Recorder(storage, spill_path=data_dir / SPILL_FILE)
    node.start()
    try:
        assert await node.flush(10)
    finally:
        await node.close()


async def test_two_nodes_sharing_a_data_dir_keep_both_spills(
    storage: SqliteStorage, tmp_path: Path
) -> None:
    """Before, both wrote ``storage-pending.json``: the second stop overwrote the
    first's erase, and p1's lines stayed stored."""
    data = tmp_path / "data"
    data.mkdir()
    node_a = await running_during_an_outage(tmp_path, data)
    node_b = await running_during_an_outage(tmp_path, data)
    await stopped_with(node_a, Unstore("s1", participant_id="p1", ts=5.0))
    await stopped_with(node_b, Audit("r1", "s1", "f1", "remove", "p2", 6.0))
    assert len(spill_files(data)) == 2
    await replayed(storage, data)
    assert await storage.list_lines("s1") == []
    assert await storage.audit_actions_on("s1", "p2") == {"remove"}
    assert spill_files(data) == []


async def test_a_replay_never_deletes_the_spill_another_node_wrote_meanwhile(
    storage: SqliteStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Node A replays what node C kept, slowly; node B, running all along, stops during
    that with an erase of its own. Before, B's spill had the name of C's and A deleted it
    when its replay was done."""
    data = tmp_path / "data"
    data.mkdir()
    node_b = await running_during_an_outage(tmp_path, data)
    await stopped_during_an_outage(tmp_path, data, Audit("r1", "s1", "f1", "remove", "p2", 6.0))
    gate = asyncio.Event()
    real_add_audit = storage.add_audit

    async def slow_add_audit(entry: AuditEntry) -> None:
        await gate.wait()
        await real_add_audit(entry)

    monkeypatch.setattr(storage, "add_audit", slow_add_audit)
    node_a = Recorder(storage, spill_path=data / SPILL_FILE)
    node_a.start()
    try:
        await stopped_with(node_b, Unstore("s1", participant_id="p1", ts=5.0))
        gate.set()
        assert await node_a.flush(10)
    finally:
        await node_a.close()
    assert await storage.audit_actions_on("s1", "p2") == {"remove"}
    kept = spill_files(data)
    assert len(kept) == 1, kept  # B's, whole
    assert [e["kind"] for e in json.loads((data / kept[0]).read_text())] == ["Unstore"]
    monkeypatch.undo()
    await replayed(storage, data)
    assert await storage.list_lines("s1") == []


async def test_an_unreadable_spill_is_moved_aside_never_overwritten(
    storage: SqliteStorage, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / SPILL_FILE).write_bytes(b'[{"kind": "Unstore", "session_id": "s1", ')  # cut short
    await stopped_during_an_outage(tmp_path, data, Unstore("s1", participant_id="p1", ts=5.0))
    aside = [p for p in data.iterdir() if ".unreadable-" in p.name]
    assert len(aside) == 1 and aside[0].read_bytes().endswith(b'"s1", ')
    await replayed(storage, data)
    assert await storage.list_lines("s1") == []
    assert aside[0].exists()  # for a person to look at


async def test_a_missing_data_dir_is_made_for_the_spill(tmp_path: Path) -> None:
    """PostgreSQL and secrets from the environment: the data dir may never have been
    made. Before, the spill failed (the erase was lost) and close() raised."""
    data = tmp_path / "not" / "made"
    node = await stopped_during_an_outage(
        tmp_path, data, Unstore("s1", participant_id="p1", ts=5.0)
    )
    assert data.stat().st_mode & 0o777 == 0o700
    (kept,) = spill_files(data)
    assert (data / kept).stat().st_mode & 0o777 == 0o600
    assert node.spill_path is not None and node.spill_path.name == kept


async def test_a_spill_that_cannot_be_written_is_logged_and_the_writer_stops(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    node = Recorder(await away(tmp_path), spill_path=blocked / "data" / SPILL_FILE)
    node.flush_on_close_secs = 0.2
    node.start()
    node.submit(Unstore("s1", participant_id="p1", ts=5.0))
    await node.close()  # before, it raised, with the writer still running
    assert node._task is not None and node._task.done()
    assert "spill file cannot be written" in caplog.text


def test_two_writers_of_one_file_never_share_a_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second write runs entirely while the first is syncing its temporary file.
    Before, both used ``NAME.tmp``: the second truncated and renamed the first's, whose
    rename then failed (FileNotFoundError) after it had reported nothing."""
    path = tmp_path / "kept.json"
    real_fsync = os.fsync
    interleaved: list[bool] = []

    def fsync(fd: int) -> None:
        if not interleaved:
            interleaved.append(True)
            write_atomic(path, b"second")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    write_atomic(path, b"first")
    assert interleaved
    assert path.read_bytes() == b"first"  # the last to finish
    assert [p.name for p in tmp_path.iterdir()] == ["kept.json"]  # no temporary left


async def test_a_spill_with_one_bad_entry_is_set_aside_whole(tmp_path: Path) -> None:
    """None of its events is replayed (a person looks at the whole file), and the next
    file is replayed as usual."""
    data = tmp_path / "data"
    data.mkdir()
    good = {"kind": "Unstore", "session_id": "s1", "participant_id": "p1", "ts": 5.0}
    (data / "storage-pending-aaaa.json").write_text(json.dumps([good, {"kind": "Nope"}]))
    (data / "storage-pending-bbbb.json").write_text(json.dumps([good]))
    node = Recorder(await away(tmp_path), spill_path=data / SPILL_FILE)
    node.flush_on_close_secs = 0.2
    node.start()
    try:
        assert node.backlog == 1  # the second file's erase only
    finally:
        await node.close()
    (aside,) = [p.name for p in data.iterdir() if ".unreadable-" in p.name]
    assert aside.startswith("storage-pending-aaaa.unreadable-")


async def test_a_spill_of_an_older_release_brings_back_no_audit_the_rule_forbids(
    storage: SqliteStorage, tmp_path: Path
) -> None:
    """An older release kept every moderator action (a mute, the floor given) with the
    ids of people who never opted in; replayed after an upgrade, those rows would have
    reached the database after all. Only removals and bans are kept now."""
    data = tmp_path / "data"
    data.mkdir()
    old = [
        {"kind": "Audit", "room_id": "r1", "session_id": "s1", "actor": "f1",
         "action": action, "target": "p2", "ts": 6.0}
        for action in ("mute", "floor.give", "remove")
    ]  # fmt: skip
    write_atomic(data / SPILL_FILE, json.dumps(old).encode())
    await replayed(storage, data)
    assert [(a.action, a.target_id) for a in await storage.list_audit("s1")] == [("remove", "p2")]
    assert spill_files(data) == []


async def test_an_event_refused_for_minutes_is_set_aside_and_the_rest_goes_on(
    storage: SqliteStorage, tmp_path: Path
) -> None:
    """A consent change the database will never take (its session's room is gone: a row
    deleted by hand, a schema out of step) held up every event of every room behind it,
    for good. After refused_set_aside_secs it goes to a file of its own, which the next
    start replays, and what waited behind it is written."""
    data = tmp_path / "data"
    data.mkdir()
    node = Recorder(storage, spill_path=data / SPILL_FILE)
    node.refused_retry_secs = (0.01, 0.02)
    node.refused_set_aside_secs = 0.2
    node.submit(Consent("gone-room", "s9", "p1", True, 5.0))
    node.submit(Unstore("s1", participant_id="p1", ts=6.0))
    node.start()
    try:
        assert await node.flush(10)
        assert await storage.list_lines("s1") == []  # the erase behind it ran
    finally:
        await node.close()
    (aside,) = spill_files(data)
    assert "refused" in aside
    assert [e["kind"] for e in json.loads((data / aside).read_text())] == ["Consent"]
    # The next start takes it up again: the room is back now, and it is written.
    await storage.create_room(room("gone-room", pin="654321"))
    await replayed(storage, data)
    assert await storage.latest_consent("s9", "p1") is True
    assert spill_files(data) == []
