"""Twilio calls on this node: each call's progress through the prompts, and the sink
that carries a room's decisions (mute, remove) to a call through Twilio's REST API.

The room holds everything that matters about a caller (hand, mic, place); this keeps
only what the prompts need: the step counter and the answers already given (so a
replayed webhook gets the same answer), tries left, and whether the caller is in the
conference right now or in a menu.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlencode

from aiohttp import web
from twilio.request_validator import RequestValidator

from server.phone.lines import Notice, PhoneCall, PhoneLines
from server.phone.numbers import Caller
from server.phone.twilio_rest import TwilioRest
from server.tasks import stop_tasks

log = logging.getLogger(__name__)

PREFIX: Final = "/phone/twilio"
CALL_KEPT_SECS: Final = 6 * 3600.0  # a call whose end we never heard is forgotten after this
# Calls Twilio said were over, kept this long (the most recent ENDED_KEPT): a signed
# webhook of one replayed later (a captured PIN step) must not bring a ghost caller back.
ENDED_KEPT: Final = 10_000
# Twilio's status callback can be lost (this node restarting as the call ends, a proxy
# refusing it); then a caller who hung up would stay "connected" in the room. Every
# CHECK_SECS, calls no webhook has mentioned for QUIET_SECS are looked up through the
# REST API (at most CHECKS_PER_ROUND a round), and an ended one is a drop, as if the
# callback had come.
CHECK_SECS: Final = 60.0
QUIET_SECS: Final = 120.0
CHECKS_PER_ROUND: Final = 100
ENDED_STATUSES: Final = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})


def conference_name(room_id: str) -> str:
    return f"peerroom-{room_id}"


@dataclass(slots=True, eq=False)
class TwilioCall:
    """One call's progress through the prompts. The room holds everything else."""

    sid: str
    caller: Caller
    created_at: float
    seen_at: float = 0.0  # the last webhook that named this call
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    step: int = 0
    replies: OrderedDict[tuple[str, str], str] = field(default_factory=OrderedDict)
    pin_tries: int = 0
    prompt_tries: int = 0
    number_tries: int = 0
    holds: int = 0
    room_id: str | None = None
    conference_sid: str | None = None
    dialed: bool = False  # our last answer put the caller in the conference
    ended: str | None = None  # the room let go of the call: removed, banned, denied, ended


class TwilioAdapter:
    """The Twilio calls of this node, and the sink that carries room decisions to them."""

    def __init__(
        self,
        lines: PhoneLines,
        rest: TwilioRest,
        *,
        auth_token: str,
        webhook_base: str | None,
        talk_number: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lines = lines
        self.talk_number = talk_number
        self.rest = rest
        self.validator = RequestValidator(auth_token)
        self.webhook_base = webhook_base.rstrip("/") if webhook_base else ""
        self.clock = clock
        self.calls: dict[str, TwilioCall] = {}
        self._ended: dict[str, float] = {}  # CallSid -> when it ended, oldest first
        self.public_base = self.webhook_base  # else learned from the first signed webhook
        self._tasks: set[asyncio.Task[None]] = set()

    def call(self, sid: str, caller: Caller) -> TwilioCall:
        now = self.clock()
        tc = self.calls.get(sid)
        if tc is None:
            tc = self.calls[sid] = TwilioCall(sid, caller, now)
        tc.seen_at = now
        return tc

    def start(self) -> None:
        self._spawn(self._check_quiet_calls())

    async def ended(self, sid: str, *, known: bool = True) -> None:
        """Twilio says the call is over: a drop (the place is kept for the grace).
        ``known``: Twilio said so (a status callback, a REST lookup), so the call's
        webhooks are answered with a hang-up from now on; not a call merely forgotten."""
        tc = self.calls.pop(sid, None)
        if tc is not None:
            tc.dialed = False
        if known:
            self._ended.pop(sid, None)
            self._ended[sid] = self.clock()
            while len(self._ended) > ENDED_KEPT:
                del self._ended[next(iter(self._ended))]
        await self.lines.drop(sid)

    def is_over(self, sid: str) -> bool:
        """Whether Twilio said this call ended (within :data:`CALL_KEPT_SECS`)."""
        at = self._ended.get(sid)
        return at is not None and self.clock() - at < CALL_KEPT_SECS

    async def _check_quiet_calls(self) -> None:
        while True:
            await asyncio.sleep(CHECK_SECS)
            try:
                await self.check_quiet_calls()
            except Exception:
                log.exception("checking quiet calls failed")

    async def check_quiet_calls(self) -> None:
        """Forget calls past :data:`CALL_KEPT_SECS`; ask Twilio about quiet ones."""
        now = self.clock()
        for old in [c for c in self.calls.values() if now - c.created_at > CALL_KEPT_SECS]:
            await self.ended(old.sid, known=False)
        quiet = [c for c in self.calls.values() if now - c.seen_at >= QUIET_SECS]
        for tc in sorted(quiet, key=lambda c: c.seen_at)[:CHECKS_PER_ROUND]:
            status = await self.rest.call_status(tc.sid)
            if status in ENDED_STATUSES and self.calls.get(tc.sid) is tc:
                log.info("call %s ended (%s), its status callback never came", tc.sid, status)
                await self.ended(tc.sid)
            elif status is not None:
                tc.seen_at = self.clock()  # still on the line: ask again in a while

    def url(self, tc: TwilioCall, step: str, **params: str) -> str:
        """The URL of a next step, with a fresh step number (see the module docstring)."""
        tc.step += 1
        return f"{self.webhook_base}{PREFIX}/{step}?{urlencode({'s': tc.step, **params})}"

    def signed_url(self, request: web.Request) -> str:
        """The URL Twilio signed: the public one when we sit behind a proxy."""
        if self.webhook_base:
            return self.webhook_base + request.path_qs
        return str(request.url)

    def learn_base(self, request: web.Request) -> None:
        """With no webhook base set, REST calls that name our URLs (an announcement)
        use the origin Twilio reached us on, taken from a request whose signature held."""
        if not self.public_base:
            self.public_base = str(request.url.origin())

    # the sink: room decisions to this call ----------------------------------------------

    async def mute(self, call: PhoneCall, muted: bool) -> None:
        tc = self.calls.get(call.call_id)
        if tc is not None and tc.dialed:  # in the menu: the way back is built muted
            self._spawn(self._rest(tc, lambda cf: self.rest.mute(cf, tc.sid, muted)))

    async def remove(self, call: PhoneCall, reason: str) -> None:
        tc = self.calls.get(call.call_id)
        if tc is None:
            return
        tc.ended = reason  # the next webhook of this call says goodbye
        if tc.dialed:  # in the conference: take it out; Twilio then asks the Dial action
            self._spawn(self._rest(tc, lambda cf: self.rest.kick(cf, tc.sid)))

    async def admitted(self, call: PhoneCall) -> None:
        """Nothing to push: a waiting caller's hold checks the room every few seconds."""

    async def notice(self, call: PhoneCall, notice: Notice) -> None:
        """Spoken to the caller alone, in the conference (in the menu, the way back says
        it instead)."""
        tc = self.calls.get(call.call_id)
        if tc is None or not tc.dialed or not self.public_base:
            return
        query = urlencode({"notice": notice.value, "call": tc.sid})
        url = f"{self.public_base}{PREFIX}/announce?{query}"
        self._spawn(self._rest(tc, lambda cf: self.rest.announce(cf, tc.sid, url)))

    async def _rest(
        self, tc: TwilioCall, action: Callable[[str], Coroutine[Any, Any, None]]
    ) -> None:
        sid = tc.conference_sid
        if sid is None and tc.room_id is not None:
            sid = tc.conference_sid = await self.rest.find_conference(conference_name(tc.room_id))
        if sid is None:
            log.warning("call %s: no conference to act on", tc.sid)
            return
        await action(sid)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        await stop_tasks(*self._tasks)
        await self.rest.close()
