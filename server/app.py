"""``create_app(settings)``: builds everything, explicitly. Shared resources live under
typed ``AppKey``s and are opened and closed by ``cleanup_ctx``."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from urllib.parse import urlsplit

import socketio
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from presence.resume import ResumeTokens
from server import checkins_http, eio_direct, handlers, transcripts
from server.fanout import DirectManager, GuardedServer, JsonPacket, MsgPackPacket
from server.http import route_of, routes, security_headers, storage_errors
from server.keys import LIVE, METRICS, PHONE, RECORDER, ROOM_TOKENS, SERVICE, SETTINGS, STORAGE
from server.live import LiveStore, MemoryStore
from server.metrics import Metrics
from server.phone import bridge, twilio_http
from server.phone.lines import PhoneLines
from server.recorder import SPILL_FILE, Recorder
from server.redis_live import RedisStore
from server.retention import run_retention
from server.service import RoomService
from server.settings import MAX_MESSAGE_BYTES, Settings
from server.storage.base import Storage, StorageUnavailable
from server.storage.postgres import PostgresStorage
from server.storage.sqlite import SqliteStorage
from server.tasks import stop_tasks
from server.tokens import RoomTokens, load_or_create

log = logging.getLogger(__name__)

SIO = web.AppKey("sio", socketio.AsyncServer)
SQLITE_FILE = "peerroom.sqlite3"
# Loggers that write query parameters (phone numbers, chat text) at DEBUG: capped at
# INFO, so even a server run with DEBUG logging never writes them.
QUIET_LOGGERS = ("aiosqlite", "asyncpg")


def resolve_secrets(settings: Settings) -> Settings:
    """Admin token and signing secret from the environment, else kept in the data dir."""
    d = settings.data_dir
    return replace(
        settings,
        admin_token=settings.admin_token
        or load_or_create(d / "admin_token", announce="Admin token (for POST /api/rooms)"),
        secret=settings.secret or load_or_create(d / "secret_key"),
    )


def _origins(settings: Settings) -> list[str] | None:
    """None: same origin only (python-engineio checks Origin against Host)."""
    if not settings.allowed_origins:
        return None
    base = urlsplit(settings.base_url)
    return [f"{base.scheme}://{base.netloc}", *settings.allowed_origins]


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


async def open_storage(settings: Settings) -> Storage:
    """PostgreSQL when ``--database-url`` is given, else SQLite in the data directory.

    Migrations run here, before the server accepts anyone. A database that cannot be
    reached at start is a clear exit, not a half-working server.
    """
    url = settings.database_url
    if not url:
        return await SqliteStorage.open(settings.data_dir / SQLITE_FILE)
    if not url.startswith(POSTGRES_SCHEMES):
        raise SystemExit("--database-url must start with postgresql://")
    try:
        return await PostgresStorage.open(url)
    except StorageUnavailable as e:
        raise SystemExit(f"Cannot start: {e}. Is PostgreSQL running? See docs/storage.md.") from e


def open_live_store(settings: Settings) -> LiveStore:
    if settings.redis_url:
        return RedisStore(
            settings.redis_url, prefix=settings.redis_prefix, grace_secs=settings.grace_secs
        )
    return MemoryStore()


class RedactingAccessLogger(AbstractAccessLogger):
    """Access log without tokens: /r/<token> and query strings are never written."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        # The matched route's pattern (/r/{token}, /api/rooms/{room_id}), never the path
        # itself: a path that matched nothing (//r/<token>, a mistyped link) may hold a
        # token too. Static files are one route; the client's file names are logged.
        path = route_of(request) if isinstance(request, web.Request) else "-"
        if path == "/static" and response.status < 400:
            path = request.path
        self.logger.info("%s %s %s %.1fms", request.method, path, response.status, time * 1000)


async def _disconnect_all(app: web.Application) -> None:
    """Before aiohttp waits for open connections: let them go, as Drops (see
    :meth:`RoomService.disconnect_all`), while live state is still there to record it."""
    service = app.get(SERVICE)
    if service is not None:
        await service.disconnect_all()


def make_runner(app: web.Application) -> web.AppRunner:
    """The one way to run the app (CLI and tests): with the token-free access log."""
    # shutdown_timeout: a websocket whose client vanished without closing must not hold a
    # restart for aiohttp's default minute; live state is resumed from the grace anyway.
    return web.AppRunner(app, access_log_class=RedactingAccessLogger, shutdown_timeout=5)


def create_app(settings: Settings) -> web.Application:
    settings = resolve_secrets(settings)
    assert settings.secret is not None
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.INFO, logging.getLogger(name).level))
    app = web.Application(middlewares=[storage_errors], client_max_size=64 * 1024)
    app.on_response_prepare.append(security_headers)
    app[SETTINGS] = settings
    app[METRICS] = Metrics.create()
    app[ROOM_TOKENS] = RoomTokens(settings.secret)
    sio = GuardedServer(
        async_mode="aiohttp",
        serializer=MsgPackPacket if settings.wire == "msgpack" else JsonPacket,
        cors_allowed_origins=_origins(settings),
        max_http_buffer_size=MAX_MESSAGE_BYTES,
        logger=False,
        engineio_logger=False,
        # Measured (docs/benchmarks.md, "Optimisations"): room emits without a task per
        # recipient, and each event handled in its socket's reader instead of a new task.
        # Together: fan-out knee 4.2k -> 10.7k deliveries/s, hand storm 16.1 s -> 1.9 s.
        client_manager=DirectManager(),
        async_handlers=False,
    )
    eio_direct.install(sio.eio)
    sio.attach(app)
    app[SIO] = sio
    app.add_routes(routes)
    app.add_routes(transcripts.routes)
    app.add_routes(checkins_http.routes)
    dist = settings.web_dir / "dist"
    if dist.is_dir():
        app.router.add_static("/static", dist, append_version=False)
    app.cleanup_ctx.append(_storage_ctx)
    app.cleanup_ctx.append(_recorder_ctx)
    app.cleanup_ctx.append(_service_ctx)
    app.on_shutdown.append(_disconnect_all)
    twilio_http.add_routes(app)  # its context needs the service's: after it
    return app


async def _storage_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    storage = await open_storage(settings)
    app[STORAGE] = storage
    retention = asyncio.get_running_loop().create_task(
        run_retention(
            storage,
            retention_days=settings.retention_days,
            every_secs=settings.retention_sweep_secs,
            clock=time.time,
            after_sweep=lambda: _forget_sessions(app),
            data_dir=settings.data_dir,
        )
    )
    yield
    await stop_tasks(retention)
    await storage.close()


def _forget_sessions(app: web.Application) -> None:
    """After a retention sweep (the recorder starts after the sweeper)."""
    if RECORDER in app:
        app[RECORDER].forget_sessions()


async def _recorder_ctx(app: web.Application) -> AsyncIterator[None]:
    """Started before the service and closed after it, so every event the service
    delivers is written (or its loss logged) before storage closes."""
    recorder = Recorder(
        app[STORAGE],
        registry=app[METRICS].registry,
        spill_path=app[SETTINGS].data_dir / SPILL_FILE,
    )
    recorder.start()
    app[RECORDER] = recorder
    yield
    await recorder.close()


async def _service_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    assert settings.secret is not None
    store = open_live_store(settings)
    await store.start()
    app[LIVE] = store
    service = RoomService(
        sio=app[SIO],
        store=store,
        storage=app[STORAGE],
        recorder=app[RECORDER],
        settings=settings,
        room_tokens=app[ROOM_TOKENS],
        resume_tokens=ResumeTokens(settings.secret),
        metrics=app[METRICS],
    )
    app[SERVICE] = service
    handlers.register(app[SIO], service)
    phone = PhoneLines(service, secret=settings.secret, pending_dir=settings.data_dir)
    service.set_phone(phone)
    app[PHONE] = phone
    phone.start()
    bridge.register(app[SIO], phone, settings.bridge_token)
    clock = asyncio.get_running_loop().create_task(service.run_clock())
    monitor = asyncio.get_running_loop().create_task(eio_direct.monitor(app[SIO].eio))
    yield
    # Each closed even if one before it fails: the phone lines' task and the Redis
    # connections must not outlive a service that failed to close.
    try:
        await stop_tasks(clock, monitor)
        await service.close()
    finally:
        try:
            await phone.close()
        finally:
            await store.close()
