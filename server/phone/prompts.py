"""Every sentence the phone line speaks, in one place: short, plain, one step at a time.

Callers may be anxious, on a poor line, or new to this: say what to press, and what
happened. Never read out a number or a name.
"""

from __future__ import annotations

from typing import Final

WELCOME: Final = (
    "Welcome to peer room. To join your group, press 1. To check in with the team, press 2."
)
ENTER_PIN: Final = "Please enter your group's PIN, then press hash."
PIN_AGAIN: Final = "Sorry, that PIN did not match a group. Please try again."
PIN_FAILED: Final = (
    "Sorry, that PIN did not work. Please check it with your facilitator and call again. Goodbye."
)
NOT_HEARD: Final = "Sorry, I did not get that."
GOODBYE: Final = "Goodbye."
WAITING: Final = "You are in the waiting room. A facilitator will let you in soon."
STILL_WAITING: Final = "Still waiting. Thank you for your patience."
LET_IN: Final = "A facilitator has let you in."
IN_ROOM: Final = "You are in the room, and muted. Press star at any time for the menu."
BACK_IN_ROOM: Final = "Welcome back. You kept your place."
MENU: Final = (
    "Menu. Press 9 to raise or lower your hand. Press 6 to mute or unmute. "
    "Press hash to hear your place in line. Press 0 to go back."
)
HAND_UP: Final = "Your hand is up."
HAND_DOWN: Final = "Your hand is down."
MUTED: Final = "You are muted."
YOUR_TURN: Final = "It is your turn to speak."
ASK_UNMUTE: Final = "A facilitator invites you to speak."
HOW_TO_UNMUTE: Final = "Press star, then 6, to unmute."
UNMUTED: Final = "You are unmuted. Everyone can hear you."
ENDED: Final = {
    "removed": "A facilitator has removed you from the room. Goodbye.",
    "banned": "A facilitator has removed you from the room. Goodbye.",
    "denied": "The facilitator cannot let you in this time. Goodbye.",
    "ended": "The session has ended. Thank you for joining. Goodbye.",
}
SORRY_OUR_SIDE: Final = "Sorry, something went wrong on our side. Please call again."

CHECKIN: Final = (
    "Press 1 if you are OK. Press 2 if you would like a call back. "
    "Press 3 if you would like to talk to someone now."
)
CHECKIN_NUMBER: Final = (
    "Your number is hidden, so we cannot call you back. "
    "Please enter your phone number, then press hash."
)
CHECKIN_NUMBER_AGAIN: Final = "Sorry, that did not sound like a phone number. Please try again."
CHECKIN_DONE: Final = {
    "ok": "Thank you for checking in. Take care. Goodbye.",
    "callback": "Thank you. Someone from the team will call you back. Goodbye.",
    "talk": (
        "Thank you. We have told the team you would like to talk now. "
        "Someone will call you as soon as they can."
    ),
}
TALK_CONNECTING: Final = "Thank you. Putting you through to someone from the team now."
TALK_NO_ANSWER: Final = (
    "Sorry, nobody could answer right now. We have told the team you would like to talk, "
    "and someone will call you as soon as they can."
)
CHECKIN_NO_NUMBER: Final = (
    "We have told the team, but without a number they cannot call you back. "
    "Please call again from a phone that shows its number."
)
CHECKIN_NOT_SAVED: Final = "Sorry, we could not save that. Please try again."
CHECKIN_ALREADY: Final = (
    "You asked us to call you a short while ago. Your request is with the team, "
    "and someone will call you as soon as they can."
)
NOT_A_CRISIS_LINE: Final = (
    "This is not a crisis line. If you are in danger, hang up and call your local emergency number."
)


def place(position: int | None) -> str:
    if position is None:
        return HAND_DOWN
    if position == 1:
        return "You are first in line."
    return f"You are number {position} in line."
