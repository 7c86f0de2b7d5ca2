"""Twilio-style voice webhooks (TwiML), under ``/phone/twilio/``: the first phone adapter.

Other providers speak TwiML too (docs/phone.md says what is and is not verified).
Every request must carry a valid ``X-Twilio-Signature`` (twilio's ``RequestValidator``,
keyed by the auth token), or it gets 403. The flow, one webhook per step::

    voice ──1──> pin (3 tries) ──> wait (waiting room: hold, check every few seconds)
      │                  └────────> the room's conference, <Dial hangupOnStar>
      └──2──> checkin                 │ star: room ──> menu: 9 hand, 6 mute,
               1 ok / 2 call back /   │                # place in line, 0 back
               3 talk now             └─ back into the conference, state intact

``checkin`` is also the voice URL of a number of its own. Each TwiML response names its
next steps with a step counter (``?s=N``); Twilio repeating a request for the same call
and step gets the first answer again, so a retried webhook never toggles a hand twice.
A caller's state lives in the room (:class:`~server.phone.lines.PhoneLines`); the
call's progress through the prompts in :mod:`server.phone.twilio_calls`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Final

from aiohttp import web
from multidict import MultiDict
from twilio.twiml.voice_response import VoiceResponse

from rooms.errors import ErrorCode, RoomError
from server.errors import http_error
from server.keys import PHONE, SETTINGS
from server.phone import prompts
from server.phone.lines import CheckinStatus, Notice, valid_call_id, valid_pin
from server.phone.numbers import Caller
from server.phone.twilio_calls import (
    ENDED_STATUSES,
    PREFIX,
    TwilioAdapter,
    TwilioCall,
    conference_name,
)
from server.phone.twilio_rest import TwilioRest

log = logging.getLogger(__name__)

MAX_PIN_TRIES: Final = 3
MAX_PROMPT_TRIES: Final = 3  # "sorry, I did not get that" this often, then goodbye
MAX_NUMBER_TRIES: Final = 2
MIN_CALLBACK_DIGITS: Final = 7  # shorter than any dialable number
TALK_RING_SECS: Final = 25  # about five rings: then the caller hears they will be called back
MENU_SECS: Final = 6  # the menu waits this long for a key, then puts the caller back
PROMPT_SECS: Final = 8
PIN_SECS: Final = 12  # keying in six digits on an unfamiliar phone takes a while
HOLD_PAUSE_SECS: Final = 8  # a waiting caller hears silence this long between checks
HOLD_SPEAK_EVERY: Final = 4  # ...and a reassuring word every fourth check (half a minute)
REPLIES_KEPT: Final = 16  # answers kept per call for replayed webhooks
_DIGITS: Final = re.compile(r"[0-9*#]{0,20}")


TWILIO = web.AppKey("twilio", TwilioAdapter)

# TwiML building blocks --------------------------------------------------------------


def _why_ended(tc: TwilioCall) -> str:
    return prompts.ENDED.get(tc.ended or "", prompts.SORRY_OUR_SIDE)


def _say(*lines: str) -> VoiceResponse:
    r = VoiceResponse()
    for line in lines:
        r.say(line)
    return r


def _goodbye(*lines: str) -> VoiceResponse:
    r = _say(*lines)
    r.hangup()
    return r


def _ask(
    a: TwilioAdapter,
    tc: TwilioCall,
    step: str,
    prompt: str,
    *,
    before: tuple[str, ...] = (),
    digits: int | None = 1,
    secs: int = PROMPT_SECS,
    **params: str,
) -> VoiceResponse:
    """Say ``before``, then gather keys for ``step``; silence goes to ``step`` too."""
    r = _say(*before)
    options: dict[str, Any] = {"num_digits": digits} if digits else {"finish_on_key": "#"}
    g = r.gather(action=a.url(tc, step, **params), method="POST", timeout=secs, **options)
    g.say(prompt)
    r.redirect(a.url(tc, step, **params), method="POST")
    return r


def _not_heard(a: TwilioAdapter, tc: TwilioCall, step: str, prompt: str) -> VoiceResponse:
    tc.prompt_tries += 1
    if tc.prompt_tries >= MAX_PROMPT_TRIES:
        return _goodbye(prompts.NOT_HEARD, prompts.GOODBYE)
    return _ask(a, tc, step, prompt, before=(prompts.NOT_HEARD,))


async def _enter_room(a: TwilioAdapter, tc: TwilioCall, *lines: str) -> VoiceResponse:
    """Into the room's conference, muted or not as the room says."""
    call = a.lines.get(tc.sid)
    if tc.ended:
        return _goodbye(_why_ended(tc))
    if call is None:
        return _goodbye(prompts.SORRY_OUR_SIDE)
    where = await a.lines.where(tc.sid)
    if where["floor"]:  # said on every way back while the floor is theirs
        lines = (*lines, prompts.YOUR_TURN)
        if not where["mic"]:
            lines = (*lines, prompts.HOW_TO_UNMUTE)
    r = _say(*lines)
    dial = r.dial(action=a.url(tc, "room"), method="POST", hangup_on_star=True)
    dial.conference(
        conference_name(call.room_id),
        muted=not where["mic"],
        beep=False,
        start_conference_on_enter=True,
        end_conference_on_exit=False,
        wait_url="",  # alone in the conference: quiet, not hold music
        status_callback=f"{a.webhook_base}{PREFIX}/conference",
        status_callback_event="join leave",
        status_callback_method="POST",
    )
    tc.dialed = True
    return r


def _hold(a: TwilioAdapter, tc: TwilioCall, *, first: bool) -> VoiceResponse:
    if first:
        r = _say(prompts.WAITING)
    elif tc.holds % HOLD_SPEAK_EVERY == 0:
        r = _say(prompts.STILL_WAITING)
    else:
        r = VoiceResponse()
    r.pause(length=HOLD_PAUSE_SECS)
    r.redirect(a.url(tc, "wait"), method="POST")
    return r


# steps ------------------------------------------------------------------------------

Form = Mapping[str, str]
Step = Callable[[TwilioAdapter, TwilioCall, Form, Mapping[str, str]], Awaitable[VoiceResponse]]


async def voice(
    a: TwilioAdapter, tc: TwilioCall, form: Form, q: Mapping[str, str]
) -> VoiceResponse:
    return _ask(a, tc, "start", prompts.WELCOME)


async def start(
    a: TwilioAdapter, tc: TwilioCall, form: Form, q: Mapping[str, str]
) -> VoiceResponse:
    digits = form.get("Digits", "")
    if digits == "1":
        tc.prompt_tries = 0
        return _ask(a, tc, "pin", prompts.ENTER_PIN, digits=None, secs=PIN_SECS)
    if digits == "2":
        tc.prompt_tries = 0
        return _ask(a, tc, "checkin/choice", prompts.CHECKIN)
    return _not_heard(a, tc, "start", prompts.WELCOME)


async def pin(a: TwilioAdapter, tc: TwilioCall, form: Form, q: Mapping[str, str]) -> VoiceResponse:
    try:
        call = await a.lines.join(tc.sid, valid_pin(form.get("Digits", "")), tc.caller, a)
    except RoomError as e:
        if e.code is ErrorCode.UNAVAILABLE:
            return _goodbye(prompts.SORRY_OUR_SIDE)
        if e.code is not ErrorCode.BAD_PIN:
            return _goodbye(e.message, prompts.GOODBYE)  # locked, full, banned: said plainly
        tc.pin_tries += 1
        if tc.pin_tries >= MAX_PIN_TRIES:
            return _goodbye(prompts.PIN_FAILED)
        return _ask(
            a, tc, "pin", prompts.ENTER_PIN, before=(prompts.PIN_AGAIN,), digits=None, secs=PIN_SECS
        )
    tc.room_id = call.room_id
    if call.waiting:
        return _hold(a, tc, first=True)
    if call.resumed:
        return await _enter_room(a, tc, prompts.BACK_IN_ROOM, prompts.IN_ROOM)
    return await _enter_room(a, tc, prompts.IN_ROOM)


async def wait(a: TwilioAdapter, tc: TwilioCall, form: Form, q: Mapping[str, str]) -> VoiceResponse:
    tc.holds += 1
    call = a.lines.get(tc.sid)
    if tc.ended or call is None:
        return _goodbye(_why_ended(tc))
    if call.waiting:
        return _hold(a, tc, first=False)
    return await _enter_room(a, tc, prompts.LET_IN, prompts.IN_ROOM)


async def room(a: TwilioAdapter, tc: TwilioCall, form: Form, q: Mapping[str, str]) -> VoiceResponse:
    """The ``<Dial>`` ended: the caller pressed star, was removed, or hung up."""
    tc.dialed = False
    if form.get("CallStatus") in ENDED_STATUSES:
        await a.lines.drop(tc.sid)
        return VoiceResponse()
    if tc.ended:
        return _goodbye(_why_ended(tc))
    tc.prompt_tries = 0
    return _menu(a, tc)


def _menu(a: TwilioAdapter, tc: TwilioCall, *before: str) -> VoiceResponse:
    r = _say(*before)
    g = r.gather(action=a.url(tc, "menu"), method="POST", timeout=MENU_SECS, num_digits=1)
    g.say(prompts.MENU)
    r.redirect(a.url(tc, "back"), method="POST")  # no key: back into the room
    return r


async def menu(a: TwilioAdapter, tc: TwilioCall, form: Form, q: Mapping[str, str]) -> VoiceResponse:
    digits = form.get("Digits", "")
    if tc.ended:
        return _goodbye(_why_ended(tc))
    try:
        if digits == "9":
            r = await a.lines.keys(tc.sid, "*9")
            said = (
                [prompts.HAND_UP, prompts.place(r["position"])]
                if r["hand"]
                else [prompts.HAND_DOWN]
            )
        elif digits == "6":
            r = await a.lines.keys(tc.sid, "*6")
            said = [prompts.UNMUTED if r["mic"] else prompts.MUTED]
        elif digits == "#":
            said = [prompts.place((await a.lines.where(tc.sid))["position"])]
        elif digits == "0":
            said = []
        else:
            tc.prompt_tries += 1
            if tc.prompt_tries >= MAX_PROMPT_TRIES:
                return await _enter_room(a, tc)
            return _menu(a, tc, prompts.NOT_HEARD)
    except RoomError:  # the room let go of the call meanwhile
        return _goodbye(_why_ended(tc))
    tc.prompt_tries = 0
    return await _enter_room(a, tc, *said)


async def back(a: TwilioAdapter, tc: TwilioCall, form: Form, q: Mapping[str, str]) -> VoiceResponse:
    return await _enter_room(a, tc)


# the check-in line ------------------------------------------------------------------

_CHOICES: Final = {"1": CheckinStatus.OK, "2": CheckinStatus.CALLBACK, "3": CheckinStatus.TALK}


async def checkin(
    a: TwilioAdapter, tc: TwilioCall, form: Form, q: Mapping[str, str]
) -> VoiceResponse:
    return _ask(a, tc, "checkin/choice", prompts.CHECKIN)


async def checkin_choice(
    a: TwilioAdapter, tc: TwilioCall, form: Form, q: Mapping[str, str]
) -> VoiceResponse:
    status = _CHOICES.get(form.get("Digits", ""))
    if status is None:
        return _not_heard(a, tc, "checkin/choice", prompts.CHECKIN)
    if status.needs_number and tc.caller.withheld:
        return _ask(
            a,
            tc,
            "checkin/number",
            prompts.CHECKIN_NUMBER,
            digits=None,
            secs=20,
            status=status.value,
        )
    return await _save_checkin(a, tc, tc.caller, status)


async def checkin_number(
    a: TwilioAdapter, tc: TwilioCall, form: Form, q: Mapping[str, str]
) -> VoiceResponse:
    """A caller with a hidden number asked to be called: the number they key in."""
    try:
        status = CheckinStatus(q.get("status", ""))
    except ValueError:
        return _ask(a, tc, "checkin/choice", prompts.CHECKIN)
    typed = Caller.parse(form.get("Digits", ""))
    if typed.number is None or len(typed.number.lstrip("+")) < MIN_CALLBACK_DIGITS:
        tc.number_tries += 1
        if tc.number_tries < MAX_NUMBER_TRIES:
            return _ask(
                a, tc, "checkin/number", prompts.CHECKIN_NUMBER,
                before=(prompts.CHECKIN_NUMBER_AGAIN,), digits=None, secs=20, status=status.value,
            )  # fmt: skip
        typed = Caller(None)  # still recorded: a check-in that asks for a call is never lost
    return await _save_checkin(a, tc, typed, status)


async def _save_checkin(
    a: TwilioAdapter, tc: TwilioCall, caller: Caller, status: CheckinStatus
) -> VoiceResponse:
    try:
        await a.lines.checkin(tc.sid, caller, status)
    except Exception as e:
        if isinstance(e, RoomError) and e.code is ErrorCode.RATE_LIMITED:
            # Asked several times within the hour, on new calls: theirs is with the team.
            return _goodbye(prompts.CHECKIN_ALREADY, prompts.NOT_A_CRISIS_LINE, prompts.GOODBYE)
        log.exception("call %s: a check-in could not be saved", tc.sid)
        return _ask(a, tc, "checkin/choice", prompts.CHECKIN, before=(prompts.CHECKIN_NOT_SAVED,))
    if status is CheckinStatus.TALK and a.talk_number:
        r = _say(prompts.TALK_CONNECTING)
        dial = r.dial(action=a.url(tc, "checkin/talked"), method="POST", timeout=TALK_RING_SECS)
        dial.number(a.talk_number)
        return r
    if status.needs_number and caller.withheld:
        return _goodbye(prompts.CHECKIN_NO_NUMBER, prompts.NOT_A_CRISIS_LINE, prompts.GOODBYE)
    if status is CheckinStatus.TALK:
        return _goodbye(prompts.CHECKIN_DONE["talk"], prompts.NOT_A_CRISIS_LINE, prompts.GOODBYE)
    return _goodbye(prompts.CHECKIN_DONE[status.value])


async def checkin_talked(
    a: TwilioAdapter, tc: TwilioCall, form: Form, q: Mapping[str, str]
) -> VoiceResponse:
    """After putting a "talk now" caller through: they talked, or nobody answered (the
    check-in stays open either way, for a peer support worker to follow up)."""
    if form.get("DialCallStatus") == "completed":
        return _goodbye(prompts.GOODBYE)
    return _goodbye(prompts.TALK_NO_ANSWER, prompts.NOT_A_CRISIS_LINE, prompts.GOODBYE)


# callbacks: no TwiML to follow ------------------------------------------------------


async def status(
    a: TwilioAdapter, tc: TwilioCall, form: Form, q: Mapping[str, str]
) -> VoiceResponse:
    """The call's status callback: a call that ended is a drop (the place is kept)."""
    if form.get("CallStatus") in ENDED_STATUSES:
        await a.ended(tc.sid)
    return VoiceResponse()


async def conference(
    a: TwilioAdapter, tc: TwilioCall, form: Form, q: Mapping[str, str]
) -> VoiceResponse:
    """The conference's status callback: where we learn its SID for the REST API."""
    sid = form.get("ConferenceSid", "")
    if form.get("StatusCallbackEvent") == "participant-join" and 0 < len(sid) <= 64:
        tc.conference_sid = sid
    return VoiceResponse()


# the webhook wrapper: signature, call, replay, never a 500 ----------------------------

STEPS: Final[dict[str, tuple[Step, bool]]] = {  # path -> (step, replayable)
    "voice": (voice, True),
    "start": (start, True),
    "pin": (pin, True),
    "wait": (wait, True),
    "room": (room, True),
    "menu": (menu, True),
    "back": (back, True),
    "checkin": (checkin, True),
    "checkin/choice": (checkin_choice, True),
    "checkin/number": (checkin_number, True),
    "checkin/talked": (checkin_talked, True),
    "status": (status, False),
    "conference": (conference, False),
}


async def _form(request: web.Request) -> MultiDict[str]:
    """The posted fields, text only; garbage keys (not 0-9, star, hash) are dropped,
    so a step sees them as silence and says sorry."""
    try:
        raw = await request.post()
    except (web.HTTPRequestEntityTooLarge, ValueError, LookupError):
        # LookupError: an unknown charset in the Content-Type ("charset=nonsense").
        raise http_error(ErrorCode.BAD_REQUEST, "The request body is unreadable.") from None
    return MultiDict((k, v) for k, v in raw.items() if isinstance(v, str))


async def _verified(request: web.Request) -> tuple[TwilioAdapter, MultiDict[str]]:
    """The adapter and the posted fields of a request Twilio signed; 404 or 403 else."""
    a = request.app.get(TWILIO)
    if a is None:
        raise http_error(ErrorCode.NOT_FOUND, "The Twilio phone line is not configured.")
    form = await _form(request)
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or not a.validator.validate(a.signed_url(request), form, signature):
        raise http_error(ErrorCode.FORBIDDEN, "Bad or missing X-Twilio-Signature.")
    a.learn_base(request)
    return a, form


def _handler(
    name: str, step: Step, replayable: bool
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        a, form = await _verified(request)
        try:
            sid = valid_call_id(form.get("CallSid"))
        except RoomError as e:
            raise http_error(e.code, e.message) from None
        if replayable and a.is_over(sid):
            # A step of a call Twilio said was over: a replay (Twilio itself sends none).
            log.warning("call %s: a webhook after the call ended: hung up", sid)
            return web.Response(text=str(VoiceResponse().hangup()), content_type="text/xml")
        tc = a.call(sid, Caller.parse(form.get("From")))
        if not _DIGITS.fullmatch(form.get("Digits", "")):
            form.popall("Digits")
        key = (name, request.query.get("s", ""))
        async with tc.lock:
            cached = tc.replies.get(key) if replayable else None
            if cached is None:
                try:
                    twiml = await step(a, tc, form, request.query)
                except Exception:
                    log.exception("call %s: step %s failed", sid, name)
                    twiml = _goodbye(prompts.SORRY_OUR_SIDE)
                cached = str(twiml)
                if replayable:
                    tc.replies[key] = cached
                    while len(tc.replies) > REPLIES_KEPT:
                        tc.replies.popitem(last=False)
        return web.Response(text=cached, content_type="text/xml")

    handle.__name__ = f"twilio_{name.replace('/', '_')}"
    return handle


async def announce(request: web.Request) -> web.Response:
    """What Twilio plays to one caller in the conference (``AnnounceUrl``): the floor is
    theirs, or a facilitator invites them to speak."""
    a, _ = await _verified(request)
    r = VoiceResponse()
    try:
        notice = Notice(request.query.get("notice", ""))
        status = await a.lines.where(request.query.get("call", ""))
    except (ValueError, RoomError):
        return web.Response(text=str(r), content_type="text/xml")
    r.say(prompts.YOUR_TURN if notice is Notice.FLOOR else prompts.ASK_UNMUTE)
    if not status["mic"]:
        r.say(prompts.HOW_TO_UNMUTE)
    return web.Response(text=str(r), content_type="text/xml")


def add_routes(app: web.Application) -> None:
    for name, (step, replayable) in STEPS.items():
        app.router.add_post(f"{PREFIX}/{name}", _handler(name, step, replayable))
    app.router.add_post(f"{PREFIX}/announce", announce)
    app.cleanup_ctx.append(_twilio_ctx)


async def _twilio_ctx(app: web.Application) -> AsyncIterator[None]:
    """Runs after the service context: the phone lines exist by now."""
    s = app[SETTINGS]
    if not (s.twilio_auth_token and s.twilio_account_sid):
        yield
        return
    rest = TwilioRest.open(
        base=s.twilio_api_base, account_sid=s.twilio_account_sid, auth_token=s.twilio_auth_token
    )
    adapter = TwilioAdapter(
        app[PHONE],
        rest,
        auth_token=s.twilio_auth_token,
        webhook_base=s.twilio_webhook_base,
        talk_number=s.twilio_talk_number,
    )
    app[TWILIO] = adapter
    adapter.start()
    log.info("Twilio phone line on: voice webhook at %s%s/voice", adapter.webhook_base, PREFIX)
    yield
    await adapter.close()
