"""What any participant may do for themselves: hands, presence, chat, consent.

Chat and the consent rule (protocol.md, "Transcripts: the consent rule"): a line
becomes a :class:`~rooms.events.Transcribe` event only if the room allows transcripts,
its sender has consent on at that moment, and it is not a line to moderators. That
event is the only way chat text can reach storage; everything else about a line lives
only in memory and on the wire. Nor does anyone's id reach storage unless they opted
in this session (``RoomState.consented``): an erase by someone who never did is not
stored, nor a moderator's removal of a line that never was (``RoomState.transcribed``).
"""

from __future__ import annotations

from presence.state import set_presence
from rooms.commands import (
    EraseTranscript,
    LowerHand,
    RaiseHand,
    SendChat,
    SetConsent,
    SetPresence,
    ToggleHand,
    ToggleMic,
)
from rooms.errors import ErrorCode, RoomError
from rooms.events import Consent, Transcribe, Unstore
from rooms.hands import position
from rooms.model import Participant
from rooms.tx import Tx

RECENT_MESSAGES_KEPT = 200  # ids a moderator can still remove; older lines have scrolled away


def raise_hand(tx: Tx, p: Participant, cmd: RaiseHand | None = None) -> None:
    if not p.hand:
        tx.put(p.copy_and_replace(hand_ticket=tx.state.next_ticket))
        tx.state = tx.state.copy_and_replace(next_ticket=tx.state.next_ticket + 1)
        tx.hands_changed()
    _reply_hand(tx, p.id)


def lower_hand(tx: Tx, p: Participant, cmd: LowerHand | None = None) -> None:
    if p.hand:
        tx.put(p.copy_and_replace(hand_ticket=None))
        tx.hands_changed()
    _reply_hand(tx, p.id)


def toggle_hand(tx: Tx, p: Participant, cmd: ToggleHand) -> None:
    (lower_hand if p.hand else raise_hand)(tx, p)
    tx.reply["mic"] = tx.participant(p.id).mic


def toggle_mic(tx: Tx, p: Participant, cmd: ToggleMic) -> None:
    tx.updated(set_presence(p, camera=None, mic=not p.mic, away=None))
    _reply_hand(tx, p.id)
    tx.reply["mic"] = not p.mic


def _reply_hand(tx: Tx, pid: str) -> None:
    tx.reply["hand"] = tx.participant(pid).hand
    tx.reply["position"] = position(tx.state.participants, tx.state.settings.queue_order, pid)


def presence(tx: Tx, p: Participant, cmd: SetPresence) -> None:
    after = set_presence(p, camera=cmd.camera, mic=cmd.mic, away=cmd.away)
    if after != p:
        tx.updated(after)


def chat(tx: Tx, p: Participant, cmd: SendChat) -> None:
    state = tx.state
    if not (state.settings.chat_enabled or p.role.is_moderator or cmd.to_moderators):
        # A paused chat pauses the group's lines, never a private note to the facilitators:
        # "can we talk after?" matters most when the room is difficult.
        raise RoomError(ErrorCode.NOT_ALLOWED_NOW, "The facilitator has paused the chat.")
    if cmd.to_moderators and not any(
        m.role.is_moderator and m.connected for m in state.participants
    ):
        # Sent now it would reach nobody, and a facilitator coming back gets no chat
        # history: better the sender knows and can send it again in a moment.
        raise RoomError(
            ErrorCode.NOT_ALLOWED_NOW,
            "No facilitator is connected right now, so a private note would reach nobody. "
            "Try again when they are back.",
        )
    message: dict[str, object] = {
        "id": cmd.message_id,
        "from": p.id,
        "name": p.name,
        "text": cmd.text,
        "ts": tx.now,
    }
    older = state.recent_messages
    transcribed = state.transcribed  # in order, and always among the recent lines
    if len(older) >= RECENT_MESSAGES_KEPT and transcribed and transcribed[0] == older[0]:
        transcribed = transcribed[1:]  # it leaves the window with the oldest line
    stored = not cmd.to_moderators and state.settings.transcripts_allowed and p.consent
    tx.state = state.copy_and_replace(  # one copy: this runs for every chat line
        recent_messages=(*older, cmd.message_id)[-RECENT_MESSAGES_KEPT:],
        transcribed=(*transcribed, cmd.message_id) if stored else transcribed,
    )
    if cmd.to_moderators:
        # A private note: to the moderators and the sender only. It is not a room
        # broadcast, so it carries the current seq without consuming one.
        message["to"] = "moderators"
        audience = dict.fromkeys((*tx.state.moderator_ids(), p.id))
        tx.send(audience, "chat", seq=tx.state.seq, message=message)
    else:
        tx.broadcast("chat", message=message)
        if stored:
            tx.emit(
                Transcribe(
                    room_id=state.room_id,
                    session_id=state.session_id,
                    message_id=cmd.message_id,
                    sender_id=p.id,
                    sender_name=p.name,
                    text=cmd.text,
                    ts=tx.now,
                )
            )
    tx.reply["id"] = cmd.message_id


def consent(tx: Tx, p: Participant, cmd: SetConsent) -> None:
    if cmd.on and not tx.state.settings.transcripts_allowed:
        raise RoomError(ErrorCode.NOT_ALLOWED_NOW, "This room does not keep transcripts.")
    if p.consent != cmd.on:
        tx.put(p.copy_and_replace(consent=cmd.on))
        if cmd.on:
            tx.state = tx.state.copy_and_replace(consented=tx.state.consented | {p.id})
        tx.broadcast("consent", consenting=tx.state.consenting())
        tx.emit(Consent(tx.state.room_id, tx.state.session_id, p.id, cmd.on, tx.now))
    tx.reply["consent"] = cmd.on


def withdraw_all_consent(tx: Tx) -> None:
    """Transcripts were switched off for the room: nobody is being transcribed now."""
    withdrawn = [p for p in tx.state.participants if p.consent]
    if not withdrawn:
        return
    tx.state = tx.state.copy_and_replace(
        participants=tuple(p.copy_and_replace(consent=False) for p in tx.state.participants)
    )
    tx.broadcast("consent", consenting=[])
    for p in withdrawn:
        tx.emit(Consent(tx.state.room_id, tx.state.session_id, p.id, False, tx.now))


def erase(tx: Tx, p: Participant, cmd: EraseTranscript) -> None:
    """Someone who never opted in this session has nothing stored: no erase is kept
    either (it would put their id on disk), and the ack says 0 lines."""
    if p.id not in tx.state.consented:
        tx.reply["erased"] = 0
        return
    tx.emit(Unstore(tx.state.session_id, participant_id=p.id, ts=tx.now))
