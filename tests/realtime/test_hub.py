"""Local delivery (realtime/delivery/hub.py): one frame per event and subscription id, as bytes
for outboxes that write to their transport and as text for the others."""

from __future__ import annotations

from realtime.core import protocol
from realtime.core.paths import parse_channel
from realtime.core.wsframe import text_frame
from realtime.delivery.hub import Hub, LocalSubscription
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
