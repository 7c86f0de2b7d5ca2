"""A SIP-gateway bridge, as the tests play it: a real Socket.IO client on /bridge."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import socketio

from tests.support import close_http

WAIT_SECS = 5.0


@dataclass
class Bridge:
    url: str
    events: list[tuple[str, Any]] = field(default_factory=list)
    connect_error: Any = None
    sio: socketio.AsyncClient = field(init=False)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)

        async def catch_all(event: str, data: Any = None) -> None:
            self.events.append((event, data))
            self._changed.set()

        async def on_error(data: Any) -> None:
            # python-socketio hands a non-default namespace's refusal as {message, data}
            if isinstance(data, dict) and isinstance(data.get("data"), dict):
                data = data["data"]
            self.connect_error = data
            self._changed.set()

        self.sio.on("*", catch_all, namespace="/bridge")
        self.sio.on("connect_error", on_error, namespace="/bridge")

    async def connect(self, token: Any) -> None:
        await self.sio.connect(
            self.url,
            auth={"token": token},
            namespaces=["/bridge"],
            transports=["websocket"],
            wait_timeout=5,
        )

    async def refused(self, token: Any) -> dict[str, Any]:
        with contextlib.suppress(socketio.exceptions.ConnectionError):
            await self.connect(token)
        assert self.connect_error is not None, "the bridge was not refused"
        data: dict[str, Any] = self.connect_error
        return data

    async def call(self, event: str, payload: Any) -> dict[str, Any]:
        ack: dict[str, Any] = await self.sio.call(
            event, payload, namespace="/bridge", timeout=WAIT_SECS
        )
        return ack

    async def ok(self, event: str, payload: Any) -> dict[str, Any]:
        ack = await self.call(event, payload)
        assert ack["ok"] is True, ack
        return ack

    async def error(self, event: str, payload: Any) -> str:
        ack = await self.call(event, payload)
        assert ack["ok"] is False, ack
        code: str = ack["error"]["code"]
        return code

    async def wait_for(self, event: str, pred: Any = lambda d: True) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_SECS
        while True:
            for name, data in self.events:
                if name == event and pred(data):
                    return data
            self._changed.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"no {event!r} within {WAIT_SECS}s; got {self.events}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def received(self, event: str) -> list[Any]:
        return [d for n, d in self.events if n == event]

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()
        await close_http(self.sio)
