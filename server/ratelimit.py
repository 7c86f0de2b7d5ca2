"""Token buckets: a burst, then a steady rate. Time is passed in."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final

ADDRESSES_KEPT: Final = 50_000  # client addresses' join buckets kept, the oldest forgotten


@dataclass(slots=True)
class Bucket:
    capacity: float
    per_sec: float
    tokens: float
    at: float

    @classmethod
    def full(cls, capacity: float, per_sec: float, now: float) -> Bucket:
        return cls(capacity, per_sec, capacity, now)

    def available(self, now: float) -> float:
        """Tokens there would be at ``now``, without taking one."""
        return min(self.capacity, self.tokens + max(0.0, now - self.at) * self.per_sec)

    def take(self, now: float) -> bool:
        # max(): a wall clock stepped back (NTP, a VM resumed) refills nothing, rather
        # than putting the bucket hours in debt.
        self.tokens = self.available(now)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class JoinLimiter:
    """New joins per client address: a burst, then a steady rate, on this node.

    Without it anyone holding an invite link could fill a room with names (each keeps
    its seat for the grace period after dropping, so real members got ``room_full``)
    or flood it with joined and left lines. Resumes are not counted: a group coming
    back after a restart takes its places back at once."""

    def __init__(self, burst: int, per_sec: float, trusted_proxies: tuple[str, ...]) -> None:
        self._burst = burst
        self._per_sec = per_sec
        self._trusted = tuple(ipaddress.ip_network(n, strict=False) for n in trusted_proxies)
        self._buckets: dict[str, Bucket] = {}

    def client_address(self, remote: str | None, forwarded_for: list[str]) -> str | None:
        """Whom a join comes from: the peer, or, when the peer is a trusted proxy, the
        X-Forwarded-For address nearest to it that is not a trusted proxy itself (each
        proxy adds the address it heard from at the end; what is left of it is the
        client's own word). ``forwarded_for``: every such header, in order. None: a
        join from this machine itself, not limited (the operator's own scripts, the
        benchmark, the tests). IPv6 clients are keyed by their /64, which one
        household or phone holds whole."""
        if not remote:
            return None
        if not self._is_trusted(remote):
            return _key(remote)
        if not forwarded_for:
            return None  # no proxy in between: this machine
        hops = [h.strip() for h in ",".join(forwarded_for).split(",")]
        named = False
        for hop in reversed(hops):
            if not hop:
                continue
            named = True
            try:
                ip = ipaddress.ip_address(hop)
            except ValueError:
                return hop[:64]  # no address where the proxy's should be: still counted
            if not any(ip in net for net in self._trusted):
                return _key(hop)
        # Trusted all the way: this machine, through the local proxy. A header naming
        # nobody (",") is no way out of the limit: the proxy is counted then.
        return None if named else _key(remote)

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self._trusted)

    def take(self, address: str | None, now: float) -> bool:
        if address is None:
            return True
        bucket = self._buckets.pop(address, None) or Bucket.full(self._burst, self._per_sec, now)
        self._buckets[address] = bucket  # most recent last
        while len(self._buckets) > ADDRESSES_KEPT:
            del self._buckets[next(iter(self._buckets))]
        return bucket.take(now)


def _key(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
