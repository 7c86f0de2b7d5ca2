"""Token buckets: a burst, then a steady rate, whatever the wall clock does."""

from __future__ import annotations

import pytest

from server.ratelimit import Bucket, JoinLimiter


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


LOCAL = ("127.0.0.0/8", "::1/128", "10.0.0.0/8")


@pytest.mark.parametrize(
    ("remote", "headers", "key"),
    [
        ("203.0.113.9", [], "203.0.113.9"),  # straight from a client
        ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),  # its own header: ignored
        ("127.0.0.1", [], None),  # this machine
        ("127.0.0.1", ["198.51.100.1"], "198.51.100.1"),  # through the local proxy
        ("127.0.0.1", ["6.6.6.6, 198.51.100.1"], "198.51.100.1"),  # spoofed start
        ("127.0.0.1", [",", "198.51.100.1"], "198.51.100.1"),  # a second header, added
        ("127.0.0.1", ["198.51.100.1, 10.1.2.3"], "198.51.100.1"),  # two trusted hops
        ("127.0.0.1", ["10.1.2.3"], None),  # trusted all the way
        ("127.0.0.1", [","], "127.0.0.1"),  # a header naming nobody: no way out
        ("127.0.0.1", ["not-an-ip"], "not-an-ip"),
        ("2001:db8:1:2::5", [], "2001:db8:1:2::/64"),  # a household's whole /64
        ("127.0.0.1", ["2001:db8:1:2:aaaa::1"], "2001:db8:1:2::/64"),
    ],
)
def test_whom_a_join_is_counted_against(remote: str, headers: list[str], key: str | None) -> None:
    assert JoinLimiter(3, 1.0, LOCAL).client_address(remote, headers) == key


def test_each_address_has_its_own_burst_and_this_machine_none() -> None:
    joins = JoinLimiter(2, 0.5, LOCAL)
    assert [joins.take("a", 0.0) for _ in range(3)] == [True, True, False]
    assert joins.take("b", 0.0)
    assert all(joins.take(None, 0.0) for _ in range(100))
    assert joins.take("a", 2.0)  # one more every two seconds
