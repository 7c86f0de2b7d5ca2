"""Micro-benchmarks for live state on Redis: codec sizes and times, transitions/s.

    .venv/bin/python scripts/bench-live.py [--redis-url redis://127.0.0.1:6379/0]

Numbers are for deciding, not for bragging: run on a quiet machine and repeat.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rooms import commands as c
from rooms.machine import apply
from rooms.model import Role, RoomState, Settings, Via
from server import live_codec
from server.live import conn_handle
from server.redis_live import RedisStore
from tests.support import delete_redis_prefix, fresh_redis_prefix

INFO = c.RoomInfo("room-bench", "Tuesday evening circle", Settings())


def group(n: int, node: str = "n0") -> RoomState:
    """A session of ``n`` people, a third with hands up, as a real evening looks."""
    state: RoomState | None = None
    for i in range(n):
        join = c.Join(
            INFO,
            "session-bench",
            f"participant-{i:03d}xyz",
            f"Person {i}",
            Role.FACILITATOR if i == 0 else Role.PEER,
            Via.WEB,
            conn_handle(node, f"sid-{i:04d}-abcdefghij"),
            frozenset({f"name:person {i}"}),
        )
        state = apply(state, None, join, now=1_700_000_000.0 + i).state
    assert state is not None
    for i in range(1, n, 3):
        state = apply(state, f"participant-{i:03d}xyz", c.RaiseHand(), now=1_700_000_100.0).state
        assert state is not None
    return state


def timeit(fn: Any, rounds: int = 2000) -> float:
    start = time.perf_counter()
    for _ in range(rounds):
        fn()
    return (time.perf_counter() - start) / rounds * 1e6  # microseconds


def codec_report() -> None:
    print("state codec: JSON (same positional shape) vs msgpack")
    print(f"{'people':>7} {'json B':>8} {'msgpack B':>10} {'json enc/dec us':>16} "
          f"{'msgpack enc/dec us':>19} {'dataclass build us':>19}")  # fmt: skip
    for n in (5, 20, 100):
        codec_row(n)


def codec_row(n: int) -> None:
    state = group(n)
    as_list = live_codec.state_to_list(state)
    j = json.dumps(as_list, separators=(",", ":")).encode()
    m = live_codec.encode_state(state)
    j_enc = timeit(lambda: json.dumps(live_codec.state_to_list(state), separators=(",", ":")))
    j_dec = timeit(lambda: live_codec.state_from_list(json.loads(j)))
    m_enc = timeit(lambda: live_codec.encode_state(state))
    m_dec = timeit(lambda: live_codec.decode_state(m))
    build = timeit(lambda: live_codec.state_from_list(as_list))
    print(f"{n:>7} {len(j):>8} {len(m):>10} {j_enc:>7.1f}/{j_dec:<8.1f} "
          f"{m_enc:>9.1f}/{m_dec:<9.1f} {build:>19.1f}")  # fmt: skip


async def redis_report(url: str) -> None:
    prefix = fresh_redis_prefix()
    store = RedisStore(url, prefix=prefix, grace_secs=60)
    delivered = 0

    async def deliver(room_id: str, outcome: Any) -> None:
        nonlocal delivered
        delivered += 1

    store.set_deliver(deliver)
    await store.start()
    try:
        node = store.node_id
        for rooms, people in ((1, 20), (20, 20)):
            ids = [f"room-{rooms}-{r}" for r in range(rooms)]
            for room_id in ids:
                info = c.RoomInfo(room_id, "t", Settings())
                for i in range(people):
                    join = c.Join(info, "s", f"p{i}", f"P{i}", Role.PEER, Via.WEB,
                                  conn_handle(node, f"{room_id}-{i}"))  # fmt: skip
                    await store.transact(room_id, lambda s, j=join: apply(s, None, j, now=1.0))
            per_room = 300 if rooms == 1 else 50

            start = time.perf_counter()
            await asyncio.gather(*(churn(store, r, per_room, people) for r in ids))
            secs = time.perf_counter() - start
            total = rooms * per_room
            print(f"Redis: {total} transitions in {rooms} room(s), {people} people each: "
                  f"{total / secs:.0f}/s, {secs / total * 1e3:.2f} ms each "
                  f"(commit + own message back)")  # fmt: skip
    finally:
        await store.close()
        await delete_redis_prefix(url, prefix)


async def churn(store: RedisStore, room_id: str, rounds: int, people: int) -> None:
    for k in range(rounds):
        actor = f"p{k % people}"
        await store.transact(room_id, lambda s, a=actor: apply(s, a, c.ToggleHand(), now=2.0))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument("--no-redis", action="store_true")
    args = p.parse_args()
    codec_report()
    if not args.no_redis:
        asyncio.run(redis_report(args.redis_url))


if __name__ == "__main__":
    main()
