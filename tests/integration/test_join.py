"""Connecting: welcome, waiting, and every refusal code (protocol.md "Connecting")."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import socketio

from server.keys import STORAGE
from server.storage.base import StorageUnavailable
from tests.support import Client, LiveServer, close_http

MakeClient = Callable[..., Client]


async def test_welcome_has_the_contract_shape(live_server: LiveServer, clients: MakeClient) -> None:
    room = await live_server.create_room("Tuesday evening circle")
    fac = clients()
    w = await fac.join(room["facilitator_token"], "  Ann  ")
    assert w["you"]["name"] == "Ann"  # trimmed
    assert w["you"]["role"] == "facilitator"
    assert isinstance(w["resume"], str) and w["resume"]
    snap = w["room"]
    assert snap["id"] == room["room_id"]
    assert snap["title"] == "Tuesday evening circle"
    assert snap["seq"] == 1
    assert snap["hands"] == [] and snap["floor"] is None and snap["consenting"] == []
    assert snap["settings"] == {
        "locked": False,
        "waiting_room": False,
        "transcripts_allowed": True,
        "chat_enabled": True,
        "queue_order": "time",
    }
    assert snap["participants"] == [
        {
            "id": w["you"]["id"],
            "name": "Ann",
            "role": "facilitator",
            "via": "web",
            "camera": False,
            "mic": False,
            "away": False,
            "connected": True,
            "hand": False,
        }
    ]


async def test_others_see_the_joiner(live_server: LiveServer, clients: MakeClient) -> None:
    room = await live_server.create_room()
    fac, peer = clients(), clients()
    await fac.join(room["facilitator_token"], "Ann")
    w = await peer.join(room["invite_token"], "Bo")
    assert w["you"]["role"] == "peer"
    joined = await fac.wait_for("participant.joined")
    assert joined == {"seq": 2, "participant": w["room"]["participants"][1]}
    assert w["room"]["seq"] == 2


@pytest.mark.parametrize(
    ("token", "name", "code"),
    [
        ("not-a-token", "Bo", "bad_token"),
        (None, "Bo", "bad_token"),
        (12345, "Bo", "bad_token"),
        ("VALID", "", "name_invalid"),
        ("VALID", "   ", "name_invalid"),
        ("VALID", "x" * 41, "name_invalid"),
        ("VALID", "Bo\x07", "name_invalid"),
        ("VALID", "Bo\nBo", "name_invalid"),
        ("VALID", "\u200d", "name_invalid"),  # a zero-width joiner: shows as nothing
        ("VALID", "\u3164\u3164", "name_invalid"),  # Hangul fillers: blank
        ("VALID", None, "name_invalid"),
        ("VALID", ["Bo"], "name_invalid"),
    ],
)
async def test_refusals_for_bad_tokens_and_names(
    live_server: LiveServer, clients: MakeClient, token: Any, name: Any, code: str
) -> None:
    room = await live_server.create_room()
    if token == "VALID":
        token = room["invite_token"]
    err = await clients().refused(token, name)
    assert err["data"]["code"] == code
    assert err["data"]["message"]


async def test_a_token_signed_by_another_server_is_refused(
    server_factory: Callable[..., Any], clients: MakeClient
) -> None:
    other = await server_factory(secret="another-secret")
    room = await other.create_room()
    err = await clients().refused(room["invite_token"], "Bo")
    assert err["data"]["code"] == "bad_token"


async def test_name_taken(live_server: LiveServer, clients: MakeClient) -> None:
    room = await live_server.create_room()
    await clients().join(room["invite_token"], "Bo")
    for look_alike in ("bo", "B\u200do", "\uff22\uff4f"):  # case, a joiner, fullwidth
        err = await clients().refused(room["invite_token"], look_alike)
        assert err["data"]["code"] == "name_taken", look_alike


async def test_room_locked(live_server: LiveServer, clients: MakeClient) -> None:
    room = await live_server.create_room()
    fac = clients()
    await fac.join(room["facilitator_token"], "Ann")
    await fac.ok("mod.lock", {"locked": True})
    err = await clients().refused(room["invite_token"], "Bo")
    assert err["data"]["code"] == "room_locked"
    await clients().join(room["facilitator_token"], "Cam")  # facilitators still get in
    await fac.ok("mod.lock", {"locked": False})
    await clients().join(room["invite_token"], "Bo")


async def test_room_full(server_factory: Callable[..., Any], clients: MakeClient) -> None:
    server = await server_factory(max_room_size=2)
    room = await server.create_room()
    await clients(server.url).join(room["facilitator_token"], "Ann")
    await clients(server.url).join(room["invite_token"], "Bo")
    err = await clients(server.url).refused(room["invite_token"], "Cy")
    assert err["data"]["code"] == "room_full"


async def test_banned(live_server: LiveServer, clients: MakeClient) -> None:
    room = await live_server.create_room()
    fac, peer = clients(), clients()
    await fac.join(room["facilitator_token"], "Ann")
    w = await peer.join(room["invite_token"], "Bo", device="phone-of-bo")
    await fac.ok("mod.remove", {"id": w["you"]["id"], "ban": True})
    await peer.wait_disconnected()
    for again in ("Bo", "B\u200do", "\uff22\uff4f", " bo "):
        err = await clients().refused(room["invite_token"], again)
        assert err["data"]["code"] == "banned", again
    err = await clients().refused(room["invite_token"], "Someone else", device="phone-of-bo")
    assert err["data"]["code"] == "banned"


async def test_waiting_room_then_admitted(live_server: LiveServer, clients: MakeClient) -> None:
    room = await live_server.create_room(waiting_room=True)
    fac, peer = clients(), clients()
    fw = await fac.join(room["facilitator_token"], "Ann")
    assert fw["room"]["settings"]["waiting_room"] is True
    waiting = await peer.join(room["invite_token"], "Bo", expect="waiting")
    assert waiting["position"] == 1
    assert isinstance(waiting["resume"], str)  # the waiting place back after a drop
    listed = await fac.wait_for("waiting.updated", lambda d: d["waiting"])
    (entry,) = listed["waiting"]
    assert entry["name"] == "Bo"
    assert not peer.received("welcome")
    await fac.ok("mod.admit", {"id": entry["id"]})
    assert await peer.wait_for("admitted") == {"by": fw["you"]["id"]}
    w = await peer.wait_for("welcome")
    assert w["you"]["id"] == entry["id"]
    assert w["room"]["waiting"] == []  # peers never see the waiting list
    await fac.wait_for("participant.joined", lambda d: d["participant"]["name"] == "Bo")


async def test_waiting_room_then_denied(live_server: LiveServer, clients: MakeClient) -> None:
    room = await live_server.create_room(waiting_room=True)
    fac, peer = clients(), clients()
    await fac.join(room["facilitator_token"], "Ann")
    await peer.join(room["invite_token"], "Bo", expect="waiting")
    listed = await fac.wait_for("waiting.updated", lambda d: d["waiting"])
    await fac.ok("mod.deny", {"id": listed["waiting"][0]["id"]})
    await peer.wait_for("denied")
    await peer.wait_disconnected()
    assert (await fac.wait_for("waiting.updated", lambda d: d["waiting"] == []))["waiting"] == []


async def test_someone_waiting_leaves(live_server: LiveServer, clients: MakeClient) -> None:
    room = await live_server.create_room(waiting_room=True)
    fac, peer = clients(), clients()
    await fac.join(room["facilitator_token"], "Ann")
    await peer.join(room["invite_token"], "Bo", expect="waiting")
    await fac.wait_for("waiting.updated", lambda d: d["waiting"])
    assert await peer.ok("session.leave", {}) == {"ok": True}  # the ack, then the close
    await peer.wait_disconnected()
    await fac.wait_for("waiting.updated", lambda d: d["waiting"] == [])


async def test_admitted_together_each_hears_every_broadcast_once(
    live_server: LiveServer, clients: MakeClient
) -> None:
    """Turning the waiting room off admits everyone waiting in one change: each
    welcome's snapshot holds all of it, so no broadcast of it may follow a welcome."""
    room = await live_server.create_room(waiting_room=True)
    fac, p1, p2 = clients(), clients(), clients()
    await fac.join(room["facilitator_token"], "Ann")
    for peer, name in ((p1, "P1"), (p2, "P2")):
        await peer.join(room["invite_token"], name, expect="waiting")
    await fac.wait_for("waiting.updated", lambda d: len(d["waiting"]) == 2)
    await fac.ok("mod.waiting_room", {"on": False})
    sent = await fac.ok("chat.send", {"text": "welcome, both"})  # a fence
    fence: str = sent["id"]
    for peer in (p1, p2):
        welcome = await peer.wait_for("welcome")
        await peer.wait_for("chat", lambda d: bool(d["message"]["id"] == fence))
        names = [p["name"] for p in welcome["room"]["participants"]]
        assert names == ["Ann", "P1", "P2"]
        after = peer.events[[n for n, _ in peer.events].index("welcome") + 1 :]
        seqs = [d["seq"] for n, d in after if isinstance(d, dict) and "seq" in d]
        assert seqs and all(s > welcome["room"]["seq"] for s in seqs), (welcome, after)


async def test_denied_and_kept_out(live_server: LiveServer, clients: MakeClient) -> None:
    room = await live_server.create_room(waiting_room=True)
    fac, peer, again = clients(), clients(), clients()
    await fac.join(room["facilitator_token"], "Ann")
    await peer.join(room["invite_token"], "Bo", expect="waiting")
    listed = await fac.wait_for("waiting.updated", lambda d: d["waiting"])
    ack = await fac.ok("mod.deny", {"id": listed["waiting"][0]["id"], "ban": True})
    assert ack["banned"] is True
    await peer.wait_for("denied")
    await peer.wait_disconnected()
    refused = await again.refused(room["invite_token"], "BO")
    assert refused["data"]["code"] == "banned"
    bad = await fac.call("mod.deny", {"id": "x", "ban": "yes"})
    assert bad["error"]["code"] == "bad_request"


async def test_a_foreign_browser_origin_is_refused(live_server: LiveServer) -> None:
    room = await live_server.create_room()
    sio = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await sio.connect(
            live_server.url,
            auth={"token": room["invite_token"], "name": "Bo"},
            headers={"Origin": "https://elsewhere.example"},
            transports=["websocket"],
            wait_timeout=5,
        )
    # python-engineio leaves its HTTP session open after a refused websocket handshake;
    # collected later, it logs "Unclosed client session" in whichever test runs then.
    await close_http(sio)
    ok = Client(live_server.url)
    ok.sio = socketio.AsyncClient(reconnection=False)
    await ok.sio.connect(
        live_server.url,
        auth={"token": room["invite_token"], "name": "Bo"},
        headers={"Origin": live_server.url},
        transports=["websocket"],
        wait_timeout=5,
    )
    assert ok.sio.connected
    await ok.close()


async def test_configured_origins_are_allowed(
    server_factory: Callable[..., Any],
) -> None:
    server = await server_factory(allowed_origins=("https://portal.example",))
    room = await server.create_room()
    sio = socketio.AsyncClient(reconnection=False)
    await sio.connect(
        server.url,
        auth={"token": room["invite_token"], "name": "Bo"},
        headers={"Origin": "https://portal.example"},
        transports=["websocket"],
        wait_timeout=5,
    )
    assert sio.connected
    await sio.disconnect()


async def test_a_group_joining_at_once_looks_the_room_up_once(
    live_server: LiveServer, clients: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Joins that arrive while the room's record is being read wait for that read: a
    group starting together (or coming back after a restart) is one query, not one each."""
    room = await live_server.create_room()
    storage = live_server.app[STORAGE]
    real_get_room = storage.get_room
    reads: list[str] = []

    async def slow_get_room(room_id: str) -> Any:
        reads.append(room_id)
        await asyncio.sleep(0.2)  # long enough for every join below to arrive meanwhile
        return await real_get_room(room_id)

    monkeypatch.setattr(storage, "get_room", slow_get_room)
    group = [clients() for _ in range(6)]
    welcomes = await asyncio.gather(
        *(c.join(room["invite_token"], f"Peer {i}") for i, c in enumerate(group))
    )
    assert reads == [room["room_id"]]
    assert sorted(w["you"]["name"] for w in welcomes) == [f"Peer {i}" for i in range(6)]
    assert len({w["you"]["id"] for w in welcomes}) == 6


async def test_waiting_joiners_share_a_failed_lookup(
    live_server: LiveServer, clients: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    room = await live_server.create_room()
    storage = live_server.app[STORAGE]
    reads: list[str] = []

    async def failing_get_room(room_id: str) -> Any:
        reads.append(room_id)
        await asyncio.sleep(0.2)
        raise StorageUnavailable("down")

    monkeypatch.setattr(storage, "get_room", failing_get_room)
    errors = await asyncio.gather(
        *(clients().refused(room["invite_token"], f"Peer {i}") for i in range(4))
    )
    assert reads == [room["room_id"]]
    assert [e["data"]["code"] for e in errors] == ["unavailable"] * 4
    # The failure is not remembered: once storage answers, the next join reads again.
    monkeypatch.undo()
    await clients().join(room["invite_token"], "Later")


async def test_new_joins_from_one_address_are_limited_but_resumes_are_not(
    server_factory: Callable[..., Any], clients: MakeClient
) -> None:
    """Anyone with the invite link could add name after name: each keeps its seat for
    the grace period after dropping, so real members got room_full. Behind the proxy
    (loopback here) the client is the last X-Forwarded-For address, the one it added."""
    server: LiveServer = await server_factory(join_burst=3, join_per_sec=0.001)
    room = await server.create_room()
    token = room["invite_token"]
    one = {"X-Forwarded-For": "203.0.113.7"}
    welcomes = []
    for name in ("A1", "A2", "A3"):
        c = clients(server.url)
        welcomes.append(await c.join(token, name, headers=one))
        if name == "A1":
            first = c
    got = await clients(server.url).refused(token, "A4", headers=one)
    assert got["data"]["code"] == "rate_limited", got
    # The facilitator always gets into their own room, whatever their address did.
    await clients(server.url).join(room["facilitator_token"], "Fay", headers=one)
    # Earlier addresses are the client's own word: they change nothing.
    spoofed = {"X-Forwarded-For": "10.9.8.7, 203.0.113.7"}
    assert (await clients(server.url).refused(token, "A5", headers=spoofed))["data"]["code"] == (
        "rate_limited"
    )
    # Someone elsewhere, and this machine itself (no proxy), are not held up.
    await clients(server.url).join(token, "B1", headers={"X-Forwarded-For": "198.51.100.9"})
    for name in ("L1", "L2", "L3", "L4"):
        await clients(server.url).join(token, name)
    # A1 dropped and resuming takes its place back: not a new join.
    await first.sio.disconnect()
    again = clients(server.url)
    back = await again.join(token, "A1", resume=welcomes[0]["resume"], headers=one)
    assert back["you"]["id"] == welcomes[0]["you"]["id"]
    # A token replayed once its place is gone is a new join like any other.
    await again.ok("session.leave")
    await again.wait_disconnected()
    got = await clients(server.url).refused(token, "A1", resume=welcomes[0]["resume"], headers=one)
    assert got["data"]["code"] == "rate_limited", got
    # Asking only to take a place back never adds anyone: not counted, and told plainly.
    got = await clients(server.url).refused(
        token, "A1", resume=welcomes[0]["resume"], resume_only=True, headers=one
    )
    assert got["data"]["code"] == "resume_expired", got


async def test_x_forwarded_for_counts_only_from_a_trusted_proxy(
    server_factory: Callable[..., Any], clients: MakeClient
) -> None:
    """Straight from a client (here: loopback, told it is no proxy), its own
    X-Forwarded-For is ignored: rotating it is no way round the limit."""
    server: LiveServer = await server_factory(
        join_burst=2, join_per_sec=0.001, trusted_proxies=("192.0.2.0/24",)
    )
    room = await server.create_room()
    for i in (1, 2):
        fake = {"X-Forwarded-For": f"203.0.113.{i}"}
        await clients(server.url).join(room["invite_token"], f"P{i}", headers=fake)
    fake = {"X-Forwarded-For": "203.0.113.3"}
    got = await clients(server.url).refused(room["invite_token"], "P3", headers=fake)
    assert got["data"]["code"] == "rate_limited", got
