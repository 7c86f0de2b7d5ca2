"""Secrets set in the environment: one that could be guessed is refused at start."""

from __future__ import annotations

import pytest

from server.settings import MIN_SECRET_CHARS, SettingsError, from_sources

VARS = ["PEERROOM_ADMIN_TOKEN", "PEERROOM_SECRET", "PEERROOM_BRIDGE_TOKEN"]


@pytest.mark.parametrize("var", VARS)
def test_a_short_secret_is_refused_with_how_to_make_one(var: str) -> None:
    with pytest.raises(SettingsError, match=f"{var}: must be at least {MIN_SECRET_CHARS}"):
        from_sources(None, {var: "admin"})


def test_each_long_enough_secret_lands_in_its_own_field() -> None:
    env = {var: f"{n}" * MIN_SECRET_CHARS for n, var in enumerate(VARS)}
    s = from_sources(None, env)
    assert s.admin_token == env["PEERROOM_ADMIN_TOKEN"]
    assert s.secret == env["PEERROOM_SECRET"]
    assert s.bridge_token == env["PEERROOM_BRIDGE_TOKEN"]


@pytest.mark.parametrize(
    ("var", "field"),
    [
        ("PEERROOM_ADMIN_TOKEN", "admin_token"),
        ("PEERROOM_SECRET", "secret"),
        ("PEERROOM_BRIDGE_TOKEN", "bridge_token"),
    ],
)
def test_a_long_enough_secret_alone_sets_only_its_field(var: str, field: str) -> None:
    value = "x" * MIN_SECRET_CHARS
    s = from_sources(None, {var: value})
    taken = {f: getattr(s, f) for f in ("admin_token", "secret", "bridge_token")}
    assert taken == {f: value if f == field else None for f in taken}
