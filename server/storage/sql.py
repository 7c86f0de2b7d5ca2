"""Every query, written once for both backends.

Storage decides nothing: one method per query, each a single statement (so each is its
own transaction: autocommit), no rules in SQL. The SQL is the common subset of SQLite
and PostgreSQL, with ``?`` placeholders; the PostgreSQL backend numbers them (``$1``).
A backend supplies its primitives (``_execute``, ``_fetch``, ``_execute_locked``, and
the driver-specific ``healthy``/``scrub``/``close``) and turns its driver's errors into
:class:`~server.storage.base.StorageUnavailable` and :class:`DuplicateKey`.

Writes that check before they write, which several nodes may do at once, go through
:meth:`SqlStorage._execute_locked`: PostgreSQL runs them as one transaction holding a
named lock (``pg_advisory_xact_lock``), taken before the first statement's snapshot.
SQLite needs no more than its statements: its writers take turns on the one file, and
each statement sees every write committed before it. They are:

- storing lines and erasing them (lock: the session). A line is stored only if no
  erase covers it, and an erase keeps its row then deletes the lines; on PostgreSQL a
  line being inserted by one node is invisible to another node's delete until it
  commits, and the insert's check ran on a snapshot taken before the erase committed,
  so the line could survive its erase;
- creating a check-in (lock: its call and status), so that a retry reaching two nodes
  at once stores one row.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import astuple
from typing import Any, Final

from rooms.model import QueueOrder
from server.storage.base import (
    RETRY_WINDOW_SECS,
    AuditEntry,
    CheckinRecord,
    ConsentChange,
    PinTaken,
    RoomRecord,
    SessionRecord,
    TranscriptLine,
)

Row = Sequence[Any]

_ROOM_COLUMNS: Final = (
    "id, title, phone_pin, waiting_room, transcripts_allowed, chat_enabled, queue_order, created_at"
)
_CHECKIN_COLUMNS: Final = (
    "id, room_id, call_id, status, caller_masked, caller_full, created_at, resolved_at, resolved_by"
)
_SESSION_COLUMNS: Final = "id, room_id, started_at, ended_at, end_reason"
_LINE_COLUMNS: Final = "id, session_id, sender_id, from_name, text, ts"
_AUDIT_COLUMNS: Final = "id, session_id, actor_id, action, target_id, ts"
_CONSENT_COLUMNS: Final = "id, session_id, participant_id, consent, ts"


# A session is past the retention when it ended before the cutoff, or, never ended (live
# still, or its node died), began before it and has had no line, consent change or
# stored removal since: a session kept open over a night outlives a one-day retention
# while people still write to it. Five parameters, all the cutoff (the first lets the
# started_at index narrow the scan).
_SESSION_EXPIRED: Final = (
    "s.started_at < ? AND COALESCE(s.ended_at, s.started_at) < ? "
    "AND NOT EXISTS (SELECT 1 FROM transcript_lines l WHERE l.session_id = s.id AND l.ts >= ?) "
    "AND NOT EXISTS (SELECT 1 FROM consent_changes c WHERE c.session_id = s.id AND c.ts >= ?) "
    "AND NOT EXISTS (SELECT 1 FROM audit_log a WHERE a.session_id = s.id AND a.ts >= ?)"
)


class DuplicateKey(Exception):
    """A unique constraint refused a write; the message names the constraint."""


class SqlStorage(ABC):
    # primitives ------------------------------------------------------------------------

    @abstractmethod
    async def _execute(self, sql: str, *args: object) -> int:
        """Run one statement; returns the number of rows it changed."""

    @abstractmethod
    async def _fetch(self, sql: str, *args: object) -> list[Row]: ...

    async def _execute_locked(
        self, locks: Iterable[str], *statements: tuple[str, Sequence[object]]
    ) -> list[int]:
        """Run ``statements`` in order, none of them interleaved with another call of
        this that names one of ``locks``; the rows each changed. Here (SQLite) each
        statement is its own transaction, which is enough: writers take turns on the
        file. PostgreSQL runs them in one transaction holding the locks."""
        return [await self._execute(sql, *args) for sql, args in statements]

    async def _fetchone(self, sql: str, *args: object) -> Row | None:
        rows = await self._fetch(sql, *args)
        return rows[0] if rows else None

    async def _insert_new(self, table: str, columns: str, records: Sequence[Any]) -> None:
        """Insert dataclass ``records`` (fields in ``columns`` order) in one statement,
        so one transaction, skipping any whose id is there already: every write the
        recorder retries is idempotent this way."""
        if not records:
            return
        row = "(" + ", ".join(["?"] * (columns.count(",") + 1)) + ")"
        await self._execute(
            f"INSERT INTO {table} ({columns}) VALUES {', '.join([row] * len(records))} "  # noqa: S608
            "ON CONFLICT (id) DO NOTHING",
            *(v for record in records for v in astuple(record)),
        )

    # rooms -----------------------------------------------------------------------------

    async def create_room(self, room: RoomRecord) -> None:
        try:
            await self._execute(
                f"INSERT INTO rooms ({_ROOM_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                room.id,
                room.title,
                room.phone_pin,
                room.waiting_room,
                room.transcripts_allowed,
                room.chat_enabled,
                room.queue_order.value,
                room.created_at,
            )
        except DuplicateKey as e:
            if "phone_pin" in str(e):
                raise PinTaken from e
            raise

    async def get_room(self, room_id: str) -> RoomRecord | None:
        return _room(
            await self._fetchone(f"SELECT {_ROOM_COLUMNS} FROM rooms WHERE id = ?", room_id)  # noqa: S608
        )

    async def get_room_by_pin(self, pin: str) -> RoomRecord | None:
        return _room(
            await self._fetchone(f"SELECT {_ROOM_COLUMNS} FROM rooms WHERE phone_pin = ?", pin)  # noqa: S608
        )

    # check-ins -------------------------------------------------------------------------

    async def create_checkin(self, checkin: CheckinRecord) -> CheckinRecord:
        """One insert that checks for the record it would be a retry of (storage/base.py's
        rule), under the lock of its call and status on PostgreSQL: two nodes taking one
        retried request at once store one row. Then the first such record is read back."""
        match = (
            "id = ? OR (call_id = ? AND status = ? AND caller_masked = ? "
            "AND COALESCE(caller_full, '') = ? AND created_at >= ? AND created_at <= ?)"
        )
        match_args = [
            checkin.id,
            checkin.call_id,
            checkin.status,
            checkin.caller_masked,
            checkin.caller_full or "",
            checkin.created_at - RETRY_WINDOW_SECS,
            checkin.created_at + RETRY_WINDOW_SECS,
        ]
        (inserted,) = await self._execute_locked(
            [f"checkin:{checkin.call_id}:{checkin.status}"],
            (
                f"INSERT INTO checkins ({_CHECKIN_COLUMNS}) SELECT ?, ?, ?, ?, ?, ?, "  # noqa: S608
                "CAST(? AS DOUBLE PRECISION), CAST(? AS DOUBLE PRECISION), ? "
                f"WHERE NOT EXISTS (SELECT 1 FROM checkins WHERE {match}) "
                "ON CONFLICT (id) DO NOTHING",
                [*astuple(checkin), *match_args],
            ),
        )
        if inserted:
            return checkin
        row = await self._fetchone(
            f"SELECT {_CHECKIN_COLUMNS} FROM checkins WHERE {match} "  # noqa: S608
            "ORDER BY created_at, id LIMIT 1",
            *match_args,
        )
        # None only if it went meanwhile (a retention sweep): this one is not stored then.
        return CheckinRecord(*row) if row is not None else await self.create_checkin(checkin)

    async def list_checkins(
        self, *, include_resolved: bool = False, limit: int = 200
    ) -> list[CheckinRecord]:
        rest = "NOT (resolved_at IS NULL AND status <> 'ok')"
        if not include_resolved:
            rest = f"resolved_at IS NULL AND {rest}"
        rows = await self._fetch(
            f"SELECT {_CHECKIN_COLUMNS} FROM ("  # noqa: S608
            f"SELECT {_CHECKIN_COLUMNS}, 0 AS part, created_at AS k FROM checkins "
            "WHERE resolved_at IS NULL AND status <> 'ok' "
            f"UNION ALL SELECT * FROM (SELECT {_CHECKIN_COLUMNS}, 1 AS part, -created_at AS k "
            f"FROM checkins WHERE {rest} ORDER BY created_at DESC LIMIT ?) later"
            ") listed ORDER BY part, k, id",
            limit,
        )
        return [CheckinRecord(*row) for row in rows]

    async def get_checkin(self, checkin_id: str) -> CheckinRecord | None:
        row = await self._fetchone(
            f"SELECT {_CHECKIN_COLUMNS} FROM checkins WHERE id = ?",  # noqa: S608
            checkin_id,
        )
        return CheckinRecord(*row) if row is not None else None

    async def resolve_checkin(self, checkin_id: str, *, by: str, at: float) -> bool:
        n = await self._execute(
            "UPDATE checkins SET resolved_at = ?, resolved_by = ? WHERE id = ?", at, by, checkin_id
        )
        return n > 0

    async def delete_checkins_before(self, cutoff: float, *, keep_open: tuple[str, ...]) -> int:
        if not keep_open:
            return await self._execute("DELETE FROM checkins WHERE created_at < ?", cutoff)
        marks = ", ".join("?" * len(keep_open))
        return await self._execute(
            "DELETE FROM checkins WHERE created_at < ? "  # noqa: S608
            f"AND (resolved_at IS NOT NULL OR status NOT IN ({marks}))",
            cutoff,
            *keep_open,
        )

    # sessions --------------------------------------------------------------------------

    async def record_session(self, session: SessionRecord) -> None:
        await self._insert_new("sessions", _SESSION_COLUMNS, [session])

    async def record_sessions(self, sessions: Sequence[SessionRecord]) -> None:
        """Several sessions in one statement (so one transaction): rooms filling at once."""
        await self._insert_new("sessions", _SESSION_COLUMNS, sessions)

    async def close_session(self, session_id: str, *, ended_at: float, reason: str) -> None:
        await self._execute(
            "UPDATE sessions SET ended_at = ?, end_reason = ? WHERE id = ?",
            ended_at,
            reason,
            session_id,
        )

    async def get_session(self, session_id: str) -> SessionRecord | None:
        row = await self._fetchone(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = ?",  # noqa: S608
            session_id,
        )
        return SessionRecord(*row) if row else None

    async def delete_sessions_before(self, cutoff: float) -> int:
        deleted = await self._execute(
            "DELETE FROM sessions WHERE id IN "  # noqa: S608
            f"(SELECT id FROM sessions s WHERE {_SESSION_EXPIRED})",
            cutoff,
            cutoff,
            cutoff,
            cutoff,
            cutoff,
        )
        # Then the erases of sessions that are gone, and only those: one statement each
        # (no transaction here), so a session kept by a line written between the two
        # keeps its erases, and an erased line another node still holds stays refused.
        await self._execute(
            "DELETE FROM transcript_erasures WHERE session_id NOT IN (SELECT id FROM sessions)"
        )
        return deleted

    # transcript lines ------------------------------------------------------------------

    async def add_line(self, line: TranscriptLine) -> None:
        await self.add_lines([line])

    async def add_lines(self, lines: Sequence[TranscriptLine]) -> None:
        """Several lines in one statement (so one transaction): how a backlog drains.
        A line already stored, or covered by an erase, is skipped."""
        if not lines:
            return
        row = "(?, ?, ?, ?, ?, CAST(? AS DOUBLE PRECISION))"
        await self._execute_locked(
            {_session_lock(line.session_id) for line in lines},
            (
                f"WITH v ({_LINE_COLUMNS}) AS (VALUES {', '.join([row] * len(lines))}) "  # noqa: S608
                f"INSERT INTO transcript_lines ({_LINE_COLUMNS}) SELECT {_LINE_COLUMNS} FROM v "
                "WHERE NOT EXISTS (SELECT 1 FROM transcript_erasures e "
                "WHERE e.session_id = v.session_id AND (e.line_id = v.id "
                "OR (e.sender_id = v.sender_id AND v.ts <= e.up_to))) "
                "ON CONFLICT (id) DO NOTHING",
                [v for line in lines for v in astuple(line)],
            ),
        )

    async def delete_line(self, session_id: str, line_id: str) -> int:
        """The erase is kept first, so a copy of the line written later is refused."""
        _, deleted = await self._execute_locked(
            [_session_lock(session_id)],
            (
                "INSERT INTO transcript_erasures (id, session_id, line_id) VALUES (?, ?, ?) "
                "ON CONFLICT (id) DO NOTHING",
                [f"line:{session_id}:{line_id}", session_id, line_id],
            ),
            (
                "DELETE FROM transcript_lines WHERE session_id = ? AND id = ?",
                [session_id, line_id],
            ),
        )
        return deleted

    async def delete_sender_lines(
        self, session_id: str, sender_id: str, up_to: float | None = None
    ) -> int:
        """Every line of ``sender_id`` sent at or before ``up_to`` (all, if None: an
        erase queued by an older version); the erase is kept first, as above."""
        if up_to is None:
            (deleted,) = await self._execute_locked(
                [_session_lock(session_id)],
                (
                    "DELETE FROM transcript_lines WHERE session_id = ? AND sender_id = ?",
                    [session_id, sender_id],
                ),
            )
            return deleted
        _, deleted = await self._execute_locked(
            [_session_lock(session_id)],
            (
                "INSERT INTO transcript_erasures (id, session_id, sender_id, up_to) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                [f"sender:{session_id}:{sender_id}:{up_to!r}", session_id, sender_id, up_to],
            ),
            (
                "DELETE FROM transcript_lines WHERE session_id = ? AND sender_id = ? AND ts <= ?",
                [session_id, sender_id, up_to],
            ),
        )
        return deleted

    async def list_lines(self, session_id: str) -> list[TranscriptLine]:
        rows = await self._fetch(
            f"SELECT {_LINE_COLUMNS} FROM transcript_lines WHERE session_id = ? "  # noqa: S608
            "ORDER BY ts, id",
            session_id,
        )
        return [TranscriptLine(*row) for row in rows]

    async def delete_lines_before(self, cutoff: float) -> int:
        return await self._execute("DELETE FROM transcript_lines WHERE ts < ?", cutoff)

    # consent and audit -----------------------------------------------------------------

    async def add_consent_change(self, change: ConsentChange) -> None:
        await self._insert_new("consent_changes", _CONSENT_COLUMNS, [change])

    async def latest_consent(self, session_id: str, participant_id: str) -> bool | None:
        latest = await self.latest_consent_at(session_id, participant_id)
        return latest[0] if latest else None

    async def latest_consent_at(
        self, session_id: str, participant_id: str
    ) -> tuple[bool, float] | None:
        row = await self._fetchone(
            "SELECT consent, ts FROM consent_changes "
            "WHERE session_id = ? AND participant_id = ? "
            "ORDER BY ts DESC, id DESC LIMIT 1",
            session_id,
            participant_id,
        )
        return None if row is None else (bool(row[0]), float(row[1]))

    async def add_audit(self, entry: AuditEntry) -> None:
        await self._insert_new("audit_log", _AUDIT_COLUMNS, [entry])

    async def list_audit(self, session_id: str) -> list[AuditEntry]:
        rows = await self._fetch(
            f"SELECT {_AUDIT_COLUMNS} FROM audit_log WHERE session_id = ? ORDER BY ts, id",  # noqa: S608
            session_id,
        )
        return [AuditEntry(*row) for row in rows]

    async def audit_actions_on(self, session_id: str, target_id: str) -> set[str]:
        rows = await self._fetch(
            "SELECT DISTINCT action FROM audit_log WHERE session_id = ? AND target_id = ?",
            session_id,
            target_id,
        )
        return {row[0] for row in rows}


def _session_lock(session_id: str) -> str:
    return f"session:{session_id}"


def _room(row: Row | None) -> RoomRecord | None:
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
