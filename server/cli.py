"""``peerroom serve`` and ``peerroom create-room TITLE``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from rooms.errors import RoomError
from server import gctune
from server.app import SIO, create_app, make_runner, open_storage, resolve_secrets
from server.fanout import GuardedServer
from server.http import create_room
from server.keys import ROOM_TOKENS, SETTINGS, STORAGE
from server.payloads import validate_title
from server.settings import Settings, SettingsError, add_serve_arguments, from_sources
from server.tokens import RoomTokens

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="peerroom", description="Live rooms for peer support.")
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server")
    add_serve_arguments(serve)
    create = sub.add_parser("create-room", help="create a room and print its links and PIN")
    create.add_argument("title")
    create.add_argument("--waiting-room", action="store_true", help="hold joiners until admitted")
    create.add_argument("--no-transcripts", action="store_true", help="never keep chat")
    create.add_argument("--data-dir", type=Path)
    create.add_argument("--database-url")
    create.add_argument("--public-url")
    create.add_argument("--host")
    create.add_argument("--port", type=int)
    return p


async def _serve(settings: Settings) -> None:
    first_start = not settings.database_url and not (settings.data_dir / "secret_key").exists()
    app = create_app(settings)
    runner = make_runner(app)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, backlog=settings.listen_backlog)
    await site.start()
    cap = kernel_backlog_cap()
    if cap is not None and cap < settings.listen_backlog:
        log.warning(
            "listen backlog %d is cut to %d by the kernel: raise net.core.somaxconn for more",
            settings.listen_backlog,
            cap,
        )
    base = app[SETTINGS].base_url
    print(f"peerroom is up. Open {base}/ in a browser.", flush=True)
    if first_start and _first_to_welcome(settings.data_dir):
        # A fresh data directory: give the newcomer a room to open right away.
        body = await create_room(
            app[STORAGE], app[ROOM_TOKENS], app[SETTINGS].room_link, title="Welcome room"
        )
        _print_room("Welcome room", body)
    print('Create another room: peerroom create-room "Tuesday evening circle"', flush=True)
    gctune.tune(settings.gc_thresholds)  # after startup's own garbage
    sio = app[SIO]
    assert isinstance(sio, GuardedServer)
    quiet = asyncio.get_running_loop().create_task(
        gctune.collect_when_quiet(gctune.QuietCollector(lambda: sio.handled))
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    quiet.cancel()
    await runner.cleanup()


SOMAXCONN = Path("/proc/sys/net/core/somaxconn")


def kernel_backlog_cap(path: Path = SOMAXCONN) -> int | None:
    """The largest listen backlog the kernel grants (it cuts larger ones silently), or
    None where that cannot be read (not Linux)."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


WELCOMED = "welcome_room_made"  # in the data directory, once the Welcome room is made


def _first_to_welcome(data_dir: Path) -> bool:
    """True for one process only, of all that start at once on a fresh data directory
    (two nodes started together): the one that creates the marker file."""
    try:
        os.close(os.open(data_dir / WELCOMED, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        return False
    except OSError:
        return True  # no marker can be kept (a read-only directory): one room is still made
    return True


async def _create_room(settings: Settings, args: argparse.Namespace) -> None:
    try:
        title = validate_title(args.title)
    except RoomError as e:
        raise SystemExit(f"peerroom create-room: {e.message}") from None
    settings = resolve_secrets(settings)
    assert settings.secret is not None
    storage = await open_storage(settings)
    try:
        body = await create_room(
            storage,
            RoomTokens(settings.secret),
            settings.room_link,
            title=title,
            waiting_room=args.waiting_room,
            transcripts_allowed=not args.no_transcripts,
        )
    finally:
        await storage.close()
    _print_room(title, body)


def _print_room(title: str, body: dict[str, str]) -> None:
    print(f'Room "{title}" ({body["room_id"]})')
    print(f"  Facilitator link (keep it private): {body['facilitator_url']}")
    print(f"  Invite link for peers:              {body['invite_url']}")
    print(f"  Phone PIN:                          {body['phone_pin']}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = from_sources(args, os.environ)
    except SettingsError as e:
        print(f"peerroom: {e}", file=sys.stderr)
        return 2
    if args.command == "serve":
        asyncio.run(_serve(settings))
    else:
        asyncio.run(_create_room(settings, args))
    return 0
