"""Live session state: the interface every backend implements, and the in-memory one.

The contract of a :class:`LiveStore`:

- ``transact(room_id, fn)`` runs the pure transition ``fn`` on the room's current state
  atomically (no other transition of that room interleaves), stores the new state, and
  hands the outcome to the delivery callback *in commit order*, before returning it. A
  :class:`~rooms.errors.RoomError` raised by ``fn`` propagates and changes nothing.
- ``attach(room_id, fn)`` runs ``fn`` with the current state, ordered with deliveries:
  it is how a new connection takes a snapshot and starts receiving broadcasts without
  missing or repeating a ``seq``.

The in-memory store does this with one asyncio lock per room. A Redis store does it
with an optimistic transaction per transition and publishes outcomes to the room's
channel inside that transaction, so every node sees them in commit order
(:mod:`server.redis_live`).

``fn`` is pure and may run more than once (an optimistic store retries it on a conflict).

Connections are named ``"<node id>/<transport handle>"`` (:func:`conn_handle`), so the
state says which node holds each connection and the participants of a node that died
can be found (:meth:`LiveStore.lost_conns`). The clock asks :meth:`LiveStore.due_rooms`
which rooms a Tick would change; with many nodes each due room goes to one node.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from rooms.errors import ErrorCode, RoomError
from rooms.machine import Outcome, Rules, due
from rooms.model import RoomState

Transition = Callable[[RoomState | None], Outcome]
Deliver = Callable[[str, Outcome], Awaitable[None]]
Attach = Callable[[RoomState | None], Awaitable[None]]
Notice = Callable[[str, dict[str, Any]], Awaitable[None]]


class LiveUnavailable(RoomError):
    """The shared live state cannot be reached right now; nothing was changed."""

    def __init__(self, message: str = "The server is reconnecting: try again in a moment.") -> None:
        super().__init__(ErrorCode.UNAVAILABLE, message)


def conn_handle(node_id: str, handle: str) -> str:
    """The ``Participant.conn`` of transport handle ``handle`` on node ``node_id``."""
    return f"{node_id}/{handle}"


def conn_node(conn: str | None) -> str | None:
    """The node holding ``conn``, or None if it does not name one."""
    if conn is None or "/" not in conn:
        return None
    return conn.split("/", 1)[0]


@dataclass(frozen=True, slots=True)
class LostConn:
    """A connection the state still counts as connected, held by a node that is gone."""

    room_id: str
    participant_id: str
    conn: str


class LiveStore(Protocol):
    @property
    def node_id(self) -> str: ...

    def set_deliver(self, deliver: Deliver) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def transact(self, room_id: str, fn: Transition) -> Outcome: ...

    async def attach(self, room_id: str, fn: Attach) -> None: ...

    async def get(self, room_id: str) -> RoomState | None: ...

    async def room_ids(self) -> list[str]:
        """Live rooms this node holds (all of them, for a single node)."""

    async def due_rooms(self, now: float, rules: Rules) -> list[str]:
        """Rooms a Tick would change now, each handed to one node only."""

    async def lost_conns(self) -> list[LostConn]:
        """Connections of nodes that stopped heartbeating: the caller Drops them."""

    def set_notice(self, notice: Notice) -> None: ...

    def set_reaped(self, reaped: Callable[[], Awaitable[None]]) -> None:
        """Called if another node took this one for dead and dropped its connections
        (it was only silent: a paused machine). One node alone never is."""

    async def notice(self, event: str, payload: dict[str, Any]) -> None:
        """A server notice (no room, no seq) that every node hands to its notice
        callback, to tell its own connections (e.g. a new phone check-in)."""

    async def healthy(self) -> bool: ...


async def _no_delivery(room_id: str, outcome: Outcome) -> None:
    raise RuntimeError("LiveStore used before set_deliver()")


async def _no_notice(event: str, payload: dict[str, Any]) -> None:
    pass


class MemoryStore:
    """Live state in this process: the embedded default, for one node."""

    node_id = "local"

    def __init__(self) -> None:
        self._notice: Notice = _no_notice
        self._rooms: dict[str, RoomState] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._deliver: Deliver = _no_delivery

    def set_deliver(self, deliver: Deliver) -> None:
        self._deliver = deliver

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        self._rooms.clear()

    def _lock(self, room_id: str) -> asyncio.Lock:
        lock = self._locks.get(room_id)
        if lock is None:
            lock = self._locks[room_id] = asyncio.Lock()
        return lock

    def _forget_lock(self, room_id: str, lock: asyncio.Lock) -> None:
        if room_id not in self._rooms and not lock.locked() and self._locks.get(room_id) is lock:
            del self._locks[room_id]

    async def transact(self, room_id: str, fn: Transition) -> Outcome:
        lock = self._lock(room_id)
        try:
            async with lock:
                outcome = fn(self._rooms.get(room_id))
                if outcome.state is None:
                    self._rooms.pop(room_id, None)
                else:
                    self._rooms[room_id] = outcome.state
                await self._deliver(room_id, outcome)
                return outcome
        finally:
            self._forget_lock(room_id, lock)

    async def attach(self, room_id: str, fn: Attach) -> None:
        lock = self._lock(room_id)
        try:
            async with lock:
                await fn(self._rooms.get(room_id))
        finally:
            self._forget_lock(room_id, lock)

    async def get(self, room_id: str) -> RoomState | None:
        return self._rooms.get(room_id)

    async def room_ids(self) -> list[str]:
        return list(self._rooms)

    async def due_rooms(self, now: float, rules: Rules) -> list[str]:
        return [r for r, state in self._rooms.items() if due(state, now, rules)]

    async def lost_conns(self) -> list[LostConn]:
        return []  # one node: its connections die with it

    def set_notice(self, notice: Notice) -> None:
        self._notice = notice

    def set_reaped(self, reaped: Callable[[], Awaitable[None]]) -> None:
        pass  # one node: nobody else can take it for dead

    async def notice(self, event: str, payload: dict[str, Any]) -> None:
        await self._notice(event, payload)

    async def healthy(self) -> bool:
        return True
