"""Live state on Redis: many nodes, one state per room, fan-out in commit order.

Keys and channels, all under the deployment's prefix ``P`` (``--redis-prefix``)::

    P room:<id>           hash {v: version, s: state bytes}; no ``s``: the session ended
    P due                 zset room -> when a Tick would next change it (epoch ms)
    P nodes               zset node -> last heartbeat (Redis TIME, ms)
    P node:<id>:rooms     set of rooms a node holds connections in (to reap it if it dies)
    P node:<id>:reaped    left by the node that reaped it: a node only paused learns it
    P reap:<id>           short lock: one node at a time reaps a dead node
    channel P room:<id>   every committed transition of the room, in commit order
    channel P node:<id>   the node's own liveness probe
    channel P notices     server notices for every node (no room, no seq)

A transition is optimistic: read the state (this node's copy if it holds the room),
run the pure function, then one Lua script checks the version is unchanged, stores the
new state, updates the due time and PUBLISHes ``header + state`` on the room's channel,
atomically. On a conflict the function runs again on the fresh state. ``seq`` lives in
the state, so it is gapless and identical on every node.

A node *holds* a room while it has connections in it: it is subscribed to the room's
channel and keeps the latest ``(version, state)`` from it. Its listener delivers each
message to the service in order. A transition committed here is delivered by the task
that committed it, before it returns, as soon as the script's reply or its own message
is back (whichever comes first) and never ahead of an earlier version (see
:class:`_Mine`), so every node, this one included, delivers in the same commit order;
the listener never waits for it, other rooms flow on. ``attach`` runs under the same
per-room lock as delivery. A message at or below the held version is already known and
skipped. Commits and pub/sub use the lean connections of :mod:`server.redis_wire`.

Liveness: a node heartbeats every second; one silent for :data:`NODE_DEAD_SECS` is dead
and a surviving node reports its connections in :meth:`RedisStore.lost_conns` (the
service Drops them; they may resume anywhere within the grace period). A node that was
only silent (a paused machine) finds the reaper's mark at its next heartbeat and closes
its connections, so that they resume too rather than linger unseen. Pub/sub loss is
detected three ways: a read error, a probe the node publishes to itself every heartbeat
not coming back, and the listener task ending. Then the node reconnects, resubscribes,
writes back any state Redis lost (a restarted Redis keeps nothing: the nodes' copies are
the recovery), and re-welcomes its local connections of rooms whose messages it missed.
Meanwhile :meth:`healthy` is False and transitions raise :class:`LiveUnavailable`.

Every key expires (:data:`ROOM_TTL_SECS` after its last write or refresh: rooms are
refreshed while held, ``nodes`` by heartbeats, ``due`` by commits), so nothing outlives
the nodes that used it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import itertools
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit, urlunsplit

import msgpack
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from rooms.events import Disconnect, Emit, Event, Welcome
from rooms.machine import Outcome, Rules
from rooms.model import RoomState
from server import redis_scripts as scripts
from server.live import (
    Attach,
    Deliver,
    LiveUnavailable,
    LostConn,
    Notice,
    Transition,
    _no_delivery,
    _no_notice,
    conn_handle,
    conn_node,
)
from server.live_codec import (
    TRANSPORT_EVENTS,
    CodecError,
    OpenMessage,
    PartsCache,
    decode_state,
    encode_header,
    encode_state,
)
from server.redis_scripts import next_due
from server.redis_wire import RespConnection
from server.tasks import stop_tasks

log = logging.getLogger(__name__)

T = TypeVar("T")

HEARTBEAT_SECS: Final = 1.0  # node heartbeat, pub/sub probe, idle-room check
NODE_DEAD_SECS: Final = 5.0  # a node silent this long is dead: 5 missed heartbeats
REAP_LOCK_SECS: Final = 15.0  # one node reaps a dead node; another retries after this
ROOM_TTL_SECS: Final = 15 * 60  # a room's key outlives its last writer or holder by this
TTL_REFRESH_SECS: Final = 60.0  # holders refresh their rooms' keys this often
RELEASE_AFTER_SECS: Final = 10.0  # a room with no local connections is let go after this
PROBE_TIMEOUT_SECS: Final = 3.0  # own probe not back by then: the subscription is deaf
DELIVERY_WAIT_SECS: Final = 5.0  # a commit's own message must come back within this
HOLD_WAIT_SECS: Final = 5.0  # subscribing to a room and loading it
CONNECTED_WAIT_SECS: Final = 2.0  # a transition waits this long for a reconnect
COMMAND_TIMEOUT_SECS: Final = 2.0  # any Redis command on loopback/LAN
# Commands in flight per client, at most (each holds a connection). Past it a command
# is refused as LiveUnavailable (a coded error the client retries): far above a storm of
# a thousand joins, far below Redis's own limit of 10,000 clients.
POOL_CONNECTIONS: Final = 2048
RECONNECT_MIN_SECS: Final = 0.1
RECONNECT_MAX_SECS: Final = 2.0
MAX_ATTEMPTS: Final = 50  # optimistic retries of one transition under contention
CLAIM_SECS: Final = 5.0  # a claimed due room goes to another node if not ticked by then
CLAIM_BATCH: Final = 100  # due rooms one node takes per tick
ATTACH_WAIT_TURNS: Final = 2000  # a new connection waits at most ~2 s for a blocked room


def shown_url(url: str) -> str:
    """``url`` as it may be printed or logged: without its user and password."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _ms(secs: float) -> int:
    return int(secs * 1000)


def _forget_superseded(held: _Held, version: int) -> None:
    """Another commit holds ``version``: an abandoned commit of ours at or below it never
    ran (its connection failed before sending it, Redis refused it) and never comes."""
    if held.mine:
        for tag in [t for t, m in held.mine.items() if m.abandoned and m.version <= version]:
            del held.mine[tag]


@dataclass
class _Mine:
    """A transition this node is committing, delivered in commit order by the task that
    committed it, which then returns to its caller exactly as with the in-memory store
    (so a Disconnect spawned by the delivery runs after the ack of the command that
    caused it).

    Its commit's reply and its own message on the room's channel race each other. Reply
    first, with everything before it delivered: the task delivers at once and the message
    is skipped as known. Message first: the listener marks the room ``blocked`` by it
    (later messages of the room wait in ``pending``) and the task delivers when its reply
    is in, then lets the room go on. A task that is cancelled or loses its connection
    leaves it ``abandoned``: whoever meets it next in order delivers it.
    """

    version: int
    outcome: Outcome
    turn: asyncio.Future[None]  # set when it is this commit's turn to be delivered
    abandoned: bool = False
    abandoned_at: float = 0.0  # time.monotonic()
    delivered: bool = False
    committed: bool = False  # its reply said so (else, if abandoned: perhaps never ran)


@dataclass
class _Held:
    """A room this node is subscribed to, and its latest state as the channel told it."""

    ready: asyncio.Future[None]
    version: int = 0
    state: RoomState | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # delivery and attach
    commit_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # this node's commits
    mine: dict[str, _Mine] = field(default_factory=dict)  # by commit tag: not delivered
    blocked: _Mine | None = None  # own commit whose message is in, waiting for its task
    pending: collections.deque[bytes] = field(default_factory=collections.deque)
    draining: bool = False
    parts: PartsCache = field(default_factory=PartsCache)  # participants, packed
    idle_since: float | None = None


class RedisStore:
    """:class:`~server.live.LiveStore` shared by every node through one Redis."""

    def __init__(self, url: str, *, prefix: str, grace_secs: float) -> None:
        self.node_id = "n" + secrets.token_hex(5)
        self._conn_prefix = conn_handle(self.node_id, "")  # what a local conn starts with
        self._url = url
        self._p = prefix
        self._grace = grace_secs
        # The due index outlives the longest wait in it (a grace of an hour, nothing
        # committed meanwhile, must still be ticked when it runs out).
        self._due_ttl_ms = _ms(ROOM_TTL_SECS + grace_secs)
        self._deliver: Deliver = _no_delivery
        self._notice: Notice = _no_notice
        self._reaped: Callable[[], Awaitable[None]] = _nothing
        self._r: Redis = self._client()
        # The hot paths (commits, pub/sub) on lean connections: redis_wire.py says why.
        self._cmd: RespConnection | None = None
        self._cmd_lock = asyncio.Lock()
        self._pubsub: RespConnection | None = None
        self._inbox: collections.deque[list[Any]] = collections.deque()
        self._listener_wake: asyncio.Future[None] | None = None
        self._probe_channel_b = self._probe_channel.encode()
        self._notice_channel_b = self._notice_channel.encode()
        self._room_prefix_b = self._room_channel("").encode()
        self._rooms: dict[str, _Held] = {}
        self._sub_waiters: dict[str, asyncio.Future[None]] = {}
        self._connected = asyncio.Event()  # subscribed and resynced
        self._redis_ok = False
        self._reconnect = False
        self._probe_since: float | None = None
        self._dead_nodes: list[str] = []
        self._ok_since = time.monotonic()  # Redis answering (heartbeat, pub/sub) since
        self._last_refresh = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()  # abandoned deliveries, a reap
        self._closing = False
        self._tags = itertools.count(1)
        self._commit_sha = hashlib.sha1(scripts.COMMIT.encode()).hexdigest()  # noqa: S324
        self._restore = self._r.register_script(scripts.RESTORE)
        self._adopt = self._r.register_script(scripts.ADOPT)
        self._claim_due = self._r.register_script(scripts.CLAIM_DUE)
        self._heartbeat = self._r.register_script(scripts.HEARTBEAT)

    def _client(self) -> Redis:
        # No silent retries: a retried commit could run twice, and a pub/sub connection
        # that reconnects by itself hides the messages it missed. We reconnect ourselves.
        # redis-py's default pool refuses past 100 connections in use ("Too many
        # connections"), which turned a join storm of 1,000 into refused joins (seen in
        # the benchmark). Its blocking pool waits instead, but through a task and a
        # condition per command: measured slower, and a 10,000-hand storm starved in it.
        pool = ConnectionPool.from_url(
            self._url,
            max_connections=POOL_CONNECTIONS,
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=COMMAND_TIMEOUT_SECS,
            socket_timeout=COMMAND_TIMEOUT_SECS,
        )
        return Redis.from_pool(pool)

    # names ------------------------------------------------------------------------------

    def _room_key(self, room_id: str) -> str:
        return f"{self._p}room:{room_id}"

    def _room_channel(self, room_id: str) -> str:
        return f"{self._p}room:{room_id}"

    @property
    def _probe_channel(self) -> str:
        return f"{self._p}node:{self.node_id}"

    @property
    def _notice_channel(self) -> str:
        return f"{self._p}notices"

    def _node_rooms_key(self, node_id: str) -> str:
        return f"{self._p}node:{node_id}:rooms"

    def _reaped_key(self, node_id: str) -> str:
        return f"{self._p}node:{node_id}:reaped"

    def _is_local(self, state: RoomState | None) -> bool:
        """Whether this node holds any connection of ``state``."""
        if state is None:
            return False
        # startswith, not conn_node(): this runs over every held room each heartbeat.
        mine = self._conn_prefix
        return any(p.conn and p.conn.startswith(mine) for p in state.participants) or any(
            w.conn and w.conn.startswith(mine) for w in state.waiting
        )

    # life -------------------------------------------------------------------------------

    def set_deliver(self, deliver: Deliver) -> None:
        self._deliver = deliver

    def set_notice(self, notice: Notice) -> None:
        self._notice = notice

    def set_reaped(self, reaped: Callable[[], Awaitable[None]]) -> None:
        """What to do when this node learns another took it for dead (close its
        connections, so that they resume)."""
        self._reaped = reaped

    async def notice(self, event: str, payload: dict[str, Any]) -> None:
        data = msgpack.packb([event, payload], use_bin_type=True)
        try:
            await self._r.publish(self._notice_channel, data)
        except (RedisError, OSError, TimeoutError) as e:
            log.warning("notice %s reaches this node only: %s", event, e)
            await self._notice(event, payload)

    async def start(self) -> None:
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_SECS):
                await self._r.ping()
        except (RedisError, OSError, TimeoutError) as e:
            raise SystemExit(f"Cannot reach Redis at {shown_url(self._url)}: {e}") from None
        await self._beat()
        self._redis_ok = True
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._listen()), loop.create_task(self._run_heartbeat())]
        try:
            async with asyncio.timeout(HOLD_WAIT_SECS):
                await self._connected.wait()
        except TimeoutError:
            raise SystemExit(f"Cannot subscribe on Redis at {shown_url(self._url)}") from None
        log.info("live state on Redis as node %s (prefix %r)", self.node_id, self._p)

    async def close(self) -> None:
        # The flag as well as the cancel: on Python 3.11 a redis-py read timing out just
        # as it is cancelled can swallow the cancellation (server/tasks.py); the loops see
        # the flag, and stop_tasks cancels again.
        self._closing = True
        await stop_tasks(
            *self._tasks, *self._background, within=2 * HEARTBEAT_SECS + COMMAND_TIMEOUT_SECS
        )
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            # Leaving: score 0 makes the others reap what is left of us at once.
            async with asyncio.timeout(COMMAND_TIMEOUT_SECS):
                await self._r.zadd(f"{self._p}nodes", {self.node_id: 0})
        await self._drop_pubsub()
        if self._cmd is not None:
            self._cmd.close("node closing")
        await self._r.aclose()

    async def healthy(self) -> bool:
        if not (self._connected.is_set() and self._redis_ok):
            return False
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_SECS):
                return bool(await self._r.ping())
        except (RedisError, OSError, TimeoutError):
            return False

    # reads ------------------------------------------------------------------------------

    async def _read(self, room_id: str) -> tuple[int, RoomState | None]:
        # On the lean command connection, pipelined with the commits: a join storm's
        # reads through redis-py's pool opened hundreds of connections, each with its
        # own handshake (and a package-metadata read per connection).
        cmd = await self._command()
        v, s = await cmd.call("HMGET", self._room_key(room_id), "v", "s")
        return int(v or 0), (decode_state(_raw(s)) if s else None)

    async def get(self, room_id: str) -> RoomState | None:
        held = self._rooms.get(room_id)
        if held is not None and held.ready.done() and not held.ready.exception():
            return held.state
        _, state = await self._guard(self._read(room_id))
        return state

    async def room_ids(self) -> list[str]:
        return [r for r, h in self._rooms.items() if h.state is not None]

    async def _guard(self, aw: Awaitable[T]) -> T:
        """Redis trouble becomes :class:`LiveUnavailable`: a refusal with a code."""
        try:
            return await aw
        except (RedisError, OSError, TimeoutError) as e:
            log.warning("Redis unavailable: %s", e)
            raise LiveUnavailable() from None

    # transitions ------------------------------------------------------------------------

    async def transact(self, room_id: str, fn: Transition) -> Outcome:
        return await self._guard(self._transact(room_id, fn))

    async def _transact(self, room_id: str, fn: Transition) -> Outcome:
        await self._wait_connected()
        for _ in range(2):
            held = self._rooms.get(room_id)
            if held is None:
                outcome = await self._transact_unheld(room_id, fn)
                if outcome is not None:
                    return outcome
                continue  # the transition touches a connection of ours: hold the room
            await self._hold(room_id)
            # One transition of a room at a time on this node, until its message is
            # back: this node's copy is then current for the next one (no conflict).
            async with held.commit_lock:
                return await self._transact_held(room_id, held, fn)
        raise LiveUnavailable()

    async def _transact_unheld(self, room_id: str, fn: Transition) -> Outcome | None:
        """A room with no connection of ours (a Tick, a reap): commit, deliver here."""
        version, state = await self._read(room_id)
        for attempt in range(MAX_ATTEMPTS):
            outcome = fn(state)
            if not outcome.events and outcome.state == state:
                return outcome  # nothing to store or tell (an idle Tick, a repeated Drop)
            if self._is_local(state) or self._is_local(outcome.state):
                await self._hold(room_id)  # subscribe before committing: ours comes back
                return None
            conflict = await self._commit_outcome(room_id, version, outcome)
            if conflict is None:
                await self._deliver(room_id, outcome)
                return outcome
            version, state = conflict[0], decode_state(conflict[1]) if conflict[1] else None
            await _backoff(attempt)
        raise LiveUnavailable("This room is very busy right now: try again.")

    async def _transact_held(self, room_id: str, held: _Held, fn: Transition) -> Outcome:
        version, state = held.version, held.state
        for attempt in range(MAX_ATTEMPTS):
            outcome = fn(state)
            if not outcome.events and outcome.state == state:
                return outcome
            loop = asyncio.get_running_loop()
            tag = self._new_tag()
            mine = _Mine(version + 1, outcome, loop.create_future())
            held.mine[tag] = mine
            try:
                conflict = await self._commit_outcome(room_id, version, outcome, tag, held.parts)
            except BaseException:
                # Cancelled, or Redis failed: committed or not, we cannot tell. If it
                # was, its message is (or will be) on the channel: delivered from there.
                self._abandon(room_id, held, tag, mine)
                raise
            if conflict is None:
                mine.committed = True
                await self._deliver_mine(room_id, held, tag, mine)
                return outcome
            held.mine.pop(tag, None)
            # Another node got in first: go on from the state it stored.
            version = conflict[0]
            state = decode_state(conflict[1], held.parts) if conflict[1] else None
            await _backoff(attempt)
        raise LiveUnavailable("This room is very busy right now: try again.")

    def _new_tag(self) -> str:
        return f"{self.node_id}.{next(self._tags)}"

    async def _commit_outcome(
        self,
        room_id: str,
        version: int,
        outcome: Outcome,
        tag: str | None = None,
        parts: PartsCache | None = None,
    ) -> tuple[int, bytes] | None:
        """Store and publish ``outcome`` if the room is still at ``version``: None. If
        another commit got in first: the room's current version and state bytes (b""
        if the session ended), and nothing is stored."""
        transport = tuple(e for e in outcome.events if isinstance(e, TRANSPORT_EVENTS))
        due = next_due(outcome.state, self._grace)
        args = (
            2,
            self._room_key(room_id),
            f"{self._p}due",
            version,
            version + 1,
            b"" if outcome.state is None else encode_state(outcome.state, parts),
            "" if due is None else _ms(due),
            self._room_channel(room_id),
            encode_header(version + 1, tag or self._new_tag(), transport),
            _ms(ROOM_TTL_SECS),
            room_id,
            self._due_ttl_ms,
        )
        cmd = await self._command()
        try:
            result = await cmd.call("EVALSHA", self._commit_sha, *args)
        except NoScriptError:  # Redis restarted or its script cache was flushed
            result = await cmd.call("EVAL", scripts.COMMIT, *args)
        if result == 1:
            return None
        current, blob = result
        return int(current), _raw(blob)

    async def _command(self) -> RespConnection:
        """The lean connection for commits and reads (opened again if it was lost)."""
        cmd = self._cmd
        return cmd if cmd is not None and cmd.is_open else await self._open_cmd()

    async def _open_cmd(self) -> RespConnection:
        async with self._cmd_lock:
            if self._cmd is None or not self._cmd.is_open:
                self._cmd = await RespConnection.open(self._url, timeout=COMMAND_TIMEOUT_SECS)
            return self._cmd

    async def _deliver_mine(self, room_id: str, held: _Held, tag: str, mine: _Mine) -> None:
        """Deliver a committed transition of ours in its place in commit order."""
        try:
            async with held.lock:
                if held.blocked is None and held.version == mine.version - 1:
                    # Its reply came first and all before it is delivered: deliver now;
                    # its message, when it comes, is known and skipped.
                    held.version, held.state = mine.version, mine.outcome.state
                    held.mine.pop(tag, None)
                    _forget_superseded(held, mine.version)
                    mine.delivered = True
                    await self._deliver(room_id, mine.outcome)
                    return
            if not mine.turn.done():
                # Messages before it are still on their way (we read Redis after a
                # conflict), or its message is: the listener says when it is our turn.
                async with asyncio.timeout(DELIVERY_WAIT_SECS):
                    await asyncio.shield(mine.turn)
        except TimeoutError:
            if not mine.turn.done():
                # Left to whoever meets it: if its message comes after all, it is
                # delivered then with all its events (a line, a consent), not as another
                # node's message, which carries only what clients are sent.
                self._abandon(room_id, held, tag, mine)
                log.warning(
                    "room %s: own v%d did not come back; resubscribing", room_id, mine.version
                )
                self._force_reconnect()
                return
            # Its turn came just as the wait ran out: the room waits for it, deliver it.
        except BaseException:
            self._abandon(room_id, held, tag, mine)
            raise
        await self._deliver_turn(room_id, held, tag, mine)

    async def _deliver_turn(self, room_id: str, held: _Held, tag: str, mine: _Mine) -> None:
        """Deliver ``mine`` now that its turn has come, then let the room go on."""
        held.mine.pop(tag, None)
        if mine.delivered:
            return
        try:
            async with held.lock:
                if not mine.delivered:
                    mine.delivered = True
                    await self._deliver(room_id, mine.outcome)
        except asyncio.CancelledError:
            if not mine.delivered:
                # Cancelled while another delivery or an attach held the room: the room
                # waits for this one, so it is delivered in a task of its own.
                self._spawn(self._deliver_turn(room_id, held, tag, mine))
            raise
        finally:
            if mine.delivered and held.blocked is mine:
                held.blocked = None
                if held.pending:
                    # Shielded: messages held up behind this one must not wait for the
                    # room's next message because this task was cancelled.
                    await asyncio.shield(self._drain(room_id, held))

    def _abandon(self, room_id: str, held: _Held, tag: str, mine: _Mine) -> None:
        """The committing task is gone before delivering: whoever meets it delivers. If
        its commit never ran, nobody will: it is forgotten once a later version of the
        room is in, or the room is let go (:meth:`_release_idle`)."""
        mine.abandoned = True
        mine.abandoned_at = time.monotonic()
        if held.blocked is mine and not mine.delivered:
            # Its message is in and the room waits for it: deliver it in a task of its own.
            self._spawn(self._deliver_turn(room_id, held, tag, mine))

    async def _run_reaped(self) -> None:
        try:
            await self._reaped()
        except Exception:
            log.exception("letting connections resume after being taken for dead failed")

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def attach(self, room_id: str, fn: Attach) -> None:
        held = await self._guard(self._hold(room_id))
        # Not while an own commit's message is in and its task has yet to deliver it:
        # the state already holds it, so a snapshot taken now would be followed by its
        # broadcast, the same seq twice. Its task delivers it at its next turn.
        for _ in range(ATTACH_WAIT_TURNS):
            async with held.lock:
                if held.blocked is None:
                    await fn(held.state)
                    return
            await asyncio.sleep(0.001)
        async with held.lock:  # a delivery that stalls must not keep anyone out
            await fn(held.state)

    # holding rooms ----------------------------------------------------------------------

    async def _hold(self, room_id: str) -> _Held:
        """Subscribe to the room (once) and load its state; ordered with its messages."""
        held = self._rooms.get(room_id)
        if held is not None:
            if held.ready.done():
                # Held and loaded (every transition of a held room comes this way): no
                # shield, no timer, no turn of the loop; a failed hold raises its error.
                held.ready.result()
            else:
                async with asyncio.timeout(HOLD_WAIT_SECS):
                    await asyncio.shield(held.ready)
            held.idle_since = None
            return held
        await self._wait_connected()
        held = self._rooms[room_id] = _Held(asyncio.get_running_loop().create_future())
        try:
            await self._subscribe(self._room_channel(room_id))
            version, state = await self._read(room_id)
            async with held.lock:
                if version > held.version:
                    held.version, held.state = version, state
            await self._note_room(room_id)
            held.ready.set_result(None)
        except BaseException as e:
            if self._rooms.get(room_id) is held:
                del self._rooms[room_id]
            held.ready.set_exception(LiveUnavailable())
            held.ready.exception()  # retrieved: waiters, if any, see it too
            self._unsubscribe(self._room_channel(room_id))
            raise e
        return held

    async def _adopt_others(self, room_id: str, state: RoomState) -> None:
        """Other nodes with connections in a room this node just wrote back: Redis lost
        their heartbeats and room lists with everything else, so one that died with it
        would never be found dead, its people shown connected for good."""
        conns = [p.conn for p in state.participants if p.connected]
        conns += [w.conn for w in state.waiting if w.dropped_at is None]
        others = {conn_node(x) for x in conns if x} - {self.node_id, None}
        for node in sorted(n for n in others if n):
            await self._adopt(
                keys=[f"{self._p}nodes", self._node_rooms_key(node)],
                args=[node, room_id, _ms(ROOM_TTL_SECS)],
            )

    async def _note_all_rooms(self) -> None:
        for room_id in list(self._rooms):
            try:
                await self._note_room(room_id)
            except (RedisError, OSError, TimeoutError, LiveUnavailable) as e:
                log.warning("room %s: could not record it as held here: %s", room_id, e)

    async def _note_room(self, room_id: str) -> None:
        """Record that this node holds ``room_id``: where to look if it dies."""
        key = self._node_rooms_key(self.node_id)
        cmd = await self._command()
        await asyncio.gather(
            cmd.call("SADD", key, room_id), cmd.call("PEXPIRE", key, _ms(ROOM_TTL_SECS))
        )

    async def _subscribe(self, channel: str) -> None:
        ps = self._pubsub
        if ps is None or not ps.is_open:
            raise LiveUnavailable()
        fut = asyncio.get_running_loop().create_future()
        self._sub_waiters[channel] = fut
        try:
            ps.send("SUBSCRIBE", channel)
            async with asyncio.timeout(HOLD_WAIT_SECS):
                await fut
        finally:
            self._sub_waiters.pop(channel, None)

    def _unsubscribe(self, channel: str) -> None:
        ps = self._pubsub
        if ps is not None and ps.is_open:
            ps.send("UNSUBSCRIBE", channel)

    async def _release_idle(self) -> None:
        """Let go of rooms this node no longer has connections in."""
        now = time.monotonic()
        for room_id, held in list(self._rooms.items()):
            # An abandoned commit whose message has not come by now never ran (a
            # connection that failed before sending it, an error reply): not a reason to
            # keep the room for ever.
            busy = (
                any(
                    not m.abandoned or now - m.abandoned_at < DELIVERY_WAIT_SECS
                    for m in held.mine.values()
                )
                or held.pending
                or held.commit_lock.locked()
            )
            if not held.ready.done() or busy or self._is_local(held.state):
                held.idle_since = None
                continue
            if held.idle_since is None:
                held.idle_since = now
            elif now - held.idle_since >= RELEASE_AFTER_SECS and not held.lock.locked():
                del self._rooms[room_id]
                self._unsubscribe(self._room_channel(room_id))
                await self._r.srem(self._node_rooms_key(self.node_id), room_id)

    async def _wait_connected(self) -> None:
        if self._connected.is_set():
            return
        try:
            async with asyncio.timeout(CONNECTED_WAIT_SECS):
                await self._connected.wait()
        except TimeoutError:
            raise LiveUnavailable() from None

    # the listener -----------------------------------------------------------------------

    async def _listen(self) -> None:
        """Read pub/sub forever; on any trouble reconnect, resubscribe and resync.

        The connection's protocol puts each message in ``_inbox`` as it is parsed and
        wakes this task, which delivers them in order, a batch per wake-up."""
        backoff = RECONNECT_MIN_SECS
        loop = asyncio.get_running_loop()
        while not self._closing:
            try:
                if self._pubsub is None:
                    await self._connect_pubsub()
                    backoff = RECONNECT_MIN_SECS
                ps = self._pubsub
                assert ps is not None
                inbox = self._inbox
                while inbox:
                    await self._on_message(inbox.popleft())
                if self._reconnect:
                    raise ConnectionError("pub/sub deaf (probe or own message missing)")
                if not ps.is_open:
                    raise ConnectionError(ps.closed_because or "closed")
                self._listener_wake = wake = loop.create_future()
                await wake
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if self._connected.is_set():
                    log.warning("Redis pub/sub lost (%s); reconnecting", e)
                self._connected.clear()
                self._reconnect = False
                await self._drop_pubsub()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RECONNECT_MAX_SECS)

    def _kick(self) -> None:
        wake = self._listener_wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def _force_reconnect(self) -> None:
        self._reconnect = True
        self._kick()

    def _push(self, reply: list[Any]) -> None:
        """A pushed pub/sub reply, straight from the protocol (no awaiting here)."""
        kind = reply[0]
        if kind == b"message":
            if reply[1] == self._probe_channel_b:
                # Heard as it is parsed, not when the listener gets to it: a node busy
                # with a backlog of room messages (a hand storm) is slow, not deaf, and
                # must not drop its pub/sub and resync every room on top of the load.
                self._probe_since = None
                return
            self._inbox.append(reply)
            self._kick()
        elif kind == b"subscribe":
            fut = self._sub_waiters.get(_text(reply[1]))
            if fut is not None and not fut.done():
                fut.set_result(None)

    async def _drop_pubsub(self) -> None:
        ps, self._pubsub = self._pubsub, None
        for fut in self._sub_waiters.values():
            if not fut.done():
                fut.set_exception(LiveUnavailable())
        if ps is not None:
            ps.close("dropped")

    async def _connect_pubsub(self) -> None:
        ps = self._pubsub = await RespConnection.open(
            self._url, timeout=COMMAND_TIMEOUT_SECS, on_push=self._push, on_lost=self._kick
        )
        channels = {self._probe_channel, self._notice_channel}
        channels.update(self._room_channel(r) for r in self._rooms)
        loop = asyncio.get_running_loop()
        waiters = {ch: loop.create_future() for ch in channels}
        self._sub_waiters.update(waiters)
        try:
            ps.send("SUBSCRIBE", *channels)
            # Messages that come meanwhile wait in the inbox: the resync below reads
            # each room's version, and the listener skips what that covers.
            async with asyncio.timeout(HOLD_WAIT_SECS):
                await asyncio.gather(*waiters.values())
        except TimeoutError:
            raise ConnectionError("no subscribe confirmation") from None
        finally:
            for ch, fut in waiters.items():
                if self._sub_waiters.get(ch) is fut:
                    del self._sub_waiters[ch]
        self._probe_since = None
        # Idle command connections may be from before the outage (a restarted Redis
        # closed them): start afresh, so the first command after it does not fail.
        await self._r.connection_pool.disconnect(inuse_connections=False)
        if self._cmd is not None and not self._cmd.is_open:
            self._cmd = None
        await self._resync()
        # Reconnected: perhaps to a Redis that restarted (from a snapshot, if it keeps
        # one: every node's heartbeat in it is old). Take nobody for dead until the
        # others have had time to beat again, as after a failed heartbeat.
        self._ok_since = time.monotonic()
        self._connected.set()
        log.info("Redis pub/sub connected (%d rooms)", len(self._rooms))

    async def _on_message(self, reply: list[Any]) -> None:
        channel: bytes = reply[1]
        data: bytes = reply[2]
        if channel == self._notice_channel_b:
            try:
                event, payload = msgpack.unpackb(data, raw=False)
                await self._notice(event, payload)
            except Exception:
                log.exception("notice failed")
            return
        room_id = channel[len(self._room_prefix_b) :].decode()
        held = self._rooms.get(room_id)
        if held is None:  # let go of meanwhile, or a hold that failed half-way
            self._unsubscribe(channel.decode())
            return
        if held.blocked is not None or held.draining or held.pending:
            # Behind an own commit not delivered yet (or behind messages that are):
            # kept in order until its task lets the room go on.
            held.pending.append(data)
            if held.blocked is None:
                await self._drain(room_id, held)
            return
        await self._apply(room_id, held, data)

    async def _drain(self, room_id: str, held: _Held) -> None:
        """Deliver the messages a room held back, in order, until it is blocked again."""
        if held.draining:
            return
        held.draining = True
        try:
            while held.blocked is None and held.pending:
                await self._apply(room_id, held, held.pending.popleft())
        finally:
            held.draining = False

    async def _apply(self, room_id: str, held: _Held, data: bytes) -> None:
        """One message of a held room, in commit order."""
        try:
            msg = OpenMessage(data)
        except CodecError as e:
            log.error("room %s: unreadable message skipped: %s", room_id, e)
            return
        version, tag = msg.version, msg.tag
        async with held.lock:
            if version <= held.version:
                return  # known already (loaded after it was published, or ours)
            mine = held.mine.get(tag)
            if mine is not None:
                # Our own commit, back before its task delivered it. Its state and
                # events are the outcome we hold: nothing is decoded.
                held.version, held.state = version, mine.outcome.state
                held.mine.pop(tag, None)
                _forget_superseded(held, version)
                held.mine[tag] = mine  # until its task (or whoever meets it) delivers it
                if mine.abandoned:
                    held.mine.pop(tag, None)
                    mine.delivered = True
                    try:
                        await self._deliver(room_id, mine.outcome)
                    except Exception:
                        log.exception("room %s: delivery failed", room_id)
                    return
                held.blocked = mine  # its task delivers it, then lets the room go on
                if not mine.turn.done():
                    mine.turn.set_result(None)
                return
            _forget_superseded(held, version)
            if held.version and version > held.version + 1:
                log.warning("room %s: v%d after v%d", room_id, version, held.version)
            try:
                m = msg.decode(held.parts)
            except CodecError as e:
                log.error("room %s: unreadable message skipped: %s", room_id, e)
                return
            held.version, held.state = m.version, m.state
            try:
                await self._deliver(room_id, Outcome(m.state, m.events))
            except Exception:
                log.exception("room %s: delivery failed", room_id)

    def _wake(self, room_id: str, held: _Held) -> None:
        """After a resync: own commits at or below the held version will not come back
        (the catch-up covered what clients see); their tasks deliver now. One whose task
        is gone (its message never came back in time) but whose reply said it committed
        still has what only this node can do: its records (a kept line, a consent, an
        erase already acknowledged as queued), delivered here, without its broadcasts."""
        for tag in [t for t, x in held.mine.items() if x.version <= held.version]:
            mine = held.mine.pop(tag)
            if not mine.turn.done():
                mine.turn.set_result(None)
            if mine.abandoned and mine.committed and not mine.delivered:
                mine.delivered = True
                records = tuple(
                    e for e in mine.outcome.events if not isinstance(e, TRANSPORT_EVENTS)
                )
                if records:
                    self._spawn(self._deliver_records(room_id, mine.outcome.state, records))

    async def _deliver_records(
        self, room_id: str, state: RoomState | None, records: tuple[Event, ...]
    ) -> None:
        try:
            await self._deliver(room_id, Outcome(state, records))
        except Exception:
            log.exception("room %s: records of a commit could not be delivered", room_id)

    async def _resync(self) -> None:
        """After (re)subscribing: give Redis back what it lost, catch up on what we missed."""
        for room_id, held in list(self._rooms.items()):
            if not held.ready.done():
                continue  # still loading: _hold reads after its subscription
            async with held.lock:
                if held.state is not None:
                    due = next_due(held.state, self._grace)
                    restored = await self._restore(
                        keys=[self._room_key(room_id), f"{self._p}due"],
                        args=[
                            held.version,
                            encode_state(held.state, held.parts),
                            "" if due is None else _ms(due),
                            _ms(ROOM_TTL_SECS),
                            room_id,
                            self._due_ttl_ms,
                        ],
                    )
                    await self._note_room(room_id)
                    if restored:
                        await self._adopt_others(room_id, held.state)
                version, state = await self._read(room_id)
                if version > held.version:
                    log.warning("room %s: missed v%d..v%d", room_id, held.version + 1, version)
                if version > held.version or (
                    held.state is not None and (version, state) != (held.version, held.state)
                ):
                    # Missed messages; or, after a Redis restart, the room as another
                    # node wrote it back and then changed it: it is now what counts.
                    before = held.state
                    held.version, held.state = version, state
                    await self._catch_up(room_id, before, state)
                self._wake(room_id, held)

    async def _catch_up(
        self, room_id: str, before: RoomState | None, now: RoomState | None
    ) -> None:
        """Local connections missed messages: give them the room afresh.

        Still in and connected: a fresh ``welcome`` (snapshot, seq). Gone meanwhile
        (removed, timed out, the session ended): closed. Marked dropped while their
        connection is in fact here (this node was taken for dead): closed too, so the
        client resumes and is connected again, keeping its place.
        """
        mine = self.node_id
        local = [p for p in before.participants if conn_node(p.conn) == mine] if before else []
        # Waiting here: denied, kept out or ended meanwhile, their line must close too.
        waiting = [w for w in before.waiting if conn_node(w.conn) == mine] if before else []
        events: list[Event] = []
        if now is None:
            everyone = tuple(p.id for p in local) + tuple(w.id for w in waiting)
            events.append(Emit("session.ended", {"reason": "ended"}, everyone))
            events.extend(Disconnect(p.id, p.conn) for p in local)
            events.extend(Disconnect(w.id, w.conn) for w in waiting)
        else:
            for p in local:
                q = now.get(p.id)
                if q is None or q.conn != p.conn:
                    events.append(Disconnect(p.id, p.conn))
            for w in waiting:
                still = now.get_waiting(w.id)
                let_in = now.get(w.id)
                if (still is None or still.conn != w.conn) and (
                    let_in is None or let_in.conn != w.conn
                ):
                    events.append(Disconnect(w.id, w.conn))
            for q in now.participants:
                if conn_node(q.conn) == mine:
                    events.append(Welcome(q.id) if q.connected else Disconnect(q.id, q.conn))
        if events:
            try:
                await self._deliver(room_id, Outcome(now, tuple(events)))
            except Exception:
                log.exception("room %s: catch-up failed", room_id)

    # heartbeat, dead nodes, the clock ---------------------------------------------------

    async def _beat(self) -> None:
        dead, reaped = await self._heartbeat(
            keys=[
                f"{self._p}nodes",
                self._node_rooms_key(self.node_id),
                self._reaped_key(self.node_id),
            ],
            args=[self.node_id, _ms(ROOM_TTL_SECS), _ms(NODE_DEAD_SECS)],
        )
        self._dead_nodes = [n for n in map(_text, dead) if n != self.node_id]
        if reaped:
            # We were silent long enough (a paused VM, a stalled loop) for another node
            # to take us for dead and drop our connections in the rooms. Our sockets are
            # still open, but their people show as gone and, past the grace, are let go
            # without a word. Close them: each client resumes and takes its place back.
            log.warning("this node was taken for dead by another: its connections resume")
            # The reaper forgets our list of rooms once nobody of ours is left connected
            # in them; our people come back to rooms we still hold, so nothing would write
            # it again, and if we later died for real, nobody would find them. Again now.
            self._spawn(self._note_all_rooms())
            # In a task of its own: the heartbeat must go on meanwhile (or this node is
            # taken for dead again), and a failure there is not Redis failing.
            self._spawn(self._run_reaped())

    async def _run_heartbeat(self) -> None:
        while not self._closing:
            try:
                await self._beat()
                if self._connected.is_set():
                    now = time.monotonic()
                    if (
                        self._probe_since is not None
                        and now - self._probe_since > PROBE_TIMEOUT_SECS
                    ):
                        log.warning("own probe did not come back: pub/sub is deaf")
                        self._force_reconnect()
                    if self._probe_since is None:
                        self._probe_since = now
                    await self._r.publish(self._probe_channel, b"1")
                    await self._release_idle()
                    await self._refresh_ttls()
                if any(t.done() for t in self._tasks[:1]) and not self._closing:
                    log.error("pub/sub listener ended; restarting it")
                    self._tasks[0] = asyncio.get_running_loop().create_task(self._listen())
                if not self._redis_ok:
                    self._ok_since = time.monotonic()
                self._redis_ok = True
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if self._redis_ok:
                    log.warning("Redis heartbeat failed: %s", e)
                self._redis_ok = False
            await asyncio.sleep(HEARTBEAT_SECS)

    async def _refresh_ttls(self) -> None:
        if time.monotonic() - self._last_refresh < TTL_REFRESH_SECS:
            return
        self._last_refresh = time.monotonic()
        async with self._r.pipeline(transaction=False) as pipe:
            for room_id in self._rooms:
                pipe.pexpire(self._room_key(room_id), _ms(ROOM_TTL_SECS))
            await pipe.execute()

    async def due_rooms(self, now: float, rules: Rules) -> list[str]:
        try:
            rooms = await self._claim_due(
                keys=[f"{self._p}due"],
                args=[_ms(now), _ms(CLAIM_SECS), CLAIM_BATCH, f"{self._p}room:"],
            )
        except (RedisError, OSError, TimeoutError):
            return []
        return [_text(r) for r in rooms]

    async def lost_conns(self) -> list[LostConn]:
        if not self._connected.is_set():
            # Pub/sub lost: Redis may be restarting (from a snapshot full of old
            # heartbeats) while the heartbeat's pooled connection already reconnected.
            return []
        if time.monotonic() - self._ok_since < NODE_DEAD_SECS + HEARTBEAT_SECS:
            # Just (re)connected: after an outage every node's heartbeat is old. Give
            # the others time to beat again before taking anyone for dead.
            return []
        lost: list[LostConn] = []
        for node in self._dead_nodes:
            try:
                lost.extend(await self._reap(node))
            except (RedisError, OSError, TimeoutError) as e:
                log.warning("could not reap node %s: %s", node, e)
        return lost

    async def _reap(self, node: str) -> list[LostConn]:
        if not await self._r.set(
            f"{self._p}reap:{node}", self.node_id, nx=True, px=_ms(REAP_LOCK_SECS)
        ):
            return []  # another node is on it
        prefix = conn_handle(node, "")
        lost: list[LostConn] = []
        for raw in await self._r.smembers(self._node_rooms_key(node)):
            room_id = _text(raw)
            _, state = await self._read(room_id)
            if state is None:
                continue
            lost.extend(
                LostConn(room_id, p.id, p.conn)
                for p in state.participants
                if p.connected and p.conn is not None and p.conn.startswith(prefix)
            )
            lost.extend(
                LostConn(room_id, w.id, w.conn)
                for w in state.waiting
                if w.dropped_at is None and w.conn is not None and w.conn.startswith(prefix)
            )
        if lost:
            # Marked, so that the node, if it was only silent (paused), learns it at its
            # next heartbeat and lets its connections resume (_beat).
            await self._r.set(self._reaped_key(node), b"1", px=_ms(ROOM_TTL_SECS))
        if not lost:  # all dropped (by us, last time round): forget the node
            await self._r.zrem(f"{self._p}nodes", node)
            await self._r.delete(self._node_rooms_key(node), f"{self._p}reap:{node}")
        else:
            log.info("node %s is gone: dropping %d of its connections", node, len(lost))
        return lost


async def _nothing() -> None:
    pass


async def _backoff(attempt: int) -> None:
    if attempt >= 2:
        await asyncio.sleep(random.uniform(0, 0.002 * attempt))


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def _raw(v: bytes | str) -> bytes:
    return v.encode() if isinstance(v, str) else v
