"""--redis-url and --redis-prefix: from flags or environment, checked up front."""

from __future__ import annotations

import pytest

from server.settings import SettingsError, from_sources


def test_redis_from_the_environment() -> None:
    env = {"PEERROOM_REDIS_URL": "redis://10.0.0.5:6379/0", "PEERROOM_REDIS_PREFIX": "org1:"}
    s = from_sources(None, env)
    assert (s.redis_url, s.redis_prefix) == ("redis://10.0.0.5:6379/0", "org1:")


def test_default_prefix() -> None:
    assert from_sources(None, {}).redis_prefix == "peerroom:"


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"PEERROOM_REDIS_URL": "http://10.0.0.5"}, "--redis-url"),
        ({"PEERROOM_REDIS_URL": "10.0.0.5:6379"}, "--redis-url"),
    ],
)
def test_bad_redis_settings_are_refused(env: dict[str, str], says: str) -> None:
    with pytest.raises(SettingsError, match=says):
        from_sources(None, env)
