"""Room state and room events <-> bytes, for live state shared through Redis.

msgpack, positional: a state is an array whose first element is :data:`CODEC_VERSION`,
then the fields in declaration order; waiting entries are nested arrays. The
participants are packed on their own (an array of arrays) and carried as one bin value:
most transitions (a chat line) leave them as they were, so a :class:`PartsCache` per
room packs or unpacks them only when they change.
Sets are written sorted, so equal states encode to equal bytes. Enums travel as their
string values. A state written by another version of the codec is refused
(:class:`CodecError`), never guessed at.

A fan-out message is ``header`` followed by the state's bytes (two msgpack values back to
back), so the state is encoded once and Redis can glue the two together in the commit
script: ``header = [version, commit tag, events]``. An ended session has no state part.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Final

import msgpack

from rooms.events import (
    Audit,
    Consent,
    Disconnect,
    Emit,
    Event,
    SessionClosed,
    Transcribe,
    Unstore,
    Welcome,
)
from rooms.model import Participant, QueueOrder, Role, RoomState, Settings, Via, Waiting

CODEC_VERSION: Final = 3  # 3: who ever consented, which recent lines were stored
# Read so that an upgrade keeps sessions. 1: participants inline. 1 and 2 lack the two
# fields of 3, read as what errs on the side of an erase: everyone present may have
# consented, every recent line may have been stored.
READABLE_VERSIONS: Final = (1, 2, 3)


class CodecError(ValueError):
    """Bytes that are not a state or message this codec wrote."""


# state ------------------------------------------------------------------------------


def _settings(s: Settings) -> list[Any]:
    return [s.locked, s.waiting_room, s.transcripts_allowed, s.chat_enabled, s.queue_order.value]


def _participant(p: Participant) -> list[Any]:
    return [
        p.id,
        p.name,
        p.role.value,
        p.via.value,
        p.conn,
        p.camera,
        p.mic,
        p.away,
        p.connected,
        p.consent,
        p.hand_ticket,
        p.turns,
        p.dropped_at,
        sorted(p.ban_keys),
    ]


def _waiting(w: Waiting) -> list[Any]:
    # dropped_at last: a node of the version before reads the first six and ignores it.
    return [w.id, w.name, w.role.value, w.via.value, w.conn, sorted(w.ban_keys), w.dropped_at]


def _participant_from(p: list[Any]) -> Participant:
    return Participant(
        id=p[0],
        name=p[1],
        role=Role(p[2]),
        via=Via(p[3]),
        conn=p[4],
        camera=p[5],
        mic=p[6],
        away=p[7],
        connected=p[8],
        consent=p[9],
        hand_ticket=p[10],
        turns=p[11],
        dropped_at=p[12],
        ban_keys=frozenset(p[13]),
    )


class PartsCache:
    """One room's participants as last packed or unpacked, with their bytes.

    Participants are immutable and a transition that does not touch them keeps the same
    tuple, so packing is skipped when the tuple is the one seen last, and unpacking
    when the bytes are. One entry per room: it never grows.
    """

    __slots__ = ("blob", "parts")

    def __init__(self) -> None:
        self.parts: tuple[Participant, ...] | None = None
        self.blob = b""

    def pack(self, parts: tuple[Participant, ...]) -> bytes:
        if parts is self.parts:
            return self.blob
        blob: bytes = msgpack.packb([_participant(p) for p in parts], use_bin_type=True)
        self.parts, self.blob = parts, blob
        return blob

    def unpack(self, blob: bytes) -> tuple[Participant, ...]:
        if self.parts is not None and blob == self.blob:
            return self.parts
        parts = tuple(_participant_from(p) for p in msgpack.unpackb(blob, raw=False, use_list=True))
        self.parts, self.blob = parts, blob
        return parts


def state_to_list(s: RoomState, cache: PartsCache | None = None) -> list[Any]:
    return [
        CODEC_VERSION,
        s.room_id,
        s.title,
        s.session_id,
        s.started_at,
        _settings(s.settings),
        s.seq,
        (cache or PartsCache()).pack(s.participants),
        [_waiting(w) for w in s.waiting],
        s.floor,
        s.next_ticket,
        sorted(s.banned),
        list(s.recent_messages),
        s.empty_since,
        sorted(s.consented),
        list(s.transcribed),
    ]


def state_from_list(v: Any, cache: PartsCache | None = None) -> RoomState:
    try:
        version, *fields_ = v
        if version not in READABLE_VERSIONS:
            raise CodecError(f"state codec version {version!r}, expected {CODEC_VERSION}")
        (room_id, title, session_id, started_at, st, seq, ps, ws, floor, nt, banned, recent,
         empty_since, *since_3) = fields_  # fmt: skip
        if len(since_3) != (2 if version >= 3 else 0):
            raise CodecError(f"a version {version} state of {len(v)} fields")
        participants = (
            (cache or PartsCache()).unpack(ps)
            if isinstance(ps, bytes)
            else tuple(_participant_from(p) for p in ps)  # version 1
        )
        if since_3:
            consented, transcribed = frozenset(since_3[0]), tuple(since_3[1])
        else:  # versions 1 and 2: err on the side of an erase (above)
            consented = frozenset(p.id for p in participants)
            transcribed = tuple(recent)
        # One constructor call: this runs for every commit another node makes.
        return RoomState(
            room_id=room_id,
            title=title,
            session_id=session_id,
            started_at=started_at,
            settings=Settings(st[0], st[1], st[2], st[3], QueueOrder(st[4])),
            seq=seq,
            participants=participants,
            waiting=tuple(
                Waiting(
                    w[0],
                    w[1],
                    Role(w[2]),
                    Via(w[3]),
                    w[4],
                    frozenset(w[5]),
                    w[6] if len(w) > 6 else None,
                )
                for w in ws
            ),
            floor=floor,
            next_ticket=nt,
            banned=frozenset(banned),
            recent_messages=tuple(recent),
            consented=consented,
            transcribed=transcribed,
            empty_since=empty_since,
        )
    except CodecError:
        raise
    except (TypeError, ValueError, IndexError, KeyError) as e:
        raise CodecError(f"not a room state: {e}") from None


def encode_state(s: RoomState, cache: PartsCache | None = None) -> bytes:
    """``cache``: the room's, to skip packing participants that did not change."""
    out: bytes = msgpack.packb(state_to_list(s, cache), use_bin_type=True)
    return out


def decode_state(data: bytes, cache: PartsCache | None = None) -> RoomState:
    try:
        v = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=False)
    except (ValueError, msgpack.ExtraData) as e:
        raise CodecError(f"not msgpack: {e}") from None
    return state_from_list(v, cache)


# events -----------------------------------------------------------------------------
# Tag, then the dataclass fields in order. Payloads of Emit are JSON-shaped already.

_TAGS: Final[dict[type, str]] = {
    Emit: "e",
    Welcome: "w",
    Disconnect: "d",
    Transcribe: "t",
    Unstore: "u",
    Consent: "c",
    Audit: "a",
    SessionClosed: "s",
}
_TYPES: Final = {tag: t for t, tag in _TAGS.items()}
TRANSPORT_EVENTS: Final = (Emit, Welcome, Disconnect)  # acted on by every node


def event_to_list(ev: Event) -> list[Any]:
    if isinstance(ev, Emit):
        return ["e", ev.name, ev.payload, None if ev.to is None else list(ev.to)]
    return [_TAGS[type(ev)], *(getattr(ev, f.name) for f in fields(ev))]


def event_from_list(v: list[Any]) -> Event:
    tag, *values = v
    if tag == "e":
        name, payload, to = values
        return Emit(name, payload, None if to is None else tuple(to))
    t = _TYPES.get(tag)
    if t is None:
        raise CodecError(f"unknown event tag {tag!r}")
    ev: Event = t(*values)
    return ev


# fan-out messages -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """One committed transition as every node receives it."""

    version: int  # the room's store version after this transition
    tag: str  # the commit's own name, ``<node id>.<n>``: its node knows it for its own
    events: tuple[Event, ...]
    state: RoomState | None


def encode_header(version: int, tag: str, events: tuple[Event, ...]) -> bytes:
    out: bytes = msgpack.packb(
        [CODEC_VERSION, version, tag, [event_to_list(e) for e in events]], use_bin_type=True
    )
    return out


class OpenMessage:
    """A fan-out message whose header is read (and checked), the rest not yet: the node
    that committed it has its events and state already (its own outcome), and a message
    known already is skipped, so most are never decoded further. The bytes are parsed
    once, whether or not :meth:`decode` follows."""

    __slots__ = ("_events", "_unpacker", "tag", "version")

    def __init__(self, data: bytes) -> None:
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        unpacker.feed(data)
        try:
            codec, version, tag, events = next(unpacker)
        except (TypeError, ValueError, StopIteration) as e:
            raise CodecError(f"not a fan-out message: {e}") from None
        if codec not in READABLE_VERSIONS:
            raise CodecError(f"message codec version {codec!r}, expected {CODEC_VERSION}")
        if not isinstance(version, int) or not isinstance(tag, str):
            raise CodecError("not a fan-out message: bad version or tag")
        self._unpacker = unpacker
        self._events = events
        self.version: int = version
        self.tag: str = tag

    def decode(self, cache: PartsCache | None = None) -> Message:
        """Its events and state (once: the bytes after the header are read here)."""
        try:
            state_part = next(self._unpacker, None)
            return Message(
                version=self.version,
                tag=self.tag,
                events=tuple(event_from_list(e) for e in self._events),
                state=None if state_part is None else state_from_list(state_part, cache),
            )
        except CodecError:
            raise
        except (TypeError, ValueError, StopIteration) as e:
            raise CodecError(f"not a fan-out message: {e}") from None


def decode_message(data: bytes, cache: PartsCache | None = None) -> Message:
    return OpenMessage(data).decode(cache)
