"""Server settings: a frozen value built from flags and ``PEERROOM_*`` environment.

Flags win over the environment; the environment wins over defaults. No secret has a
default in code: the admin token and signing secret are read from the environment or
created once in the data directory.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

DEFAULT_PORT: Final = 8080
MIN_SECRET_CHARS: Final = 16  # for the secrets set in the environment
DEFAULT_GRACE_SECS: Final = 60.0  # a phone dropping in a tunnel comes back within a minute
DEFAULT_MAX_ROOM_SIZE: Final = 100  # peer groups are 5-20; the cap guards memory
DEFAULT_RETENTION_DAYS: Final = 30
DEFAULT_RETENTION_SWEEP_SECS: Final = 3600.0  # retention is in days; hourly is plenty
MAX_PAYLOAD_BYTES: Final = 16 * 1024  # per event: the largest is a 2,000-character chat line
MAX_MESSAGE_BYTES: Final = 1_000_000  # per transport message: past this it is abuse, and the
# connection is closed before the message is read (python-engineio's default)
CHAT_BURST: Final = 5  # chat lines a participant may send at once...
CHAT_PER_SEC: Final = 1.0  # ...refilled at this rate: a fast typist, not a flood
EVENT_BURST: Final = 20  # any other event: clicking around is fine, a script is not
EVENT_PER_SEC: Final = 5.0
# New joins (not resumes) from one client address: a group meeting in one community
# centre joins together, a script adding name after name to fill a room does not.
JOIN_BURST: Final = 30
JOIN_PER_SEC: Final = 0.5
DEFAULT_GC_THRESHOLDS: Final = (50_000, 2, 100)  # server/gctune.py says why
# Connections the kernel may hold before the server accepts them. aiohttp's default, 128,
# overflows when a group of hundreds reconnects at once (measured: SYN retransmits, 1-3 s
# joins), and 1,024 when thousands do (a node restarted: docs/optimisations.md, step 28);
# the kernel caps it at net.core.somaxconn (4,096 on current kernels).
DEFAULT_LISTEN_BACKLOG: Final = 4096
DEFAULT_TWILIO_API_BASE: Final = "https://api.twilio.com"  # or a compatible one (docs/phone.md)


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    data_dir: Path = Path("data")
    grace_secs: float = DEFAULT_GRACE_SECS
    redis_url: str | None = None
    redis_prefix: str = "peerroom:"  # every key and channel; one per deployment (or test)
    database_url: str | None = None
    wire: str = "json"  # json | msgpack
    public_url: str | None = None  # how links are printed; default http://host:port
    allowed_origins: tuple[str, ...] = ()  # () means same origin only
    max_room_size: int = DEFAULT_MAX_ROOM_SIZE
    retention_days: int = DEFAULT_RETENTION_DAYS
    retention_sweep_secs: float = DEFAULT_RETENTION_SWEEP_SECS
    chat_burst: int = CHAT_BURST
    chat_per_sec: float = CHAT_PER_SEC
    event_burst: int = EVENT_BURST
    event_per_sec: float = EVENT_PER_SEC
    metrics_allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    join_burst: int = JOIN_BURST
    join_per_sec: float = JOIN_PER_SEC
    # Proxies whose X-Forwarded-For names the client (its last address: the one the
    # proxy added). A join from one of these naming nobody is from this machine itself.
    trusted_proxies: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    admin_token: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)
    bridge_token: str | None = field(default=None, repr=False)
    # Twilio-style voice webhooks (docs/phone.md). No auth token: the /phone routes are off.
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = field(default=None, repr=False)
    twilio_api_base: str = DEFAULT_TWILIO_API_BASE
    twilio_webhook_base: str | None = None  # the public URL Twilio calls, for signatures
    twilio_talk_number: str | None = None  # "talk now" check-ins are put through to it
    web_dir: Path = Path(__file__).resolve().parent.parent / "web"
    gc_thresholds: tuple[int, int, int] = DEFAULT_GC_THRESHOLDS  # server/gctune.py
    listen_backlog: int = DEFAULT_LISTEN_BACKLOG

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    def room_link(self, token: str) -> str:
        """A room's link to hand out. The browser client speaks msgpack only when its
        link says so (it cannot tell before connecting), so a msgpack server's do."""
        wire = "?wire=msgpack" if self.wire == "msgpack" else ""
        return f"{self.base_url}/r/{token}{wire}"


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _thresholds(value: str) -> tuple[int, int, int]:
    """``50000,2,100``: three non-negative whole numbers (as gc.set_threshold takes)."""
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError("three whole numbers, e.g. 50000,2,100")
    a, b, c = (int(p) for p in parts)
    return a, b, c


def _thresholds_arg(value: str) -> tuple[int, int, int]:
    try:
        return _thresholds(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


# flag -> (env var, parser). Every flag may come from the environment.
_OPTIONS: Final[dict[str, tuple[str, type | object]]] = {
    "host": ("PEERROOM_HOST", str),
    "port": ("PEERROOM_PORT", int),
    "data_dir": ("PEERROOM_DATA_DIR", Path),
    "grace_secs": ("PEERROOM_GRACE", float),
    "redis_url": ("PEERROOM_REDIS_URL", str),
    "redis_prefix": ("PEERROOM_REDIS_PREFIX", str),
    "database_url": ("PEERROOM_DATABASE_URL", str),
    "wire": ("PEERROOM_WIRE", str),
    "public_url": ("PEERROOM_PUBLIC_URL", str),
    "allowed_origins": ("PEERROOM_ALLOWED_ORIGINS", _csv),
    "max_room_size": ("PEERROOM_MAX_ROOM_SIZE", int),
    "retention_days": ("PEERROOM_RETENTION_DAYS", int),
    "retention_sweep_secs": ("PEERROOM_RETENTION_SWEEP", float),
    "chat_burst": ("PEERROOM_CHAT_BURST", int),
    "chat_per_sec": ("PEERROOM_CHAT_RATE", float),
    "event_burst": ("PEERROOM_EVENT_BURST", int),
    "event_per_sec": ("PEERROOM_EVENT_RATE", float),
    "metrics_allow": ("PEERROOM_METRICS_ALLOW", _csv),
    "join_burst": ("PEERROOM_JOIN_BURST", int),
    "join_per_sec": ("PEERROOM_JOIN_RATE", float),
    "trusted_proxies": ("PEERROOM_TRUSTED_PROXIES", _csv),
    "twilio_account_sid": ("PEERROOM_TWILIO_ACCOUNT_SID", str),
    "twilio_api_base": ("PEERROOM_TWILIO_API_BASE", str),
    "twilio_webhook_base": ("PEERROOM_TWILIO_WEBHOOK_BASE", str),
    "twilio_talk_number": ("PEERROOM_TWILIO_TALK_NUMBER", str),
    "gc_thresholds": ("PEERROOM_GC_THRESHOLDS", _thresholds),
    "listen_backlog": ("PEERROOM_LISTEN_BACKLOG", int),
}


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--data-dir", type=Path, help="SQLite file, secrets (default ./data)")
    p.add_argument(
        "--grace",
        dest="grace_secs",
        type=float,
        help=f"seconds a dropped connection keeps its place (default {DEFAULT_GRACE_SECS:g})",
    )
    p.add_argument("--redis-url", help="share live state with other nodes through Redis")
    p.add_argument("--redis-prefix", help="prefix of every Redis key (default peerroom:)")
    p.add_argument("--database-url", help="postgresql://... instead of SQLite")
    p.add_argument("--wire", choices=("json", "msgpack"), help="Socket.IO serializer")
    p.add_argument("--public-url", help="base URL used in printed links")
    p.add_argument(
        "--allowed-origins",
        type=_csv,
        help="comma-separated browser origins allowed besides the same origin",
    )
    p.add_argument(
        "--max-room-size",
        type=int,
        help=f"participants per session (default {DEFAULT_MAX_ROOM_SIZE})",
    )
    p.add_argument(
        "--retention-days",
        type=int,
        help=f"days transcripts and check-ins are kept (default {DEFAULT_RETENTION_DAYS})",
    )
    p.add_argument(
        "--gc-thresholds",
        type=_thresholds_arg,
        help="garbage collector thresholds, three numbers (default 50000,2,100; "
        "CPython's own are 700,10,10)",
    )
    p.add_argument(
        "--listen-backlog",
        type=int,
        help=f"connections waiting to be accepted (default {DEFAULT_LISTEN_BACKLOG})",
    )


class SettingsError(ValueError):
    """A flag or environment value is unusable; the message names it."""


# Lower bounds, checked whichever source a value came from.
_MINIMUM: Final[dict[str, float]] = {
    "port": 0,
    "grace_secs": 0,
    "max_room_size": 1,
    "retention_days": 1,
    "retention_sweep_secs": 0.01,
    "chat_burst": 1,
    "chat_per_sec": 0.001,
    "event_burst": 1,
    "event_per_sec": 0.001,
    "join_burst": 1,
    "join_per_sec": 0.001,
    "listen_backlog": 1,
}


def from_sources(args: argparse.Namespace | None, env: Mapping[str, str]) -> Settings:
    values: dict[str, object] = {}
    for name, (var, parse) in _OPTIONS.items():
        source = var
        if var in env and env[var] != "":
            try:
                values[name] = parse(env[var])  # type: ignore[operator]
            except ValueError:
                raise SettingsError(f"{var}: {env[var]!r} is not a valid value") from None
        flag = getattr(args, name, None) if args is not None else None
        if flag is not None:
            values[name] = flag
            source = "--" + name.replace("_secs", "").replace("_", "-")
        value = values.get(name)
        if isinstance(value, float) and not math.isfinite(value):
            # float() reads "nan" and "inf": a grace of nan never expires, a chat rate of
            # nan never limits (nan < low is false, so the minimum alone misses it).
            raise SettingsError(f"{source}: must be a finite number")
        low = _MINIMUM.get(name)
        if low is not None and value is not None and value < low:  # type: ignore[operator]
            raise SettingsError(f"{source}: must be at least {low:g}")
    if int(values.get("port", DEFAULT_PORT)) > 65535:  # type: ignore[call-overload]
        raise SettingsError("the port must be at most 65535")
    values["admin_token"] = env.get("PEERROOM_ADMIN_TOKEN") or None
    values["secret"] = env.get("PEERROOM_SECRET") or None
    values["bridge_token"] = env.get("PEERROOM_BRIDGE_TOKEN") or None
    values["twilio_auth_token"] = env.get("PEERROOM_TWILIO_AUTH_TOKEN") or None
    for var in ("PEERROOM_ADMIN_TOKEN", "PEERROOM_SECRET", "PEERROOM_BRIDGE_TOKEN"):
        # Ours to choose, and whoever holds one can create rooms, forge links or join
        # callers: one that could be guessed is refused rather than used.
        if env.get(var) and len(env[var]) < MIN_SECRET_CHARS:
            raise SettingsError(
                f"{var}: must be at least {MIN_SECRET_CHARS} characters "
                "(e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
    if "web_dir" not in values and env.get("PEERROOM_WEB_DIR"):
        values["web_dir"] = Path(env["PEERROOM_WEB_DIR"])
    settings = Settings(**values)  # type: ignore[arg-type]
    if settings.wire not in ("json", "msgpack"):
        raise SettingsError("PEERROOM_WIRE: must be json or msgpack")
    if settings.redis_url and not settings.redis_url.startswith(("redis://", "rediss://")):
        raise SettingsError("--redis-url: must look like redis://host:6379/0")
    if not settings.redis_prefix:
        raise SettingsError("--redis-prefix: must not be empty")
    return settings


def from_argv(argv: Sequence[str] | None = None) -> Settings:
    p = argparse.ArgumentParser()
    add_serve_arguments(p)
    return from_sources(p.parse_args(argv), os.environ)
