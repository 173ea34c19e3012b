"""Channel path grammar and wildcard matching (PROTOCOL §4). Pure: no Django, no I/O.

A channel path is 1 to 5 segments separated by ``/``, with an optional leading
(and, as the documented regex allows, trailing) slash. Each segment is 1-50
characters of ``[A-Za-z0-9-]`` starting and ending with a letter or digit, and
matching is case sensitive. The first segment names the namespace.

A subscription may end in ``/*``: it then matches every channel *below* the
prefix, at any depth (``/default/*`` receives ``/default/a`` and
``/default/a/b``; AWS's tutorial shows both). Decisions where AWS is silent:

- ``/ns/*`` does not match ``/ns`` itself: the star stands for one or more
  segments.
- The ``*`` counts toward the five segments, so ``/a/b/c/d/*`` is the deepest
  wildcard; it matches ``/a/b/c/d/e``.
- ``/*`` alone is refused: the namespace must be concrete.
- Publishing to a wildcard is refused with ``InvalidChannel``.

An extension (PROTOCOL §12): ``/$presence/<channel>`` is the presence channel of
``<channel>`` (a channel or a wildcard, taken literally), which only a subscribe
may name. Its events are the watched channel's occupancy, never a publish.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from realtime.exceptions import InvalidChannel

MAX_SEGMENTS = 5
MAX_SEGMENT_LENGTH = 50
WILDCARD = "*"
# The reserved first segment of presence channels; `$` never starts a namespace.
PRESENCE = "$presence"

_SEGMENT = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,48}[A-Za-z0-9])?\Z")
NAMESPACE_NAME = _SEGMENT


@dataclass(frozen=True, slots=True)
class ChannelPath:
    """A parsed channel: concrete segments, plus whether it ends in ``/*``."""

    segments: tuple[str, ...]
    wildcard: bool = False
    # The presence channel of this path (``/$presence/...``), not the path itself.
    presence: bool = False

    @property
    def namespace(self) -> str:
        return self.segments[0]

    @property
    def path(self) -> str:
        """The canonical form handlers see: a leading slash, ``/*`` kept."""
        if self.presence:
            return f"/{PRESENCE}/" + "/".join(self.all_segments)
        return "/" + "/".join(self.all_segments)

    @property
    def watched(self) -> ChannelPath:
        """The channel whose presence channel this is (itself for an ordinary channel)."""
        return ChannelPath(self.segments, self.wildcard) if self.presence else self

    @property
    def all_segments(self) -> tuple[str, ...]:
        """Segments as handlers see them (``ctx.info.channel.segments``)."""
        return (*self.segments, WILDCARD) if self.wildcard else self.segments

    @property
    def key(self) -> str:
        """The subscription index key: ``ns/a/b`` or ``ns/a/*`` (``ns/a/b/$presence`` for presence)."""
        if self.presence:
            return "/".join(self.all_segments) + "/" + PRESENCE
        return "/".join(self.all_segments)

    def matching_keys(self) -> list[str]:
        """Every subscription key that receives an event published here.

        The exact path, then each wildcard prefix above it, shallowest first:
        ``ns/a/b`` is matched by ``ns/a/b``, ``ns/*`` and ``ns/a/*``.
        """
        segments = self.segments
        keys = ["/".join(segments)]
        for depth in range(1, len(segments)):
            keys.append("/".join(segments[:depth]) + "/" + WILDCARD)
        return keys


def parse_channel(raw: object, *, allow_wildcard: bool) -> ChannelPath:
    """Parse a client's channel string.

    Args:
        raw: the ``channel`` field as the client sent it.
        allow_wildcard: ``True`` for subscribe, ``False`` for publish.

    Raises:
        InvalidChannel: the string breaks the grammar, or is a wildcard (or a
            presence channel) where none is allowed.
    """
    if not isinstance(raw, str) or not raw:
        raise InvalidChannel()
    text = raw
    if text.startswith("/"):
        text = text[1:]
    if allow_wildcard and text.startswith(PRESENCE + "/"):
        watched = parse_channel(text[len(PRESENCE) + 1 :], allow_wildcard=True)
        if watched.presence:
            raise InvalidChannel()
        return ChannelPath(watched.segments, watched.wildcard, presence=True)
    if text.endswith("/"):
        text = text[:-1]
    parts = text.split("/")
    if len(parts) > MAX_SEGMENTS:
        raise InvalidChannel()
    wildcard = parts[-1] == WILDCARD
    if wildcard:
        if not allow_wildcard or len(parts) < 2:
            raise InvalidChannel()
        parts = parts[:-1]
    for part in parts:
        # fullmatch with \Z: a trailing newline must not sneak through `$`.
        if not _SEGMENT.match(part):
            raise InvalidChannel()
    return ChannelPath(tuple(parts), wildcard)


def presence_key(key: str) -> bool:
    """Whether a subscription key is a presence channel's (see :attr:`ChannelPath.key`)."""
    return key.endswith("/" + PRESENCE)


def is_valid_namespace_name(name: str) -> bool:
    return bool(NAMESPACE_NAME.match(name))
