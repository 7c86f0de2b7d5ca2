"""PostgreSQL storage through asyncpg (``--database-url postgresql://...``).

The same queries as SQLite (:mod:`server.storage.sql`) and the same migration files.
A small pool; every call acquires a connection with a short timeout, so a database that
is down costs a caller seconds at most and shows up as
:class:`~server.storage.base.StorageUnavailable`. asyncpg replaces broken connections
on its own, so storage recovers when the database comes back without a restart.

Erased rows disappear from every query and dump at once. PostgreSQL keeps dead row
versions in its data files until VACUUM reclaims them (and in its WAL until the
segments are recycled); :meth:`PostgresStorage.scrub` runs VACUUM on the tables that
hold text or phone numbers, soon after an erase (the recorder's clean-up, off its
writer path) and after a purge, with a timeout of its own (:data:`SCRUB_TIMEOUT_SECS`).
For disk-level assurance, put the cluster on an encrypted volume (docs/storage.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final

import asyncpg

from server.storage.base import StorageUnavailable
from server.storage.migrate import CREATE_TABLE, all_migrations
from server.storage.sql import DuplicateKey, Row, SqlStorage

log = logging.getLogger(__name__)

POOL_MAX: Final = 4  # one recorder writing, a few HTTP reads: more would only queue in PG
CONNECT_TIMEOUT_SECS: Final = 3.0  # a reachable PostgreSQL answers in milliseconds
QUERY_TIMEOUT_SECS: Final = 10.0  # every query here is an index lookup or a small delete
SCRUB_TIMEOUT_SECS: Final = 900.0  # a VACUUM of big tables takes minutes; it blocks no writer
HEALTH_TIMEOUT_SECS: Final = 1.0  # /healthz must answer quickly, even while PG is gone
CLOSE_TIMEOUT_SECS: Final = 5.0
MIGRATION_LOCK: Final = 0x70656572  # pg_advisory_lock key ("peer"): one migrator at a time
# pg_advisory_xact_lock(class, key) for SqlStorage._execute_locked (a session's lines and
# erases, a check-in's retries). Two-int keys are a lock space apart from MIGRATION_LOCK's.
WRITE_LOCK_CLASS: Final = 0x7072  # "pr"

_TRANSIENT: Final = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, disk full
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # a primary demoted during a failover
    asyncpg.exceptions.TransactionRollbackError,  # serialization failure, deadlock: retry
)


@functools.lru_cache(maxsize=256)
def numbered(sql: str) -> str:
    """``?`` placeholders to PostgreSQL's ``$1, $2, ...`` (our SQL has no ``?`` literals)."""
    counter = iter(range(1, 1000))
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)


def lock_key(name: str) -> int:
    """A named lock's advisory key (32 bits: two names sharing one only make their
    writes wait for each other now and then)."""
    digest = hashlib.blake2b(name.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


def _rows_changed(status: object) -> int:
    last = str(status).rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """The driver's errors as storage's: an outage, a duplicate key, or as they are."""
    try:
        yield
    except asyncpg.UniqueViolationError as e:
        raise DuplicateKey(str(e)) from e
    except _TRANSIENT as e:
        raise StorageUnavailable(f"PostgreSQL: {type(e).__name__}") from e


class PostgresStorage(SqlStorage):
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, url: str) -> PostgresStorage:
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=1,
                max_size=POOL_MAX,
                timeout=CONNECT_TIMEOUT_SECS,
                command_timeout=QUERY_TIMEOUT_SECS,
            )
        except _TRANSIENT as e:
            # The URL may hold a password: name the error, never the URL.
            raise StorageUnavailable(f"cannot reach PostgreSQL ({type(e).__name__})") from e
        storage = cls(pool)
        try:
            await storage._migrate()
        except BaseException:
            pool.terminate()
            raise
        return storage

    async def _migrate(self) -> None:
        """Apply pending migrations, each in its own transaction, under an advisory lock
        so that two servers starting at once do not both migrate."""
        async with self._pool.acquire() as con:
            await con.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
            try:
                await con.execute(CREATE_TABLE)
                done = {r[0] for r in await con.fetch("SELECT version FROM schema_migrations")}
                for m in all_migrations():
                    if m.version in done:
                        continue
                    async with con.transaction():
                        for statement in m.statements():
                            await con.execute(statement)
                        await con.execute(
                            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                            m.version,
                            m.name,
                        )
            finally:
                await con.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)

    async def _execute(self, sql: str, *args: object) -> int:
        return _rows_changed(await self._run("execute", sql, args))

    async def _fetch(self, sql: str, *args: object) -> list[Row]:
        rows = await self._run("fetch", sql, args)
        return [tuple(r) for r in rows]

    async def _run(self, method: str, sql: str, args: tuple[object, ...]) -> Any:
        with _translated():
            async with self._pool.acquire(timeout=CONNECT_TIMEOUT_SECS) as con:
                return await getattr(con, method)(numbered(sql), *args)

    async def _execute_locked(
        self, locks: Iterable[str], *statements: tuple[str, Sequence[object]]
    ) -> list[int]:
        """One transaction holding each lock's advisory lock, taken in key order (a
        batch of lines spanning sessions never deadlocks with another), until it
        commits. Each statement's snapshot is taken after the locks: a line being
        stored and an erase of it never overlap, so the erase's delete sees the line, or
        the line's insert sees the erase."""
        keys = sorted({lock_key(name) for name in locks})
        with _translated():
            async with (
                self._pool.acquire(timeout=CONNECT_TIMEOUT_SECS) as con,
                # Read committed whatever the server's default: under repeatable read
                # the snapshot would be taken before the lock is granted.
                con.transaction(isolation="read_committed"),
            ):
                for key in keys:
                    await con.execute("SELECT pg_advisory_xact_lock($1, $2)", WRITE_LOCK_CLASS, key)
                return [
                    _rows_changed(await con.execute(numbered(sql), *args))
                    for sql, args in statements
                ]

    async def scrub(self) -> bool:
        with _translated():
            async with self._pool.acquire(timeout=CONNECT_TIMEOUT_SECS) as con:
                await con.execute("VACUUM transcript_lines, checkins", timeout=SCRUB_TIMEOUT_SECS)
        return True

    async def healthy(self) -> bool:
        try:
            async with self._pool.acquire(timeout=HEALTH_TIMEOUT_SECS) as con:
                await con.fetchval("SELECT 1", timeout=HEALTH_TIMEOUT_SECS)
        except (*_TRANSIENT, asyncpg.PostgresError):
            return False
        return True

    async def close(self) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_SECS):
                await self._pool.close()
        except (TimeoutError, *_TRANSIENT):
            self._pool.terminate()
