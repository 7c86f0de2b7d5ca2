"""Token buckets per connection: a burst, then a steady rate. Time is passed in."""

from __future__ import annotations

from dataclasses import dataclass


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
