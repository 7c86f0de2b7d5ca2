"""Presence: camera, mic and away per participant, and connections that drop and return.

Rules, all pure:

- Camera and mic are the participant's own: only they can turn them on. A moderator can
  turn them *off*; a reconnect always comes back with both off (the device may have
  changed, and nobody is ever put on camera by surprise).
- Camera-off presence is full presence: a participant with camera and mic off is as
  much "here" as anyone, and shows as such.
- A dropped connection keeps the place (role, hand ticket, floor turns, consent) for the
  grace period, shown as ``connected: false``; a resume within it restores everything;
  after it the participant leaves with reason ``timeout``.
"""
