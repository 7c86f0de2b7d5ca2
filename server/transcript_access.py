"""Who may read a session's transcript, and the live facts that rule is checked against.

- the facilitator token of the session's room;
- the resume token of a participant of that session whose consent is on now and whom
  no moderator removed or banned from it. Withdrawing consent, or being removed,
  ends access at once; opting in again gives it back.

"At once" needs facts newer than the database: the recorder may be seconds (or an
outage) behind. The live session's state comes first, for anyone still in it. Then
:class:`SessionFacts`, the consent changes and removals this node has delivered
(synchronously in ``deliver``), against storage's: the later consent change of the two
wins (a change made through another node is in storage once its recorder wrote it, and
this node's older note must not outvote it), removals add up. A node that has just
started falls back to storage alone.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

from rooms.events import AUDITED_ACTIONS, Audit, Consent

REMOVAL_ACTIONS: Final = AUDITED_ACTIONS  # the only moderator actions kept, for this rule
SESSIONS_KEPT: Final = 2_000  # sessions whose live facts are cached on this node


def participant_may_read(consent_now: bool | None, actions_on_them: set[str]) -> bool:
    """The rule for a participant's resume token, in one place."""
    if consent_now is not True:
        return False
    return not actions_on_them & REMOVAL_ACTIONS


def newer_consent(
    mine: tuple[bool, float] | None, stored: tuple[bool, float] | None
) -> bool | None:
    """The later of two ``(on, ts)`` records of one person's consent: this node's own
    and storage's, which holds what other nodes decided once their recorders wrote it.
    On a tie, off."""
    if mine is None or stored is None:
        latest = mine or stored
        return latest[0] if latest else None
    if mine[1] != stored[1]:
        return (mine if mine[1] > stored[1] else stored)[0]
    return mine[0] and stored[0]


@dataclass(slots=True)
class _Facts:
    room_id: str
    consent: dict[str, tuple[bool, float]] = field(default_factory=dict)  # (on, ts)
    actions_on: dict[str, set[str]] = field(default_factory=dict)


class SessionFacts:
    """Consent changes and moderator actions delivered on this node, newest state only."""

    def __init__(self, kept: int = SESSIONS_KEPT) -> None:
        self._sessions: OrderedDict[str, _Facts] = OrderedDict()
        self._kept = kept

    def note(self, ev: Consent | Audit) -> None:
        facts = self._sessions.get(ev.session_id)
        if facts is None:
            facts = self._sessions[ev.session_id] = _Facts(ev.room_id)
            while len(self._sessions) > self._kept:
                self._sessions.popitem(last=False)
        if isinstance(ev, Consent):
            facts.consent[ev.participant_id] = (ev.on, ev.ts)
        elif ev.target is not None:
            facts.actions_on.setdefault(ev.target, set()).add(ev.action)

    def room_of(self, session_id: str) -> str | None:
        facts = self._sessions.get(session_id)
        return facts.room_id if facts else None

    def consent(self, session_id: str, participant_id: str) -> bool | None:
        noted = self.consent_at(session_id, participant_id)
        return noted[0] if noted else None

    def consent_at(self, session_id: str, participant_id: str) -> tuple[bool, float] | None:
        """The last consent change noted here, and when it was made."""
        facts = self._sessions.get(session_id)
        return facts.consent.get(participant_id) if facts else None

    def actions_on(self, session_id: str, participant_id: str) -> set[str]:
        facts = self._sessions.get(session_id)
        return set(facts.actions_on.get(participant_id, ())) if facts else set()
