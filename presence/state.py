"""Pure presence transitions on a :class:`~rooms.model.Participant`."""

from __future__ import annotations

from rooms.model import Participant, Via


def set_presence(
    p: Participant, *, camera: bool | None, mic: bool | None, away: bool | None
) -> Participant:
    if p.via is Via.PHONE:
        camera = None  # a phone line has no camera; it stays off
    return p.copy_and_replace(
        camera=p.camera if camera is None else camera,
        mic=p.mic if mic is None else mic,
        away=p.away if away is None else away,
    )


def dropped(p: Participant, now: float) -> Participant:
    return p.copy_and_replace(connected=False, dropped_at=now)


def reconnected(p: Participant, conn: str | None) -> Participant:
    """Back within the grace period: same id, role, hand, consent; camera and mic off."""
    return p.copy_and_replace(connected=True, dropped_at=None, conn=conn, camera=False, mic=False)


def expired(p: Participant, now: float, grace_secs: float) -> bool:
    return p.dropped_at is not None and now - p.dropped_at >= grace_secs
