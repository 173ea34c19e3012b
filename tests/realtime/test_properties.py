"""Properties of the pure core that must hold for any input (hypothesis).

The tables in test_protocol.py, test_paths.py and test_handshake.py pin the
cases we know about; these look for the ones we did not think of: a client
frame or channel string that makes the parser raise something other than a
RealtimeError, or an error reply that cannot be sent.
"""

from __future__ import annotations

import base64
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from realtime.core import protocol
from realtime.core.paths import MAX_SEGMENTS, ChannelPath, parse_channel
from realtime.core.protocol import ClientType, ConnectionInit, Publish, ServerType, Subscribe, Unsubscribe
from realtime.exceptions import InvalidChannel, MalformedMessage, RealtimeError, Transport
from realtime.transport.handshake import decode_authorization

FAST = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

CLIENT_MESSAGES = (ConnectionInit, Subscribe, Unsubscribe, Publish)

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
ALNUM = "abcxyzABCXYZ0189"
valid_ids = st.text(alphabet=ALNUM + "-_+", min_size=1, max_size=128)
# [A-Za-z0-9](?:[A-Za-z0-9-]{0,48}[A-Za-z0-9])?, built directly: from_regex is slow.
alnum = st.sampled_from(ALNUM)
segments = alnum | st.builds(
    lambda first, middle, last: first + middle + last,
    alnum,
    st.text(alphabet=ALNUM + "-", max_size=48),
    alnum,
)
channel_text = st.text(alphabet="ab0Z-/*. \n\u00e9", max_size=30)
# Lone surrogates included: a JSON "\ud800" escape puts one in a parsed string.
any_text = st.text(st.characters() | st.characters(categories=["Cs"]), max_size=20)

client_frames = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from([t.value for t in ClientType]) | st.text(max_size=12) | json_values,
        "id": valid_ids | any_text | json_values,
        "channel": channel_text | json_values,
        "events": st.lists(st.text(max_size=10) | json_values, max_size=6) | json_values,
        "authorization": st.dictionaries(any_text, any_text | json_values, max_size=4) | json_values,
        "payload": json_values,
    },
)


def check_parse(text: str | bytes) -> None:
    """parse returns a typed message, or raises a RealtimeError whose reply is sendable."""
    try:
        message = protocol.parse(text)
    except RealtimeError as error:
        operation, op_id = protocol.error_operation(error)
        assert operation is None or operation in protocol.ERROR_REPLY
        assert op_id is None or isinstance(op_id, str)
        kind = (
            protocol.ERROR_REPLY.get(operation, ServerType.ERROR) if op_id is not None else ServerType.ERROR
        )
        reply = protocol.error_frame(kind, op_id, [error.to_error(Transport.WEBSOCKET)])
        assert json.loads(reply.encode("utf-8"))["type"] == kind
        return
    assert isinstance(message, CLIENT_MESSAGES)
    if not isinstance(message, ConnectionInit):
        assert protocol.OPERATION_ID.match(message.id)
        data = (
            protocol.data_frame_prefix(message.id) + protocol.encode_event("e") + protocol.DATA_FRAME_SUFFIX
        )
        assert json.loads(data) == {"type": "data", "id": message.id, "event": "e"}
    if isinstance(message, Subscribe | Publish):
        assert isinstance(message.channel, str)
        auth = message.authorization
        assert auth is None or all(isinstance(v, str) and k == k.lower() for k, v in auth.items())


@FAST
@given(st.text())
def test_parse_of_any_text_returns_a_message_or_raises_a_realtime_error(text):
    check_parse(text)


@FAST
@given(json_values)
def test_parse_of_any_json_value_returns_a_message_or_raises_a_realtime_error(value):
    check_parse(json.dumps(value))


@FAST
@given(client_frames, st.booleans())
def test_parse_of_any_frame_shaped_object_returns_a_message_or_raises_a_realtime_error(fields, ascii_only):
    check_parse(json.dumps(fields, ensure_ascii=ascii_only))


@FAST
@given(st.binary())
def test_parse_refuses_every_binary_frame(data):
    try:
        protocol.parse(data)
    except MalformedMessage as error:
        assert error.message == "Binary frames are not supported"
    else:
        raise AssertionError("a binary frame was parsed")


@FAST
@given(channel_text | st.text() | json_values, st.booleans())
def test_parse_channel_returns_a_channel_or_raises_invalid_channel(raw, allow_wildcard):
    try:
        path = parse_channel(raw, allow_wildcard=allow_wildcard)
    except InvalidChannel:
        return
    assert isinstance(path, ChannelPath)
    assert 1 <= len(path.all_segments) <= MAX_SEGMENTS
    assert allow_wildcard or not path.wildcard


@st.composite
def channel_paths(draw, *, wildcard: bool | None = None) -> tuple[str, ChannelPath]:
    """A valid channel spelled any legal way, and the ChannelPath it must parse to."""
    is_wildcard = draw(st.booleans()) if wildcard is None else wildcard
    concrete = draw(
        st.lists(segments, min_size=1, max_size=MAX_SEGMENTS - 1 if is_wildcard else MAX_SEGMENTS)
    )
    raw = "/".join([*concrete, "*"] if is_wildcard else concrete)
    raw = ("/" if draw(st.booleans()) else "") + raw + ("/" if draw(st.booleans()) else "")
    return raw, ChannelPath(tuple(concrete), is_wildcard)


@FAST
@given(channel_paths())
def test_a_valid_channel_parses_and_its_canonical_path_round_trips(generated):
    raw, expected = generated
    path = parse_channel(raw, allow_wildcard=True)
    assert path == expected
    assert parse_channel(path.path, allow_wildcard=True) == path
    assert parse_channel(path.key, allow_wildcard=True) == path
    assert path.path == "/" + path.key


@FAST
@given(channel_paths(wildcard=False))
def test_matching_keys_all_belong_to_the_published_channels_namespace(generated):
    _, path = generated
    keys = path.matching_keys()
    assert keys[0] == path.key
    assert len(keys) == len(set(keys)) == len(path.segments)
    assert all(key.split("/")[0] == path.namespace for key in keys)
    assert all(parse_channel(key, allow_wildcard=True).namespace == path.namespace for key in keys)


@FAST
@given(channel_paths(), channel_paths(wildcard=False))
def test_a_subscription_matches_a_publish_exactly_when_its_prefix_does(subscription, published):
    _, sub = subscription
    _, pub = published
    if sub.wildcard:
        depth = len(sub.segments)
        expected = len(pub.segments) > depth and pub.segments[:depth] == sub.segments
    else:
        expected = sub.segments == pub.segments
    assert (sub.key in pub.matching_keys()) is expected


@FAST
@given(st.text())
def test_decode_authorization_of_any_text_returns_an_object_or_none(text):
    decoded = decode_authorization(text)
    assert decoded is None or all(isinstance(v, str) for v in decoded.values())


@FAST
@given(st.dictionaries(st.text(max_size=12), st.text(max_size=12) | json_scalars, max_size=5), st.booleans())
def test_decode_authorization_round_trips_any_encoded_object(value, url_safe):
    raw = json.dumps(value).encode()
    encoded = (base64.urlsafe_b64encode(raw) if url_safe else base64.b64encode(raw)).decode().rstrip("=")
    assert decode_authorization(encoded) == protocol.parse_authorization(value)
