"""Retention: what is deleted after ``--retention-days``, swept while the server runs.

Deleted once older than the retention period:

- transcript lines (by the time they were said);
- sessions, and with them their consent changes and audit rows: once ended before the
  cutoff, or, never ended (still live, or their node died), begun before it with no
  line, consent change or moderator action since (a room kept open overnight outlives a
  one-day retention while people still write to it, and its rows need their session);
- check-ins, including full caller numbers, except a ``callback`` or ``talk`` check-in
  nobody has resolved yet: someone asked to be called back, and that request must
  never get lost (USERS.md). It goes in the first sweep after it is resolved.

After a sweep that deleted anything, storage is scrubbed (see ``Storage.scrub``); a
scrub that could not finish is owed to the next sweep.

Files in the data directory that hold check-ins or queued events outside storage's
tables: a file set aside as unreadable (``*.unreadable-<time>``, for a person to look
at; it may hold phone numbers) once set aside longer ago than the retention period
(the time in its name; logged by name), and a temporary file a crash left mid-write
(``.<name>.<random>.tmp``) after an hour.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from server.storage.base import Storage, StorageUnavailable

log = logging.getLogger(__name__)

DAY_SECS: Final = 86_400.0
OPEN_CHECKIN_STATUSES: Final = ("callback", "talk")  # a person waits for a call back
FIRST_SWEEP_SECS: Final = 5.0  # soon after start, once the server is serving
TMP_KEPT_SECS: Final = 3600.0  # a write in progress is done in far less
_UNREADABLE: Final = re.compile(r"\.unreadable-(\d+)$")
_TEMPORARY: Final = re.compile(r"^\..+\.[0-9a-f]+\.tmp$")  # as server/durable.py names them


def purge_stale_files(data_dir: Path, *, now: float, retention_days: float) -> int:
    """Delete the data directory's set-aside and leftover temporary files past their
    time (above); returns how many. Never fails the sweep: a file it cannot read or
    delete is logged and left."""
    cutoff = now - retention_days * DAY_SECS
    deleted = 0
    try:
        entries = list(data_dir.iterdir()) if data_dir.is_dir() else []
    except OSError as e:
        log.warning("retention: cannot list %s: %s", data_dir, e)
        return 0
    for path in entries:
        name = path.name
        aside = _UNREADABLE.search(name)
        try:
            if aside:
                # Its age from when it was set aside (the name says): a rename keeps the
                # file's own time, which may be days older (a node stopped for a weekend).
                if int(aside.group(1)) >= cutoff or not path.is_file():
                    continue
                log.warning(
                    "retention: deleting %s, set aside as unreadable over %g days ago",
                    name,
                    retention_days,
                )
            elif not (
                _TEMPORARY.match(name)
                and path.is_file()
                and path.stat().st_mtime < now - TMP_KEPT_SECS
            ):
                continue
            path.unlink()
            deleted += 1
        except OSError as e:
            log.warning("retention: cannot delete %s: %s", name, e)
    return deleted


@dataclass(frozen=True, slots=True)
class Purged:
    lines: int
    sessions: int
    checkins: int
    scrub_owed: bool = False  # the scrub could not finish now (a reader held the file)

    @property
    def total(self) -> int:
        return self.lines + self.sessions + self.checkins


async def purge_expired(
    storage: Storage, *, now: float, retention_days: float, scrub_owed: bool = False
) -> Purged:
    """Delete what is older than the retention, then scrub the file if anything was
    deleted (or ``scrub_owed``: a sweep before failed, perhaps after its deletes)."""
    cutoff = now - retention_days * DAY_SECS
    purged = Purged(
        lines=await storage.delete_lines_before(cutoff),
        sessions=await storage.delete_sessions_before(cutoff),
        checkins=await storage.delete_checkins_before(cutoff, keep_open=OPEN_CHECKIN_STATUSES),
    )
    if (purged.total or scrub_owed) and not await storage.scrub():
        return replace(purged, scrub_owed=True)
    return purged


async def run_retention(
    storage: Storage,
    *,
    retention_days: float,
    every_secs: float,
    clock: Callable[[], float],
    first_secs: float = FIRST_SWEEP_SECS,
    after_sweep: Callable[[], None] = lambda: None,
    data_dir: Path | None = None,
) -> None:
    """Sweep now and then, forever. A database outage skips a sweep, nothing more.
    ``after_sweep`` runs after each sweep, whatever it deleted (on many nodes another
    node's sweep may have): the recorder forgets which sessions it recorded
    (:meth:`server.recorder.Recorder.forget_sessions`)."""
    await asyncio.sleep(min(first_secs, every_secs))
    scrub_owed = False
    while True:
        try:
            purged = await purge_expired(
                storage, now=clock(), retention_days=retention_days, scrub_owed=scrub_owed
            )
        except StorageUnavailable as e:
            scrub_owed = True  # its deletes may have gone through before it failed
            log.warning("retention sweep skipped: %s", e)
        except Exception:
            scrub_owed = True
            log.exception("retention sweep failed")
        else:
            scrub_owed = purged.scrub_owed
            if purged.total:
                log.info(
                    "retention: deleted %d lines, %d sessions, %d check-ins",
                    purged.lines,
                    purged.sessions,
                    purged.checkins,
                )
        if data_dir is not None:
            files = purge_stale_files(data_dir, now=clock(), retention_days=retention_days)
            if files:
                log.info("retention: deleted %d set-aside or leftover files", files)
        after_sweep()  # every sweep: another node's may have been the one that deleted
        await asyncio.sleep(every_secs)
