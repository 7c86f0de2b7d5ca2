"""SQLite storage, the embedded default: one file under ``--data-dir``.

Erased text must not linger in the files: ``secure_delete`` overwrites deleted cells
and freed pages with zeros, and :meth:`SqliteStorage.scrub` (run by the recorder's
clean-up soon after an erase, and by retention after a purge) checkpoints the WAL into
the main file and truncates it, so the frames that still held the old page images are
gone too.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path
from typing import Final

import aiosqlite

from server.storage.base import StorageUnavailable
from server.storage.migrate import CREATE_TABLE, all_migrations
from server.storage.sql import DuplicateKey, Row, SqlStorage

# aiosqlite's DEBUG lines carry query parameters (chat text, names, numbers): never emit them.
logging.getLogger("aiosqlite").setLevel(logging.INFO)

log = logging.getLogger(__name__)

SCRUB_TRIES: Final = 10
SCRUB_RETRY_SECS: Final = 0.05  # readers here hold a snapshot for milliseconds
WAL_SWITCH_SECS: Final = 5.0  # as long as sqlite3's own busy timeout

# SQLite result codes that mean "the file cannot be used right now", not "bad SQL".
_TRANSIENT: Final = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_IOERR",
    "SQLITE_FULL",
    "SQLITE_CANTOPEN",
    "SQLITE_READONLY",
    "SQLITE_PROTOCOL",
)


def _prepare_file(path: Path) -> None:
    # Transcripts live here: readable by the server's user only.
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.touch(mode=0o600)


async def _set_wal(db: aiosqlite.Connection) -> None:
    """Switch to WAL. Another process opening the same new file at that moment (two
    nodes started together) can make SQLite answer "database is locked" at once, busy
    timeout or not: try again for a few seconds."""
    deadline = time.monotonic() + WAL_SWITCH_SECS
    while True:
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.02)


def _checkpoint(path: Path) -> bool:
    """One non-waiting ``wal_checkpoint(TRUNCATE)``; True if readers held it back."""
    # mode=rw: a file that is gone is an error here, not a new empty database.
    con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", timeout=0, uri=True)
    try:
        ((busy, *_),) = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        con.close()
    return bool(busy)


class SqliteStorage(SqlStorage):
    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self._db = db
        self._path = path

    @classmethod
    async def open(cls, path: Path) -> SqliteStorage:
        await asyncio.to_thread(_prepare_file, path)
        db = await aiosqlite.connect(path, isolation_level=None)  # explicit transactions
        try:
            await _set_wal(db)
            await db.execute("PRAGMA foreign_keys=ON")
            await db.execute("PRAGMA secure_delete=ON")  # erased text is overwritten, not left
            storage = cls(db, path)
            await storage._migrate()
        except BaseException:
            # aiosqlite's worker thread would keep the process alive after a failed start.
            await db.close()
            raise
        return storage

    async def _migrate(self) -> None:
        await self._db.execute(CREATE_TABLE)
        async with self._db.execute("SELECT version FROM schema_migrations") as cur:
            done = {row[0] for row in await cur.fetchall()}
        for m in all_migrations():
            if m.version in done:
                continue
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                # Another process on the same data dir (two nodes started together) may
                # have applied it while this one waited for the write lock.
                async with self._db.execute(
                    "SELECT 1 FROM schema_migrations WHERE version = ?", (m.version,)
                ) as cur:
                    if await cur.fetchone() is not None:
                        await self._db.execute("COMMIT")
                        continue
                for statement in m.statements():
                    await self._db.execute(statement)
                await self._db.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
                    (m.version, m.name),
                )
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            await self._db.execute("COMMIT")

    async def _execute(self, sql: str, *args: object) -> int:
        try:
            cur = await self._db.execute(sql, args)
        except sqlite3.Error as e:
            raise _translate(e) from e
        except ValueError as e:  # aiosqlite: the connection is closed
            raise StorageUnavailable("the SQLite connection is closed") from e
        return cur.rowcount

    async def _fetch(self, sql: str, *args: object) -> list[Row]:
        try:
            async with self._db.execute(sql, args) as cur:
                return list(await cur.fetchall())
        except sqlite3.Error as e:
            raise _translate(e) from e
        except ValueError as e:
            raise StorageUnavailable("the SQLite connection is closed") from e

    async def scrub(self) -> bool:
        """Checkpoint the WAL into the file and truncate it; False if that could not be
        done now. Another connection reading (another node on this file, a ``peerroom
        create-room`` next to the server) can hold it back: retry briefly, then leave it
        owed. On a connection of its own that never waits for a lock: on the server's,
        each busy try would wait out the busy timeout (5 s) with every query behind it."""
        for _ in range(SCRUB_TRIES):
            try:
                busy = await asyncio.to_thread(_checkpoint, self._path)
            except sqlite3.Error as e:
                raise _translate(e) from e
            if not busy:
                return True
            await asyncio.sleep(SCRUB_RETRY_SECS)
        log.warning("the WAL could not be truncated now (a reader holds it); still owed")
        return False

    async def healthy(self) -> bool:
        try:
            await self._fetch("SELECT 1")
        except StorageUnavailable:
            return False
        return True

    async def close(self) -> None:
        await self._db.close()


def _translate(e: sqlite3.Error) -> Exception:
    name = getattr(e, "sqlite_errorname", "")
    if isinstance(e, sqlite3.IntegrityError) and "UNIQUE" in str(e):
        return DuplicateKey(str(e))
    if name.startswith(_TRANSIENT):
        return StorageUnavailable(f"SQLite: {name}")
    return e
