"""Resume tokens: a signed claim "this connection may take back participant P of
session S in room R". Signed with itsdangerous; they carry no secret of their own and
are worthless once the participant has left the session.

One is issued with every ``welcome``, so a join storm issues thousands a second. They
are issued uncompressed: itsdangerous's URL-safe serializer tries zlib on every payload
and keeps the shorter, which for three short ids costs more than the rest of the token
(40 against 17 us here, measured in docs/optimisations.md) and saves a few characters.
The format is the library's own either way, so a token issued compressed (by an older
server) still verifies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer
from itsdangerous.encoding import base64_encode

_SALT = "peerroom.resume.v1"


@dataclass(frozen=True, slots=True)
class ResumeClaim:
    room_id: str
    session_id: str
    participant_id: str


class _Uncompressed(URLSafeSerializer):
    """The URL-safe format (base64 of the JSON, then the signature), never compressed;
    :meth:`loads` still reads compressed payloads."""

    def dump_payload(self, obj: Any) -> bytes:
        json = self.serializer.dumps(obj, **self.serializer_kwargs)
        return base64_encode(json.encode())


class ResumeTokens:
    def __init__(self, secret: str) -> None:
        self._s = _Uncompressed(secret, salt=_SALT)

    def issue(self, claim: ResumeClaim) -> str:
        return self._s.dumps([claim.room_id, claim.session_id, claim.participant_id])

    def verify(self, token: object) -> ResumeClaim | None:
        if not isinstance(token, str) or len(token) > 512 or not token.isascii():
            return None
        try:
            data = self._s.loads(token)
        except BadSignature:
            return None
        if not (
            isinstance(data, list) and len(data) == 3 and all(isinstance(x, str) for x in data)
        ):
            return None
        return ResumeClaim(room_id=data[0], session_id=data[1], participant_id=data[2])
