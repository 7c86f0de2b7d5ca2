"""Twilio, as far as the tests need it: a caller following our TwiML through signed
webhooks, and a recording stand-in for Twilio's REST API on 127.0.0.1 (the one fake)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from urllib.parse import urljoin

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "twilio-test-auth-token"
CONFERENCE_SID = "CF" + "1" * 32
WAIT_SECS = 5.0
_sids = itertools.count(1)


def new_call_sid() -> str:
    return f"CA{next(_sids):032d}"


@dataclass
class Recorded:
    method: str
    path: str
    form: dict[str, str]
    query: dict[str, str]
    auth: str | None


@dataclass
class RestRecorder:
    """Twilio's REST API on loopback: answers like Twilio, keeps every request."""

    requests: list[Recorded] = field(default_factory=list)
    call_status: dict[str, str] = field(default_factory=dict)  # call SID -> status; else 500
    runner: web.AppRunner | None = None
    url: str = ""
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    async def _handle(self, request: web.Request) -> web.Response:
        form = dict(await request.post()) if request.method == "POST" else {}
        self.requests.append(
            Recorded(
                request.method,
                request.path,
                {k: str(v) for k, v in form.items()},
                dict(request.query),
                request.headers.get("Authorization"),
            )
        )
        self._changed.set()
        if request.method == "GET" and request.path.endswith("/Conferences.json"):
            return web.json_response({"conferences": [{"sid": CONFERENCE_SID}]})
        if request.method == "GET" and "/Calls/" in request.path:
            sid = request.path.rsplit("/", 1)[-1].removesuffix(".json")
            if sid not in self.call_status:
                return web.Response(status=500)  # Twilio having a bad moment
            return web.json_response({"sid": sid, "status": self.call_status[sid]})
        if request.method == "DELETE":
            return web.Response(status=204)
        return web.json_response({"call_sid": request.path.rsplit("/", 1)[-1][:-5]})

    async def wait_for(self, method: str, path_end: str) -> Recorded:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_SECS
        while True:
            for r in self.requests:
                if r.method == method and r.path.endswith(path_end):
                    return r
            self._changed.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                got = [(r.method, r.path) for r in self.requests]
                raise AssertionError(f"no {method} …{path_end}; got {got}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


class Phone:
    """One phone call into peerroom, driven exactly as Twilio drives its webhooks."""

    def __init__(
        self,
        base_url: str,
        caller: str,
        *,
        sid: str | None = None,
        token: str = AUTH_TOKEN,
        public_base: str | None = None,
    ) -> None:
        self.base_url = base_url
        self.public_base = public_base  # behind a proxy: the URL Twilio signs
        self.caller = caller
        self.sid = sid or new_call_sid()
        self.validator = RequestValidator(token)
        self.twiml: ET.Element = ET.Element("Response")
        self.last_raw = ""
        self.last_status = 0

    def params(self, **extra: str) -> dict[str, str]:
        return {
            "AccountSid": ACCOUNT_SID,
            "ApiVersion": "2010-04-01",
            "CallSid": self.sid,
            "CallStatus": "in-progress",
            "Direction": "inbound",
            "From": self.caller,
            "To": "+15005550006",
            **extra,
        }

    async def post(
        self, url: str, *, signature: str | None = None, raw: bool = False, **extra: str
    ) -> ET.Element:
        """POST a signed webhook to ``url`` (relative URLs resolve like Twilio's)."""
        full = urljoin(self.base_url + "/", url)
        signed = full
        if self.public_base:  # Twilio calls the proxy's URL and signs that one
            signed = urljoin(self.public_base + "/", url)
            full = self.base_url + signed.removeprefix(self.public_base)
        params = self.params(**extra)
        sig = self.validator.compute_signature(signed, params) if signature is None else signature
        async with (
            aiohttp.ClientSession() as http,
            http.post(full, data=params, headers={"X-Twilio-Signature": sig}) as r,
        ):
            self.last_status = r.status
            self.last_raw = await r.text()
        if raw:
            return ET.Element("Response")
        assert self.last_status == 200, (self.last_status, self.last_raw)
        self.twiml = ET.fromstring(self.last_raw)  # noqa: S314 (our own server's TwiML)
        return self.twiml

    # reading the TwiML -----------------------------------------------------------------

    def said(self) -> str:
        return " ".join((e.text or "") for e in self.twiml.iter("Say"))

    def hung_up(self) -> bool:
        return self.twiml.find("Hangup") is not None

    def conference(self) -> ET.Element | None:
        dial = self.twiml.find("Dial")
        return dial.find("Conference") if dial is not None else None

    def muted_in_conference(self) -> bool:
        conf = self.conference()
        assert conf is not None, self.last_raw
        return conf.get("muted") == "true"

    # acting like Twilio on it ------------------------------------------------------------

    async def call(self, path: str = "/phone/twilio/voice") -> ET.Element:
        return await self.post(path)

    async def press(self, digits: str) -> ET.Element:
        gather = self.twiml.find("Gather")
        assert gather is not None, f"nothing is listening for keys: {self.last_raw}"
        return await self.post(gather.get("action", ""), Digits=digits)

    async def silence(self) -> ET.Element:
        """Press nothing: the Gather times out and Twilio goes on to the next verb."""
        redirect = self.twiml.find("Redirect")
        assert redirect is not None and redirect.text, self.last_raw
        return await self.post(redirect.text)

    async def hold_on(self) -> ET.Element:
        return await self.silence()

    async def joined_conference(self) -> None:
        """Twilio's conference status callback: the caller is in."""
        conf = self.conference()
        assert conf is not None, self.last_raw
        await self.post(
            conf.get("statusCallback", ""),
            raw=True,  # a callback: the caller's TwiML stays what it was
            ConferenceSid=CONFERENCE_SID,
            FriendlyName=conf.text or "",
            StatusCallbackEvent="participant-join",
        )
        assert self.last_status == 200, self.last_raw

    async def star(self) -> ET.Element:
        """Press star in the conference: <Dial hangupOnStar> ends, Twilio asks the action."""
        dial = self.twiml.find("Dial")
        assert dial is not None and dial.get("hangupOnStar") == "true", self.last_raw
        return await self.post(dial.get("action", ""), DialCallStatus="completed")

    async def dial_ended(self, call_status: str = "in-progress") -> ET.Element:
        """The conference leg ended (removed, or the caller hung up): the Dial action."""
        dial = self.twiml.find("Dial")
        assert dial is not None, self.last_raw
        return await self.post(
            dial.get("action", ""), DialCallStatus="completed", CallStatus=call_status
        )

    async def hang_up(self) -> None:
        await self.post("/phone/twilio/status", raw=True, CallStatus="completed", CallDuration="42")
        assert self.last_status == 200, self.last_raw

    async def join_room(self, pin: str) -> ET.Element:
        await self.call()
        await self.press("1")
        twiml = await self.press(pin)  # finishOnKey "#": Twilio leaves it out
        if self.conference() is not None:
            await self.joined_conference()
        return twiml
