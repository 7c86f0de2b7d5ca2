"""Twilio's Conference Participants REST API: the way a moderator's mute or removal
(or the floor, or an invitation to unmute) reaches a caller. The same paths work on
compatible APIs (``PEERROOM_TWILIO_API_BASE``).

A small aiohttp client rather than twilio's ``Client``: that one is synchronous (it
would block the event loop for a network round trip) and three calls do not need it.
It also reads a call's status, to notice a call whose end was never heard. Each call
is best effort: a failure is logged (call and conference ids only) and the
room's own state stays right, since every return to the conference is built from it.
"""

from __future__ import annotations

import base64
import logging
from typing import Any, Final
from urllib.parse import quote

import aiohttp

log = logging.getLogger(__name__)

API_VERSION: Final = "2010-04-01"
REQUEST_TIMEOUT_SECS: Final = 10.0  # Twilio answers in well under a second; give up after this


class TwilioRest:
    def __init__(self, session: aiohttp.ClientSession, *, base: str, account_sid: str) -> None:
        self._http = session
        self._account = f"{base.rstrip('/')}/{API_VERSION}/Accounts/{quote(account_sid, safe='')}"

    @classmethod
    def open(cls, *, base: str, account_sid: str, auth_token: str) -> TwilioRest:
        session = aiohttp.ClientSession(
            headers={"Authorization": _basic_auth(account_sid, auth_token)},
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECS),
        )
        return cls(session, base=base, account_sid=account_sid)

    async def close(self) -> None:
        await self._http.close()

    def _participant(self, conference_sid: str, call_sid: str) -> str:
        return (
            f"{self._account}/Conferences/{quote(conference_sid, safe='')}"
            f"/Participants/{quote(call_sid, safe='')}.json"
        )

    async def find_conference(self, friendly_name: str) -> str | None:
        """The SID of the in-progress conference with this name, if Twilio has one."""
        params = {"FriendlyName": friendly_name, "Status": "in-progress"}
        body = await self._request("GET", f"{self._account}/Conferences.json", params=params)
        conferences = body.get("conferences") if isinstance(body, dict) else None
        if isinstance(conferences, list) and conferences and isinstance(conferences[0], dict):
            sid = conferences[0].get("sid")
            return sid if isinstance(sid, str) else None
        return None

    async def call_status(self, call_sid: str) -> str | None:
        """The call's status as Twilio knows it (``in-progress``, ``completed``...), or
        None if it cannot be read now."""
        body = await self._request("GET", f"{self._account}/Calls/{quote(call_sid, safe='')}.json")
        status = body.get("status") if isinstance(body, dict) else None
        return status if isinstance(status, str) else None

    async def mute(self, conference_sid: str, call_sid: str, muted: bool) -> None:
        data = {"Muted": "true" if muted else "false"}
        await self._request("POST", self._participant(conference_sid, call_sid), data=data)

    async def announce(self, conference_sid: str, call_sid: str, url: str) -> None:
        """Play the TwiML at ``url`` to this participant only (Twilio fetches it, signed)."""
        data = {"AnnounceUrl": url, "AnnounceMethod": "POST"}
        await self._request("POST", self._participant(conference_sid, call_sid), data=data)

    async def kick(self, conference_sid: str, call_sid: str) -> None:
        """Take the call out of the conference; Twilio then asks the ``<Dial>`` action
        URL what to do next, and hears that the caller was removed."""
        await self._request("DELETE", self._participant(conference_sid, call_sid))

    async def _request(self, method: str, url: str, **kwargs: Any) -> Any:
        try:
            async with self._http.request(method, url, **kwargs) as r:
                if r.status >= 300:
                    log.warning("Twilio %s %s answered %s", method, _tail(url), r.status)
                    return None
                if r.status == 204:
                    return None
                return await r.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            log.warning("Twilio %s %s failed: %s", method, _tail(url), type(e).__name__)
            return None


def _basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _tail(url: str) -> str:
    """The part of a REST URL worth logging: no account id."""
    for part in ("/Conferences", "/Calls"):
        if part in url:
            return part + url.split(part, 1)[-1]
    return ""
