"""Token buckets: a burst, then a steady rate, whatever the wall clock does."""

from __future__ import annotations

from server.ratelimit import Bucket


def test_a_burst_then_the_steady_rate() -> None:
    bucket = Bucket.full(3, 1.0, now=100.0)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(100.5) is False
    assert bucket.take(101.0) is True


def test_a_clock_stepped_back_puts_no_bucket_in_debt() -> None:
    """An NTP step or a resumed VM moves time.time() back: before, the bucket refilled
    by a negative amount, and a person was rate limited for as long as the step."""
    bucket = Bucket.full(3, 1.0, now=10_000.0)
    assert bucket.take(10_000.0)
    assert bucket.take(10_000.0 - 3600)  # an hour back: what was left is still there
    assert bucket.available(10_000.0 - 3600) == 1
    assert bucket.take(10_000.0 - 3600)
    assert bucket.take(10_000.0 - 3599)  # and it refills from there at its rate
