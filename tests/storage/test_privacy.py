"""Privacy: what a peer never opted into, or erased, is nowhere on disk.

A real session over Socket.IO. Unique markers (pseudonyms and texts) are then searched
for in the raw bytes of every SQLite file (main file, -wal, -shm) and in a ``pg_dump``
of the test's PostgreSQL database. A consenting peer's kept line must be found, which
proves the search can see text at all.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from server.app import SQLITE_FILE
from tests.storage.helpers import flushed, marker
from tests.support import Client, LiveServer

Servers = Callable[..., Awaitable[LiveServer]]
People = Callable[[LiveServer], Client]


def sqlite_bytes(data_dir: Path) -> bytes:
    files = sorted(data_dir.glob(f"{SQLITE_FILE}*"))
    assert any(f.name == SQLITE_FILE for f in files)
    return b"".join(f.read_bytes() for f in files)


async def pg_dump(url: str) -> bytes:
    exe = shutil.which("pg_dump")
    if exe is None:
        pytest.fail("pg_dump is not installed (apt-get install postgresql-client)")
    proc = await asyncio.create_subprocess_exec(
        exe,
        "--no-owner",
        "--dbname",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode(errors="replace")
    return out


async def test_nothing_of_the_unconsenting_or_erased_reaches_disk(
    servers: Servers, people: People, backend_url: str | None
) -> None:
    server = await servers()
    room = await server.create_room()
    never = {k: marker(k) for k in ("AnnName", "CyName", "CyText", "CyPrivate", "AnnText")}
    erased = {k: marker(k) for k in ("BoName", "BoText", "BoLong")}
    private = marker("EdPrivate")
    kept = {k: marker(k) for k in ("EdName", "EdText")}

    fac, bo, cy, ed = (people(server) for _ in range(4))
    await fac.join(room["facilitator_token"], never["AnnName"])
    wc = await cy.join(room["invite_token"], never["CyName"])
    wb = await bo.join(room["invite_token"], erased["BoName"])
    await ed.join(room["invite_token"], kept["EdName"])

    await bo.ok("transcript.consent", {"on": True})
    await ed.ok("transcript.consent", {"on": True})
    await cy.ok("chat.send", {"text": never["CyText"]})
    await cy.ok("chat.send", {"text": never["CyPrivate"], "to": "moderators"})
    await fac.ok("chat.send", {"text": never["AnnText"]})
    await bo.ok("chat.send", {"text": erased["BoText"]})
    # A long line spills into overflow pages in SQLite: those must be wiped too.
    await bo.ok("chat.send", {"text": erased["BoLong"] + " " + "w" * 1900})
    await ed.ok("chat.send", {"text": kept["EdText"]})
    await ed.ok("chat.send", {"text": private, "to": "moderators"})
    # Moderator actions on the unconsenting are audited, by id only.
    await cy.ok("hand.raise")
    await fac.ok("mod.mute", {"id": wc["you"]["id"]})
    await fac.ok("mod.floor.next")

    await flushed(server)
    before_erase = await dump(server, backend_url)
    assert erased["BoText"].encode() in before_erase  # the search sees stored text

    ack = await bo.ok("transcript.erase")
    assert ack["erased"] == 2
    await fac.ok("mod.end")
    await flushed(server)

    async def check(blob: bytes) -> None:
        for name, value in (*never.items(), *erased.items(), ("EdPrivate", private)):
            assert value.encode() not in blob, f"{name} reached disk"
        for name, value in kept.items():
            assert value.encode() in blob, f"{name} should be stored (consented)"

    await check(await dump(server, backend_url))
    assert wb["you"]["id"]  # ids may remain (consent history): they identify nobody
    for c in (fac, bo, cy, ed):
        await c.close()
    await server.stop()
    await check(await dump(server, backend_url))


async def dump(server: LiveServer, backend_url: str | None) -> bytes:
    if backend_url is None:
        return sqlite_bytes(server.settings.data_dir)
    return await pg_dump(backend_url)
