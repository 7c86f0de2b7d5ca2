"""Retention: what is deleted after ``--retention-days``, swept while the server runs.

Deleted once older than the retention period:

- transcript lines (by the time they were said);
- sessions (by start), and with them their consent changes and audit rows;
- check-ins, including full caller numbers, except a ``callback`` or ``talk`` check-in
  nobody has resolved yet: someone asked to be called back, and that request must
  never get lost (USERS.md). It goes in the first sweep after it is resolved.

After a sweep that deleted anything, storage is scrubbed (see ``Storage.scrub``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from server.storage.base import Storage, StorageUnavailable

log = logging.getLogger(__name__)

DAY_SECS: Final = 86_400.0
OPEN_CHECKIN_STATUSES: Final = ("callback", "talk")  # a person waits for a call back
FIRST_SWEEP_SECS: Final = 5.0  # soon after start, once the server is serving


@dataclass(frozen=True, slots=True)
class Purged:
    lines: int
    sessions: int
    checkins: int

    @property
    def total(self) -> int:
        return self.lines + self.sessions + self.checkins


async def purge_expired(storage: Storage, *, now: float, retention_days: float) -> Purged:
    cutoff = now - retention_days * DAY_SECS
    purged = Purged(
        lines=await storage.delete_lines_before(cutoff),
        sessions=await storage.delete_sessions_before(cutoff),
        checkins=await storage.delete_checkins_before(cutoff, keep_open=OPEN_CHECKIN_STATUSES),
    )
    if purged.total:
        await storage.scrub()
    return purged


async def run_retention(
    storage: Storage,
    *,
    retention_days: float,
    every_secs: float,
    clock: Callable[[], float],
    first_secs: float = FIRST_SWEEP_SECS,
) -> None:
    """Sweep now and then, forever. A database outage skips a sweep, nothing more."""
    await asyncio.sleep(min(first_secs, every_secs))
    while True:
        try:
            purged = await purge_expired(storage, now=clock(), retention_days=retention_days)
        except StorageUnavailable as e:
            log.warning("retention sweep skipped: %s", e)
        except Exception:
            log.exception("retention sweep failed")
        else:
            if purged.total:
                log.info(
                    "retention: deleted %d lines, %d sessions, %d check-ins",
                    purged.lines,
                    purged.sessions,
                    purged.checkins,
                )
        await asyncio.sleep(every_secs)
