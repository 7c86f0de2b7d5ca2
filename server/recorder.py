"""The recorder: writes the room machine's storage events to the database, off the lock.

Why a queue and one task. :meth:`RoomService.deliver` runs inside the room's lock, so
awaiting the database there would make everyone in the room wait for it, and would
stop the room dead while PostgreSQL is down. ``deliver`` therefore only appends to an
in-memory queue (O(1), never fails, never awaits) and this one task writes the events
in commit order. One writer keeps the order without locks: a line is stored before the
erase that deletes it runs.

Failures:

- :class:`StorageUnavailable` (database down, connection lost): the same event is
  retried with backoff (:data:`RETRY_FIRST_SECS` doubling to :data:`RETRY_MAX_SECS`)
  until it is written. Nothing is dropped during an outage; the room keeps going and
  the backlog is written, in order, when the database returns.
- The backlog is bounded for transcript lines only (:data:`MAX_PENDING_LINES`): past
  it a line is not kept and its sender is told (``transcript.unsaved``), never a
  silent loss. Erases, consent changes, audit rows and session records are always
  queued: they are small, and an erase must happen.
- Any other error is a bug or a refused row (the event kind and error type are
  logged, never text or names, and counted: ``peerroom_storage_refused``). Before the
  next attempt the event's session is recorded again (another node's retention sweep
  may have deleted a quiet one: its rows would be refused for want of it). A line is
  then tried once more and, refused again, skipped and its sender told. An erase, a
  consent change, an audit row or a session record is never dropped: it is retried,
  logged at ERROR each time, with a backoff up to :data:`REFUSED_RETRY_MAX_SECS`, and
  the events behind it wait (the order is kept) until a person has put it right; at a
  stop it is spilled with the rest.

Consecutive lines are written in one multi-row INSERT (at most :data:`MAX_BATCH`), so a
backlog drains quickly after an outage; if the database refuses such a batch, its lines
are written one by one and only the refused one is reported. Consecutive session
records (many rooms starting at once: a morning's groups, a reconnecting node) are
batched the same way.

Stopping with a backlog (the database is still down): events that carry no text —
erases, consent changes, audit rows, session records — are written to a spill file in
the data directory (mode 0600) and replayed on the next start, so an erase or a removal
is not forgotten by a restart. Queued lines are not spilled (they hold text, and would
put it on disk outside the database); their number is logged. Nodes may share a data
directory, so each process spills to a file of its own
(``storage-pending-<random>.json``) and a start replays every such file it finds,
claiming each by renaming it to a name of its own first (two nodes starting together
never both delete one); a claimed file is deleted once its events are written, or once
this process's own spill holds what is left of them. A file that cannot be read is moved
aside (``.unreadable-<time>``) for a person to look at, never overwritten.

Every write is idempotent (rows are keyed by ids derived from the event), so a retry
after a connection that died mid-commit cannot store a line twice, and several nodes
recording the same event store it once.

Clean-up after an erase (``Storage.scrub``: SQLite's WAL checkpoint, PostgreSQL's
VACUUM) is not the writer's: a long VACUUM there would hold every event behind it, and
one that timed out would be retried for ever. An erase that deleted rows only marks a
clean-up owed (:attr:`Recorder.cleanup_owed`) and is done: its ack counts its lines. A
task of its own runs the clean-up :data:`CLEANUP_DELAY_SECS` later (so a burst of
erases shares one), with its own timeout (:data:`CLEANUP_TIMEOUT_SECS`); one that fails
or cannot finish (a reader holds SQLite's WAL) stays owed and is tried again with a
backoff. A stop tries an owed clean-up once more, briefly.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge

from rooms.events import AUDITED_ACTIONS, Audit, Consent, SessionClosed, Transcribe, Unstore
from server.durable import write_atomic
from server.storage.base import (
    AuditEntry,
    ConsentChange,
    SessionRecord,
    Storage,
    StorageUnavailable,
    TranscriptLine,
)
from server.tasks import stop_tasks

log = logging.getLogger(__name__)

MAX_PENDING_LINES: Final = 10_000  # ~8 hours of a busy 20-person room; at most ~80 MB
RETRY_FIRST_SECS: Final = 0.1  # a dropped connection is usually back at once
RETRY_MAX_SECS: Final = 2.0  # so recovery is noticed within 2 s of the database returning
# A refused erase, consent change, audit row or session record is a bug or a schema out
# of step: a person must look. Retrying it meanwhile costs a query a while.
REFUSED_RETRY_FIRST_SECS: Final = 1.0
REFUSED_RETRY_MAX_SECS: Final = 30.0
# An erase, consent change, audit row or session record refused this long (not an
# outage: a schema out of step, a row the database will never take) is set aside in a
# file of its own, replayed at the next start, so that it stops holding up every event
# of every room behind it.
REFUSED_SET_ASIDE_SECS: Final = 300.0
CLEANUP_DELAY_SECS: Final = 1.0  # erases come in bursts (a room ending): one clean-up each
CLEANUP_TIMEOUT_SECS: Final = 900.0  # a VACUUM of big tables takes minutes; it blocks no one
CLEANUP_RETRY_FIRST_SECS: Final = 5.0
CLEANUP_RETRY_MAX_SECS: Final = 300.0
FLUSH_ON_CLOSE_SECS: Final = 5.0  # how long shutdown waits for the backlog to be written
# In the data dir: ids only, never text. The base of this process's own file's name
# (``storage-pending-<random>.json``); a start replays every ``storage-pending*.json``.
SPILL_FILE: Final = "storage-pending.json"
MAX_BATCH: Final = 100  # lines or sessions per INSERT (at most 600 parameters)
KNOWN_SESSIONS_KEPT: Final = 10_000  # session ids already recorded (a cache, not a rule)
ERASES_TRACKED: Final = 1_000  # erase results kept for the ack that asks for them


@dataclass(frozen=True, slots=True)
class SessionStarted:
    """Not a machine event: the recorder notes each session once, before its events."""

    room_id: str
    session_id: str
    started_at: float


StorageEvent = Transcribe | Unstore | Consent | Audit | SessionClosed | SessionStarted
_SPILLED: Final[dict[str, type[Unstore | Consent | Audit | SessionClosed | SessionStarted]]] = {
    cls.__name__: cls for cls in (Unstore, Consent, Audit, SessionClosed, SessionStarted)
}
STORAGE_EVENTS: Final = (Transcribe, Unstore, Consent, Audit, SessionClosed)

Unsaved = Callable[[Transcribe, str], None]


def _no_unsaved(line: Transcribe, reason: str) -> None:
    log.warning("a transcript line was not stored (%s)", reason)


def write_events(path: Path, events: Sequence[StorageEvent]) -> None:
    """Events that carry no text, in a file of the data directory (made 0700 if missing)
    that a start replays (:meth:`Recorder._load_spills`); raises OSError."""
    data = [{"kind": type(ev).__name__, **asdict(ev)} for ev in events]
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(path, json.dumps(data).encode())


def record_id(*parts: object) -> str:
    """A stable id for a consent or audit row, so that writing the same event twice
    (a retry, another node) stores one row."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]


@dataclass(slots=True)
class _Item:
    event: StorageEvent
    done: asyncio.Future[int] | None = None
    replayed: bool = False  # from a spill file this process claimed at its start
    written: bool = False


class Recorder:
    def __init__(
        self,
        storage: Storage,
        *,
        registry: CollectorRegistry | None = None,
        spill_path: Path | None = None,
    ) -> None:
        self.storage = storage
        # This process's own spill file, next to ``spill_path`` (whose name is the base).
        self.spill_path = (
            spill_path.with_name(f"{spill_path.stem}-{secrets.token_hex(4)}{spill_path.suffix}")
            if spill_path is not None
            else None
        )
        self._spill_glob = f"{spill_path.stem}*{spill_path.suffix}" if spill_path else ""
        self._claimed: list[Path] = []  # spill files taken at start, deleted once written
        self._replay_left = 0  # their events not yet written
        self._replay_failed = False  # one of them was not written: keep the files
        self.flush_on_close_secs = FLUSH_ON_CLOSE_SECS
        self.max_pending_lines = MAX_PENDING_LINES
        self.failing = False  # the last write found the database unavailable
        self.refused_retry_secs = (REFUSED_RETRY_FIRST_SECS, REFUSED_RETRY_MAX_SECS)
        self.refused_set_aside_secs = REFUSED_SET_ASIDE_SECS
        self._set_aside_n = 0
        self.cleanup_owed = False  # an erase deleted rows that may linger in the files
        self.cleanup_delay_secs = CLEANUP_DELAY_SECS
        self.cleanup_timeout_secs = CLEANUP_TIMEOUT_SECS
        self.cleanup_retry_secs = (CLEANUP_RETRY_FIRST_SECS, CLEANUP_RETRY_MAX_SECS)
        self._cleanup_wake = asyncio.Event()
        self._cleaned = asyncio.Event()
        self._cleaned.set()
        self._cleaner: asyncio.Task[None] | None = None
        self._items: deque[_Item] = deque()
        # The batch the writer has taken off the queue and not yet written (while the
        # database is away, it retries this one): still part of the backlog and of a spill.
        self._writing: list[_Item] = []
        self._wakeup = asyncio.Event()
        self._pending_lines = 0
        self._known: dict[str, None] = {}  # insertion-ordered set of recorded session ids
        # id(event) -> (event, result): holding the event keeps its id unique meanwhile.
        self._erasing: OrderedDict[int, tuple[Unstore, asyncio.Future[int]]] = OrderedDict()
        self._task: asyncio.Task[None] | None = None
        self._unsaved: Unsaved = _no_unsaved
        self._idle = asyncio.Event()
        self._idle.set()
        r = registry or CollectorRegistry()
        self.m_backlog = Gauge(
            "peerroom_storage_backlog", "Events waiting to be stored", registry=r
        )
        self.m_written = Counter(
            "peerroom_storage_writes", "Storage events written", ["kind"], registry=r
        )
        self.m_retries = Counter(
            "peerroom_storage_retries", "Writes retried: database unavailable", registry=r
        )
        self.m_unsaved = Counter(
            "peerroom_transcript_unsaved", "Transcript lines not stored", ["reason"], registry=r
        )
        self.m_cleanups = Counter(
            "peerroom_storage_cleanups",
            "Clean-ups after erases (scrubs), by outcome: done, owed (could not finish), failed",
            ["outcome"],
            registry=r,
        )
        self.m_refused = Counter(
            "peerroom_storage_refused",
            "Writes the database refused (not an outage); all but lines are retried",
            ["kind"],
            registry=r,
        )
        self.m_set_aside = Counter(
            "peerroom_storage_set_aside",
            "Events refused for minutes, set aside in a file for the next start",
            ["kind"],
            registry=r,
        )

    def set_unsaved(self, unsaved: Unsaved) -> None:
        """Called (synchronously) for a line that will not be stored, to tell its sender."""
        self._unsaved = unsaved

    # submitting: synchronous, called from deliver inside the room's lock -------------------

    def session_seen(self, room_id: str, session_id: str, started_at: float) -> None:
        if session_id in self._known:
            return
        self._known[session_id] = None
        while len(self._known) > KNOWN_SESSIONS_KEPT:
            del self._known[next(iter(self._known))]
        self._put(_Item(SessionStarted(room_id, session_id, started_at)))

    def forget_sessions(self) -> None:
        """After a retention sweep: a session still live but quiet for longer than the
        retention (no stored row since the cutoff) may have been deleted. Each live
        session is recorded again at its next event (an insert that changes nothing if
        its row is there), so its next rows are not refused for want of it."""
        self._known.clear()

    def submit(self, event: Transcribe | Unstore | Consent | Audit | SessionClosed) -> None:
        if isinstance(event, Transcribe):
            if self._pending_lines >= self.max_pending_lines:
                self.m_unsaved.labels("backlog_full").inc()
                self._unsaved(event, "backlog_full")
                return
            self._pending_lines += 1
        item = _Item(event)
        if isinstance(event, Unstore):
            item.done = asyncio.get_running_loop().create_future()
            self._erasing[id(event)] = (event, item.done)
            while len(self._erasing) > ERASES_TRACKED:
                self._erasing.popitem(last=False)
        self._put(item)

    def _put(self, item: _Item) -> None:
        self._idle.clear()
        self._items.append(item)
        self._wakeup.set()
        self.m_backlog.set(self.backlog)

    def erase_result(self, event: Unstore) -> asyncio.Future[int] | None:
        """The number of lines this erase deleted, once written (cancelled if it could
        not be); None if this node did not record it. Asked once, by the command's ack."""
        entry = self._erasing.pop(id(event), None)
        return entry[1] if entry is not None and entry[0] is event else None

    @property
    def backlog(self) -> int:
        """Events submitted and not yet written, the ones being written included."""
        return len(self._writing) + len(self._items)

    @property
    def idle(self) -> bool:
        """Everything submitted so far is written (or reported)."""
        return self._idle.is_set()

    # the writer task ---------------------------------------------------------------------

    def start(self) -> None:
        self._load_spills()
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name="recorder")
        self._cleaner = loop.create_task(self._clean(), name="recorder-cleanup")

    async def flush(self, within_secs: float) -> bool:
        """Wait until everything submitted so far is written; False if not within_secs."""
        try:
            async with asyncio.timeout(within_secs):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def clean(self, within_secs: float) -> bool:
        """Wait until no clean-up is owed; False if one still is after within_secs."""
        try:
            async with asyncio.timeout(within_secs):
                await self._cleaned.wait()
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        try:
            if not await self.flush(self.flush_on_close_secs):
                self._spill()
        finally:
            await stop_tasks(self._task, self._cleaner)
        if self.cleanup_owed and not await self._clean_once(self.flush_on_close_secs):
            log.warning(
                "stopping with a clean-up owed: erased rows may remain in the database "
                "files until the next erase or retention sweep cleans up"
            )

    # clean-up after erases, off the writer path ---------------------------------------------

    def _owe_cleanup(self) -> None:
        self.cleanup_owed = True
        self._cleaned.clear()
        self._cleanup_wake.set()

    async def _clean(self) -> None:
        failures = 0
        while True:
            await self._cleanup_wake.wait()
            first, most = self.cleanup_retry_secs
            # A pause first: the erases of a burst share one clean-up (and a failed one
            # waits a while before its next try).
            pause = min(first * 2 ** (failures - 1), most) if failures else 0.0
            await asyncio.sleep(self.cleanup_delay_secs + pause)
            if await self._clean_once(self.cleanup_timeout_secs):
                failures = 0
            else:
                failures += 1
                self._cleanup_wake.set()  # still owed

    async def _clean_once(self, within_secs: float) -> bool:
        """One clean-up; whether it finished. Never raises (but a cancellation)."""
        self._cleanup_wake.clear()  # an erase from now on owes another clean-up
        try:
            async with asyncio.timeout(within_secs):
                done = await self.storage.scrub()
        except Exception as e:  # an outage, a timeout, a bug: still owed either way
            self.m_cleanups.labels("failed").inc()
            log.warning("the clean-up after an erase failed (%s); still owed", type(e).__name__)
            return False
        self.m_cleanups.labels("done" if done else "owed").inc()
        if done and self.cleanup_owed and not self._cleanup_wake.is_set():
            self.cleanup_owed = False
            self._cleaned.set()
        return done

    # the spill file: what must outlive a restart during an outage ----------------------------

    def _spill(self) -> None:
        items = [*self._writing, *self._items]  # in the order they were submitted
        keep = [i.event for i in items if not isinstance(i.event, Transcribe)]
        lost = len(items) - len(keep)
        if self.spill_path is None or not keep:
            log.error("shutting down with %d storage events not written", len(items))
            self._forget_claimed()  # what they held is written, or (lines) never kept
            return
        try:
            write_events(self.spill_path, keep)
        except OSError:
            # Said as loudly as we can: these erases and removals are lost with this process.
            log.exception(
                "shutting down with storage unavailable, and the spill file cannot be "
                "written: %d erases, consent changes, audit rows and session records are "
                "lost, and %d transcript lines not stored",
                len(keep),
                lost,
            )
            return
        self._forget_claimed()  # what is left of them is in this process's own file now
        log.error(
            "shutting down with storage unavailable: %d events kept for the next start "
            "(%s), %d transcript lines not stored",
            len(keep),
            self.spill_path.name,
            lost,
        )

    def _load_spills(self) -> None:
        """Queue what earlier runs (this node's, or another's sharing the data dir)
        could not write, each file claimed first by renaming it to a name of this
        process's. A node starting while another still replays may claim that one's
        file again and replay it twice: harmless, every write is idempotent. Audit
        events of a release that kept every moderator action are left out (only those
        the transcript access rule needs are kept now: ``AUDITED_ACTIONS``)."""
        if self.spill_path is None:
            return
        directory = self.spill_path.parent
        try:
            found = sorted(directory.glob(self._spill_glob))
        except OSError:
            log.exception("the storage spill files cannot be listed; none replayed")
            return
        events: list[StorageEvent] = []
        for n, path in enumerate(found):
            claimed = self.spill_path.with_name(
                f"{self.spill_path.stem}.{n}{self.spill_path.suffix}"
            )
            try:
                path.rename(claimed)
            except FileNotFoundError:
                continue  # another process claimed it first
            except OSError:
                log.exception("the storage spill file %s cannot be claimed; left", path.name)
                continue
            try:
                data = json.loads(claimed.read_bytes())
                kept: list[StorageEvent] = [
                    ev
                    for ev in (_SPILLED[d.pop("kind")](**d) for d in data)
                    if not isinstance(ev, Audit) or ev.action in AUDITED_ACTIONS
                ]
            except OSError:
                log.exception("the storage spill file %s cannot be read; left", claimed.name)
                continue  # not claimed for good: the next start tries again
            except (ValueError, KeyError, TypeError, AttributeError):
                # Never overwritten or lost: moved aside for a person to look at.
                aside = path.with_suffix(f".unreadable-{int(time.time())}")
                with contextlib.suppress(OSError):
                    claimed.rename(aside)
                log.exception("a storage spill file is unreadable; moved to %s", aside.name)
                continue
            events.extend(kept)
            self._claimed.append(claimed)
        for ev in events:
            if isinstance(ev, SessionStarted):
                self._known[ev.session_id] = None
            self._put(_Item(ev, replayed=True))
        self._replay_left = len(events)
        if events:
            log.warning("replaying %d storage events kept by earlier runs", len(events))
        elif self._claimed:
            self._forget_claimed()

    def _replayed_done(self, batch: list[_Item]) -> None:
        """Called as each batch ends: once every replayed event is written, the files
        they came from go."""
        for item in batch:
            if item.replayed:
                self._replay_left -= 1
                self._replay_failed |= not item.written
        if self._claimed and self._replay_left == 0:
            self._forget_claimed()

    def _forget_claimed(self) -> None:
        if self._replay_failed:
            log.error("storage spill files kept (an event in them was not written): %s",
                      ", ".join(p.name for p in self._claimed))  # fmt: skip
            self._claimed = []
            return
        for path in self._claimed:
            try:
                path.unlink(missing_ok=True)
            except OSError:
                log.exception("a replayed storage spill file cannot be deleted: %s", path.name)
        self._claimed = []

    async def _run(self) -> None:
        while True:
            if not self._items:
                self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = self._writing = self._take()
            try:
                await self._write_batch(batch)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the writer die
                log.exception("recorder failed on a %s event", type(batch[0].event).__name__)
            finally:
                self._writing = []
                for item in batch:
                    if isinstance(item.event, Transcribe):
                        self._pending_lines -= 1
                    if item.done is not None and not item.done.done():
                        item.done.cancel()
                self._replayed_done(batch)
                self.m_backlog.set(self.backlog)

    def _take(self) -> list[_Item]:
        """The next event; or, if it is a line or a session record, it and the events
        of its kind right after it (up to :data:`MAX_BATCH`): written in one statement."""
        batch = [self._items.popleft()]
        kind = type(batch[0].event)
        if kind is Transcribe or kind is SessionStarted:
            items = self._items
            while items and type(items[0].event) is kind and len(batch) < MAX_BATCH:
                batch.append(items.popleft())
        return batch

    async def _write_batch(self, batch: list[_Item]) -> None:
        if len(batch) == 1:
            await self._write_until_done(batch[0])
            return
        events = [item.event for item in batch]
        write: Callable[[], Awaitable[None]]
        if isinstance(events[0], Transcribe):
            lines = [_line(ev) for ev in events]
            write = partial(self.storage.add_lines, lines)
        else:
            sessions = [_session(ev) for ev in events]
            write = partial(self.storage.record_sessions, sessions)
        kind = type(events[0]).__name__
        if await self._retrying(write, kind):
            self.m_written.labels(kind).inc(len(batch))
            for item in batch:
                item.written = True
        else:  # a row was refused: write one by one, so only that one is reported
            for item in batch:
                await self._write_until_done(item)

    async def _retrying(
        self,
        write: Callable[[], Awaitable[object]],
        kind: str,
        *,
        tries_after_refusal: int | None = 0,
        refused: Callable[[], None] = lambda: None,
    ) -> bool:
        """Run ``write`` until the database takes it, through any outage. If it refuses
        it (not an outage: a bug or a bad row; logged without content), ``refused`` is
        called and it is tried ``tries_after_refusal`` times more (None: with a backoff,
        until taken or refused for ``refused_set_aside_secs``); False if it is still
        refused then."""
        delay = RETRY_FIRST_SECS
        refusals = 0
        refused_delay, refused_max = self.refused_retry_secs
        loop = asyncio.get_running_loop()
        refused_since = 0.0
        while True:
            try:
                await write()
            except StorageUnavailable as e:
                if not self.failing:
                    log.warning("storage unavailable (%s); retrying, the room goes on", e)
                self.failing = True
                self.m_retries.inc()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECS)
                continue
            except Exception as e:
                self.m_refused.labels(kind).inc()
                refused()
                if tries_after_refusal is not None and refusals >= tries_after_refusal:
                    log.error("could not store a %s event (%s); skipped", kind, type(e).__name__)
                    return False
                if refusals == 0:
                    refused_since = loop.time()
                elif loop.time() - refused_since >= self.refused_set_aside_secs:
                    return False
                refusals += 1
                if tries_after_refusal is None:
                    log.error(
                        "the database refused a %s event (%s), %d time(s); it must not be "
                        "dropped: retrying in %g s, and the events behind it wait",
                        kind,
                        type(e).__name__,
                        refusals,
                        refused_delay,
                    )
                    await asyncio.sleep(refused_delay)
                    refused_delay = min(refused_delay * 2, refused_max)
                continue
            if self.failing:
                log.warning("storage is back; writing the backlog (%d events)", self.backlog)
            self.failing = False
            return True

    async def _write_until_done(self, item: _Item) -> None:
        ev = item.event
        kind = type(ev).__name__
        count = 0
        healing = False  # refused once: its session is recorded again before each retry

        async def write() -> None:
            nonlocal count
            if healing:
                await self._record_again(ev)
            if not isinstance(ev, Unstore):
                count = await self._write(ev)
                return
            count = await self._delete(ev)
            if count:
                # Gone from the table, maybe not yet from the files: the clean-up's.
                self._owe_cleanup()

        def refused() -> None:
            nonlocal healing
            healing = True
            # Recorded again at its next event, should this one never be.
            self._known.pop(ev.session_id, None)

        line = isinstance(ev, Transcribe)
        if not await self._retrying(
            write, kind, tries_after_refusal=1 if line else None, refused=refused
        ):
            if isinstance(ev, Transcribe):
                self.m_unsaved.labels("error").inc()
                self._unsaved(ev, "error")
            else:
                self._set_aside(ev)
            if item.done is not None and not item.done.done():
                item.done.cancel()  # not done now (an erase's ack said: stays queued)
            return
        self.m_written.labels(kind).inc()
        item.written = True
        if item.done is not None and not item.done.done():
            item.done.set_result(count)

    def _set_aside(self, ev: StorageEvent) -> None:
        """An event refused for minutes: into a spill file of its own (ids only, as a
        spill), which the next start of any node replays; the writer goes on. Never
        dropped: if the file cannot be written either, it is said as loudly as can be."""
        kind = type(ev).__name__
        if self.spill_path is None:
            log.error("a %s event refused for minutes is lost (no data directory)", kind)
            return
        self._set_aside_n += 1
        path = self.spill_path.with_name(
            f"{self.spill_path.stem}-refused-{self._set_aside_n}{self.spill_path.suffix}"
        )
        try:
            write_events(path, [ev])
        except OSError:
            log.exception("a %s event refused for minutes cannot be set aside: lost", kind)
            return
        self.m_set_aside.labels(kind).inc()
        log.error(
            "the database refused a %s event for %g s; set aside in %s (replayed at the "
            "next start) so that the events behind it are written; look into the refusal",
            kind,
            self.refused_set_aside_secs,
            path.name,
        )

    async def _record_again(self, ev: StorageEvent) -> None:
        """The session of ``ev``, recorded if its row is not there (an insert that
        changes nothing if it is): from when this event happened, if it must be."""
        if isinstance(ev, Transcribe | Consent | Audit):
            await self.storage.record_session(SessionRecord(ev.session_id, ev.room_id, ev.ts))

    async def _delete(self, ev: Unstore) -> int:
        """An erase's delete (its clean-up is owed by the caller); lines deleted."""
        if ev.message_id is not None:
            return await self.storage.delete_line(ev.session_id, ev.message_id)
        if ev.participant_id is not None:
            return await self.storage.delete_sender_lines(
                ev.session_id, ev.participant_id, up_to=ev.ts
            )
        return 0

    async def _write(self, ev: StorageEvent) -> int:
        """One event, one query (an erase is :meth:`_delete`)."""
        s = self.storage
        if isinstance(ev, Transcribe):
            await s.add_line(_line(ev))
        elif isinstance(ev, Unstore):
            raise AssertionError("an erase is written by _write_until_done")
        elif isinstance(ev, Consent):
            rid = record_id("consent", ev.session_id, ev.participant_id, ev.on, ev.ts)
            await s.add_consent_change(
                ConsentChange(rid, ev.session_id, ev.participant_id, ev.on, ev.ts)
            )
        elif isinstance(ev, Audit):
            rid = record_id("audit", ev.session_id, ev.actor, ev.action, ev.target, ev.ts)
            await s.add_audit(AuditEntry(rid, ev.session_id, ev.actor, ev.action, ev.target, ev.ts))
        elif isinstance(ev, SessionClosed):
            await s.close_session(ev.session_id, ended_at=ev.ts, reason=ev.reason)
        else:
            await s.record_session(_session(ev))
        return 1


def _line(ev: StorageEvent) -> TranscriptLine:
    assert isinstance(ev, Transcribe)
    return TranscriptLine(
        ev.message_id, ev.session_id, ev.sender_id, ev.sender_name, ev.text, ev.ts
    )


def _session(ev: StorageEvent) -> SessionRecord:
    assert isinstance(ev, SessionStarted)
    return SessionRecord(ev.session_id, ev.room_id, ev.started_at)
