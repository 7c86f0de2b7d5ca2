"""Secrets kept in the data directory: made once, even by processes starting together."""

from __future__ import annotations

import multiprocessing as mp
import stat
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from server.tokens import load_or_create

PROCESSES = 6
ROUNDS = 15


def _start(path: str, barrier: Barrier, out: mp.Queue[str]) -> None:
    barrier.wait()
    out.put(load_or_create(Path(path)))


def test_processes_starting_together_share_one_secret(tmp_path: Path) -> None:
    """Two nodes on a fresh data directory used to each make a secret of their own (and
    one could read the other's file empty, half-written): every room link one signed
    was refused by the other (seen in the benchmark's two-node fill)."""
    ctx = mp.get_context("fork")
    for round_ in range(ROUNDS):
        path = tmp_path / f"r{round_}" / "secret_key"
        barrier = ctx.Barrier(PROCESSES)
        out: mp.Queue[str] = ctx.Queue()
        procs = [
            ctx.Process(target=_start, args=(str(path), barrier, out)) for _ in range(PROCESSES)
        ]
        for p in procs:
            p.start()
        values = [out.get(timeout=20) for _ in procs]
        for p in procs:
            p.join(20)
            assert p.exitcode == 0
        assert len(set(values)) == 1, f"round {round_}: {len(set(values))} different secrets"
        assert values[0] and path.read_text() == values[0] + "\n"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert [f.name for f in path.parent.iterdir()] == ["secret_key"]  # no drafts left


def test_a_secret_is_made_once_and_then_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "data" / "admin_token"
    first = load_or_create(path, announce="Admin token")
    assert first in capsys.readouterr().out
    assert load_or_create(path, announce="Admin token") == first
    assert capsys.readouterr().out == ""  # shown only the first time


def test_an_empty_secret_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret_key"
    path.write_text("\n")
    with pytest.raises(SystemExit, match="is empty"):
        load_or_create(path)


def test_a_file_system_without_hard_links_gets_a_clear_refusal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(src: object, dst: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr("server.tokens.os.link", no_links)
    with pytest.raises(SystemExit, match="PEERROOM_SECRET"):
        load_or_create(tmp_path / "secret_key")
    assert list(tmp_path.iterdir()) == []  # the draft is gone too


def test_a_read_only_data_directory_gets_a_clear_refusal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only(*args: object) -> int:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr("server.tokens.os.open", read_only)
    with pytest.raises(SystemExit, match=r"Read-only file system.*PEERROOM_SECRET"):
        load_or_create(tmp_path / "secret_key")
