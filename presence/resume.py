"""Resume tokens: a signed claim "this connection may take back participant P of
session S in room R". Signed with itsdangerous; they carry no secret of their own and
are worthless once the participant has left the session.
"""

from __future__ import annotations

from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer

_SALT = "peerroom.resume.v1"


@dataclass(frozen=True, slots=True)
class ResumeClaim:
    room_id: str
    session_id: str
    participant_id: str


class ResumeTokens:
    def __init__(self, secret: str) -> None:
        self._s = URLSafeSerializer(secret, salt=_SALT)

    def issue(self, claim: ResumeClaim) -> str:
        return self._s.dumps([claim.room_id, claim.session_id, claim.participant_id])

    def verify(self, token: object) -> ResumeClaim | None:
        if not isinstance(token, str) or len(token) > 512:
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
