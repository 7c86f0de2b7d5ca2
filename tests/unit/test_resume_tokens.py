"""Resume tokens: issued without compression, in itsdangerous's own format, so tokens of
either form verify and nothing else does."""

from __future__ import annotations

from itsdangerous import URLSafeSerializer

from presence.resume import _SALT, ResumeClaim, ResumeTokens

SECRET = "s" * 43
CLAIM = ResumeClaim("r_0123456789ab", "s_0123456789ab", "p_0123456789abcd")


def test_an_issued_token_verifies_and_is_not_compressed() -> None:
    tokens = ResumeTokens(SECRET)
    token = tokens.issue(CLAIM)
    assert tokens.verify(token) == CLAIM
    assert not token.startswith(".")  # itsdangerous marks a compressed payload with "."
    # The library's own reader takes it: the format did not change.
    plain = URLSafeSerializer(SECRET, salt=_SALT)
    assert plain.loads(token) == [CLAIM.room_id, CLAIM.session_id, CLAIM.participant_id]


def test_a_compressed_token_from_an_older_server_still_verifies() -> None:
    # What URLSafeSerializer issued before: zlib when shorter, which it is for these ids.
    old = URLSafeSerializer(SECRET, salt=_SALT).dumps(
        [CLAIM.room_id, CLAIM.session_id, CLAIM.participant_id]
    )
    assert old.startswith(".")
    assert ResumeTokens(SECRET).verify(old) == CLAIM


def test_forged_or_foreign_tokens_do_not_verify() -> None:
    tokens = ResumeTokens(SECRET)
    token = tokens.issue(CLAIM)
    payload, _, signature = token.rpartition(".")
    assert tokens.verify(f"{payload}.{signature[:-2]}xx") is None
    assert ResumeTokens("t" * 43).verify(token) is None  # another deployment's secret
    other_salt = URLSafeSerializer(SECRET, salt="peerroom.room.v1").dumps(["a", "b", "c"])
    assert tokens.verify(other_salt) is None
    assert tokens.verify(URLSafeSerializer(SECRET, salt=_SALT).dumps(["a", "b"])) is None
    assert tokens.verify(None) is None and tokens.verify("x" * 600) is None
