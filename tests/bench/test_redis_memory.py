"""Redis's memory for the two-node capacity points (bench.meters.RedisMemory)."""

from __future__ import annotations

import os
import secrets

import pytest

from bench.meters import RedisMemory

URL = "redis://127.0.0.1:6379/15"  # the two-node target's Redis


@pytest.mark.skipif(os.environ.get("PEERROOM_SKIP_REDIS") == "1", reason="no Redis here")
def test_the_run_keys_are_counted_and_others_are_not() -> None:
    import redis

    prefix = f"bench-test-{secrets.token_hex(4)}:"
    other = f"bench-other-{secrets.token_hex(4)}"
    client = redis.Redis.from_url(URL)
    try:
        client.set(prefix + "before", b"x" * 5_000)  # there before the fill: not counted
        mem = RedisMemory(URL, prefix)
        mem.start()
        assert mem.base is not None
        client.set(prefix + "room:1", b"x" * 10_000)
        client.set(other, b"y" * 50_000)  # another client's key
        used, keys = mem.sample()
        assert keys is not None and 10_000 <= keys < 20_000
        assert isinstance(used, int)  # counts the other key too: not asserted
    finally:
        client.delete(prefix + "before", prefix + "room:1", other)
        client.close()


def test_an_unreachable_redis_is_not_measured_rather_than_zero() -> None:
    mem = RedisMemory("redis://127.0.0.1:1/0", "nothing:")
    mem.start()
    assert mem.sample() == (None, None)
