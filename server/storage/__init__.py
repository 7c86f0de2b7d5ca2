"""Durable storage: rooms now; transcripts, check-ins and the audit log build on it.

Storage decides nothing: one method per query, transactions explicit, no rules in SQL.
The consent rule lives in :mod:`rooms.peer`; storage only ever receives what passed it.
"""
