"""Many people acting at once: every client sees the same broadcasts under the same seq
numbers, with no gap, and the final queue is the same everywhere."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

from tests.support import Client, LiveServer


async def test_concurrent_actions_give_one_history(
    live_server: LiveServer, clients: Callable[..., Client]
) -> None:
    room = await live_server.create_room()
    fac = clients()
    await fac.join(room["facilitator_token"], "Ann")
    peers = [clients() for _ in range(6)]
    for i, p in enumerate(peers):
        await p.join(room["invite_token"], f"Peer {i}")
    start = max(p.last_seq for p in peers)
    rng = random.Random(7)

    async def act(p: Client) -> None:
        for _ in range(12):
            event, payload = rng.choice(
                [
                    ("hand.raise", {}),
                    ("hand.lower", {}),
                    ("presence.set", {"away": rng.random() < 0.5}),
                    ("chat.send", {"text": "hello"}),
                ]
            )
            await p.call(event, payload)

    async def moderate() -> None:
        for _ in range(8):
            await fac.call("mod.floor.next")
            await asyncio.sleep(0)

    await asyncio.gather(*(act(p) for p in peers), moderate())
    final = await fac.ok("hand.raise")  # a fence everyone will see
    assert final["ok"]
    end = fac.last_seq
    for c in (fac, *peers):
        await c.wait_for("hands", lambda d: d["seq"] == end)

    def history(c: Client) -> dict[int, tuple[str, Any]]:
        return {
            d["seq"]: (name, d)
            for name, d in c.events
            if isinstance(d, dict)
            and "seq" in d
            and name != "welcome"
            and d["seq"] > start
            and not (name == "chat" and d["message"].get("to"))
        }

    reference = history(fac)
    assert sorted(reference) == list(range(start + 1, end + 1))  # gapless
    for p in peers:
        assert history(p) == reference
