"""Check-ins the database could not take yet: kept on this node's disk until it can.

USERS.md: "A check-in that asks for a call back must never get lost." When the database
is away (restarting, a failover, the network), a caller who asks for a call back is not
sent away with "try again": the check-in is written to a file in the data directory
(``checkins-pending-<random>.json``: one per process, so that nodes sharing a data
directory never write over each other; mode 0600, synced to disk before the caller is
thanked), the
moderators of live sessions hear of it at once, and a task stores it as soon as the
database answers again, the next start included if the node stops first. The queue
shows it meanwhile (``GET /api/checkins`` lists it with the stored ones, once the database
can be read), and it can be resolved before it is stored.

Storing is idempotent (on the record's id), so a record stored twice (a crash between
the insert and the file's rewrite) is one row.

The file holds what the database would: the masked number, and the full one only on a
check-in that asks for a call. It is deleted once everything in it is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Final

from server.durable import write_atomic
from server.storage.base import CheckinRecord, Storage, StorageUnavailable, is_retry_of
from server.tasks import stop_tasks

log = logging.getLogger(__name__)

PENDING_GLOB: Final = "checkins-pending*.json"  # this process's file and any left by others
RETRY_FIRST_SECS: Final = 0.2
RETRY_MAX_SECS: Final = 2.0  # stored within about 2 s of the database returning
MAX_PENDING: Final = 10_000  # far above a line's calls in any outage; past it, refused


class PendingFull(Exception):
    """Too many check-ins waiting for the database: this one is refused, and said so."""


class PendingCheckins:
    """Check-ins kept on disk until the database takes them, in the order they came."""

    def __init__(self, storage: Storage, directory: Path | None) -> None:
        self._storage = storage
        self._dir = directory
        name = f"checkins-pending-{secrets.token_hex(4)}.json"
        self._path = directory / name if directory is not None else None
        self._records: dict[str, CheckinRecord] = {}  # by id, oldest first
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._load()
        self._task = asyncio.get_running_loop().create_task(self._run())
        if self._records:
            self._wake.set()

    async def close(self) -> None:
        await stop_tasks(self._task)
        if self._records:
            log.error("stopping with %d check-ins not yet stored: kept for the next start",
                      len(self._records))  # fmt: skip

    # what the phone line and the queue use ---------------------------------------------

    def __len__(self) -> int:
        return len(self._records)

    def records(self) -> list[CheckinRecord]:
        return list(self._records.values())

    def find(self, record: CheckinRecord) -> CheckinRecord | None:
        """The check-in kept already that ``record`` is a retry of (storage's rule)."""
        for rec in self._records.values():
            if is_retry_of(record, rec):
                return rec
        return None

    def get(self, checkin_id: str) -> CheckinRecord | None:
        return self._records.get(checkin_id)

    def keep(self, record: CheckinRecord) -> CheckinRecord:
        """Keep ``record`` on disk until the database takes it; returns what is kept (an
        earlier record of the same call and status, if there is one). Raises ``OSError``
        if the file cannot be written and :class:`PendingFull` past :data:`MAX_PENDING`:
        then the caller must be told it was not saved."""
        known = self.find(record)
        if known is not None:
            return known
        if len(self._records) >= MAX_PENDING:
            raise PendingFull()
        self._records[record.id] = record
        try:
            self._write()
        except OSError:
            del self._records[record.id]
            raise
        self._wake.set()
        return record

    def resolve(self, checkin_id: str, *, by: str, at: float) -> CheckinRecord | None:
        """Resolve a check-in not yet stored (it is stored resolved); None if not here."""
        rec = self._records.get(checkin_id)
        if rec is None:
            return None
        done = replace(rec, resolved_at=at, resolved_by=by)
        self._records[checkin_id] = done
        try:
            self._write()
        except OSError:
            self._records[checkin_id] = rec
            raise
        self._wake.set()
        return done

    # storing ---------------------------------------------------------------------------

    async def _run(self) -> None:
        delay = RETRY_FIRST_SECS
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._records:
                try:
                    await self._store_all()
                    delay = RETRY_FIRST_SECS
                except StorageUnavailable:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX_SECS)
                except Exception:
                    # Not an outage (a bug, a refused row): never dropped, retried slowly.
                    log.exception("storing a kept check-in failed; retrying")
                    await asyncio.sleep(RETRY_MAX_SECS)

    async def _store_all(self) -> None:
        try:
            for rec in list(self._records.values()):
                stored = await self._storage.create_checkin(rec)
                if rec.resolved_at is not None and stored.resolved_at is None:
                    by, at = rec.resolved_by or "unknown", rec.resolved_at
                    await self._storage.resolve_checkin(stored.id, by=by, at=at)
                if self._records.get(rec.id) is rec:  # not resolved meanwhile: done with it
                    del self._records[rec.id]
                    log.info("check-in %s kept during the outage is stored", rec.id)
        finally:
            self._write()  # once a pass, not once a record (10,000 would be quadratic)

    # the file --------------------------------------------------------------------------

    def _write(self) -> None:
        if self._path is None:
            return
        if not self._records:
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()
            return
        self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = [asdict(r) for r in self._records.values()]
        write_atomic(self._path, json.dumps(data).encode())

    def _load(self) -> None:
        """Take what earlier runs (or another process sharing the directory) kept: into
        this process's file first, then their files go."""
        if self._dir is None or not self._dir.is_dir():
            return
        taken: list[Path] = []
        for path in sorted(self._dir.glob(PENDING_GLOB)):
            try:
                records = [CheckinRecord(**d) for d in json.loads(path.read_bytes())]
            except FileNotFoundError:
                continue  # its process stored them all meanwhile
            except (ValueError, TypeError):
                # Never overwritten or lost: moved aside for a person to look at.
                aside = path.with_suffix(f".unreadable-{int(time.time())}")
                path.replace(aside)
                log.exception("a kept check-ins file is unreadable; moved to %s", aside.name)
                continue
            for rec in records:
                self._records.setdefault(rec.id, rec)
            taken.append(path)
        if not taken:
            return
        self._write()
        for path in taken:
            if path != self._path:
                path.unlink(missing_ok=True)
        log.warning("%d check-ins kept by an earlier run are to be stored", len(self._records))
