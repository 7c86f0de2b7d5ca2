"""A lean Redis connection for the live store's two hot paths: commits and pub/sub.

redis-py's asyncio client (used for everything else) takes a pool connection, a retry
wrapper, a timeout context and observability hooks for every command, and reads pub/sub
through ``get_message`` with a timeout per message. At a fan-out of thousands of commits
a second that was a fifth of each node's CPU (docs/optimisations.md). Here:

- :class:`RespConnection` is an :class:`asyncio.Protocol` whose replies are parsed by
  hiredis (Redis's own C parser) in ``data_received``;
- commands are pipelined: every :meth:`~RespConnection.call` made in one turn of the
  event loop leaves in one write, and replies resolve their futures in order;
- a pub/sub connection hands each pushed message to a callback, synchronously;
- one watchdog per connection instead of a timer per command: if the oldest command
  has waited :attr:`RespConnection.timeout` seconds, the connection is closed and every
  command on it fails (a FIFO pipe whose head is stuck is stuck as a whole).

A command that fails with a connection error may or may not have run; callers treat it
as they treat redis-py's (the live store's commits carry a tag for exactly this).
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import Callable
from typing import Any

import hiredis
from redis.asyncio.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Arg = bytes | str | int | float
Push = Callable[[list[Any]], None]


def pack(args: tuple[Arg, ...]) -> bytes:
    """One command in RESP: an array of bulk strings (hiredis's C packer; it refuses
    anything but str, bytes, int and float with a TypeError, bools and None included)."""
    # The stub types the tuple as one item long; the function takes any number.
    out: bytes = hiredis.pack_command(args)  # type: ignore[arg-type]
    return out


def _error(e: hiredis.ReplyError) -> ResponseError:
    msg = str(e)
    if msg.startswith("NOSCRIPT"):
        return NoScriptError(msg)
    return ResponseError(msg)


class RespConnection(asyncio.Protocol):
    """One Redis connection: pipelined commands, or (after SUBSCRIBE) pushed messages."""

    def __init__(
        self,
        *,
        timeout: float,
        on_push: Push | None = None,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self.timeout = timeout
        self._on_push = on_push
        self._on_lost = on_lost
        self._reader = hiredis.Reader()
        self._transport: asyncio.Transport | None = None
        self._pending: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self._out: list[bytes] = []
        self._flush_handle: asyncio.Handle | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self.closed_because: str | None = None

    # opening ---------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        timeout: float,  # noqa: ASYNC109 - the connection's own, kept for its commands
        on_push: Push | None = None,
        on_lost: Callable[[], None] | None = None,
    ) -> RespConnection:
        """Connect, authenticate and select the URL's database (raises on failure).
        ``on_push`` gets each reply no command waits for (pub/sub messages);
        ``on_lost`` is called once when the connection closes."""
        opts = parse_url(url)
        loop = asyncio.get_running_loop()
        proto = cls(timeout=timeout, on_push=on_push, on_lost=on_lost)
        try:
            if "path" in opts:
                connect = loop.create_unix_connection(lambda: proto, opts["path"])
            else:
                ctx = ssl.create_default_context() if url.startswith("rediss://") else None
                host, port = opts.get("host", "localhost"), int(opts.get("port", 6379))
                connect = loop.create_connection(lambda: proto, host, port, ssl=ctx)
            async with asyncio.timeout(timeout):
                await connect
        except (OSError, TimeoutError) as e:
            raise RedisConnectionError(f"cannot connect to Redis: {e}") from None
        try:
            hello: list[asyncio.Future[Any]] = []
            if opts.get("password"):
                user = opts.get("username")
                auth = ("AUTH", user, opts["password"]) if user else ("AUTH", opts["password"])
                hello.append(proto.call(*auth))
            if opts.get("db"):
                hello.append(proto.call("SELECT", int(opts["db"])))
            for f in hello:
                await f
        except BaseException:
            proto.close("handshake failed")
            raise
        return proto

    # protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport  # asyncio sets TCP_NODELAY on TCP transports itself

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        try:
            while (reply := reader.gets()) is not False:
                self._reply(reply)
        except hiredis.ProtocolError as e:
            self.close(f"protocol error: {e}")

    def _reply(self, reply: Any) -> None:
        if self._pending:
            fut, _ = self._pending.popleft()
            if not fut.done():
                if isinstance(reply, hiredis.ReplyError):
                    fut.set_exception(_error(reply))
                else:
                    fut.set_result(reply)
            return
        if self._on_push is not None and isinstance(reply, list):
            self._on_push(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        reason = self.closed_because or (str(exc) if exc else "closed by Redis")
        self.closed_because = reason
        self._fail_pending(RedisConnectionError(f"Redis connection lost: {reason}"))
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._on_lost is not None:
            self._on_lost()

    # use -------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def call(self, *args: Arg) -> asyncio.Future[Any]:
        """Send a command; its reply (or error) resolves the returned future."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not self.is_open:
            fut.set_exception(RedisConnectionError("Redis connection is closed"))
            return fut
        self._pending.append((fut, time.monotonic()))
        self._write(pack(args))
        if self._watchdog is None:
            self._arm()
        return fut

    def send(self, *args: Arg) -> None:
        """Send a command whose answer is pushed (SUBSCRIBE, UNSUBSCRIBE)."""
        if not self.is_open:
            raise RedisConnectionError("Redis connection is closed")
        self._write(pack(args))

    def _write(self, data: bytes) -> None:
        self._out.append(data)
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        out, self._out = self._out, []
        if self._transport is not None and out:
            self._transport.write(b"".join(out))

    def close(self, reason: str = "closed") -> None:
        if self.closed_because is None:
            self.closed_because = reason
        if self._transport is not None:
            self._transport.abort()  # connection_lost fails what is pending
        else:
            self._fail_pending(RedisConnectionError(f"Redis connection lost: {reason}"))

    def _fail_pending(self, exc: Exception) -> None:
        while self._pending:
            fut, _ = self._pending.popleft()
            if not fut.done():
                fut.set_exception(exc)

    # watchdog --------------------------------------------------------------------------

    def _arm(self) -> None:
        self._watchdog = asyncio.get_running_loop().call_later(self.timeout / 2, self._check)

    def _check(self) -> None:
        self._watchdog = None
        if not self._pending:
            return
        if time.monotonic() - self._pending[0][1] >= self.timeout:
            exc = RedisTimeoutError(f"no reply from Redis in {self.timeout:g} s")
            self._fail_pending(exc)
            self.close("timed out")
            return
        self._arm()
