"""server.redis_wire against the real Redis: pipelined replies in order, errors that do
not desync the pipe, pushed pub/sub messages, a lost connection and the watchdog."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from server.redis_wire import RespConnection, pack


def test_commands_are_packed_as_resp_arrays_of_bulk_strings() -> None:
    assert pack(("SET", b"k\r\n", 12)) == b"*3\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$2\r\n12\r\n"
    packed = b"*4\r\n$1\r\nX\r\n$2\r\n-3\r\n$3\r\n0.5\r\n$2\r\n\xc3\xa9\r\n"
    assert pack(("X", -3, 0.5, "é")) == packed
    for wrong in (None, True, [1]):
        with pytest.raises(TypeError):
            pack(("SET", wrong))  # type: ignore[arg-type]


async def test_pipelined_calls_get_their_own_replies_and_errors(redis_url: str) -> None:
    conn = await RespConnection.open(redis_url, timeout=2)
    key = f"peerroom-test-wire:{secrets.token_hex(4)}"
    try:
        calls = [conn.call("INCR", key) for _ in range(200)]
        bad = conn.call("EVALSHA", "0" * 40, 0)  # unknown script: an error, in its place
        wrong = conn.call("LPUSH", key, "x")  # wrong type: an error too
        after = conn.call("GET", key)
        assert await asyncio.gather(*calls) == list(range(1, 201))
        with pytest.raises(NoScriptError):
            await bad
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await wrong
        assert await after == b"200"
        assert await conn.call("DEL", key) == 1
    finally:
        conn.close()


async def test_pushed_messages_and_a_connection_killed_by_redis(redis_url: str) -> None:
    pushed: list[list[Any]] = []
    lost = asyncio.Event()
    sub = await RespConnection.open(redis_url, timeout=2, on_push=pushed.append, on_lost=lost.set)
    cmd = await RespConnection.open(redis_url, timeout=2)
    r = Redis.from_url(redis_url)
    channel = f"peerroom-test-wire:{secrets.token_hex(4)}"
    try:
        sub.send("SUBSCRIBE", channel)
        for _ in range(50):
            if pushed:
                break
            await asyncio.sleep(0.02)
        assert pushed == [[b"subscribe", channel.encode(), 1]]
        assert await r.publish(channel, b"\x00binary\r\n") == 1
        for _ in range(50):
            if len(pushed) == 2:
                break
            await asyncio.sleep(0.02)
        assert pushed[1] == [b"message", channel.encode(), b"\x00binary\r\n"]
        # Redis drops the command connection with a command in flight: it fails, no hang.
        me = await cmd.call("CLIENT", "ID")
        blocked = cmd.call("BLPOP", channel + ":never", 5)
        await asyncio.sleep(0.05)
        await r.client_kill_filter(_id=me)
        with pytest.raises(RedisConnectionError):
            await asyncio.wait_for(blocked, 2)
        assert not cmd.is_open
        with pytest.raises(RedisConnectionError):
            await cmd.call("PING")
        sub.close("test")
        await asyncio.wait_for(lost.wait(), 2)
    finally:
        sub.close()
        cmd.close()
        await r.aclose()


async def test_a_stuck_pipe_fails_every_call_on_it_after_the_timeout(redis_url: str) -> None:
    conn = await RespConnection.open(redis_url, timeout=0.3)
    try:
        stuck = conn.call("BLPOP", f"peerroom-test-wire:{secrets.token_hex(4)}", 5)
        behind = conn.call("PING")
        with pytest.raises(RedisTimeoutError):
            await asyncio.wait_for(stuck, 2)
        with pytest.raises((RedisTimeoutError, RedisConnectionError)):
            await behind
        assert not conn.is_open
    finally:
        conn.close()
