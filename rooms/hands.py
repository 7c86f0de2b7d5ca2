"""The hand queue: who asked to speak, in what order, and who holds the floor.

States of one participant's hand::

    down --hand.raise--> up (gets the next ticket) --hand.lower / mod.hand.lower /
    mod.hands.clear--> down
    up --mod.floor.next (first in line) / mod.floor.give--> down, and holds the floor

Order is *derived*, never stored: ``time`` sorts raised hands by ticket (first raised,
first in line); ``quieter_first`` sorts by turns had this session, then by ticket. So
switching the order, or a turn being counted, re-sorts the queue without losing anyone's
place among equals. A ticket survives a dropped connection within the grace period, on
the web and the phone alike, so a hand keeps its place through a reconnect.
"""

from __future__ import annotations

from collections.abc import Iterable

from rooms.model import Participant, QueueOrder


def ordered_hands(participants: Iterable[Participant], order: QueueOrder) -> list[str]:
    raised = [p for p in participants if p.hand_ticket is not None]
    if order is QueueOrder.QUIETER_FIRST:
        raised.sort(key=lambda p: (p.turns, p.hand_ticket))
    else:
        raised.sort(key=lambda p: p.hand_ticket or 0)
    return [p.id for p in raised]


def position(participants: Iterable[Participant], order: QueueOrder, pid: str) -> int | None:
    """1-based place in line, or None if the hand is down (the phone bridge speaks this)."""
    queue = ordered_hands(participants, order)
    return queue.index(pid) + 1 if pid in queue else None
