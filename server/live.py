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
channel inside that transaction, so every node sees them in commit order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

from rooms.machine import Outcome
from rooms.model import RoomState

Transition = Callable[[RoomState | None], Outcome]
Deliver = Callable[[str, Outcome], Awaitable[None]]
Attach = Callable[[RoomState | None], Awaitable[None]]


class LiveStore(Protocol):
    def set_deliver(self, deliver: Deliver) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def transact(self, room_id: str, fn: Transition) -> Outcome: ...

    async def attach(self, room_id: str, fn: Attach) -> None: ...

    async def get(self, room_id: str) -> RoomState | None: ...

    async def room_ids(self) -> list[str]: ...

    async def healthy(self) -> bool: ...


async def _no_delivery(room_id: str, outcome: Outcome) -> None:
    raise RuntimeError("LiveStore used before set_deliver()")


class MemoryStore:
    """Live state in this process: the embedded default, for one node."""

    def __init__(self) -> None:
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

    async def healthy(self) -> bool:
        return True
