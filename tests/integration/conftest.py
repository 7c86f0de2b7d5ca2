from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support import Client, LiveServer


@dataclass
class Group:
    """A facilitator and peers in one live session, all welcomed."""

    room: dict[str, Any]
    fac: Client
    peers: list[Client]
    ids: dict[str, str]  # name -> participant id

    def id(self, name: str) -> str:
        return self.ids[name]


@pytest.fixture
async def group(live_server: LiveServer, clients: Callable[..., Client]) -> Group:
    room = await live_server.create_room()
    fac = clients()
    ids = {"Ann": (await fac.join(room["facilitator_token"], "Ann"))["you"]["id"]}
    peers = []
    for name in ("Bo", "Cy", "Di"):
        peer = clients()
        ids[name] = (await peer.join(room["invite_token"], name))["you"]["id"]
        peers.append(peer)
    await fac.wait_for("participant.joined", lambda d: d["participant"]["name"] == "Di")
    return Group(room, fac, peers, ids)
