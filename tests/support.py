"""Test helpers: a real server on a free port, and a real Socket.IO client around it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest
import socketio
from aiohttp import web

from server.app import create_app, make_runner
from server.settings import Settings

ADMIN_TOKEN = "test-admin-token"
WAIT_SECS = 5.0
REDIS_URL = os.environ.get("PEERROOM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# An admin connection that may CREATE DATABASE; every test using PostgreSQL gets one of
# its own, dropped afterwards.
PG_ADMIN_URL = os.environ.get(
    "PEERROOM_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
SKIP_POSTGRES = os.environ.get("PEERROOM_SKIP_POSTGRES") == "1"


def pg_where(url: str) -> str:
    """Host and port only: a URL may carry a password."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 5432}"


def pg_database_url(admin_url: str, name: str) -> str:
    return urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))


@contextlib.asynccontextmanager
async def fresh_pg_database(kind: str = "test") -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database (``peerroom_<kind>_<random>``), dropped after.
    Fails with a clear message if PostgreSQL cannot be reached."""
    try:
        admin = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as e:
        pytest.fail(
            f"PostgreSQL is not reachable at {pg_where(PG_ADMIN_URL)} "
            f"({type(e).__name__}: {e}). Start it (docs/storage.md), point "
            "PEERROOM_TEST_PG_URL at one, or set PEERROOM_SKIP_POSTGRES=1 to skip.",
            pytrace=False,
        )
    name = f"peerroom_{kind}_{secrets.token_hex(6)}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield pg_database_url(PG_ADMIN_URL, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def test_redis_overrides() -> dict[str, Any]:
    """With ``PEERROOM_TEST_REDIS=1`` every test server keeps live state in Redis,
    under a key prefix of its own."""
    if os.environ.get("PEERROOM_TEST_REDIS") != "1":
        return {}
    return {"redis_url": REDIS_URL, "redis_prefix": fresh_redis_prefix()}


def fresh_redis_prefix() -> str:
    return f"peerroom-test:{secrets.token_hex(6)}:"


async def delete_redis_prefix(url: str, prefix: str) -> None:
    """Remove every key a test left under ``prefix``."""
    from redis.asyncio import Redis

    r = Redis.from_url(url)
    try:
        keys = [k async for k in r.scan_iter(match=f"{prefix}*", count=500)]
        if keys:
            await r.delete(*keys)
    finally:
        await r.aclose()


@dataclass
class LiveServer:
    url: str
    admin_token: str
    app: web.Application
    runner: web.AppRunner
    settings: Settings

    async def create_room(self, title: str = "Tuesday circle", **settings: Any) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{self.url}/api/rooms",
                json={"title": title, **settings},
                headers={"Authorization": f"Bearer {self.admin_token}"},
            ) as r,
        ):
            assert r.status == 201, await r.text()
            body: dict[str, Any] = await r.json()
            return body

    async def stop(self) -> None:
        await self.runner.cleanup()
        if self.settings.redis_url:
            await delete_redis_prefix(self.settings.redis_url, self.settings.redis_prefix)


# Each step of a fixture's teardown (stopping a server, closing a browser) must end within
# this: one that hangs fails at once, with the traceback of where it waits, instead of at
# the test's 120 s timeout with only the event loop's select to show.
TEARDOWN_SECS = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def start_server(data_dir: Path, **overrides: Any) -> LiveServer:
    """The real app on a free loopback port, in this event loop."""
    port = free_port()
    settings = Settings(
        host="127.0.0.1",
        port=port,
        data_dir=data_dir,
        admin_token=ADMIN_TOKEN,
        **{**test_redis_overrides(), **overrides},
    )
    app = create_app(settings)
    runner = make_runner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    return LiveServer(f"http://127.0.0.1:{port}", ADMIN_TOKEN, app, runner, settings)


@dataclass
class Client:
    """One person's connection: every event received is kept, in order."""

    url: str
    wire: str = "json"
    events: list[tuple[str, Any]] = field(default_factory=list)
    connect_error: Any = None
    last_seq: int = 0
    gaps: list[str] = field(default_factory=list)  # asserted empty when the test ends
    sio: socketio.AsyncClient = field(init=False)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.sio = socketio.AsyncClient(
            reconnection=False, serializer="msgpack" if self.wire == "msgpack" else "default"
        )

        async def catch_all(event: str, data: Any = None) -> None:
            self._record(event, data)

        async def on_error(data: Any) -> None:
            self.connect_error = data
            self._changed.set()

        self.sio.on("*", catch_all)
        self.sio.on("connect_error", on_error)

    def _record(self, event: str, data: Any) -> None:
        if event == "welcome":
            self.last_seq = data["room"]["seq"]
        elif isinstance(data, dict) and "seq" in data and not _is_private_chat(event, data):
            seq = data["seq"]
            if seq > self.last_seq + 1:
                self.gaps.append(f"{event}: seq {seq} after {self.last_seq}")
            self.last_seq = max(self.last_seq, seq)
        self.events.append((event, data))
        self._changed.set()

    async def join(
        self,
        token: str,
        name: str,
        *,
        resume: str | None = None,
        expect: str = "welcome",
        transports: tuple[str, ...] = ("websocket",),
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> Any:
        auth: dict[str, Any] = {"token": token, "name": name, **extra}
        if resume:
            auth["resume"] = resume
        await self.sio.connect(
            self.url,
            auth=auth,
            transports=list(transports),
            headers=headers or {},
            wait_timeout=5,
        )
        return await self.wait_for(expect)

    async def refused(
        self, token: Any, name: Any, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> dict[str, Any]:
        """Try to join; return the refusal's ``{code, message}``."""
        with contextlib.suppress(socketio.exceptions.ConnectionError):
            await self.sio.connect(
                self.url,
                auth={"token": token, "name": name, **extra},
                transports=["websocket"],
                headers=headers or {},
                wait_timeout=5,
            )
        assert self.connect_error is not None, "the join was not refused"
        data: dict[str, Any] = self.connect_error
        return data

    async def call(self, event: str, payload: Any = None) -> dict[str, Any]:
        ack: dict[str, Any] = await self.sio.call(
            event, {} if payload is None else payload, timeout=WAIT_SECS
        )
        return ack

    async def ok(self, event: str, payload: Any = None) -> dict[str, Any]:
        ack = await self.call(event, payload)
        assert ack["ok"] is True, ack
        return ack

    async def wait_for(
        self, event: str, pred: Callable[[Any], bool] = lambda d: True, *, after: int = 0
    ) -> Any:
        """The first ``event`` (from index ``after`` on) whose data matches ``pred``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_SECS
        while True:
            for name, data in self.events[after:]:
                if name == event and pred(data):
                    return data
            self._changed.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                got = [n for n, _ in self.events]
                raise AssertionError(f"no {event!r} matching within {WAIT_SECS}s; got {got}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def mark(self) -> int:
        return len(self.events)

    def received(self, event: str, after: int = 0) -> list[Any]:
        return [d for n, d in self.events[after:] if n == event]

    async def wait_disconnected(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_SECS
        while self.sio.connected and loop.time() < deadline:
            await asyncio.sleep(0.02)
        assert not self.sio.connected, "still connected"

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()
        await close_http(self.sio)


async def close_http(sio: socketio.AsyncClient) -> None:
    """Close the client's HTTP session if python-engineio left it open (it does after a
    refused websocket handshake): else it is collected later and logs "Unclosed client
    session" at ERROR in whatever test runs then."""
    http = getattr(sio.eio, "http", None)
    if http is not None and not http.closed:
        await http.close()


def _is_private_chat(event: str, data: dict[str, Any]) -> bool:
    return event == "chat" and data.get("message", {}).get("to") == "moderators"
