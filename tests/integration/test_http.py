"""The HTTP rows of the contract: rooms, health, metrics, the client page."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Mapping
from typing import Any

import aiohttp
import pytest

from tests.support import LiveServer, fresh_pg_database


async def request(
    method: str, url: str, *, token: str | None = None, **kw: Any
) -> tuple[int, Any, Mapping[str, str]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, url, headers=headers, **kw) as r,
    ):
        body = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, body, dict(r.headers)


async def test_create_room_needs_the_admin_token(live_server: LiveServer) -> None:
    url = f"{live_server.url}/api/rooms"
    status, body, _ = await request("POST", url, json={"title": "x"})
    assert status == 401 and body["error"]["code"] == "bad_token"  # as the other routes
    status, body, _ = await request("POST", url, token="wrong", json={"title": "x"})
    assert status == 403 and body["error"]["code"] == "forbidden"


async def test_create_room_validates_its_body(live_server: LiveServer) -> None:
    url = f"{live_server.url}/api/rooms"
    tok = live_server.admin_token
    for body in ({}, {"title": ""}, {"title": "x" * 101}, {"title": 5},
                 {"title": "ok", "waiting_room": "yes"}, {"title": "a\u0000b"},
                 {"title": "two\nlines"}):  # fmt: skip
        status, got, _ = await request("POST", url, token=tok, json=body)
        assert status == 400 and got["error"]["code"] == "bad_request", body
    status, got, _ = await request("POST", url, token=tok, data=b"{not json")
    assert status == 400 and got["error"]["code"] == "bad_request"
    status, got, _ = await request("POST", url, token=tok, data=b"x" * 20000)
    assert status in (400, 413)


async def test_create_room_returns_links_and_a_pin(live_server: LiveServer) -> None:
    room = await live_server.create_room("Circle", waiting_room=True, transcripts_allowed=False)
    assert set(room) == {
        "room_id", "facilitator_token", "invite_token", "phone_pin", "facilitator_url",
        "invite_url",
    }  # fmt: skip
    assert room["phone_pin"].isdigit() and len(room["phone_pin"]) == 6
    assert room["invite_url"] == f"{live_server.url}/r/{room['invite_token']}"
    status, got, _ = await request(
        "GET", f"{live_server.url}/api/rooms/{room['room_id']}", token=room["facilitator_token"]
    )
    assert status == 200
    assert got["title"] == "Circle" and got["live"] is False
    assert got["settings"]["waiting_room"] is True
    assert got["settings"]["transcripts_allowed"] is False


async def test_get_room_access(live_server: LiveServer) -> None:
    a = await live_server.create_room("A")
    b = await live_server.create_room("B")
    url = f"{live_server.url}/api/rooms/{a['room_id']}"
    assert (await request("GET", url))[0] == 401
    assert (await request("GET", url, token=a["invite_token"]))[0] == 403
    assert (await request("GET", url, token=b["facilitator_token"]))[0] == 403
    assert (await request("GET", url, token=live_server.admin_token))[0] == 200
    missing = f"{live_server.url}/api/rooms/nope"
    status, body, _ = await request("GET", missing, token=live_server.admin_token)
    assert status == 404 and body["error"]["code"] == "not_found"


async def test_healthz(live_server: LiveServer) -> None:
    status, body, _ = await request("GET", f"{live_server.url}/healthz")
    assert status == 200 and body["ok"] is True


async def test_metrics_from_loopback(live_server: LiveServer) -> None:
    status, body, _ = await request("GET", f"{live_server.url}/metrics")
    assert status == 200
    assert "peerroom_connections" in body and "peerroom_live_sessions" in body
    assert 'peerroom_gc_pause_seconds_bucket{generation="0"' in body


async def test_metrics_elsewhere_is_forbidden(server_factory: Any) -> None:
    server = await server_factory(metrics_allow=("10.0.0.0/8",))
    status, _body, _ = await request("GET", f"{server.url}/metrics")
    assert status == 403


async def test_the_client_page_is_served_without_leaking_the_token(
    live_server: LiveServer,
) -> None:
    room = await live_server.create_room()
    for path in ("/", f"/r/{room['invite_token']}"):
        status, body, headers = await request("GET", live_server.url + path)
        assert status == 200 and "<html" in body
        assert headers["Referrer-Policy"] == "no-referrer"
        assert "default-src 'self'" in headers["Content-Security-Policy"]


async def test_api_answers_are_never_cached_nor_sniffed(live_server: LiveServer) -> None:
    """A room's answer holds its phone PIN; an error answer too gets the headers."""
    room = await live_server.create_room()
    url = f"{live_server.url}/api/rooms/{room['room_id']}"
    for token in (room["facilitator_token"], "wrong"):
        status, _body, headers = await request("GET", url, token=token)
        assert status in (200, 403)
        assert headers["Cache-Control"] == "no-store"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"


async def raw_http(server: LiveServer, *parts: bytes) -> tuple[int, bytes]:
    """Send ``parts`` over one connection, a moment apart (so each arrives on its own),
    and return the status and body of the response."""
    host, port = server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        for part in parts:
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0.05)
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
        return int(head.split()[1]), await reader.readexactly(length)
    finally:
        writer.close()


async def test_a_token_that_is_not_utf8_is_refused_not_a_crash(live_server: LiveServer) -> None:
    for path in (b"/api/checkins", b"/api/rooms/x"):
        status, body = await raw_http(
            live_server,
            b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Authorization: Bearer \xff\xfe\r\n\r\n",
        )
        assert status in (401, 403), (path, status, body)
        assert json.loads(body)["error"]["code"] in ("bad_token", "forbidden")


async def test_a_body_that_arrives_in_pieces_is_read_whole(live_server: LiveServer) -> None:
    body = json.dumps({"title": "Arrived in two parts", "waiting_room": True}).encode()
    head = (
        f"POST /api/rooms HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Authorization: Bearer {live_server.admin_token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    status, got = await raw_http(live_server, head + body[:10], body[10:])
    assert status == 201, got
    room = json.loads(got)
    status, info, _ = await request(
        "GET", f"{live_server.url}/api/rooms/{room['room_id']}", token=room["facilitator_token"]
    )
    assert info["title"] == "Arrived in two parts" and info["settings"]["waiting_room"] is True


async def test_api_errors_are_json_with_a_code(live_server: LiveServer) -> None:
    tok = live_server.admin_token
    status, got, _ = await request(
        "POST", f"{live_server.url}/api/rooms", token=tok, data=b"[" * 8000
    )
    assert status == 400 and got["error"]["code"] == "bad_request"
    status, got, _ = await request("GET", f"{live_server.url}/api/no-such-thing")
    assert status == 404 and got["error"]["code"] == "not_found"
    status, got, headers = await request("DELETE", f"{live_server.url}/api/rooms")
    assert status == 405 and got["error"]["code"] == "bad_request"
    assert "POST" in headers["Allow"]


async def test_an_id_that_cannot_be_one_is_not_found_before_any_database(
    server_factory: Any,
) -> None:
    """Room ids are token_urlsafe: a NUL, a slash or 500 characters are none, and on
    PostgreSQL a NUL made the query itself fail (a text 500, not the contract's JSON)."""
    async with fresh_pg_database() as database_url:
        for server in (await server_factory(), await server_factory(database_url=database_url)):
            tok = server.admin_token
            for room_id in ("%00x", "a%2Fb", "x" * 500, "%C3%A9t%C3%A9"):
                url = f"{server.url}/api/rooms/{room_id}"
                status, got, _ = await request("GET", url, token=tok)
                assert status == 404 and got["error"]["code"] == "not_found", (room_id, got)
                url = f"{server.url}/api/checkins/{room_id}/resolve"  # (a 503 "retry" before)
                status, got, _ = await request("POST", url, token=tok)
                assert status == 404 and got["error"]["code"] == "not_found", (room_id, got)
            await server.stop()


async def test_the_access_log_names_routes_never_paths(
    live_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Only /r/<token> was redacted: //r/<token> (a link pasted after a slash) or a
    token in any unmatched path went to the log whole."""
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    room = await live_server.create_room()
    token = room["invite_token"]
    caplog.clear()
    for path in (f"/r/{token}", f"//r/{token}", f"/{token}", f"/api/rooms/{room['room_id']}"):
        await request("GET", live_server.url + path, token=room["facilitator_token"])
    await request("GET", live_server.url + "/static/app.js")
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert len(lines) == 5, lines
    assert not [line for line in lines if token in line or room["room_id"] in line], lines
    assert "GET /r/{token} 200" in lines[0] and "GET - 404" in lines[1], lines
    assert "GET /api/rooms/{room_id} 200" in lines[3], lines
    assert "/static/app.js" in lines[4], lines
