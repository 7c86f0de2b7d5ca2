"""SQLite storage, the embedded default: one file under ``--data-dir``."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import astuple
from pathlib import Path

import aiosqlite

from rooms.model import QueueOrder
from server.storage.base import CheckinRecord, PinTaken, RoomRecord
from server.storage.migrate import CREATE_TABLE, all_migrations

# aiosqlite's DEBUG lines carry query parameters (chat text, names, numbers): never emit them.
logging.getLogger("aiosqlite").setLevel(logging.INFO)

_CHECKIN_COLUMNS = (
    "id, room_id, call_id, status, caller_masked, caller_full, created_at, resolved_at, resolved_by"
)
_ROOM_COLUMNS = (
    "id, title, phone_pin, waiting_room, transcripts_allowed, chat_enabled, queue_order, created_at"
)


def _prepare_file(path: Path) -> None:
    # Transcripts live here: readable by the server's user only.
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.touch(mode=0o600)


class SqliteStorage:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: Path) -> SqliteStorage:
        await asyncio.to_thread(_prepare_file, path)
        db = await aiosqlite.connect(path, isolation_level=None)  # explicit transactions
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA foreign_keys=ON")
        await db.execute("PRAGMA secure_delete=ON")  # erased text is overwritten, not left
        storage = cls(db)
        await storage._migrate()
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

    async def create_room(self, room: RoomRecord) -> None:
        try:
            await self._db.execute(
                f"INSERT INTO rooms ({_ROOM_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                (
                    room.id,
                    room.title,
                    room.phone_pin,
                    room.waiting_room,
                    room.transcripts_allowed,
                    room.chat_enabled,
                    room.queue_order.value,
                    room.created_at,
                ),
            )
        except sqlite3.IntegrityError as e:
            if "phone_pin" in str(e):
                raise PinTaken from e
            raise

    async def get_room(self, room_id: str) -> RoomRecord | None:
        return await self._one_room("id", room_id)

    async def get_room_by_pin(self, pin: str) -> RoomRecord | None:
        return await self._one_room("phone_pin", pin)

    async def _one_room(self, column: str, value: str) -> RoomRecord | None:
        sql = f"SELECT {_ROOM_COLUMNS} FROM rooms WHERE {column} = ?"  # noqa: S608
        async with self._db.execute(sql, (value,)) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        return RoomRecord(
            id=row[0],
            title=row[1],
            phone_pin=row[2],
            waiting_room=bool(row[3]),
            transcripts_allowed=bool(row[4]),
            chat_enabled=bool(row[5]),
            queue_order=QueueOrder(row[6]),
            created_at=row[7],
        )

    async def create_checkin(self, checkin: CheckinRecord) -> CheckinRecord:
        await self._db.execute(
            f"INSERT INTO checkins ({_CHECKIN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "  # noqa: S608
            "ON CONFLICT (call_id, status) DO NOTHING",
            astuple(checkin),
        )
        sql = f"SELECT {_CHECKIN_COLUMNS} FROM checkins WHERE call_id = ? AND status = ?"  # noqa: S608
        async with self._db.execute(sql, (checkin.call_id, checkin.status)) as cur:
            row = await cur.fetchone()
        assert row is not None
        return CheckinRecord(*row)

    async def list_checkins(
        self, *, include_resolved: bool = False, limit: int = 200
    ) -> list[CheckinRecord]:
        where = "" if include_resolved else "WHERE resolved_at IS NULL"
        sql = (
            f"SELECT {_CHECKIN_COLUMNS} FROM checkins {where} "  # noqa: S608
            "ORDER BY created_at DESC LIMIT ?"
        )
        async with self._db.execute(sql, (limit,)) as cur:
            return [CheckinRecord(*row) for row in await cur.fetchall()]

    async def resolve_checkin(self, checkin_id: str, *, by: str, at: float) -> bool:
        cur = await self._db.execute(
            "UPDATE checkins SET resolved_at = ?, resolved_by = ? WHERE id = ?",
            (at, by, checkin_id),
        )
        return cur.rowcount > 0

    async def healthy(self) -> bool:
        try:
            async with self._db.execute("SELECT 1") as cur:
                await cur.fetchone()
        except (sqlite3.Error, ValueError):
            return False
        return True

    async def close(self) -> None:
        await self._db.close()
