"""This process's subscription index and local delivery (DESIGN §5).

The hub maps subscription keys (``ns/a/b`` or ``ns/a/*``, see
:mod:`realtime.core.paths`) to the local subscriptions holding them, and delivers an
event by appending one pre-built frame per subscription to that connection's
:class:`~realtime.delivery.outbox.Outbox`. An outbox that writes to its transport
directly (:attr:`~realtime.delivery.outbox.Outbox.wire`) gets the frame's bytes,
built once per event and subscription id (:mod:`realtime.core.wsframe`) and shared
by every such subscriber; any other gets the frame's text. It knows nothing of other processes: the
:mod:`realtime.delivery.bridge` carries events between processes and hands each process's
hub the events of the keys it holds.

Its state belongs to one event loop: when the process's services move to a new
loop (tests run one per test), the index starts empty.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from realtime.core import protocol
from realtime.core.history import offset_of
from realtime.core.paths import ChannelPath
from realtime.core.wsframe import text_frame
from realtime.delivery.outbox import Outbox
from realtime.lifecycle import lifecycle
from realtime.ops.metrics import metrics

# The longest a recovered subscription's fence holds back events whose epoch it cannot compare
# (see Hub.fence): those of a process running code that sent no epoch in its layer messages. A
# stream restarted under a new epoch (Redis lost it) numbers from 1 again, which a fence left
# standing would take for old publications; a publication's layer message usually reaches every
# process within this time after the publication took its offset.
FENCE_SECONDS = 10.0

_V = TypeVar("_V")


def already_has(floor: int, floor_epoch: str | None, offset: int, epoch: str | None) -> bool:
    """Whether a subscriber that has its stream up to ``floor`` of ``floor_epoch`` has the event
    at ``offset`` of the stream named ``epoch``.

    Another epoch is the stream restarted, numbering from 1 again: all of it is new. Where either
    epoch is unknown (a process that sends none), only the offset can tell.
    """
    if epoch is None or floor_epoch is None:
        return offset <= floor
    return epoch == floor_epoch and offset <= floor


@dataclass(frozen=True, slots=True)
class _Fence:
    """What one recovered subscription has of its stream already (see :meth:`Hub.fence`)."""

    floor: int
    # The stream's epoch at the recovery; None: unknown, only the time rule applies.
    epoch: str | None
    # Monotonic: until when the fence holds back an event of unknown epoch.
    until: float

    def holds_back(self, offset: int, epoch: str | None, now: float) -> bool:
        """Whether the event at ``offset`` of the stream named ``epoch`` is one the subscriber has
        (else the fence falls: every later event is new to it)."""
        if not already_has(self.floor, self.epoch, offset, epoch):
            return False
        # Offsets of one epoch are given once each, in order: at or below the floor, the
        # subscriber has the publication, however late its copy, so no time limit is needed.
        # Without both epochs a restarted stream's offsets look old: trusted only for a while.
        return (epoch is not None and self.epoch is not None) or now < self.until


@dataclass(eq=False, slots=True)
class LocalSubscription:
    """One subscription of one local connection; identity-hashed."""

    outbox: Outbox
    key: str
    prefix: str = field(default="")

    @classmethod
    def create(cls, outbox: Outbox, subscription_id: str, channel: ChannelPath) -> LocalSubscription:
        return cls(outbox, channel.key, protocol.data_frame_prefix(subscription_id))


class LiveBuffer:
    """Holds a recovering subscription's live frames, with their epoch, until its replay has gone out.

    The hub offers it text frames (``wire`` is false: their offsets are read before they go on)
    and, before each batch, sets :attr:`epoch` to the batch's: the fan-out's ``offer(frame)``
    stays one argument for every outbox, and only a key with a buffering subscription pays for
    the epoch (see :meth:`Hub.deliver`).
    """

    __slots__ = ("frames", "epoch")
    wire = False

    def __init__(self) -> None:
        self.frames: list[tuple[str, str | None]] = []
        # The epoch of the events being offered (None: no history, or unknown).
        self.epoch: str | None = None

    def offer(self, frame: str) -> None:
        self.frames.append((frame, self.epoch))


class Hub:
    """Subscription index and delivery for the connections of this process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        # Monotonic seconds: when a fence stops holding back events of unknown epoch.
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        """Forget every connection and subscription (their event loop is gone)."""
        self._index: dict[str, dict[LocalSubscription, None]] = {}
        self._connections: dict[Outbox, None] = {}
        # The last event delivered per held key: a history stream's carries its offset,
        # the position a closed connection's subscriptions resume from.
        self.last_delivered: dict[str, str] = {}
        # Recovered subscriptions per key: what each has of its stream already.
        self._fences: dict[str, dict[LocalSubscription, _Fence]] = {}
        # Recovering subscriptions per key whose outbox is a LiveBuffer: told each batch's epoch.
        self._buffering: dict[str, dict[LocalSubscription, LiveBuffer]] = {}

    # -- connections ---------------------------------------------------------

    def connect(self, outbox: Outbox) -> None:
        self._connections[outbox] = None

    def disconnect(self, outbox: Outbox, subscriptions: Iterable[LocalSubscription]) -> None:
        self._connections.pop(outbox, None)
        for subscription in subscriptions:
            self.remove(subscription)

    def outboxes(self) -> list[Outbox]:
        """The outboxes of every open connection (a copy: callers may close them)."""
        return list(self._connections)

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    @property
    def subscription_count(self) -> int:
        return sum(len(subs) for subs in self._index.values())

    # -- subscriptions -------------------------------------------------------

    def add(self, subscription: LocalSubscription) -> None:
        """Index a subscription: events of its key delivered from now on reach it.

        One whose outbox is a :class:`LiveBuffer` is buffering until :meth:`fence`.
        """
        self._index.setdefault(subscription.key, {})[subscription] = None
        outbox: object = subscription.outbox
        if isinstance(outbox, LiveBuffer):
            self._buffering.setdefault(subscription.key, {})[subscription] = outbox

    def fence(self, subscription: LocalSubscription, floor: int, epoch: str | None) -> None:
        """Deliver to ``subscription`` no live event of its stream at or before offset ``floor``
        of ``epoch``.

        A recovering subscription got every publication up to ``floor`` of the stream
        named ``epoch`` from the history (or before its reconnect); one of them can
        still arrive live after that, since a publication takes its offset before its
        layer message reaches this process: without the fence the subscriber would
        hear it twice. The fence falls at the first live event above ``floor`` or of
        another epoch (the stream restarted). An event whose epoch is unknown (sent
        by a process that does not send it) is held back only for
        :data:`FENCE_SECONDS`.

        The subscription has its outbox back: it is no longer buffering.
        """
        self._stop_buffering(subscription)
        if floor <= 0 or subscription not in self._index.get(subscription.key, ()):
            return
        fences = self._fences.setdefault(subscription.key, {})
        fences[subscription] = _Fence(floor, epoch, self.clock() + FENCE_SECONDS)

    def _stop_buffering(self, subscription: LocalSubscription) -> None:
        _discard(self._buffering, subscription)

    def remove(self, subscription: LocalSubscription) -> None:
        self._stop_buffering(subscription)
        _discard(self._fences, subscription)
        if not _discard(self._index, subscription):
            self.last_delivered.pop(subscription.key, None)

    def holds(self, key: str) -> bool:
        """Whether any local subscription holds ``key``."""
        return key in self._index

    # -- delivery --------------------------------------------------------------

    def deliver(self, key: str, events: list[str], epoch: str | None = None) -> int:
        """Append one frame per event to each local subscription of ``key``.

        ``epoch`` names the history stream the events' offsets belong to (``None``:
        no history, or unknown).
        """
        subs = self._index.get(key)
        if not subs or not events:
            return 0
        targets = list(subs)
        self.last_delivered[key] = events[-1]
        # A buffering subscription's held frames are filtered by epoch as well as offset
        # (Started.acknowledge): its buffer is told the batch's epoch here, once per batch,
        # rather than every outbox's offer() taking an epoch it has no use for.
        buffering = self._buffering.get(key)
        if buffering is not None:
            for buffer in buffering.values():
                buffer.epoch = epoch
        fences = self._fences.get(key)
        if fences is not None:
            count = self._deliver_fenced(key, targets, fences, events, epoch)
        else:
            for event in events:
                _offer(targets, event)
            count = len(targets) * len(events)
        metrics.delivered(key, count)
        return count

    def _deliver_fenced(
        self,
        key: str,
        targets: list[LocalSubscription],
        fences: dict[LocalSubscription, _Fence],
        events: list[str],
        epoch: str | None,
    ) -> int:
        now = self.clock()
        count = 0
        for event in events:
            offset = offset_of(event)
            receivers = targets
            if offset is not None and fences:
                receivers = []
                for subscription in targets:
                    fenced = fences.get(subscription)
                    if fenced is not None:
                        if fenced.holds_back(offset, epoch, now):
                            continue
                        del fences[subscription]
                    receivers.append(subscription)
            _offer(receivers, event)
            count += len(receivers)
        if not fences:
            self._fences.pop(key, None)
        return count


def _discard(per_key: dict[str, dict[LocalSubscription, _V]], subscription: LocalSubscription) -> bool:
    """Forget ``subscription`` in a per-key index, and its key once empty; whether the key is left."""
    entries = per_key.get(subscription.key)
    if entries is None:
        return False
    entries.pop(subscription, None)
    if entries:
        return True
    del per_key[subscription.key]
    return False


def _offer(targets: list[LocalSubscription], event: str) -> None:
    """Append ``event``'s data frame to each subscription's outbox."""
    tail = event + protocol.DATA_FRAME_SUFFIX
    payload: bytes | None = None
    # One frame per subscription id: clients that number their
    # subscriptions alike (most do) share one bytes object.
    frames: dict[str, bytes] = {}
    for subscription in targets:
        outbox = subscription.outbox
        if not outbox.wire:
            outbox.offer(subscription.prefix + tail)
            continue
        frame = frames.get(subscription.prefix)
        if frame is None:
            if payload is None:
                payload = tail.encode()
            frame = frames[subscription.prefix] = text_frame(subscription.prefix.encode() + payload)
        outbox.offer(frame)


hub = Hub()
lifecycle.on_new_loop("hub", hub.reset)
