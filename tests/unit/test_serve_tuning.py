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
