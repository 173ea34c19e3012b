"""Positions in a channel's history and the recovery decision (PROTOCOL §12, "History").

Pure: no Django, no I/O. A history-enabled namespace keeps one stream per
subscription key (``ns/a/b``, ``ns/a/*``, ``ns/*``, see :mod:`realtime.core.paths`):
a publication is appended to the stream of every key it matches, so a wildcard
subscription reads one stream, exactly what live delivery gives it. Each stream
numbers its publications 1, 2, 3, … (the *offset*) and is named by an *epoch*,
a random string that changes when the store loses the stream, so "nothing was
missed" and "the history is gone" never look alike.

A ``data`` frame of such a stream carries its offset after the event:
``{"type":"data","id":"…","event":"…","offset":7}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from realtime.exceptions import MalformedMessage

# What follows the encoded event in a data frame of a history stream (before the closing "}").
_OFFSET_FIELD = ',"offset":'


@dataclass(frozen=True, slots=True)
class Position:
    """A place in one stream: the last offset seen, in the stream named ``epoch``."""

    offset: int
    epoch: str

    def as_dict(self) -> dict[str, int | str]:
        return {"offset": self.offset, "epoch": self.epoch}


@dataclass(frozen=True, slots=True)
class StreamRead:
    """What a store holds of one stream after a position.

    ``entries`` are (offset, encoded event) pairs in offset order, at most one more than
    the recovery limit; ``first`` is the oldest offset still held (``None`` when
    nothing is held), ``top`` the last offset ever given (0 before any).
    """

    epoch: str
    top: int
    first: int | None
    entries: Sequence[tuple[int, str]] = ()


@dataclass(frozen=True, slots=True)
class Recovery:
    """The outcome of a recovery: what to replay, whether it is complete, where the stream is."""

    recovered: bool
    replay: Sequence[tuple[int, str]]
    position: Position


def tail(encoded_event: str, offset: int) -> str:
    """An encoded event with its offset: what a history stream's data frame holds after ``"event":``."""
    return encoded_event + _OFFSET_FIELD + str(offset)


def offset_of(frame_or_tail: str) -> int | None:
    """The offset a data frame (or a tail) carries; ``None`` for a frame without one."""
    at = frame_or_tail.rfind(_OFFSET_FIELD)
    if at < 0:
        return None
    digits = frame_or_tail[at + len(_OFFSET_FIELD) :].rstrip("}")
    return int(digits) if digits.isdigit() else None


def recover(since: Position, stream: StreamRead, limit: int) -> Recovery:
    """Decide what a subscriber at ``since`` gets from ``stream``.

    Recovered means: every publication after ``since`` is in ``replay``, in
    order. It is not when the epoch changed (the store lost the stream), when
    more than ``limit`` were missed, when some of them were trimmed or expired,
    or when ``since`` lies beyond the stream's end. An unrecovered subscriber
    gets nothing replayed and reloads its state (PROTOCOL §12).
    """
    position = Position(stream.top, stream.epoch)
    missed = stream.top - since.offset
    if since.epoch != stream.epoch or missed < 0 or missed > limit:
        return Recovery(False, (), position)
    if missed == 0:
        return Recovery(True, (), position)
    wanted = [entry for entry in stream.entries if entry[0] > since.offset][:missed]
    complete = (
        stream.first is not None
        and stream.first <= since.offset + 1
        and len(wanted) == missed
        and wanted[0][0] == since.offset + 1
    )
    if not complete:
        return Recovery(False, (), position)
    return Recovery(True, wanted, position)


def parse_since(raw: object) -> Position | None:
    """The ``since`` of a subscribe (PROTOCOL §12): ``{"offset": int >= 0, "epoch": str}``.

    Raises:
        MalformedMessage: any other shape.
    """
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise MalformedMessage("since must be an object")
    offset, epoch = raw.get("offset"), raw.get("epoch")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise MalformedMessage("since.offset must be a non-negative integer")
    if not isinstance(epoch, str) or len(epoch) > 64:
        raise MalformedMessage("since.epoch must be a string of at most 64 characters")
    return Position(offset, epoch)
