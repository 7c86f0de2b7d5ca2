"""--redis-url and --redis-prefix: from flags or environment, checked up front."""

from __future__ import annotations

import pytest

from server.redis_live import RedisStore, shown_url
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


async def test_a_redis_password_is_never_printed() -> None:
    """A node that cannot reach Redis says where it tried, without the password (the
    message goes to stderr, so to the journal)."""
    store = RedisStore("redis://user:S3cretRedisPass@127.0.0.1:1/0", prefix="t:", grace_secs=1)
    try:
        with pytest.raises(SystemExit) as refused:
            await store.start()
    finally:
        await store.close()
    said = str(refused.value)
    assert "Cannot reach Redis at redis://127.0.0.1:1/0" in said
    assert "S3cret" not in said and "user" not in said
    assert shown_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert shown_url("rediss://:p@w@h:1") == "rediss://h:1"
