"""Serve-time tuning: the garbage collector and the listen backlog."""

from __future__ import annotations

import argparse
import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from server import gctune
from server.cli import kernel_backlog_cap
from server.settings import SettingsError, add_serve_arguments, from_sources


@pytest.fixture
def restore_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_thresholds_default_and_from_the_environment() -> None:
    assert from_sources(None, {}).gc_thresholds == (50_000, 2, 100)
    env = {"PEERROOM_GC_THRESHOLDS": "700, 10, 10"}
    assert from_sources(None, env).gc_thresholds == (700, 10, 10)


@pytest.mark.parametrize("value", ["700,10", "a,b,c", "700,-1,10", "1,2,3,4"])
def test_bad_thresholds_are_a_clear_error(value: str) -> None:
    with pytest.raises(SettingsError, match="PEERROOM_GC_THRESHOLDS"):
        from_sources(None, {"PEERROOM_GC_THRESHOLDS": value})
    p = argparse.ArgumentParser()
    add_serve_arguments(p)
    with pytest.raises(SystemExit):
        p.parse_args(["--gc-thresholds", value])


def test_the_flag_wins_and_backlog_has_a_floor() -> None:
    p = argparse.ArgumentParser()
    add_serve_arguments(p)
    args = p.parse_args(["--gc-thresholds", "1000,5,5", "--listen-backlog", "64"])
    s = from_sources(args, {"PEERROOM_GC_THRESHOLDS": "700,10,10"})
    assert (s.gc_thresholds, s.listen_backlog) == ((1000, 5, 5), 64)
    with pytest.raises(SettingsError, match="PEERROOM_LISTEN_BACKLOG"):
        from_sources(None, {"PEERROOM_LISTEN_BACKLOG": "0"})


def test_tune_freezes_what_exists_and_sets_thresholds(restore_gc: None) -> None:
    survivor = [object() for _ in range(10)]
    gctune.tune((12_345, 6, 7))
    assert gc.get_threshold() == (12_345, 6, 7)
    assert gc.get_freeze_count() > len(survivor)


def test_every_collection_is_timed() -> None:
    gctune.watch()
    gctune.watch()  # once per process, however many apps
    assert gc.callbacks.count(gctune._time_collection) == 1
    before = gctune.GC_PAUSES.labels("2")._sum.get()
    gc.collect()
    assert gctune.GC_PAUSES.labels("2")._sum.get() > before


def test_the_kernels_backlog_cap_is_read_and_its_absence_is_no_error(tmp_path: Path) -> None:
    f = tmp_path / "somaxconn"
    f.write_text("4096\n")
    assert kernel_backlog_cap(f) == 4096
    f.write_text("not a number")
    assert kernel_backlog_cap(f) is None
    assert kernel_backlog_cap(tmp_path / "missing") is None


@pytest.mark.parametrize("var", ["PEERROOM_GRACE", "PEERROOM_CHAT_RATE", "PEERROOM_EVENT_RATE"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_numbers_that_are_not_finite_are_a_clear_error(var: str, value: str) -> None:
    """A grace of nan never expires; a chat rate of nan never limits."""
    with pytest.raises(SettingsError, match=f"{var}: must be a finite number"):
        from_sources(None, {var: value})
    p = argparse.ArgumentParser()
    add_serve_arguments(p)
    flag = "--grace" if var == "PEERROOM_GRACE" else None
    if flag:
        with pytest.raises(SettingsError, match="--grace: must be a finite number"):
            from_sources(p.parse_args([f"{flag}={value}"]), {})


class _Process:
    """A clock, a CPU counter, a count of messages handled and the collector's counts,
    moved by the test."""

    def __init__(self) -> None:
        self.now = self.cpu = 0.0
        self.messages = 0
        self.counts = (0, 0, 0)
        self.collected: list[int] = []

    def collector(self) -> gctune.QuietCollector:
        return gctune.QuietCollector(
            lambda: self.messages,
            clock=lambda: self.now,
            cpu=lambda: self.cpu,
            counts=lambda: self.counts,
            collect=self.collect,
        )

    def collect(self, generation: int) -> int:
        self.collected.append(generation)
        self.cpu += 0.05  # the collection's own CPU
        self.counts = (0, 0, self.counts[2] + 1)
        return 0

    def second(self, busy: float = 0.01, messages: int = 0) -> None:
        self.now += 1.0
        self.cpu += busy
        self.messages += messages


def test_young_garbage_is_collected_once_the_process_is_quiet() -> None:
    p = _Process()
    c = p.collector()
    p.counts = (40_000, 1, 0)  # what a burst left
    p.second(busy=0.9, messages=5_000)
    assert c.look() is False  # busy: the automatic collections are left to run
    p.second()
    assert c.look() is True and p.collected == [1]  # young and middle, never a full one
    p.second()
    assert c.look() is False  # nothing left to walk
    p.counts = (20_000, 0, 1)
    for _ in range(5):
        p.second()
        assert c.look() is False  # at most one of its own every QUIET_EVERY_SECS
    for _ in range(5):
        p.second()
        c.look()
    assert p.collected == [1, 1]


def test_any_message_or_a_busy_core_is_not_quiet() -> None:
    p = _Process()
    c = p.collector()
    p.counts = (gctune.QUIET_DEBT, 0, 0)
    p.second(messages=1)  # a chat line a second: people are talking
    assert c.look() is False
    p.second(busy=gctune.QUIET_CORE)  # no message, but the core is busy (handshakes)
    assert c.look() is False
    p.second()
    assert c.look() is True


def test_a_little_garbage_is_left_to_the_automatic_collections() -> None:
    p = _Process()
    c = p.collector()
    p.counts = (gctune.QUIET_DEBT - 1, 0, 0)
    p.second()
    assert c.look() is False and p.collected == []
    p.counts = (gctune.QUIET_DEBT - 1, 1, 0)  # a young collection's survivors, not walked again
    p.second()
    assert c.look() is True


async def test_the_quiet_collector_looks_until_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    looks: list[bool] = []

    class Counting(gctune.QuietCollector):
        def look(self) -> bool:
            looks.append(True)
            if len(looks) == 2:
                raise RuntimeError("a failing look is logged, not fatal")
            return False

    monkeypatch.setattr(gctune, "QUIET_LOOK_SECS", 0.01)
    task = asyncio.create_task(gctune.collect_when_quiet(Counting(lambda: 0)))
    while len(looks) < 3:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
