"""The Lua scripts of the Redis live store, and the due time they index.

Each runs atomically in Redis. Keys and arguments are named at each script; see
:mod:`server.redis_live` for the key layout. Scripts read keys of one room plus the
deployment's shared indexes, so they need a single Redis, not a Redis Cluster.
"""

from __future__ import annotations

from typing import Final

from rooms.model import RoomState

# KEYS: room hash, due index. ARGV: expected version, new version, state bytes ('' when
# the session ended), due ms ('' for none), channel, message header, TTL ms, room id,
# the due index's TTL ms (longer than the grace period: an entry must outlive its wait).
# Returns 1 once stored and published. If the version moved, stores nothing and returns
# {current version, current state or ''}: the caller runs its transition again on that,
# without a read of its own (a loser of a race is one round trip behind, not two, so two
# nodes contending for a busy room take turns instead of one starving the other).
COMMIT: Final = """
local cur = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if cur ~= tonumber(ARGV[1]) then
  return {cur, redis.call('HGET', KEYS[1], 's') or ''}
end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], 's', 'r')
  redis.call('HSET', KEYS[1], 'v', ARGV[2])
else
  redis.call('HDEL', KEYS[1], 'r')
  redis.call('HSET', KEYS[1], 'v', ARGV[2], 's', ARGV[3])
end
if ARGV[4] == '' then
  redis.call('ZREM', KEYS[2], ARGV[8])
else
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[8])
  redis.call('PEXPIRE', KEYS[2], ARGV[9])
end
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('PUBLISH', ARGV[5], ARGV[6] .. ARGV[3])
return 1
"""

# KEYS: room hash, due index. ARGV: version, state bytes, due ms or '', TTL ms, room id,
# the due index's TTL ms.
# Writes back a node's copy after a restart (Redis kept nothing), marked ``r``: written
# back, not committed since. A newer copy from another node may replace it while it is
# so (each node's copy is what it last heard; the newest wins). Once a commit has been
# made on it (which drops the mark), nothing is written back over it: that commit was
# acknowledged and delivered, and a node whose copy is older or another branch must
# take the room as it is now.
RESTORE: Final = """
local cur = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if cur > 0 and redis.call('HEXISTS', KEYS[1], 'r') == 0 then return 0 end
if cur >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 's', ARGV[2], 'r', '1')
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if ARGV[3] == '' then
  redis.call('ZREM', KEYS[2], ARGV[5])
else
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[5])
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
end
return 1
"""

# KEYS: due index. ARGV: now ms, claim ms, batch size, room key prefix. Returns the due
# rooms and pushes them back by the claim, so one node ticks each; forgets ended rooms.
CLAIM_DUE: Final = """
local rooms = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
local out = {}
for _, r in ipairs(rooms) do
  if redis.call('HEXISTS', ARGV[4] .. r, 's') == 1 then
    redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), r)
    table.insert(out, r)
  else
    redis.call('ZREM', KEYS[1], r)
  end
end
return out
"""

# KEYS: nodes index, another node's rooms set. ARGV: that node's id, room id, TTL ms.
# After a restart (Redis kept nothing), the node restoring a room vouches for the other
# nodes with connections in it: listed as if they had just beaten (if not listed), with
# the room, so that one that died with Redis is found dead and reaped like any other.
ADOPT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], 'NX', now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
"""

# KEYS: nodes index, this node's rooms set, the mark another node leaves on this one
# when it reaps it. ARGV: node id, TTL ms, dead after ms. Redis's own clock, so nodes'
# clocks need not agree. Returns {the nodes gone silent, 1 if this node was reaped}.
HEARTBEAT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
local reaped = redis.call('DEL', KEYS[3])
return {redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3])), reaped}
"""


def next_due(state: RoomState | None, grace_secs: float) -> float | None:
    """When a Tick would next change ``state`` (see :func:`rooms.machine.due`)."""
    if state is None:
        return None
    dropped = [p.dropped_at for p in state.participants] + [w.dropped_at for w in state.waiting]
    times = [at + grace_secs for at in dropped if at is not None]
    if state.empty_since is not None:
        times.append(state.empty_since + grace_secs)
    return min(times, default=None)
