"""One room across several node processes: one hand order, one gapless seq, and
moderator actions that reach people on other nodes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from tests.redis.cluster import Cluster
from tests.storage.helpers import transcript
from tests.support import WAIT_SECS, Client


async def wait_seq(client: Client, seq: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECS
    while client.last_seq < seq:
        assert loop.time() < deadline, f"stuck at seq {client.last_seq}, wanted {seq}"
        await asyncio.sleep(0.02)


def broadcasts(client: Client, after: int) -> list[tuple[int, str, Any]]:
    """Room broadcasts this client received with seq > ``after``, in arrival order."""
    out = []
    for name, data in client.events:
        if name == "welcome" or not isinstance(data, dict) or "seq" not in data:
            continue
        if data["seq"] > after:
            out.append((data["seq"], name, data))
    return out


async def test_one_room_across_three_nodes(
    cluster: Cluster, make_client: Callable[[str], Client]
) -> None:
    a, b, c = await cluster.start(3)
    room = await cluster.create_room(a)
    fac = make_client(a.url)
    fac_id = (await fac.join(room["facilitator_token"], "Ann"))["you"]["id"]
    peers: list[tuple[Client, str]] = []
    for i, node in enumerate([b, c, a, b, c]):
        p = make_client(node.url)
        w = await p.join(room["invite_token"], f"Peer{i}")
        peers.append((p, w["you"]["id"]))
    everyone = [fac, *(p for p, _ in peers)]
    joined = 1 + len(peers)  # one participant.joined each
    for cl in everyone:
        await wait_seq(cl, joined)

    # Everyone raises at once, from three nodes: one order, whatever it is.
    await asyncio.gather(*(p.ok("hand.raise") for p, _ in peers))
    raised = joined + len(peers)
    for cl in everyone:
        await wait_seq(cl, raised)
    finals = [broadcasts(cl, joined)[-1] for cl in everyone]
    assert all(f == finals[0] for f in finals)
    order = finals[0][2]["hands"]
    assert sorted(order) == sorted(pid for _, pid in peers)

    # A moderator on node A acts on people on nodes B and C.
    await fac.ok("mod.floor.next")
    (on_c, on_c_id), (on_b, on_b_id) = peers[1], peers[0]
    await fac.ok("mod.mute", {"id": on_c_id})
    assert await on_c.wait_for("you.muted") == {"by": fac_id}
    await fac.ok("mod.remove", {"id": on_b_id})
    await on_b.wait_for("you.removed")
    await on_b.wait_disconnected()
    # A peer on node C changes a setting-free thing everyone sees: a chat line.
    await on_c.ok("chat.send", {"text": "hello from C"})
    rest = [cl for cl in everyone if cl is not on_b]
    last = (await on_c.wait_for("chat"))["seq"]
    for cl in rest:
        await wait_seq(cl, last)
    seen = [broadcasts(cl, joined) for cl in rest]
    assert all(s == seen[0] for s in seen), "nodes delivered different broadcasts"
    assert [s for s, _, _ in seen[0]] == list(range(joined + 1, last + 1))
    floor = next(d for s, n, d in seen[0] if n == "hands" and d["floor"])
    assert floor["floor"] == order[0]
    left = next(d for _, n, d in seen[0] if n == "participant.left")
    assert left == {"seq": left["seq"], "id": on_b_id, "reason": "removed"}


async def test_lock_on_one_node_holds_on_another(
    cluster: Cluster, make_client: Callable[[str], Client]
) -> None:
    a, b = await cluster.start(2)
    room = await cluster.create_room(a)
    fac = make_client(a.url)
    await fac.join(room["facilitator_token"], "Ann")
    await fac.ok("mod.lock", {"locked": True})
    refused = await make_client(b.url).refused(room["invite_token"], "Bo")
    assert refused["data"]["code"] == "room_locked", refused
    await fac.ok("mod.lock", {"locked": False})
    w = await make_client(b.url).join(room["invite_token"], "Bo")
    assert w["room"]["settings"]["locked"] is False
    assert [p["name"] for p in w["room"]["participants"]] == ["Ann", "Bo"]


async def test_waiting_room_across_nodes(
    cluster: Cluster, make_client: Callable[[str], Client]
) -> None:
    a, b = await cluster.start(2)
    room = await cluster.create_room(a, waiting_room=True)
    fac = make_client(a.url)
    await fac.join(room["facilitator_token"], "Ann")
    peer = make_client(b.url)
    waiting = await peer.join(room["invite_token"], "Bo", expect="waiting")
    assert waiting["position"] == 1
    listed = await fac.wait_for("waiting.updated", lambda d: len(d["waiting"]) == 1)
    await fac.ok("mod.admit", {"id": listed["waiting"][0]["id"]})
    await peer.wait_for("admitted")
    w = await peer.wait_for("welcome")
    assert [p["name"] for p in w["room"]["participants"]] == ["Ann", "Bo"]
    joined = await fac.wait_for("participant.joined", lambda d: d["participant"]["name"] == "Bo")
    assert joined["seq"] == w["room"]["seq"]


async def test_consent_withdrawn_through_one_node_ends_transcript_access_on_all(
    cluster: Cluster, make_client: Callable[[str], Client]
) -> None:
    """Each node notes consent changes it commits itself; before, node A went on
    granting access on what it had noted after the person withdrew through node B."""
    a, b = await cluster.start(2)
    room = await cluster.create_room(a)
    ann = make_client(a.url)
    await ann.join(room["facilitator_token"], "Ann")
    bo = make_client(a.url)
    w = await bo.join(room["invite_token"], "Bo")
    session_id, resume = w["room"]["session_id"], w["resume"]
    await bo.ok("transcript.consent", {"on": True})
    assert (await transcript(a, session_id, resume))[0] == 200
    await bo.close()  # a dropped line: Bo comes back through the other node
    back = make_client(b.url)
    again = await back.join(room["invite_token"], "Bo", resume=resume)
    assert again["you"]["id"] == w["you"]["id"]
    await back.ok("transcript.consent", {"on": False})
    for node in (b, a):
        assert (await transcript(node, session_id, again["resume"]))[0] == 403, node.url
    # Gone from the session: A has no live state of Bo to go by, only its own note (on,
    # from before) and storage (off, once B's recorder has written it). The later wins;
    # before, A's note did, and it granted access for as long as it kept the session.
    await back.ok("session.leave")
    # Once A has delivered the leave, its live state has no Bo: from then on only its
    # note and storage decide (storage once B's recorder has written the change), so
    # the first 403 may take a moment; every answer after it must be 403 too.
    await ann.wait_for("participant.left", lambda d: d["id"] == w["you"]["id"])
    statuses: list[int] = []
    for _ in range(50):
        statuses.append((await transcript(a, session_id, again["resume"]))[0])
        if statuses[-1] == 403:
            break
        await asyncio.sleep(0.1)
    for _ in range(5):
        await asyncio.sleep(0.1)
        statuses.append((await transcript(a, session_id, again["resume"]))[0])
    assert statuses[-6:] == [403] * 6, statuses
