"""The real command line: `peerroom serve` as a process, and `peerroom create-room`."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from asyncio.subprocess import Process
from pathlib import Path

import aiohttp
import pytest

from server.cli import kernel_backlog_cap
from tests.support import free_port


async def read_until(stream: asyncio.StreamReader, pattern: str) -> str:
    seen = ""
    while not re.search(pattern, seen):
        line = await stream.readline()
        if not line:
            break
        seen += line.decode()
    return seen


async def serve(port: int, data_dir: Path, env: dict[str, str], *, out: bool) -> Process:
    """`peerroom serve` on ``port``; its stdout (``out``) or its stderr piped to the test."""
    pipe, devnull = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "serve", "--port", str(port), "--data-dir", str(data_dir),
        stdout=pipe if out else devnull, stderr=devnull if out else pipe, env=env,
    )  # fmt: skip


async def listen_backlog(port: int) -> str | None:
    """The backlog of the socket listening on ``port`` (its Send-Q in `ss`), if `ss` is here."""
    if not shutil.which("ss"):
        return None
    ss = await asyncio.create_subprocess_exec(
        "ss", "-ltnH", f"sport = :{port}", stdout=asyncio.subprocess.PIPE
    )
    listing = (await ss.communicate())[0].decode()
    return listing.split()[2]


async def test_serve_on_a_fresh_data_dir_prints_a_room_that_works(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERROOM_")}
    env["PEERROOM_PORT"] = str(port + 1)  # the flag below wins over this
    env["PEERROOM_LISTEN_BACKLOG"] = "777"
    proc = await serve(port, tmp_path / "data", env, out=True)
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(15):
            out = await read_until(proc.stdout, r"Phone PIN")
        assert f"http://127.0.0.1:{port}/" in out
        assert "Admin token" in out
        invite = re.search(r"Invite link for peers:\s+(\S+)", out)
        assert invite is not None
        async with aiohttp.ClientSession() as http:
            async with http.get(invite.group(1)) as r:
                assert r.status == 200
            async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                assert r.status == 200
        assert await listen_backlog(port) in ("777", None)
        admin = (tmp_path / "data" / "admin_token").read_text().strip()
        assert admin in out  # shown once, on the first start
        assert oct((tmp_path / "data" / "admin_token").stat().st_mode & 0o777) == "0o600"
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0  # a clean shutdown on SIGTERM


async def test_two_servers_started_at_once_on_a_fresh_data_dir_make_one_welcome_room(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERROOM_")}
    env["PEERROOM_SECRET"] = "s" * 43  # as many nodes must share (docs/deploy.md)
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server",
            "serve",
            "--port",
            str(free_port()),
            "--data-dir",
            str(tmp_path / "data"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=env,
        )
        for _ in range(2)
    ]
    try:
        outs = []
        for proc in procs:
            assert proc.stdout is not None
            async with asyncio.timeout(20):
                outs.append(await read_until(proc.stdout, r"Create another room"))
        assert all("peerroom is up" in out for out in outs), outs
        assert sum(out.count("Welcome room") for out in outs) == 1, outs
    finally:
        for proc in procs:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 10)


async def test_a_backlog_the_kernel_cuts_is_named_at_start(tmp_path: Path) -> None:
    cap = kernel_backlog_cap()
    if cap is None or cap >= 2**31 - 1:
        pytest.skip("no /proc/sys/net/core/somaxconn here, or no backlog above it")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERROOM_")}
    env["PEERROOM_LISTEN_BACKLOG"] = str(cap + 1)
    proc = await serve(port, tmp_path / "data", env, out=False)
    try:
        assert proc.stderr is not None
        async with asyncio.timeout(15):
            err = await read_until(proc.stderr, r"listen backlog")
        assert f"listen backlog {cap + 1} is cut to {cap} by the kernel" in err, err
        assert await listen_backlog(port) in (str(cap), None)
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


async def _gc_counts(http: aiohttp.ClientSession, base: str) -> dict[str, float]:
    """Collections so far by generation, from the server's /metrics."""
    async with http.get(f"{base}/metrics") as r:
        text = await r.text()
    prefix = "peerroom_gc_pause_seconds_count"
    return {
        line.split('"')[1]: float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith(prefix)
    }


async def test_serve_collects_a_bursts_garbage_once_it_is_quiet(tmp_path: Path) -> None:
    """gctune.QuietCollector in the real process: a burst of joins and raises leaves far
    fewer objects than an automatic young collection waits for (50,000), yet once no
    message has come in for a second the young and middle generations are collected."""
    import socketio

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERROOM_")}
    proc = await serve(port, tmp_path / "data", env, out=True)
    clients: list[socketio.AsyncClient] = []
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(15):
            await read_until(proc.stdout, r"Create another room")
        admin = (tmp_path / "data" / "admin_token").read_text().strip()
        async with aiohttp.ClientSession() as http:
            invites = []
            for i in range(8):
                async with http.post(
                    f"{base}/api/rooms",
                    json={"title": f"Circle {i}"},
                    headers={"Authorization": f"Bearer {admin}"},
                ) as r:
                    invites.append((await r.json())["invite_token"])
            before = await _gc_counts(http, base)
            for i in range(80):
                c = socketio.AsyncClient()
                auth = {"token": invites[i % 8], "name": f"Guest {i}"}
                await c.connect(base, auth=auth, transports=["websocket"])
                clients.append(c)
            for c in clients[:40]:
                await c.call("hand.raise", {})
            async with asyncio.timeout(8):
                while (await _gc_counts(http, base))["1"] == before["1"]:
                    await asyncio.sleep(0.25)
            after = await _gc_counts(http, base)
            assert after["2"] == before["2"]  # never a full collection
    finally:
        for c in clients:
            await c.disconnect()
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


def test_create_room_prints_links_and_pin(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERROOM_")}
    result = subprocess.run(
        [sys.executable, "-m", "server", "create-room", "Tuesday evening circle",
         "--data-dir", str(tmp_path), "--public-url", "https://peer.example.org"],
        capture_output=True, text=True, env=env, timeout=30, check=True,
    )  # fmt: skip
    assert 'Room "Tuesday evening circle"' in result.stdout
    assert re.search(r"Facilitator link \(keep it private\): https://peer.example.org/r/\S+",
                     result.stdout)  # fmt: skip
    assert re.search(r"Phone PIN:\s+\d{6}", result.stdout)


def test_create_room_refuses_a_title_of_two_lines(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERROOM_")}
    result = subprocess.run(
        [sys.executable, "-m", "server", "create-room", "Tuesday\ncircle",
         "--data-dir", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=30,
    )  # fmt: skip
    assert result.returncode == 1
    assert "one line of text" in result.stderr and "Traceback" not in result.stderr


def test_a_bad_flag_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "server", "serve", "--wire", "xml"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2
    assert "invalid choice: 'xml'" in result.stderr


@pytest.mark.parametrize("value", ["abc", "-1"])
def test_a_bad_environment_value_is_a_clear_error(tmp_path: Path, value: str) -> None:
    env = {**os.environ, "PEERROOM_PORT": value, "PEERROOM_DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "server", "serve"], capture_output=True, text=True, env=env,
        timeout=30,
    )  # fmt: skip
    assert result.returncode == 2
    assert "PEERROOM_PORT" in result.stderr
