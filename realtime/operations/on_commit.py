"""``realtime.publish_on_commit``: events written as rows of the caller's transaction.

Server code that changes data and announces the change calls
``realtime.publish_on_commit(channel, events, key=...)`` inside its transaction.
The events become a :class:`~realtime.models.PendingPublication` row of that
transaction, so they exist exactly when the change does: a rollback leaves
nothing to publish, and a crash after the commit loses nothing. The relay
(:mod:`realtime.operations.relay`, which states the guarantees) publishes the
rows and deletes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from realtime.conf import realtime_settings
from realtime.core.paths import parse_channel
from realtime.exceptions import NoEvents, TooManyEvents
from realtime.models import PendingPublication
from realtime.operations.publishing import dumps
from realtime.operations.relay import NOTIFY_CHANNEL, identifiers_for, relay

# The event field that carries an event's identifier.
IDENTIFIER_FIELD = "identifier"
KEY_MAX_LENGTH = PendingPublication._meta.get_field("key").max_length or 200


def publish_on_commit(
    channel: str, events: Sequence[Mapping[str, Any]], *, key: str, using: str = DEFAULT_DB_ALIAS
) -> None:
    """Publish ``events`` to ``channel`` once the current transaction commits (at least once).

    Call it inside the ``transaction.atomic()`` block that makes the change the
    events announce; outside one (autocommit) the events are written, and then
    published, at once.

    Args:
        channel: a concrete channel path.
        events: 1 to ``MAX_EVENTS_PER_PUBLISH`` JSON objects; each is published
            with an ``identifier`` field added (see the module docstring).
        key: the caller's identifier for this publication, unique, at most 200
            characters, without ``#``; a write whose key is still pending is ignored.
        using: the database alias whose transaction carries the row.

    Raises:
        InvalidChannel, NoEvents, TooManyEvents: as a publish would, but now.
        ValueError: a bad key, or an event that already has an ``identifier``.
        TypeError: an event that is not a JSON object, or not serialisable.
    """
    publish_many_on_commit([(channel, events, key)], using=using)


def publish_many_on_commit(
    publications: Iterable[tuple[str, Sequence[Mapping[str, Any]], str]], *, using: str = DEFAULT_DB_ALIAS
) -> None:
    """:func:`publish_on_commit` for many ``(channel, events, key)`` in one statement.

    Rows of one channel are published in the order given.
    """
    rows = [_row(channel, events, key) for channel, events, key in publications]
    if not rows:
        return
    PendingPublication.objects.using(using).bulk_create(rows, ignore_conflicts=True)
    connection = connections[using]
    if connection.vendor == "postgresql":
        # Delivered to listening relays when (and only if) the transaction commits.
        with connection.cursor() as cursor:
            cursor.execute(f"NOTIFY {NOTIFY_CHANNEL}")
    transaction.on_commit(relay.wake, using=using)


def _row(channel: str, events: Sequence[Mapping[str, Any]], key: str) -> PendingPublication:
    if not isinstance(key, str) or not 0 < len(key) <= KEY_MAX_LENGTH or "#" in key:
        raise ValueError(f"a publication key is 1 to {KEY_MAX_LENGTH} characters without '#': {key!r}")
    parse_channel(channel, allow_wildcard=False)
    events = list(events)
    if not events:
        raise NoEvents()
    limit = realtime_settings.max_events_per_publish
    if len(events) > limit:
        raise TooManyEvents(limit)
    stored = []
    for identifier, event in zip(identifiers_for(key, len(events)), events, strict=True):
        if not isinstance(event, Mapping):
            raise TypeError(f"publish_on_commit publishes JSON objects, not {type(event).__name__}")
        if IDENTIFIER_FIELD in event:
            raise ValueError(f"an event of {key!r} already has an {IDENTIFIER_FIELD!r} field")
        stored.append({**event, IDENTIFIER_FIELD: identifier})
    dumps(stored)  # not serialisable: TypeError here, not in the relay
    return PendingPublication(key=key, channel=channel, events=stored, origin=relay.origin)
