"""Room-scoped tokens (signed with itsdangerous), the admin token and the signing secret.

A room token says "room R, kind K" (``f`` facilitator, ``i`` invite) and is signed
with the server's secret, so it needs no database lookup to check and cannot be forged
or moved to another room. Tokens are never logged.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from itsdangerous import BadSignature, URLSafeSerializer

log = logging.getLogger(__name__)

_SALT = "peerroom.room-token.v1"


class TokenKind(StrEnum):
    FACILITATOR = "f"
    INVITE = "i"


@dataclass(frozen=True, slots=True)
class RoomToken:
    room_id: str
    kind: TokenKind


class RoomTokens:
    def __init__(self, secret: str) -> None:
        self._s = URLSafeSerializer(secret, salt=_SALT)

    def issue(self, room_id: str, kind: TokenKind) -> str:
        return self._s.dumps([room_id, kind.value])

    def verify(self, token: object) -> RoomToken | None:
        # Tokens are URL-safe ASCII; anything else (a lone surrogate from a header that
        # was not UTF-8) would make the signer's encode raise instead of refusing.
        if not isinstance(token, str) or not 0 < len(token) <= 256 or not token.isascii():
            return None
        try:
            data = self._s.loads(token)
        except BadSignature:
            return None
        if not (isinstance(data, list) and len(data) == 2 and isinstance(data[0], str)):
            return None
        try:
            return RoomToken(room_id=data[0], kind=TokenKind(data[1]))
        except ValueError:
            return None


def same_secret(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison for bearer secrets (admin, bridge)."""
    if not given or not expected or not given.isascii():
        return False  # a secret we issue is ASCII; another string cannot even be encoded
    return hmac.compare_digest(given.encode(), expected.encode())


def load_or_create(path: Path, announce: str | None = None) -> str:
    """Read a secret kept in the data directory, creating it (mode 0600) the first time.

    Safe when several processes start on a fresh data directory at once (two nodes, or
    a server started twice): the secret is written in full to a file of its own, then
    linked into place, which fails if another process got there first; the loser reads
    the winner's. Nobody ever reads a half-written secret.

    ``announce``, if given, is printed once when the secret is created: the admin token
    is shown to the person starting the server, once, and never logged.
    """
    with contextlib.suppress(FileNotFoundError):
        return _read_secret(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        with os.fdopen(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(value + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.link(draft, path)
    except FileExistsError:
        return _read_secret(path)  # another process created it first: theirs counts
    except OSError as e:  # a read-only directory, a full disk, no hard links
        raise SystemExit(
            f"Cannot create {path} ({e.strerror}): give the secret in the environment "
            "instead (PEERROOM_SECRET, PEERROOM_ADMIN_TOKEN)"
        ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(draft)
    if announce:
        print(f"{announce}: {value}\n  (kept in {path}; shown only this once)", flush=True)
    return value


def _read_secret(path: Path) -> str:
    value = path.read_text().strip()
    if not value:
        # An empty key would sign with nothing (and an empty admin token match nothing):
        # refuse to start rather than run with it.
        raise SystemExit(f"{path} is empty: delete it to have a new secret made")
    return value
