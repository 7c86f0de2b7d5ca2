"""Durable storage: rooms, sessions, opt-in transcript lines, consent changes, the audit
log and phone check-ins, on SQLite (default) or PostgreSQL (``--database-url``).

Storage decides nothing: one method per query, transactions explicit, no rules in SQL.
The consent rule lives in :mod:`rooms.peer`; storage only ever receives what passed it,
through :mod:`server.recorder`. See docs/storage.md.
"""
