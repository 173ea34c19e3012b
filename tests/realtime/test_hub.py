"""Local delivery (realtime/delivery/hub.py): one frame per event and subscription id, as bytes
for outboxes that write to their transport and as text for the others."""

from __future__ import annotations

import pytest

from realtime.core import protocol
from realtime.core.paths import parse_channel
from realtime.core.wsframe import text_frame
from realtime.delivery.hub import FENCE_SECONDS, Hub, LocalSubscription
from realtime.delivery.outbox import Outbox


async def _ignore(message: dict) -> None:
    pass


def outbox(*, wire: bool) -> Outbox:
    box = Outbox(_ignore, limit=100, on_overflow=lambda: None)
    box.wire = wire  # as start() sets it when the server lets frames go to its transport
    return box


def queued(box: Outbox) -> list:
    return list(box._frames)


def test_direct_subscribers_with_the_same_id_share_one_frame_and_the_others_get_text() -> None:
    hub = Hub()
    channel = parse_channel("/default/room", allow_wildcard=False)
    a, b, c, text_box = outbox(wire=True), outbox(wire=True), outbox(wire=True), outbox(wire=False)
    for box, sub_id in ((a, "s1"), (b, "s1"), (c, "other"), (text_box, "s1")):
        hub.add(LocalSubscription.create(box, sub_id, channel))

    assert hub.deliver(channel.key, ['{"n":1}', '"two"']) == 8

    one = [
        text_frame(b'{"type":"data","id":"s1","event":{"n":1}}'),
        text_frame(b'{"type":"data","id":"s1","event":"two"}'),
    ]
    assert queued(a) == queued(b) == one
    assert all(x is y for x, y in zip(queued(a), queued(b), strict=True))
    assert queued(c) == [
        text_frame(b'{"type":"data","id":"other","event":{"n":1}}'),
        text_frame(b'{"type":"data","id":"other","event":"two"}'),
    ]
    assert queued(text_box) == [
        protocol.data_frame_prefix("s1") + '{"n":1}}',
        protocol.data_frame_prefix("s1") + '"two"}',
    ]


def test_unicode_events_are_framed_by_their_utf8_length() -> None:
    hub = Hub()
    channel = parse_channel("/default/room", allow_wildcard=False)
    box = outbox(wire=True)
    hub.add(LocalSubscription.create(box, "s", channel))
    event = '"' + "é" * 100 + '"'  # 202 bytes: the 16-bit length form
    hub.deliver(channel.key, [event])
    payload = ('{"type":"data","id":"s","event":' + event + "}").encode()
    assert queued(box) == [b"\x81\x7e" + len(payload).to_bytes(2, "big") + payload]


# -- fences: a recovered subscription hears no publication twice ----------------------------------


def history_event(n: int) -> str:
    """An event of a history stream as the bridge hands it over: its offset after it."""
    return f'"e{n}","offset":{n}'


def test_a_fenced_subscription_gets_no_live_event_it_has_and_the_first_newer_one_lifts_the_fence() -> None:
    hub = Hub()
    channel = parse_channel("/chat/room", allow_wildcard=False)
    recovered, other = outbox(wire=False), outbox(wire=False)
    fenced = LocalSubscription.create(recovered, "r", channel)
    hub.add(fenced)
    hub.add(LocalSubscription.create(other, "o", channel))
    hub.fence(fenced, 5, "E")

    # 4 and 5 reached the recovered subscriber by its replay; they arrive live only now.
    assert hub.deliver(channel.key, [history_event(4), history_event(5), history_event(6)], "E") == 4
    # Above the floor once: the fence is down, whatever comes next goes through.
    assert hub.deliver(channel.key, [history_event(3)], "E") == 2

    r, o = protocol.data_frame_prefix("r"), protocol.data_frame_prefix("o")
    assert queued(recovered) == [r + '"e6","offset":6}', r + '"e3","offset":3}']
    assert queued(other) == [o + history_event(n) + "}" for n in (4, 5, 6, 3)]


# A fence at offset 9 of epoch "E"; one event arrives `later` seconds after the fence was set.
# (fence epoch, event epoch, event offset, later, delivered, the fence still stands)
FENCE_TABLE = [
    # The same stream: a late copy of a publication the subscriber has, however late.
    ("E", "E", 9, 0.0, False, True),
    ("E", "E", 9, FENCE_SECONDS + 1, False, True),
    ("E", "E", 9, 3600.0, False, True),
    ("E", "E", 10, 0.0, True, False),
    # The stream restarted under a new epoch, numbering from 1: new, at once.
    ("E", "F", 1, 0.0, True, False),
    ("E", "F", 9, 0.0, True, False),
    # No epoch with the event (a process of older code sent it): held back for FENCE_SECONDS only.
    ("E", None, 9, 0.0, False, True),
    ("E", None, 9, FENCE_SECONDS - 0.5, False, True),
    ("E", None, 9, FENCE_SECONDS, True, False),
    ("E", None, 10, 0.0, True, False),
    # No epoch with the fence: the same time rule.
    (None, "E", 9, 0.0, False, True),
    (None, "E", 9, FENCE_SECONDS, True, False),
    (None, "F", 1, 0.0, False, True),
]


@pytest.mark.parametrize(("fence_epoch", "epoch", "offset", "later", "delivered", "stands"), FENCE_TABLE)
def test_a_fence_holds_back_what_its_subscription_has_of_its_epoch(
    fence_epoch: str | None, epoch: str | None, offset: int, later: float, delivered: bool, stands: bool
) -> None:
    now = [1000.0]
    hub = Hub(clock=lambda: now[0])
    channel = parse_channel("/chat/room", allow_wildcard=False)
    box = outbox(wire=True)
    subscription = LocalSubscription.create(box, "s", channel)
    hub.add(subscription)
    hub.fence(subscription, 9, fence_epoch)
    now[0] += later

    assert hub.deliver(channel.key, [history_event(offset)], epoch) == int(delivered)

    frame = f'{{"type":"data","id":"s","event":"e{offset}","offset":{offset}}}'.encode()
    assert queued(box) == ([text_frame(frame)] if delivered else [])
    assert (subscription in hub._fences.get(channel.key, {})) is stands


def test_no_fence_for_nothing_recovered_or_a_subscription_already_gone() -> None:
    hub = Hub()
    channel = parse_channel("/chat/room", allow_wildcard=False)
    box = outbox(wire=False)
    fresh = LocalSubscription.create(box, "f", channel)
    gone = LocalSubscription.create(outbox(wire=False), "g", channel)
    hub.add(fresh)
    hub.fence(fresh, 0, "E")
    hub.fence(gone, 5, "E")

    assert hub.deliver(channel.key, [history_event(1)], "E") == 1
    assert hub._fences == {}
