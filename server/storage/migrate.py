"""Versioned schema migrations, the same SQL files for SQLite and PostgreSQL.

A small explicit runner rather than Alembic or yoyo: the schema is a handful of tables,
both backends are driven through async drivers (aiosqlite, asyncpg) that those tools do
not speak natively, and a runner this size is read in a minute. Files are
``migrations/NNNN_name.sql``, applied in order, each in its own transaction, recorded in
``schema_migrations``; an applied file's SQL is never edited, only followed by a new
one (its ``--`` comments may be corrected: they are never run).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

CREATE_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL)"
)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        """Statements split on ';' at line ends (the files hold no procedural code).

        Whole-line ``--`` comments are dropped first: a comment ending in ';' must not
        split a statement, and PostgreSQL refuses a statement that is only a comment.
        """
        code = "\n".join(
            line for line in self.sql.splitlines() if not line.lstrip().startswith("--")
        )
        return [s.strip() for s in re.split(r";\s*\n", code + "\n") if s.strip()]


def all_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("server.storage").joinpath("migrations").iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), entry.name, entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migrations share a version: {versions}")
    return found
