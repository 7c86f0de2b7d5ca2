"""Faults: a node killed mid-session, and Redis restarted (empty) mid-session."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from tests.phone.bridge_client import Bridge
from tests.redis.cluster import BRIDGE_TOKEN, Cluster, Node, free_port, spawn, wait_health
from tests.redis.test_nodes import wait_seq
from tests.support import ADMIN_TOKEN, Client

FAILOVER_SECS = 15.0  # node declared dead after 5 s, dropped on the next 1 s tick


async def wait_event(client: Client, event: str, pred: Callable[[Any], bool], within: float) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        for name, data in client.events:
            if name == event and pred(data):
                return data
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {event!r} within {within}s; got {[n for n, _ in client.events]}")


def last_hands(client: Client) -> list[str]:
    hands: list[str] = [d for n, d in client.events if n == "welcome"][-1]["room"]["hands"]
    for name, data in client.events:
        if name == "hands":
            hands = data["hands"]
    return hands


async def test_killed_node_participants_resume_elsewhere(
    cluster: Cluster, make_client: Callable[[str], Client]
) -> None:
    a, b, c = await cluster.start(3)
    room = await cluster.create_room(a)
    fac = make_client(a.url)
    await fac.join(room["facilitator_token"], "Ann")
    ids = []
    for name, node in [("Peer1", a), ("Peer2", b), ("Peer3", c)]:
        cl = make_client(node.url)
        w = await cl.join(room["invite_token"], name)
        await cl.ok("hand.raise")
        ids.append((cl, w))
    (p1, _), (_, w2), (p3, _) = ids
    order = [w["you"]["id"] for _, w in ids]
    victim = w2["you"]["id"]
    for cl in (fac, p1, p3):
        await wait_seq(cl, 7)  # 4 joins, 3 raises
    assert last_hands(fac) == order

    start = time.monotonic()
    b.kill()
    for cl in (fac, p3):
        update = await wait_event(
            cl,
            "participant.updated",
            lambda d: d["participant"]["id"] == victim and not d["participant"]["connected"],
            FAILOVER_SECS,
        )
    failover = time.monotonic() - start
    assert update["participant"]["hand"] is True
    assert last_hands(fac) == order  # the place is kept through the grace period
    print(f"\nfailover: node killed -> participant connected:false in {failover:.2f}s")

    back = make_client(c.url)
    w = await back.join(room["invite_token"], "Peer2", resume=w2["resume"])
    assert w["you"] == {"id": victim, "name": "Peer2", "role": "peer"}
    assert w["room"]["hands"] == order
    me = next(p for p in w["room"]["participants"] if p["id"] == victim)
    assert me["connected"] is True and me["hand"] is True
    await wait_event(
        fac,
        "participant.updated",
        lambda d: d["participant"]["id"] == victim and d["participant"]["connected"],
        5,
    )
    # And the room goes on for everyone, on the surviving nodes.
    await fac.ok("mod.floor.next")
    for cl in (fac, p1, p3, back):
        await wait_event(cl, "hands", lambda d: d["floor"] == order[0], 5)
    assert last_hands(back) == order[1:]


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[Callable[[], subprocess.Popen[bytes]]]:
    """A throwaway redis-server on a free port that a test may kill and restart."""
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        argv = [shutil.which("redis-server") or "/usr/bin/redis-server"]
        argv += ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        proc = spawn(argv, {}, tmp_path / "redis.log")
        procs.append(proc)
        return proc

    start.port = port  # type: ignore[attr-defined]
    try:
        yield start
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)


async def cluster_on_own_redis(
    own_redis: Callable[[], subprocess.Popen[bytes]],
    tmp_path: Path,
    database_url: str | None,
) -> tuple[subprocess.Popen[bytes], Cluster]:
    """A Redis of the test's own (to kill and restart), answering, and a cluster on it
    (not started; the caller stops it)."""
    redis = own_redis()
    port = own_redis.port  # type: ignore[attr-defined]
    await redis_up(port)
    return redis, Cluster(f"redis://127.0.0.1:{port}/0", tmp_path, database_url=database_url)


async def redis_up(port: int) -> None:
    """Wait until the Redis on ``port`` answers (within a second or two)."""
    for _ in range(100):
        if subprocess.run(  # noqa: ASYNC221
            ["redis-cli", "-p", str(port), "ping"], capture_output=True, check=False
        ).stdout.startswith(b"PONG"):
            return
        await asyncio.sleep(0.05)


async def test_redis_restart_mid_session(
    own_redis: Callable[[], subprocess.Popen[bytes]],
    tmp_path: Path,
    make_client: Callable[[str], Client],
    cluster_database: str | None,
) -> None:
    redis, cluster = await cluster_on_own_redis(own_redis, tmp_path, cluster_database)
    try:
        a, b = await cluster.start(2)
        room = await cluster.create_room(a)
        fac = make_client(a.url)
        await fac.join(room["facilitator_token"], "Ann")
        on_b = make_client(b.url)
        wb = await on_b.join(room["invite_token"], "Bo")
        on_a = make_client(a.url)
        wa = await on_a.join(room["invite_token"], "Cy")
        await on_b.ok("hand.raise")
        await on_a.ok("hand.raise")
        for cl in (fac, on_a, on_b):
            await wait_seq(cl, 5)
        order = [wb["you"]["id"], wa["you"]["id"]]
        quiet = await cluster.create_room(a, title="Thursday")  # no node holds it

        start = time.monotonic()
        redis.kill()
        redis.wait(timeout=5)
        down = [await wait_health(n.url, 503, 10) for n in (a, b)]
        ack = await on_b.call("hand.lower")
        assert ack["ok"] is False and ack["error"]["code"] == "unavailable", ack
        # A room's settings need its live state from Redis: a coded 503 (was a text 500).
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"{a.url}/api/rooms/{quiet['room_id']}",
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            ) as r,
        ):
            assert r.status == 503, await r.text()
            assert (await r.json())["error"]["code"] == "unavailable"

        restarted = time.monotonic()
        own_redis()
        up = [await wait_health(n.url, 200, 15) for n in (a, b)]
        recovery = time.monotonic() - restarted
        print(
            f"\nRedis killed: 503 after {max(down):.2f}s; restarted: 200 on both after "
            f"{recovery:.2f}s (outage {time.monotonic() - start:.2f}s)"
        )
        del up

        # The room is back from the nodes' copies, and neither node is deaf.
        await on_a.ok("hand.lower")
        for cl in (fac, on_a, on_b):
            await wait_event(cl, "hands", lambda d: d["hands"] == order[:1], 5)
        await on_b.ok("chat.send", {"text": "still here"})
        for cl in (fac, on_a, on_b):
            await wait_event(cl, "chat", lambda d: d["message"]["text"] == "still here", 5)
        assert on_b.last_seq == fac.last_seq == on_a.last_seq == 7  # gapless throughout
    finally:
        cluster.stop()


async def test_a_node_that_died_with_redis_is_still_found_dead(
    own_redis: Callable[[], subprocess.Popen[bytes]],
    tmp_path: Path,
    make_client: Callable[[str], Client],
    cluster_database: str | None,
) -> None:
    """Redis restarted with nothing (its host rebooted, node b on it too): a wrote the
    room back with b's people in it, but b's heartbeat and room list were gone with
    Redis, so b was never found dead and its people showed connected for good."""
    redis, cluster = await cluster_on_own_redis(own_redis, tmp_path, cluster_database)
    try:
        a, b = await cluster.start(2)
        room = await cluster.create_room(a)
        fac = make_client(a.url)
        await fac.join(room["facilitator_token"], "Ann")
        bo = await make_client(b.url).join(room["invite_token"], "Bo")
        await wait_seq(fac, 2)
        redis.kill()
        b.kill()
        redis.wait(timeout=5)
        own_redis()
        await wait_health(a.url, 200, 15)
        await wait_event(fac, "participant.updated", shown(bo["you"]["id"], False), FAILOVER_SECS)
    finally:
        cluster.stop()


async def test_room_of_a_dead_node_ends_and_leaves_nothing_behind(
    cluster: Cluster, make_client: Callable[[str], Client], redis_url: str
) -> None:
    """Nobody else holds the room: the due index still gets it ticked to its end."""
    cluster.grace_secs = 1.0
    a, b = await cluster.start(2)
    room = await cluster.create_room(a)
    await make_client(b.url).join(room["invite_token"], "Bo")
    b.kill()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + FAILOVER_SECS
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        while True:
            async with http.get(f"{a.url}/api/rooms/{room['room_id']}") as r:
                if not (await r.json())["live"]:
                    break
            assert loop.time() < deadline, "the dead node's session never ended"
            await asyncio.sleep(0.1)
    redis = Redis.from_url(redis_url)
    try:
        keys = [k async for k in redis.scan_iter(match=f"{cluster.prefix}*")]
        assert keys
        ttls = {k: await redis.pttl(k) for k in keys}
        assert all(t > 0 for t in ttls.values()), f"a key without a TTL: {ttls}"
        assert await redis.zscore(f"{cluster.prefix}due", room["room_id"]) is None
        assert await redis.hget(f"{cluster.prefix}room:{room['room_id']}", "s") is None
    finally:
        await redis.aclose()


def shown(pid: str, connected: bool) -> Callable[[Any], bool]:
    """A ``participant.updated`` showing ``pid`` connected (or not)."""
    return lambda d: bool(
        d["participant"]["id"] == pid and d["participant"]["connected"] == connected
    )


async def hand_up_on_the_second_node(
    cluster: Cluster, make_client: Callable[[str], Client]
) -> tuple[Node, Node, dict[str, Any], Client, Client, dict[str, Any]]:
    """Two nodes; the facilitator on the first, Bo on the second with a hand up:
    (a, b, room, the facilitator's client, Bo's, Bo's welcome)."""
    a, b = await cluster.start(2)
    room = await cluster.create_room(a)
    fac = make_client(a.url)
    await fac.join(room["facilitator_token"], "Ann")
    peer = make_client(b.url)
    w = await peer.join(room["invite_token"], "Bo")
    await peer.ok("hand.raise")
    return a, b, room, fac, peer, w


async def test_a_node_stopped_cleanly_hands_its_people_over_at_once(
    cluster: Cluster, make_client: Callable[[str], Client]
) -> None:
    """A rolling restart: SIGTERM closes the node's connections as drops, right away."""
    a, b, room, fac, _, w = await hand_up_on_the_second_node(cluster, make_client)
    me = w["you"]["id"]
    start = time.monotonic()
    b.proc.send_signal(signal.SIGTERM)
    await wait_event(fac, "participant.updated", shown(me, False), 2)
    print(f"\nSIGTERM -> connected:false in {time.monotonic() - start:.2f}s")
    back = make_client(a.url)
    again = await back.join(room["invite_token"], "Bo", resume=w["resume"])
    assert again["you"]["id"] == me and again["room"]["hands"] == [me]


async def test_a_node_taken_for_dead_lets_its_people_resume(
    cluster: Cluster, make_client: Callable[[str], Client]
) -> None:
    """A node only paused (a stalled VM) past the 5 s deadline: the others drop its
    people. When it wakes, its sockets are still open, but its people show as gone and
    past the grace would be let go without a word. It closes them: each client resumes
    (on any node) and gets its place back."""
    _, b, room, fac, peer, w = await hand_up_on_the_second_node(cluster, make_client)
    me = w["you"]["id"]
    bridge = Bridge(b.url)  # and a caller, on a phone bridge connected to b
    await bridge.connect(BRIDGE_TOKEN)
    try:
        call = await bridge.ok(
            "call.join", {"call_id": "c1", "pin": room["phone_pin"], "caller": "+15550100042"}
        )
        caller = call["participant_id"]
        r = Redis.from_url(cluster.redis_url)
        b.proc.send_signal(signal.SIGSTOP)
        try:
            for pid in (me, caller):
                await wait_event(fac, "participant.updated", shown(pid, False), FAILOVER_SECS)
            # Paused longer still, the reaper's next round finds nobody of b's left
            # connected and forgets b's list of rooms (done here by hand: 15 s later).
            beats = await r.zrange(cluster.prefix + "nodes", 0, -1, withscores=True)
            oldest = min(beats, key=lambda beat: float(beat[1]))[0]  # b: no beat since
            b_id = oldest.decode() if isinstance(oldest, bytes) else str(oldest)
            rooms_key = f"{cluster.prefix}node:{b_id}:rooms"
            await r.delete(rooms_key)
        finally:
            b.proc.send_signal(signal.SIGCONT)
        async with asyncio.timeout(10):
            await peer.wait_disconnected()  # b learned it was taken for dead
        # b lists its rooms again: if it later dies for real, its people are found.
        async with asyncio.timeout(5):
            while not await r.sismember(rooms_key, room["room_id"]):
                await asyncio.sleep(0.1)
        await r.aclose()
        back = make_client(b.url)
        again = await back.join(room["invite_token"], "Bo", resume=w["resume"])
        assert again["you"]["id"] == me and again["room"]["hands"] == [me]
        for pid in (me, caller):  # the caller, still on the line, is back at once
            await wait_event(fac, "participant.updated", shown(pid, True), 5)
        keys = await bridge.ok("call.keys", {"call_id": "c1", "digits": "*9"})
        assert keys["hand"] is True and keys["position"] == 2
    finally:
        await bridge.close()
