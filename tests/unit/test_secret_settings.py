"""Secrets set in the environment: one that could be guessed is refused at start."""

from __future__ import annotations

import pytest

from server.settings import MIN_SECRET_CHARS, SettingsError, from_sources

VARS = ["PEERROOM_ADMIN_TOKEN", "PEERROOM_SECRET", "PEERROOM_BRIDGE_TOKEN"]


@pytest.mark.parametrize("var", VARS)
def test_a_short_secret_is_refused_with_how_to_make_one(var: str) -> None:
    with pytest.raises(SettingsError, match=f"{var}: must be at least {MIN_SECRET_CHARS}"):
        from_sources(None, {var: "admin"})


@pytest.mark.parametrize("var", VARS)
def test_a_long_enough_secret_is_taken(var: str) -> None:
    value = "x" * MIN_SECRET_CHARS
    s = from_sources(None, {var: value})
    assert value in (s.admin_token, s.secret, s.bridge_token)
