"""Two RedisStores in this process stand for two nodes: atomic transitions under
contention, one delivery order everywhere, and a deaf subscription that heals itself."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from rooms import commands as c
from rooms.events import Consent, Disconnect, Emit, Welcome
from rooms.machine import Outcome, apply
from rooms.model import Role, RoomState, Settings, Via
from server import redis_live
from server.live import LiveUnavailable, conn_handle, conn_node
from server.live_codec import encode_header
from server.redis_live import RedisStore
from tests.support import delete_redis_prefix, fresh_redis_prefix

ROOM = "room-1"
INFO = c.RoomInfo(ROOM, "Circle", Settings())


class Node:
    """A store and the room broadcasts it delivered, in order."""

    def __init__(self, url: str, prefix: str, grace_secs: float = 60) -> None:
        self.store = RedisStore(url, prefix=prefix, grace_secs=grace_secs)
        self.seqs: list[int] = []
        self.welcomed: list[str] = []
        self.closed: list[str] = []  # participants whose local line was closed
        self.consents: list[tuple[str, bool]] = []  # consent changes recorded here
        self.store.set_deliver(self.deliver)

    async def deliver(self, room_id: str, outcome: Outcome) -> None:
        for ev in outcome.events:
            if isinstance(ev, Emit) and ev.to is None:
                self.seqs.append(ev.payload["seq"])
            elif isinstance(ev, Welcome):
                self.welcomed.append(ev.participant_id)
            elif isinstance(ev, Disconnect) and conn_node(ev.conn) == self.store.node_id:
                self.closed.append(ev.participant_id)
            elif isinstance(ev, Consent):
                self.consents.append((ev.participant_id, ev.on))

    async def run(self, actor: str | None, command: c.Command) -> Outcome:
        now = time.time()
        return await self.store.transact(ROOM, lambda s: apply(s, actor, command, now=now))

    async def join(self, pid: str) -> None:
        conn = conn_handle(self.store.node_id, pid)
        await self.run(None, c.Join(INFO, "s1", pid, pid, Role.PEER, Via.WEB, conn))


@pytest.fixture
async def nodes(redis_url: str) -> AsyncIterator[Callable[..., Node]]:
    prefix = fresh_redis_prefix()
    made: list[Node] = []

    def make(grace_secs: float = 60) -> Node:
        n = Node(redis_url, prefix, grace_secs)
        made.append(n)
        return n

    try:
        yield make
    finally:
        for n in made:
            await n.store.close()
        await delete_redis_prefix(redis_url, prefix)


async def wait_until(
    cond: Callable[[], bool], within: float, extra: Callable[[], object] = lambda: ""
) -> None:
    deadline = time.monotonic() + within
    while not cond():
        assert time.monotonic() < deadline, f"condition not met in time ({extra()})"
        await asyncio.sleep(0.02)


async def two_nodes_in_one_room(nodes: Callable[[], Node]) -> tuple[Node, Node]:
    """Nodes a and b started, each with one participant (pa, pb) in ROOM, both joins
    heard where they should be."""
    a, b = nodes(), nodes()
    await a.store.start()
    await b.store.start()
    await a.join("pa")
    await b.join("pb")
    await wait_until(lambda: a.seqs == [1, 2] and b.seqs == [2], 5, lambda: (a.seqs, b.seqs))
    return a, b


async def test_contended_transitions_are_atomic_and_ordered_alike(
    nodes: Callable[[], Node],
) -> None:
    a, b = await two_nodes_in_one_room(nodes)

    n = 150  # toggles per node, all at once
    start = time.monotonic()
    await asyncio.gather(
        *(a.run("pa", c.ToggleHand()) for _ in range(n)),
        *(b.run("pb", c.ToggleHand()) for _ in range(n)),
    )
    elapsed = time.monotonic() - start
    total = 2 + 2 * n  # one broadcast (hands) per toggle
    await wait_until(
        lambda: len(a.seqs) == total and len(b.seqs) == total - 1,
        5,
        lambda: (len(a.seqs), len(b.seqs), total),
    )
    # Each node's copy of the room follows the commits it hears, so it is read once
    # every broadcast has arrived: read straight after the gather, a's copy may not yet
    # hold b's last commit.
    for node in (a, b):
        state = await node.store.get(ROOM)
        assert state is not None
        assert state.seq == total
    assert a.seqs == list(range(1, total + 1))
    assert b.seqs == a.seqs[1:]
    print(f"\n{2 * n} contended transitions from 2 nodes: {2 * n / elapsed:.0f}/s")


async def test_a_node_that_loses_a_race_goes_on_from_the_winners_state(
    nodes: Callable[[], Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused commit hands back the room's current state: the loser tries again
    without a read of its own (one round trip behind the winner, not two), so two
    nodes raising hands in one room at once take turns instead of one starving."""
    a, b = await two_nodes_in_one_room(nodes)
    reads: list[str] = []
    conflicts: list[int] = []
    for node in (a, b):
        real_read, real_commit = node.store._read, node.store._commit_outcome

        async def read(room_id: str, real_read: Any = real_read) -> Any:
            reads.append(room_id)
            return await real_read(room_id)

        async def commit(*args: Any, real_commit: Any = real_commit, **kw: Any) -> Any:
            result = await real_commit(*args, **kw)
            if result is not None:
                conflicts.append(result[0])
            return result

        monkeypatch.setattr(node.store, "_read", read)
        monkeypatch.setattr(node.store, "_commit_outcome", commit)

    n = 60
    await asyncio.gather(
        *(a.run("pa", c.ToggleHand()) for _ in range(n)),
        *(b.run("pb", c.ToggleHand()) for _ in range(n)),
    )
    assert conflicts, "the nodes never raced: nothing was tested"
    assert reads == []
    total = 2 + 2 * n
    await wait_until(lambda: len(a.seqs) == total, 5, lambda: (len(a.seqs), total))
    assert a.seqs == list(range(1, total + 1))


async def test_a_join_storm_waits_for_connections_instead_of_failing(
    nodes: Callable[[], Node],
) -> None:
    # 400 joins into 400 rooms at once: more commands in flight than the
    # 100 connections redis-py's own default pool allows ("Too many connections").
    a = nodes()
    await a.store.start()

    async def join(i: int) -> Outcome:
        pid = f"p{i}"
        info = c.RoomInfo(f"storm-{i}", "Circle", Settings())
        join = c.Join(info, "s1", pid, pid, Role.PEER, Via.WEB, conn_handle(a.store.node_id, pid))
        now = time.time()
        return await a.store.transact(info.room_id, lambda s: apply(s, None, join, now=now))

    outcomes = await asyncio.gather(*(join(i) for i in range(400)))
    assert all(o.state is not None and len(o.state.participants) == 1 for o in outcomes)


async def test_a_slow_own_delivery_is_waited_for_without_losing_the_listener(
    nodes: Callable[[], Node], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(redis_live, "DELIVERY_WAIT_SECS", 0.5)
    a = nodes()
    await a.store.start()
    await a.join("pa")
    real = a.deliver
    slow_once = [True]

    async def slow_deliver(room_id: str, outcome: Outcome) -> None:
        if slow_once[0]:
            slow_once[0] = False
            await asyncio.sleep(0.8)  # longer than any wait for a commit's own message
        await real(room_id, outcome)

    a.store.set_deliver(slow_deliver)
    await a.run("pa", c.ToggleHand())
    await a.run("pa", c.ToggleHand())  # the listener still hears this node's commits
    assert a.seqs == [1, 2, 3]
    assert "did not come back" not in caplog.text
    assert "pub/sub lost" not in caplog.text


async def test_a_listener_behind_on_deliveries_is_busy_not_deaf(
    nodes: Callable[[], Node], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Under a storm a node's listener can be seconds behind the socket. Its own probe
    is heard as it arrives, so the node does not drop pub/sub and resync every room
    (more load on an overloaded node) for being busy."""
    monkeypatch.setattr(redis_live, "PROBE_TIMEOUT_SECS", 0.5)
    a, b = await two_nodes_in_one_room(nodes)
    real = a.deliver
    stuck = asyncio.Event()

    async def stuck_deliver(room_id: str, outcome: Outcome) -> None:
        await stuck.wait()  # the listener waits here while probes keep coming
        await real(room_id, outcome)

    a.store.set_deliver(stuck_deliver)
    await b.run("pb", c.RaiseHand())  # node a's listener takes it, and stays there
    await asyncio.sleep(3.5)  # three heartbeats, each past the (shortened) probe timeout
    assert "did not come back" not in caplog.text
    assert a.store._connected.is_set()
    stuck.set()
    await wait_until(lambda: a.seqs == [1, 2, 3], 5, lambda: a.seqs)
    assert "pub/sub lost" not in caplog.text


async def test_a_deaf_subscription_is_noticed_and_healed(nodes: Callable[[], Node]) -> None:
    a, b = await two_nodes_in_one_room(nodes)
    # What python-socketio #1581 describes: the subscription stops delivering and
    # nothing raises. Here Redis simply stops sending to node a.
    ps = a.store._pubsub
    assert ps is not None
    ps.send("UNSUBSCRIBE")  # from every channel; the connection stays open
    start = time.monotonic()
    await b.run("pb", c.RaiseHand())  # seq 3: node a does not hear of it
    await wait_until(lambda: not a.store._connected.is_set(), 10)
    await wait_until(lambda: a.store._connected.is_set(), 10)
    healed = time.monotonic() - start
    # Caught up: a's own participant gets the room afresh (a new welcome at seq 3).
    assert a.welcomed == ["pa", "pb", "pa"]  # pb: b's join, not for a's connections
    state = await a.store.get(ROOM)
    assert state is not None and state.seq == 3
    await b.run("pb", c.LowerHand())
    await wait_until(lambda: a.seqs == [1, 2, 4] and b.seqs == [2, 3, 4], 5)
    assert await a.store.healthy()
    print(f"\ndeaf subscription noticed and healed in {healed:.2f}s")


async def test_someone_waiting_here_denied_while_this_node_was_deaf_is_let_go(
    nodes: Callable[[], Node],
) -> None:
    """The catch-up after a lost subscription closed local participants who were gone,
    never local people in the waiting room: one denied meanwhile waited for good."""
    a, b = nodes(), nodes()
    await a.store.start()
    await b.store.start()
    info = c.RoomInfo(ROOM, "Circle", Settings(waiting_room=True))
    fac_conn = conn_handle(b.store.node_id, "fac")
    await b.run(None, c.Join(info, "s1", "fac", "Fay", Role.FACILITATOR, Via.WEB, fac_conn))
    for pid in ("w1", "w2"):
        conn = conn_handle(a.store.node_id, pid)
        await a.run(None, c.Join(info, "s1", pid, pid, Role.PEER, Via.WEB, conn))
    state = await a.store.get(ROOM)
    assert state is not None and [w.id for w in state.waiting] == ["w1", "w2"]
    ps = a.store._pubsub
    assert ps is not None
    ps.send("UNSUBSCRIBE")  # a hears nothing more until it notices and resubscribes
    await b.run("fac", c.Deny("w1"))
    await wait_until(lambda: not a.store._connected.is_set(), 10)
    await wait_until(lambda: a.store._connected.is_set(), 10)
    await wait_until(lambda: a.closed == ["w1"], 5, lambda: a.closed)  # w2 still waits


async def test_a_long_grace_is_still_waited_out(nodes: Callable[..., Node]) -> None:
    """A dropped participant is due when the grace runs out: with a grace of an hour
    and nothing committed meanwhile, the due index expired after 15 minutes with its
    entry, and the participant was never let go."""
    a = nodes(grace_secs=3600)
    await a.store.start()
    await a.join("pa")
    await a.run(None, c.Drop("pa", conn_handle(a.store.node_id, "pa")))
    ttl_ms = await a.store._r.pttl(a.store._p + "due")
    assert ttl_ms > 3600 * 1000, ttl_ms


async def test_an_own_commit_whose_message_never_came_still_records(
    nodes: Callable[..., Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Node a misses b's commit, then commits on top of it: its reply says committed,
    but its turn never comes (the message before it is lost). The client is answered
    ok; the resync covered what clients see, but what only a records (here a consent;
    a kept line, an erase acknowledged as queued) was dropped with the commit."""
    monkeypatch.setattr(redis_live, "DELIVERY_WAIT_SECS", 0.5)
    a, b = await two_nodes_in_one_room(nodes)
    ps = a.store._pubsub
    assert ps is not None
    ps.send("UNSUBSCRIBE")
    await b.run("pb", c.RaiseHand())  # v3: a never hears of it
    out = await a.run("pa", c.SetConsent(on=True))  # v4, on top of v3
    assert out.reply == {"consent": True}
    await wait_until(lambda: a.consents == [("pa", True)], 15, lambda: a.consents)
    assert b.consents == []  # records are the committing node's alone


async def test_a_snapshot_is_not_taken_while_an_own_commit_waits_to_be_delivered(
    nodes: Callable[..., Node],
) -> None:
    """The commit's message came back before its task delivered it: the held state
    already holds it, so a new connection's snapshot taken then was followed by the
    commit's broadcast, the same seq twice."""
    a = nodes()
    await a.store.start()
    await a.join("pa")
    held = a.store._rooms[ROOM]
    held.blocked = object()  # type: ignore[assignment]  # as _apply leaves it
    seen: list[int] = []

    async def snapshot(state: RoomState | None) -> None:
        assert state is not None
        seen.append(state.seq)

    attaching = asyncio.ensure_future(a.store.attach(ROOM, snapshot))
    await asyncio.sleep(0.05)
    assert seen == []  # waits for the room to be delivered up to its state
    held.blocked = None
    await asyncio.wait_for(attaching, 2)
    assert seen == [1]


async def test_after_a_redis_restart_a_commit_is_never_written_over(
    nodes: Callable[..., Node], redis_url: str
) -> None:
    """Redis restarts with nothing. Node b, whose copy lagged (v2), reconnects first,
    writes it back and commits on it (v3', acknowledged, delivered). Node a, whose copy
    was v4, wrote it back over b's commit (4 > 3): the commit was lost and seq 3 meant
    two things. Now a takes the room as it is, and its people get it afresh."""
    a, b = await two_nodes_in_one_room(nodes)
    ps = b.store._pubsub
    assert ps is not None
    ps.send("UNSUBSCRIBE")  # b hears nothing more: its copy stays at v2
    await a.run("pa", c.RaiseHand())  # v3
    await a.run("pa", c.SetPresence(away=True))  # v4
    prefix = a.store._p
    await delete_redis_prefix(redis_url, prefix)  # Redis restarted, empty
    b.store._force_reconnect()
    await wait_until(lambda: not b.store._connected.is_set(), 10)
    await wait_until(lambda: b.store._connected.is_set(), 10)
    await b.run("pb", c.RaiseHand())  # v3': on b's copy written back
    welcomed = len(a.welcomed)
    a.store._force_reconnect()
    await wait_until(lambda: not a.store._connected.is_set(), 10)
    await wait_until(lambda: a.store._connected.is_set() and len(a.welcomed) > welcomed, 10)
    state = await b.store._guard(b.store._read(ROOM))
    assert state[0] == 3 and state[1] is not None
    hands = state[1].hands()
    assert hands == ["pb"], hands  # b's commit stands; a's v3-v4 went with Redis
    held = a.store._rooms[ROOM]
    assert (held.version, held.state) == state  # a took the room as it is
    assert a.welcomed[-1] == "pa"  # and gave its participant the room afresh


async def test_a_notice_reaches_every_node(nodes: Callable[[], Node]) -> None:
    """A phone check-in arrives on one node; moderators on every node hear of it."""
    a, b = nodes(), nodes()
    heard: list[tuple[str, str, object]] = []
    for name, n in (("a", a), ("b", b)):

        async def notice(event: str, payload: dict[str, object], name: str = name) -> None:
            heard.append((name, event, payload))

        n.store.set_notice(notice)
        await n.store.start()
    await a.store.notice("checkins.updated", {"checkin": {"id": "c1"}})
    await wait_until(lambda: len(heard) == 2, 5, lambda: heard)
    assert sorted(heard) == [
        ("a", "checkins.updated", {"checkin": {"id": "c1"}}),
        ("b", "checkins.updated", {"checkin": {"id": "c1"}}),
    ]


async def test_a_cancelled_transition_neither_stalls_nor_loses_delivery(
    nodes: Callable[[], Node],
) -> None:
    """Whenever the caller goes away, what was committed is still delivered, in order."""
    a = nodes()
    await a.store.start()
    await a.join("pa")
    for i in range(30):
        task = asyncio.create_task(a.run("pa", c.ToggleHand()))
        await asyncio.sleep(0.0005 * (i % 6))
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    start = time.monotonic()
    await a.run("pa", c.ToggleHand())
    assert time.monotonic() - start < 1.0, "the listener was left waiting"
    state = await a.store.get(ROOM)
    assert state is not None
    await wait_until(lambda: len(a.seqs) == state.seq, 5, lambda: (a.seqs, state.seq))
    assert a.seqs == list(range(1, state.seq + 1))


async def test_a_flushed_script_cache_is_loaded_again(
    nodes: Callable[[], Node], redis_url: str
) -> None:
    """Commits use EVALSHA; after SCRIPT FLUSH (or a Redis restart) they fall back to EVAL."""
    from redis.asyncio import Redis

    a = nodes()
    await a.store.start()
    await a.join("pa")
    r = Redis.from_url(redis_url)
    try:
        await r.script_flush()
    finally:
        await r.aclose()
    await a.run("pa", c.RaiseHand())
    assert a.seqs == [1, 2]


def blocked(held: Any) -> bool:
    """Whether the room waits for an own commit (read here, not narrowed by mypy)."""
    return held.blocked is not None


async def test_an_own_commit_whose_turn_comes_as_its_wait_runs_out_is_delivered(
    nodes: Callable[[], Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its message is in (the room waits for it) just as the 5 s wait ends: it must be
    delivered, or every later message of the room waits behind it for good."""
    monkeypatch.setattr(redis_live, "DELIVERY_WAIT_SECS", 0.2)
    timeouts: list[asyncio.Timeout] = []
    real_timeout = asyncio.timeout

    def spy(delay: float | None) -> asyncio.Timeout:
        timeouts.append(real_timeout(delay))
        return timeouts[-1]

    a = nodes()
    await a.store.start()
    await a.join("pa")
    held = a.store._rooms[ROOM]
    state = held.state
    assert state is not None
    loop = asyncio.get_running_loop()
    # v3 is ours, committed after a conflict: v2 (another node's) is not in yet
    mine = redis_live._Mine(3, Outcome(state, (Emit("x", {"seq": 3}),)), loop.create_future())
    held.mine["ours"] = mine
    monkeypatch.setattr(asyncio, "timeout", spy)
    task = loop.create_task(a.store._deliver_mine(ROOM, held, "ours", mine))
    await asyncio.sleep(0)
    monkeypatch.setattr(asyncio, "timeout", real_timeout)

    def listener_batch() -> None:  # what _apply does for v2, then ours, in a slow batch
        held.version, held.blocked = 3, mine
        mine.turn.set_result(None)
        time.sleep(0.002)

    loop.call_at(timeouts[-1].when() - 0.001, listener_batch)  # type: ignore[operator]
    await task
    assert a.seqs[-1] == 3 and not blocked(held)
    later = encode_header(4, "other.1", (Emit("y", {"seq": 4}),))
    await a.store._on_message([b"message", f"{a.store._p}room:{ROOM}".encode(), later])
    assert a.seqs[-2:] == [3, 4] and not held.pending


async def test_a_commit_that_never_ran_does_not_keep_its_room_for_ever(
    nodes: Callable[[], Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command connection fails before the commit is sent: the transition is refused
    and retried; the abandoned commit must not count as work in flight for ever."""
    a = nodes()
    await a.store.start()
    await a.join("pa")
    await a.run("pa", c.Leave())  # no local connection left: the room may be let go
    real_command = a.store._command
    failures = [RedisConnectionError("cannot connect to Redis (simulated)")]

    async def command() -> Any:
        if failures:
            raise failures.pop()
        return await real_command()

    monkeypatch.setattr(a.store, "_command", command)
    other = c.Join(INFO, "s1", "px", "px", Role.PEER, Via.WEB, "nelsewhere/x")
    with pytest.raises(LiveUnavailable):
        await a.run(None, other)
    assert [m.abandoned for m in a.store._rooms[ROOM].mine.values()] == [True]
    await a.run(None, other)  # the retry holds the version the abandoned one would have
    assert not a.store._rooms[ROOM].mine
    monkeypatch.setattr(redis_live, "RELEASE_AFTER_SECS", 0.0)
    for _ in range(2):
        await a.store._release_idle()
    assert ROOM not in a.store._rooms


async def test_a_delivery_cancelled_while_the_room_is_busy_still_happens(
    nodes: Callable[[], Node],
) -> None:
    """Its turn came, but an attach held the room when the task was cancelled: the room
    waits for it, so it must be delivered anyway, and what waited behind it after."""
    a = nodes()
    await a.store.start()
    await a.join("pa")
    held = a.store._rooms[ROOM]
    loop = asyncio.get_running_loop()
    mine = redis_live._Mine(3, Outcome(held.state, (Emit("x", {"seq": 3}),)), loop.create_future())
    held.mine["ours"] = mine
    task = loop.create_task(a.store._deliver_mine(ROOM, held, "ours", mine))
    await asyncio.sleep(0.01)
    release = asyncio.Event()

    async def greet() -> None:  # an attach holding the room's lock
        async with held.lock:
            await release.wait()

    greeting = loop.create_task(greet())
    await asyncio.sleep(0)
    held.version, held.blocked = 3, mine  # the listener: v2, then ours
    mine.turn.set_result(None)
    later = encode_header(4, "other.1", (Emit("y", {"seq": 4}),))
    await a.store._on_message([b"message", f"{a.store._p}room:{ROOM}".encode(), later])
    await asyncio.sleep(0.01)
    task.cancel()  # shutdown, or the client went away
    with contextlib.suppress(asyncio.CancelledError):
        await task
    release.set()
    await greeting
    await wait_until(lambda: a.seqs[-2:] == [3, 4], 2, lambda: a.seqs)
    assert not blocked(held) and not held.pending


async def test_a_node_that_just_reconnected_takes_nobody_for_dead(
    nodes: Callable[[], Node], monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    """Redis restarted from a snapshot (if it keeps one) holds every node's last
    heartbeat from before: old. A node whose pub/sub just reconnected must not take the
    others for dead before they have had time to beat again."""
    from redis.asyncio import Redis

    monkeypatch.setattr(redis_live, "NODE_DEAD_SECS", 0.3)
    a = nodes()
    await a.store.start()
    await a.join("pa")
    ghost = "nghost0000"  # a node as a snapshot remembers it: silent, with a connection
    await a.run(None, c.Join(INFO, "s1", "pg", "pg", Role.PEER, Via.WEB, conn_handle(ghost, "x")))
    r = Redis.from_url(redis_url)
    try:
        await r.zadd(f"{a.store._p}nodes", {ghost: 1})
        await r.sadd(f"{a.store._p}node:{ghost}:rooms", ROOM)
    finally:
        await r.aclose()
    await wait_until(lambda: ghost in a.store._dead_nodes, 5)
    before = a.store._ok_since = time.monotonic() - 100  # long healthy
    a.store._connected.clear()  # pub/sub lost; the heartbeat's connection is back already
    assert await a.store.lost_conns() == []
    a.store._force_reconnect()  # Redis went away and came back
    await wait_until(lambda: a.store._ok_since != before, 5)
    assert await a.store.lost_conns() == []
    monkeypatch.setattr(a.store, "_ok_since", time.monotonic() - 100)  # ... and later on
    assert [x.participant_id for x in await a.store.lost_conns()] == ["pg"]
