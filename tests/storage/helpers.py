"""Helpers for the storage tests: HTTP reads, waiting for the recorder, a TCP proxy."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Any, Protocol

import aiohttp
import pytest

from server.keys import RECORDER
from server.storage.base import Storage, StorageUnavailable
from tests.support import LiveServer


def marker(label: str) -> str:
    """A string that cannot be in any file by chance."""
    return f"{label}{secrets.token_hex(8)}"


class HasUrl(Protocol):
    @property
    def url(self) -> str: ...


async def transcript(
    server: HasUrl, session_id: str, token: str | None, *, fmt: str | None = None
) -> tuple[int, Any, dict[str, str]]:
    """GET a session's transcript from ``server`` (a test server or a cluster node)."""
    url = f"{server.url}/api/sessions/{session_id}/transcript"
    params = {"format": fmt} if fmt else {}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, http.get(url, params=params, headers=headers) as r:
        body: Any = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, body, dict(r.headers)


async def healthz(server: LiveServer) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/healthz") as r:
        return r.status, await r.json()


async def flushed(server: LiveServer, within: float = 10.0) -> None:
    """Wait until the recorder has written everything delivered so far, and cleaned up
    after its erases (a second or so later: the files are scrubbed then)."""
    assert await server.app[RECORDER].flush(within), "the recorder did not catch up"
    assert await server.app[RECORDER].clean(within), "the recorder did not clean up"


async def lines_of(server: LiveServer, session_id: str, fac_token: str) -> list[str]:
    await flushed(server)
    status, body, _ = await transcript(server, session_id, fac_token)
    assert status == 200, body
    return [line["text"] for line in body["lines"]]


class TcpProxy:
    """A TCP relay on 127.0.0.1 to PostgreSQL that a test can cut and restore: the
    database "goes away" for the server under test without touching the real one."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Refuse new connections and cut every open one."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_w))
        for a, b in ((reader, up_w), (up_r, writer)):
            t = asyncio.get_running_loop().create_task(self._pipe(a, b))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        w.transport.abort()
        self._writers.discard(w)


def scrub_fails_once(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make ``storage.scrub`` meet an outage once, then work; returns the log of calls
    ("failed", "done", ...)."""
    real_scrub = storage.scrub
    scrubs: list[str] = []

    async def scrub() -> bool:
        if not scrubs:
            scrubs.append("failed")
            raise StorageUnavailable("gone for a moment")
        scrubs.append("done")
        return await real_scrub()

    monkeypatch.setattr(storage, "scrub", scrub)
    return scrubs
