"""Engine.IO websocket connections without a task or a queue hop per packet.

python-engineio runs every websocket connection as two tasks: a reader that starts a
new task and a ``wait_for`` timer for each message it receives, and a writer that wakes
for each packet put on the socket's queue. With rooms of ten, one chat line costs ten
queue puts, ten writer wake-ups and ten frame encodings (docs/optimisations.md has the
profile and the numbers).

For connections that open straight on the websocket transport (every client of ours that
asks for ``transports=["websocket"]``: the bench, python-socketio clients, the phone
bridge), :class:`DirectWebSocket` takes the connection over once the handshake is done:

- one reader loop, with no timer per message (:func:`sweep` aborts a connection whose
  client stopped answering pings), handing Socket.IO messages to the server's handler
  inline (as ``async_handlers=False`` already does);
- every send, from any task, writes its frame to the transport at once, so packets
  leave in exactly the order they were sent; a room broadcast builds its frame once and
  writes the same bytes to each member (:meth:`DirectConnection.write_frame`); while a
  connection's own event is handled its frames are held for one loop turn at most, so
  its copy of the broadcast and its ack leave in one write
  (:meth:`DirectConnection.cork`);
- no backpressure wait in a broadcast: a reader that stops reading is cut off when its
  unread output passes :data:`MAX_UNREAD_BYTES`, and it resumes like any dropped line,
  instead of holding up its room or growing a queue without bound.

A connection that starts on long-polling and upgrades (a browser's default) keeps the
library's own handler unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import time
from typing import Any

from aiohttp import WSMsgType, web
from engineio import packet as eio_packet
from engineio.async_drivers.aiohttp import WebSocket as LibraryWebSocket
from engineio.async_socket import AsyncSocket

log = logging.getLogger(__name__)


class UnreadablePacket(ValueError):
    """A Socket.IO packet that does not decode: hand-made, since no client library sends
    one. Dropped with a one-line log (no content), the connection kept."""


# Output the peer has not read yet, beyond which it is cut off (bytes). A room of 100
# chatting at the rate limit writes well under 1 MB a minute to each member.
MAX_UNREAD_BYTES = 4 * 1024 * 1024

# Every Engine.IO socket says whether it is on a direct connection: None until _run
# takes it over, and again once it ends (a plain attribute read per broadcast recipient).
AsyncSocket.peerroom_direct = None

_TEXT = 0x81  # FIN + text opcode
_BINARY = 0x82  # FIN + binary opcode


def ws_frame(data: str | bytes) -> bytes:
    """One unmasked, uncompressed websocket frame (RFC 6455, section 5.2): what a server
    sends. Valid whatever extension was agreed, since RSV1 is clear."""
    if isinstance(data, str):
        payload = data.encode()
        first = _TEXT
    else:
        payload = bytes(data)
        first = _BINARY
    n = len(payload)
    if n < 126:
        header = bytes((first, n))
    elif n < 65536:
        header = struct.pack("!BBH", first, 126, n)
    else:
        header = struct.pack("!BBQ", first, 127, n)
    return header + payload


class DirectConnection:
    """The write side of one taken-over connection."""

    __slots__ = ("_closing", "_held", "_loop", "_protocol", "_socket", "_transport", "_ws")

    def __init__(self, socket: Any, ws: web.WebSocketResponse, request: web.Request):
        assert request.transport is not None
        self._socket = socket
        self._ws = ws
        self._transport: asyncio.Transport = request.transport
        self._protocol = request.protocol  # says when the transport's buffer is past 64 KiB
        self._closing = False
        self._held: list[bytes] | None = None
        self._loop = asyncio.get_running_loop()

    def cork(self) -> None:
        """Hold this connection's frames until :meth:`uncork`, or the end of this turn of
        the event loop at the latest: while its own event is handled, the room's copy of
        the sender's line and the sender's ack leave in one write (one send instead of
        two), and a handler that waits on something never holds them longer."""
        if self._held is None:
            self._held = []
            self._loop.call_soon(self.uncork)

    def uncork(self) -> None:
        held, self._held = self._held, None
        if held:
            self._put(held[0] if len(held) == 1 else b"".join(held))

    def abort(self) -> None:
        """Close at once (a client gone silent): the reader loop ends and cleans up."""
        self._closing = True
        self._transport.abort()

    @property
    def open(self) -> bool:
        return not self._closing and not self._transport.is_closing()

    def write_frame(self, frame: bytes) -> None:
        """Write a ready frame now; never waits. Cuts off a peer that stopped reading.
        (Once per recipient of every broadcast: kept to the fewest calls.)"""
        if self._held is not None:
            if not self._closing:
                self._held.append(frame)
            return
        self._put(frame)

    def _put(self, frame: bytes) -> None:
        transport = self._transport
        if self._closing or transport.is_closing():
            return
        transport.write(frame)
        if self._protocol.writing_paused and transport.get_write_buffer_size() > MAX_UNREAD_BYTES:
            log.info(
                "%s: peer stopped reading (over %d bytes unread): cut off",
                self._socket.sid,
                MAX_UNREAD_BYTES,
            )
            self._closing = True
            self._transport.abort()

    async def send(self, pkt: eio_packet.Packet) -> None:
        """Replaces ``AsyncSocket.send`` for this socket: no queue, no writer task."""
        if not await self._socket.check_ping_timeout():
            return
        self.write_frame(ws_frame(pkt.encode()))
        if pkt.packet_type == eio_packet.CLOSE and not self._closing:
            # The library's writer closes the websocket after an Engine.IO CLOSE; so do we.
            self.uncork()
            self._closing = True
            task = asyncio.ensure_future(self._ws.close())
            _closing_tasks.add(task)
            task.add_done_callback(_closing_tasks.discard)

    def stop(self) -> None:
        self._closing = True


_closing_tasks: set[asyncio.Future[Any]] = set()


def direct_connection(socket: Any) -> DirectConnection | None:
    """The connection to write a broadcast frame to, or None for the library's path."""
    conn: DirectConnection | None = socket.peerroom_direct
    return conn


class DirectWebSocket(LibraryWebSocket):  # type: ignore[misc]
    """Engine.IO's aiohttp websocket driver, taking over websocket-only connections."""

    async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
        socket = getattr(self.handler, "__self__", None)
        if socket is None or socket.connected:
            # An upgrade from long-polling: the library's probe handshake and handler.
            ws: web.WebSocketResponse = await super().__call__(environ)
            return ws
        request: web.Request = environ["aiohttp.request"]
        ws = web.WebSocketResponse(max_msg_size=self.server.max_http_buffer_size)
        await ws.prepare(request)
        self._sock = ws
        self.environ = environ
        if request.transport is None:  # the peer left during the handshake
            return ws
        await _run(socket, ws, request)
        return ws


async def _run(socket: Any, ws: web.WebSocketResponse, request: web.Request) -> None:
    server = socket.server
    conn = DirectConnection(socket, ws, request)
    socket.connected = True
    socket.upgraded = True
    # What was queued before the websocket was ready (the Engine.IO OPEN packet) goes
    # first, then every later send writes directly.
    while not socket.queue.empty():
        pkt = socket.queue.get_nowait()
        socket.queue.task_done()
        if pkt is not None:
            conn.write_frame(ws_frame(pkt.encode()))
    socket.send = conn.send
    socket.peerroom_direct = conn
    on_message = server.handlers.get("message")
    try:
        # Until the socket closes: already, if the handshake outlasted the client; or by
        # the client's Engine.IO CLOSE, after which nothing else (no pings) would end
        # this read while the peer keeps the TCP connection open.
        while not socket.closed:
            # No receive timeout (a timer per message): a client that stops answering
            # pings is aborted by :func:`sweep`, which ends this read.
            msg = await ws.receive()
            if msg.type is not WSMsgType.TEXT and msg.type is not WSMsgType.BINARY:
                break  # CLOSE, CLOSING, CLOSED, ERROR
            try:
                pkt = eio_packet.Packet(encoded_packet=msg.data)
            except Exception as e:  # not Engine.IO at all: this is no client of ours
                log.info("%s: not an Engine.IO packet (%s): closing", socket.sid, type(e).__name__)
                break
            # Nothing of a message outlives its handling: kept in this frame until the
            # next one arrives, every idle connection held its last message (its text
            # and two objects), and after a burst that touched every connection the
            # garbage collector walked them all again in the next one.
            del msg
            if socket.closed:
                break
            if pkt.packet_type == eio_packet.MESSAGE and on_message is not None:
                data = pkt.data
                del pkt
                conn.cork()
                try:
                    await on_message(socket.sid, data)  # fanout.GuardedServer's
                except Exception:
                    log.exception("%s: message handler error", socket.sid)
                finally:
                    conn.uncork()
                del data
                continue
            try:
                await socket.receive(pkt)
            except Exception:  # an unknown packet type, or the socket closed meanwhile
                log.debug("%s: packet not handled", socket.sid, exc_info=True)
            del pkt
    finally:
        conn.stop()
        socket.peerroom_direct = None
        await socket.close(wait=False, abort=True, reason=server.reason.TRANSPORT_CLOSE)
        if not ws.closed:
            await ws.close()


def install(eio_server: Any) -> None:
    """Use :class:`DirectWebSocket` for this Engine.IO server's websocket connections,
    and :func:`monitor` (started by the app) instead of the library's service task and
    its task per connection per ping."""
    eio_server._async = dict(eio_server._async, websocket=DirectWebSocket)
    eio_server.start_service_task = False
    library_ping = getattr(AsyncSocket, "_send_ping", None)
    if library_ping is None:  # a python-engineio that pings some other way: leave it be
        log.warning("python-engineio has no AsyncSocket._send_ping; its own pings are used")
        return
    library_start = eio_server.start_background_task

    def start_background_task(target: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(target, "__func__", None) is library_ping:
            # A pong came in (or the connection opened): the next ping is the sweep's.
            ping_later(target.__self__, eio_server.ping_interval)
            return None
        return library_start(target, *args, **kwargs)

    eio_server.start_background_task = start_background_task


def ping_later(socket: Any, interval: float) -> None:
    """Have :func:`sweep` ping ``socket`` within ``interval`` seconds.

    python-engineio starts a task per connection that sleeps ``interval`` and pings, a
    new one after every pong: 10,000 sleeping tasks (1.4 KB each) and a timer each
    in the loop's heap, and a group that joined together is pinged together, every
    cycle. Here the time is a number on the socket and the once-a-second sweep sends
    the ping, a random 0-25% early (a client only requires a ping at least every
    ``interval``), so a group's pings spread over the cycle."""
    socket.peerroom_ping_at = time.monotonic() + interval * random.uniform(1 - PING_SPREAD, 1)


# How often every connection's ping is looked at. The library's own task looks at one
# connection at a time with a ``wait_for`` between each, spreading a pass over the ping
# timeout: at 10,000 connections that was 500 timers a second and 8% of an idle core
# (docs/optimisations.md). A pass here is a plain loop, yielding every SWEEP_BATCH.
MONITOR_SECS = 1.0
SWEEP_BATCH = 1000
PING_SPREAD = 0.25  # pings are sent up to this fraction of the interval early
PING_BATCH = 25  # pings written between two turns of the event loop
_PING_FRAME = ws_frame(eio_packet.Packet(eio_packet.PING).encode())


async def monitor(eio_server: Any) -> None:
    """Ping connections when due, close those whose client stopped answering pings,
    forget closed ones."""
    while True:
        await asyncio.sleep(MONITOR_SECS)
        try:
            await sweep(eio_server)
        except Exception:
            log.exception("connection monitor failed; it goes on")


async def sweep(eio_server: Any) -> int:
    """One pass over every connection; returns how many it closed or forgot."""
    sockets: dict[str, Any] = eio_server.sockets
    limit = eio_server.ping_timeout
    now = time.time()  # the clock engineio stamps ``last_ping`` with
    tick = time.monotonic()  # the clock of ``peerroom_ping_at``
    done = pinged = 0
    for i, sock in enumerate(list(sockets.values())):
        if sock.closed:
            sid = sock.sid
            if sockets.get(sid) is sock:
                del sockets[sid]
            done += 1
        elif sock.closing:
            pass
        elif sock.last_ping and now - sock.last_ping > limit:
            await sock.check_ping_timeout()  # the library's own close for a silent client
            conn = direct_connection(sock)
            if conn is not None:
                conn.abort()  # its reader has no timeout of its own
            done += 1
        elif (at := getattr(sock, "peerroom_ping_at", None)) is not None and tick >= at:
            # What the library's ping task did after its sleep.
            sock.peerroom_ping_at = None
            sock.last_ping = now
            conn = direct_connection(sock)
            if conn is not None:
                conn.write_frame(_PING_FRAME)
            else:
                await sock.send(eio_packet.Packet(eio_packet.PING))
            pinged += 1
            if pinged % PING_BATCH == 0:
                # A group that joined together is due together: a burst of hundreds of
                # writes would hold up chat lines for tens of ms (seen in the bench).
                await asyncio.sleep(0)
        if i % SWEEP_BATCH == SWEEP_BATCH - 1:
            await asyncio.sleep(0)
    return done
