"""Room emits without a task per recipient.

python-socketio's ``AsyncManager.emit`` encodes a packet once, then creates one asyncio
task per recipient and waits for them all. Each of those sends is only a put on the
recipient's Engine.IO queue, so the tasks are pure overhead: with rooms of ten, most of a
broadcast's cost. This manager makes the same puts in a plain loop. Emits that need an
ack callback keep the library's path. Members on a direct connection
(:mod:`server.eio_direct`) get one prebuilt frame written straight to their transport.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any, Final

import orjson
import socketio
from engineio import packet as eio_packet
from socketio import msgpack_packet, packet

from rooms.errors import ErrorCode, RoomError
from server.eio_direct import UnreadablePacket, ws_frame

log = logging.getLogger(__name__)


class _SidSet:
    """python-socketio keeps the connections in the middle of connecting (and of
    disconnecting) in a list per namespace, and asks ``sid in list`` and
    ``list.remove(sid)`` at every step of every handshake: with a thousand joins in
    flight that is quadratic (19% of the server's samples in a 3,000-join storm). The
    same operations, each O(1), in insertion order."""

    __slots__ = ("_sids",)

    def __init__(self) -> None:
        self._sids: dict[str, None] = {}

    def append(self, sid: str) -> None:
        self._sids[sid] = None

    def remove(self, sid: str) -> None:
        try:
            del self._sids[sid]
        except KeyError:
            raise ValueError(sid) from None  # as list.remove

    def __contains__(self, sid: object) -> bool:
        return sid in self._sids

    def __len__(self) -> int:
        return len(self._sids)

    def __iter__(self) -> Iterator[str]:
        return iter(self._sids)


class DirectManager(socketio.AsyncManager):  # type: ignore[misc]
    """Also keeps, per connection, the rooms it is in: python-socketio's disconnect
    scans every room of the namespace (a copy of the whole dict, then a membership test
    in each) to find them. peerroom has a room per session, per participant and per
    connection, so at 10,000 connections each disconnect cost milliseconds and a group
    dropping at once stalled the loop for seconds (41% of the server's samples in a
    profile of a 5,000-participant run, most of it at its end)."""

    def __init__(self) -> None:
        super().__init__()
        self._joined: dict[tuple[str, str], set[Any]] = {}  # (namespace, sid) -> rooms
        # (namespace, room) -> its members' (sid, eio_sid, Engine.IO socket), kept from
        # one broadcast to the next until someone enters or leaves the room (_members)
        self._members: dict[tuple[str, Any], tuple[tuple[str, str, Any], ...]] = {}
        # (namespace, sid) -> True once connected, False if it went away before that
        self._connect_waiters: dict[tuple[str, str], asyncio.Future[bool]] = {}

    async def wait_connected(self, sid: str, namespace: str = "/") -> bool:
        """True once ``sid`` is fully connected (python-socketio sends the CONNECT packet
        only after the connect handler has returned); False if it is disconnected first.
        A waiter instead of a poll: a join storm had a thousand tasks each asking every
        5 ms. Callers bound the wait; a cancelled wait leaves nothing behind."""
        if self.is_connected(sid, namespace):
            return True
        if not self.is_pre_connected(sid, namespace):
            return False  # unknown, or already on its way out
        key = (namespace, sid)
        fut = self._connect_waiters.get(key)
        if fut is None:
            fut = self._connect_waiters[key] = asyncio.get_running_loop().create_future()
        try:
            return await asyncio.shield(fut)
        finally:
            if self._connect_waiters.get(key) is fut:  # cancelled: nothing left behind
                del self._connect_waiters[key]

    def _resolve_waiter(self, sid: str, namespace: str, connected: bool) -> None:
        fut = self._connect_waiters.pop((namespace, sid), None)
        if fut is not None and not fut.done():
            fut.set_result(connected)

    async def pre_connect(self, eio_sid: str, namespace: str) -> Any:
        if namespace not in self.pending_connect:
            self.pending_connect[namespace] = _SidSet()
        return await super().pre_connect(eio_sid, namespace)

    def pre_disconnect(self, sid: str, namespace: str) -> Any:
        if namespace not in self.pending_disconnect:
            self.pending_disconnect[namespace] = _SidSet()
        return super().pre_disconnect(sid, namespace)

    async def connect(self, sid: str, namespace: str) -> Any:
        result = await super().connect(sid, namespace)
        self._resolve_waiter(sid, namespace, True)
        return result

    def basic_enter_room(self, sid: str, namespace: str, room: Any, eio_sid: Any = None) -> None:
        self._members.pop((namespace, room), None)
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        self._joined.setdefault((namespace, sid), set()).add(room)

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        self._members.pop((namespace, room), None)
        super().basic_leave_room(sid, namespace, room)
        rooms = self._joined.get((namespace, sid))
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del self._joined[(namespace, sid)]

    def get_rooms(self, sid: str, namespace: str) -> list[Any]:
        return [r for r in self._joined.get((namespace, sid), ()) if r is not None]

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        # python-socketio 5.x's BaseManager.basic_disconnect, with the rooms looked up in
        # the index instead of found by a scan.
        self._resolve_waiter(sid, namespace, False)
        if namespace not in self.rooms:
            return
        for room in list(self._joined.get((namespace, sid), ())):
            self.basic_leave_room(sid, namespace, room)
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            waiting = pending.get(namespace)
            if waiting is not None and sid in waiting:
                waiting.remove(sid)
                if not waiting:
                    del pending[namespace]

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> None:
        if callback is not None:
            await super().emit(event, data, namespace, room, skip_sid, callback, to, **kwargs)
            return
        if namespace not in self.rooms:
            return
        if isinstance(data, tuple):
            args = list(data)
        elif data is not None:
            args = [data]
        else:
            args = []
        skip = skip_sid if isinstance(skip_sid, list) else [skip_sid]
        encoded = self.server.packet_class(
            packet.EVENT, namespace=namespace, data=[event, *args]
        ).encode()
        frames = [
            eio_packet.Packet(eio_packet.MESSAGE, p)
            for p in (encoded if isinstance(encoded, list) else [encoded])
        ]
        # One websocket frame for every member on a direct connection (eio_direct): the
        # same bytes, written in this loop; others get the library's queued send.
        # (Its own Packet: encode() caches, and a long-polling member's copy of a binary
        # packet must still encode as base64.)
        wire = (
            ws_frame(eio_packet.Packet(eio_packet.MESSAGE, encoded).encode())
            if len(frames) == 1
            else None
        )
        send = self.server.eio.send_packet
        for sid, eio_sid, socket in self._members_of(namespace, to or room):
            if sid in skip:
                continue
            conn = socket.peerroom_direct if wire is not None and socket is not None else None
            try:
                if conn is not None:
                    conn.write_frame(wire)
                    continue
                if socket is not None and await _cut_off_if_full(socket):
                    continue
                for frame in frames:
                    await send(eio_sid, frame)
            except Exception:  # one closing socket must not cost the others their copy
                log.debug("a send to a closing connection failed", exc_info=True)

    def _members_of(self, namespace: str, room: Any) -> tuple[tuple[str, str, Any], ...]:
        """Who a broadcast to ``room`` reaches here: (sid, eio_sid, Engine.IO socket or
        None). A room's list is built once and kept until a member enters or leaves
        (``basic_enter_room`` / ``basic_leave_room``, through which every change of
        ``self.rooms`` goes), not rebuilt from the room's dict at every chat line.
        Whether a member is on a direct connection is read at each send (it changes
        without a change of rooms). A list of rooms (``to=[...]``) is not kept."""
        hashable = isinstance(room, str) or room is None
        if hashable:
            kept = self._members.get((namespace, room))
            if kept is not None:
                return kept
        sockets = self.server.eio.sockets
        members = tuple(
            (sid, eio_sid, sockets.get(eio_sid))
            for sid, eio_sid in self.get_participants(namespace, room)
        )
        # A room of one is cheap to look up (and every participant and connection has one
        # of its own: keeping theirs would cost memory for nothing); a member whose
        # socket is gone (closing) is not kept.
        if hashable and len(members) > 1 and all(m[2] is not None for m in members):
            self._members[(namespace, room)] = members
        return members


# Packets queued for a connection on the library's path (long-polling, or a websocket
# upgraded from it) that its client has not fetched, beyond which it is cut off, as
# eio_direct cuts off a direct one past MAX_UNREAD_BYTES: a client that answers pings
# but never polls for messages would otherwise have the room's every line kept for it.
# A polling client fetches all that is queued at least every ping interval (25 s); a
# room of 100 chatting at the rate limit queues 2,500 in that time.
MAX_QUEUED_PACKETS: Final = 5000


async def _cut_off_if_full(socket: Any) -> bool:
    """Cut ``socket`` off if it has :data:`MAX_QUEUED_PACKETS` unfetched: True if so
    (nothing more is queued for it)."""
    if socket.queue.qsize() < MAX_QUEUED_PACKETS:
        return False
    await _cut_off(socket)
    return True


async def _cut_off(socket: Any) -> None:
    if socket.closing or socket.closed:
        return
    log.info(
        "%s: peer stopped fetching (%d packets queued): cut off", socket.sid, MAX_QUEUED_PACKETS
    )
    # abort: no CLOSE packet queued behind the rest; its disconnect handler runs here,
    # and never waits for the room (RoomService.closed).
    await socket.close(wait=False, abort=True)


class OrJson:
    """orjson behind the two calls python-socketio makes: ``dumps`` (always compact) and
    ``loads``. The same JSON but for non-ASCII text, sent as UTF-8 rather than ``\\u``
    escapes (both valid JSON, read alike by every client)."""

    @staticmethod
    def dumps(obj: Any, **_: Any) -> str:
        return orjson.dumps(obj).decode()

    @staticmethod
    def loads(text: str | bytes) -> Any:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            # orjson refuses a lone surrogate ("\\ud83d": an emoji cut in half, which a
            # browser's JSON.stringify sends as is); the packet was then dropped unread,
            # with no ack, and a name with one never got its ``name_invalid``. The
            # standard parser reads it (the validators then refuse it with a code); it
            # must still refuse what orjson refused for being no JSON at all.
            return _lenient_loads(text)


def _lenient_loads(text: str | bytes) -> Any:
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class BinaryRefused(UnreadablePacket):
    """A binary event or ack from a client. peerroom's events carry no bytes, and the
    library would gather attachments for one with no bound on their count or size."""

    def __init__(self, namespace: str | None, ack_id: int | None) -> None:
        super().__init__("binary packet")
        self.namespace = namespace
        self.ack_id = ack_id


class _Unreadable:
    """A packet class whose decode failures are :class:`UnreadablePacket`: whatever the
    bytes, a packet with an int type, a text namespace (or none) and an int id (or
    none), and an event's name is text. Binary packets are refused."""

    def decode(self, encoded_packet: Any) -> Any:
        try:
            attachments = super().decode(encoded_packet)  # type: ignore[misc]
        except Exception as e:  # hand-made bytes: any failure of the parser is theirs
            raise UnreadablePacket(type(e).__name__) from None
        kind, namespace, ack_id = self.packet_type, self.namespace, self.id  # type: ignore[attr-defined]
        if type(kind) is not int or not 0 <= kind <= packet.BINARY_ACK:
            raise UnreadablePacket("no packet type")
        if not (namespace is None or isinstance(namespace, str)):
            raise UnreadablePacket("a namespace that is not text")
        if not (ack_id is None or type(ack_id) is int):
            raise UnreadablePacket("an ack id that is not a number")
        if kind in _BINARY:
            raise BinaryRefused(namespace, ack_id if kind == packet.BINARY_EVENT else None)
        if kind == packet.EVENT:
            data = self.data  # type: ignore[attr-defined]
            if not (isinstance(data, list) and data and isinstance(data[0], str)):
                # The library would look the name up in a dict: a list is unhashable.
                raise UnreadablePacket("an event whose name is not text")
        return attachments


_BINARY: Final = frozenset((packet.BINARY_EVENT, packet.BINARY_ACK))


UNREADABLE_LOGGED: Final = 10  # unreadable packets logged per connection
MAX_UNREADABLE_PACKETS: Final = 100  # per connection, then it is closed


class GuardedServer(socketio.AsyncServer):  # type: ignore[misc]
    """python-socketio's server, reading only what is a Socket.IO packet.

    Engine.IO hands on a message it could read as JSON as that value (``4[]``, ``4null``)
    and an empty one as empty; python-socketio then failed on it with a traceback, on
    every such frame from anyone who opened a connection. An unreadable packet is
    dropped with one line of log (no content) and the connection goes on. A binary
    event is refused, with an ack saying so when it asked for one: the library kept
    every later message of the connection as its attachments, however many it named."""

    handled = 0  # Socket.IO messages taken in so far (gctune's quiet collector reads it)

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        self.handled += 1
        if not data or not isinstance(data, str | bytes):
            await self._unreadable(eio_sid, "not a Socket.IO packet")
            return
        try:
            await super()._handle_eio_message(eio_sid, data)
        except BinaryRefused as e:
            await self._unreadable(eio_sid, "binary packets are not taken")
            await self._refuse_binary(eio_sid, e)
        except UnreadablePacket as e:
            await self._unreadable(eio_sid, str(e))

    async def _unreadable(self, eio_sid: str, why: str) -> None:
        """One line of log per unreadable packet, for the first few of a connection; past
        :data:`MAX_UNREADABLE_PACKETS` it is closed: no client of ours sends them, and
        a stream of them would fill the log (or trip journald's limit, hiding the rest)."""
        socket = self.eio.sockets.get(eio_sid)
        seen = (getattr(socket, "peerroom_unreadable", 0) if socket is not None else 0) + 1
        if socket is not None:
            socket.peerroom_unreadable = seen
        if seen <= UNREADABLE_LOGGED:
            log.info("%s: unreadable packet dropped (%s)", eio_sid, why)
        if seen == UNREADABLE_LOGGED:
            log.info("%s: more unreadable packets from it are dropped unlogged", eio_sid)
        closing = socket is None or socket.closing or socket.closed
        if seen >= MAX_UNREADABLE_PACKETS and not closing:
            log.info("%s: %d unreadable packets: closing", eio_sid, seen)
            await socket.close(wait=False, abort=True)

    async def _send_packet(self, eio_sid: str, pkt: Any) -> None:
        """Acks and connect refusals, cut off as a room's broadcasts are
        (:meth:`DirectManager.emit`): a polling client that never fetches could otherwise
        have them queued without bound, sending packets that each earn one, without
        joining anything."""
        socket = self.eio.sockets.get(eio_sid)
        if socket is not None and await _cut_off_if_full(socket):
            return
        await super()._send_packet(eio_sid, pkt)

    async def _refuse_binary(self, eio_sid: str, e: BinaryRefused) -> None:
        namespace = e.namespace or "/"
        if e.ack_id is None or self.manager.sid_from_eio_sid(eio_sid, namespace) is None:
            return
        refusal = RoomError(
            ErrorCode.BAD_REQUEST, "Binary attachments are not taken: send the event as text."
        ).ack()
        ack = self.packet_class(packet.ACK, namespace=namespace, data=[refusal], id=e.ack_id)
        await self._send_packet(eio_sid, ack)


class JsonPacket(_Unreadable, packet.Packet):  # type: ignore[misc]
    """The default JSON packet, encoded with orjson, and never a binary one.

    The library looks for bytes in every payload it sends (every emit, every ack) to
    split them off as binary attachments: a walk over the whole payload, 8% of the
    server's samples in a join storm (each welcome carries the room) and 2-4% in a
    fan-out. peerroom's events are JSON by construction: the room machine builds them
    from validated input, and a client's binary attachment never passes the payload
    decoders (a string field is a string). Should a payload hold bytes all the same,
    orjson refuses it loudly (``TypeError``) rather than anything being sent.
    Incoming binary packets are refused (:class:`GuardedServer`).
    """

    json = OrJson

    @classmethod
    def data_is_binary(cls, data: Any) -> bool:
        return False


class MsgPackPacket(_Unreadable, msgpack_packet.MsgPackPacket):  # type: ignore[misc]
    """python-socketio's msgpack packet, with the same :class:`UnreadablePacket`."""
