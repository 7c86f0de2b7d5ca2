"""Every moderator control of the contract, each checked then done in one place.

Each ``do_*`` takes the transition in progress, the acting participant and the command.
It checks permission first (:mod:`moderation.permissions`), then changes state and
emits events through the :class:`~rooms.tx.Tx`; nothing else changes room state. Every
action is passed to :meth:`~rooms.tx.Tx.audit`, which keeps only what the transcript
access rule needs: the removal or ban of someone who opted in (ids only).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moderation.permissions import (
    require_facilitator,
    require_may_act_on,
    require_moderator,
    require_not_self,
)
from rooms import session
from rooms.commands import (
    Admit,
    AskUnmute,
    ChangeSettings,
    ClearHands,
    Deny,
    End,
    FloorClear,
    FloorGive,
    FloorNext,
    Lock,
    ModLowerHand,
    Mute,
    MuteAll,
    Remove,
    RemoveChat,
    SetRole,
    SetWaitingRoom,
    StopCamera,
)
from rooms.errors import ErrorCode, RoomError
from rooms.events import Disconnect, Unstore
from rooms.model import Participant
from rooms.peer import withdraw_all_consent
from rooms.tx import Tx


def do_lower_hand(tx: Tx, actor: Participant, cmd: ModLowerHand) -> None:
    require_moderator(actor)
    target = tx.participant(cmd.target)
    if target.hand:
        tx.put(target.copy_and_replace(hand_ticket=None))
        tx.hands_changed()
    tx.audit(actor, "hand.lower", target.id)


def do_clear_hands(tx: Tx, actor: Participant, cmd: ClearHands) -> None:
    require_moderator(actor)
    if any(p.hand for p in tx.state.participants):
        tx.state = tx.state.copy_and_replace(
            participants=tuple(p.copy_and_replace(hand_ticket=None) for p in tx.state.participants)
        )
        tx.hands_changed()
    tx.audit(actor, "hands.clear")


def _give_floor(tx: Tx, target: Participant) -> None:
    if tx.state.floor == target.id:
        # Given again to who holds it: not another turn ("quieter first" counts turns).
        if target.hand:
            tx.put(target.copy_and_replace(hand_ticket=None))
            tx.hands_changed()
        return
    tx.put(target.copy_and_replace(hand_ticket=None, turns=target.turns + 1))
    tx.state = tx.state.copy_and_replace(floor=target.id)
    tx.hands_changed()


def _not_here(p: Participant) -> str | None:
    """Why someone with a hand up is passed over by "next": None if they are here."""
    if not p.connected:
        return "reconnecting"
    if p.away:
        return "away"
    return None


def do_floor_next(tx: Tx, actor: Participant, cmd: FloorNext) -> None:
    """The first in the queue who is here gets the floor. Someone whose connection
    dropped, or who said they stepped away, keeps their hand and their place: a turn
    given while they are not there would use up their hand (and, with "quieter first",
    count as their turn)."""
    require_moderator(actor)
    queue = tx.state.hands()
    if not queue:
        raise RoomError(ErrorCode.NOT_ALLOWED_NOW, "Nobody has a hand up.")
    skipped: list[tuple[str, str]] = []
    for pid in queue:
        why = _not_here(tx.participant(pid))
        if why is None:
            break
        skipped.append((pid, why))
    else:
        raise RoomError(
            ErrorCode.NOT_ALLOWED_NOW,
            "Everyone with a hand up is reconnecting or away; their hands keep their places.",
        )
    chosen = queue[len(skipped)]
    _give_floor(tx, tx.participant(chosen))
    tx.reply["floor"] = chosen
    if skipped:
        tx.reply["skipped"] = [pid for pid, _ in skipped]
        names = ", ".join(f"{tx.participant(pid).name} ({why})" for pid, why in skipped)
        tx.reply["note"] = (
            f"{tx.participant(chosen).name} has the floor. Skipped, keeping their place: {names}."
        )
    tx.audit(actor, "floor.next", chosen)


def do_floor_give(tx: Tx, actor: Participant, cmd: FloorGive) -> None:
    require_moderator(actor)
    _give_floor(tx, tx.participant(cmd.target))
    tx.audit(actor, "floor.give", cmd.target)


def do_floor_clear(tx: Tx, actor: Participant, cmd: FloorClear) -> None:
    require_moderator(actor)
    if tx.state.floor is not None:
        tx.state = tx.state.copy_and_replace(floor=None)
        tx.hands_changed()
    tx.audit(actor, "floor.clear")


def do_mute(tx: Tx, actor: Participant, cmd: Mute) -> None:
    target = tx.participant(cmd.target)
    require_may_act_on(actor, target)
    if target.mic:
        tx.updated(target.copy_and_replace(mic=False))
    tx.send([target.id], "you.muted", by=actor.id)
    tx.audit(actor, "mute", target.id)


def do_mute_all(tx: Tx, actor: Participant, cmd: MuteAll) -> None:
    require_moderator(actor)
    for p in tx.state.participants:
        if p.mic and not p.role.is_moderator:
            tx.updated(p.copy_and_replace(mic=False))
            tx.send([p.id], "you.muted", by=actor.id)
    tx.audit(actor, "mute_all")


def do_ask_unmute(tx: Tx, actor: Participant, cmd: AskUnmute) -> None:
    target = tx.participant(cmd.target)
    require_may_act_on(actor, target)
    tx.send([target.id], "you.asked_to_unmute", by=actor.id)
    tx.audit(actor, "ask_unmute", target.id)


def do_stop_camera(tx: Tx, actor: Participant, cmd: StopCamera) -> None:
    target = tx.participant(cmd.target)
    require_may_act_on(actor, target)
    if target.camera:
        tx.updated(target.copy_and_replace(camera=False))
    tx.send([target.id], "you.camera_stopped", by=actor.id)
    tx.audit(actor, "stop_camera", target.id)


def do_remove(tx: Tx, actor: Participant, cmd: Remove) -> None:
    require_not_self(actor, cmd.target, "remove")
    target = tx.participant(cmd.target)
    require_may_act_on(actor, target)
    tx.send([target.id], "you.removed", by=actor.id, reason="banned" if cmd.ban else "removed")
    tx.drop_participant(target.id)
    tx.broadcast("participant.left", id=target.id, reason="removed")
    tx.emit(Disconnect(target.id, target.conn))
    if cmd.ban:
        _ban(tx, target.name, target.ban_keys)
    tx.audit(actor, "ban" if cmd.ban and target.ban_keys else "remove", target.id)


def _ban(tx: Tx, name: str, keys: frozenset[str]) -> None:
    """Keep whoever ``keys`` describe out of this session; the ack says if it held."""
    tx.reply["banned"] = bool(keys)
    if not keys:
        # A caller with a hidden number: nothing to know them by when they call again.
        # Said, not pretended: the facilitator can lock the room instead.
        tx.reply["note"] = (
            f"{name} is out, but their number is hidden, so they cannot be kept out if "
            "they call again. Lock the room to keep new people out."
        )
    tx.state = tx.state.copy_and_replace(banned=tx.state.banned | keys)


def do_lock(tx: Tx, actor: Participant, cmd: Lock) -> None:
    require_moderator(actor)
    tx.change_settings(locked=cmd.locked)
    tx.audit(actor, "lock" if cmd.locked else "unlock")


def do_waiting_room(tx: Tx, actor: Participant, cmd: SetWaitingRoom) -> None:
    """Turning the waiting room off lets in everyone who was waiting."""
    require_moderator(actor)
    if tx.change_settings(waiting_room=cmd.on) and not cmd.on:
        for w in tx.state.waiting:
            session.admit(tx, w, by=actor.id)
    tx.audit(actor, "waiting_room.on" if cmd.on else "waiting_room.off")


def do_admit(tx: Tx, actor: Participant, cmd: Admit) -> None:
    require_moderator(actor)
    w = tx.state.get_waiting(cmd.target)
    if w is None:
        raise RoomError(ErrorCode.NOT_FOUND, "That person is no longer waiting.")
    session.admit(tx, w, by=actor.id)
    tx.audit(actor, "admit", w.id)


def do_deny(tx: Tx, actor: Participant, cmd: Deny) -> None:
    require_moderator(actor)
    w = tx.state.get_waiting(cmd.target)
    if w is None:
        raise RoomError(ErrorCode.NOT_FOUND, "That person is no longer waiting.")
    tx.state = tx.state.copy_and_replace(waiting=tuple(x for x in tx.state.waiting if x.id != w.id))
    tx.send([w.id], "denied", by=actor.id)
    tx.emit(Disconnect(w.id, w.conn))
    tx.waiting_changed()
    if cmd.ban:
        _ban(tx, w.name, w.ban_keys)
    tx.audit(actor, "ban" if cmd.ban and w.ban_keys else "deny", w.id)


def do_set_role(tx: Tx, actor: Participant, cmd: SetRole) -> None:
    require_facilitator(actor)
    require_not_self(actor, cmd.target, "change the role of")
    target = tx.participant(cmd.target)
    if target.role is not cmd.role:
        tx.updated(target.copy_and_replace(role=cmd.role))
        if cmd.role.is_moderator and tx.state.waiting:
            tx.send(
                [target.id],
                "waiting.updated",
                waiting=[{"id": w.id, "name": w.name} for w in tx.state.waiting],
            )
    tx.audit(actor, f"role.{cmd.role.value}", target.id)


def do_settings(tx: Tx, actor: Participant, cmd: ChangeSettings) -> None:
    require_moderator(actor)
    changed = tx.change_settings(
        queue_order=cmd.queue_order,
        chat_enabled=cmd.chat_enabled,
        transcripts_allowed=cmd.transcripts_allowed,
    )
    if "queue_order" in changed and tx.state.hands():
        tx.hands_changed()
    if "transcripts_allowed" in changed and not tx.state.settings.transcripts_allowed:
        withdraw_all_consent(tx)
    if changed:
        tx.audit(actor, "settings." + ",".join(sorted(changed)))


def do_remove_chat(tx: Tx, actor: Participant, cmd: RemoveChat) -> None:
    require_moderator(actor)
    if cmd.message_id not in tx.state.recent_messages:
        raise RoomError(ErrorCode.NOT_FOUND, "That message is not in this session any more.")
    stored = cmd.message_id in tx.state.transcribed
    tx.state = tx.state.copy_and_replace(
        recent_messages=tuple(m for m in tx.state.recent_messages if m != cmd.message_id),
        transcribed=tuple(m for m in tx.state.transcribed if m != cmd.message_id),
    )
    tx.broadcast("chat.removed", message_id=cmd.message_id)
    if stored:
        tx.emit(Unstore(tx.state.session_id, message_id=cmd.message_id))
    else:  # never stored: nothing to delete, and no erase kept on disk for it
        tx.reply["erased"] = 0
    tx.audit(actor, "chat.remove", cmd.message_id)


def do_end(tx: Tx, actor: Participant, cmd: End) -> None:
    require_facilitator(actor)
    tx.audit(actor, "end")
    session.end(tx, "ended")


MODERATOR_ACTIONS: dict[type, Callable[[Tx, Participant, Any], None]] = {
    ModLowerHand: do_lower_hand,
    ClearHands: do_clear_hands,
    FloorNext: do_floor_next,
    FloorGive: do_floor_give,
    FloorClear: do_floor_clear,
    Mute: do_mute,
    MuteAll: do_mute_all,
    AskUnmute: do_ask_unmute,
    StopCamera: do_stop_camera,
    Remove: do_remove,
    Lock: do_lock,
    SetWaitingRoom: do_waiting_room,
    Admit: do_admit,
    Deny: do_deny,
    SetRole: do_set_role,
    ChangeSettings: do_settings,
    RemoveChat: do_remove_chat,
    End: do_end,
}
