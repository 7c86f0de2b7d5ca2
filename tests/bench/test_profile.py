"""`python -m bench profile`'s summary of py-spy's collapsed stacks."""

from __future__ import annotations

from pathlib import Path

from bench.profile import _function, _package, _summarise


def test_frames_are_grouped_by_function_and_package() -> None:
    assert (
        _function("send (asyncio/selector_events.py:1057)") == "send (asyncio/selector_events.py)"
    )
    assert _package("send (asyncio/selector_events.py)") == "asyncio"
    assert _package("select (selectors.py)") == "selectors.py"


def test_own_and_inclusive_shares(tmp_path: Path) -> None:
    raw = tmp_path / "node-0.txt"
    raw.write_text(
        "main (server/cli.py:10);emit (server/fanout.py:3);write (asyncio/x.py:1) 3\n"
        "main (server/cli.py:10);emit (server/fanout.py:4) 1\n"
    )
    out = _summarise(raw, 5)
    assert "node-0.txt: 4 samples" in out
    assert " 75.0%  asyncio" in out and " 25.0%  server" in out  # own, by package
    assert " 75.0%  write (asyncio/x.py)" in out  # own, by function
    assert "100.0%  emit (server/fanout.py)" in out  # in all: both lines of emit
