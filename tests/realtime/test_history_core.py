"""The pure history core: positions, tails and the recovery decision (PROTOCOL §12, "History")."""

from __future__ import annotations

import pytest

from realtime.core.history import Position, Recovery, StreamRead, offset_of, parse_since, recover, tail
from realtime.exceptions import MalformedMessage


def entries(first: int, last: int) -> list[tuple[int, str]]:
    return [(offset, f'"e{offset}"') for offset in range(first, last + 1)]


@pytest.mark.parametrize(
    ("since", "stream", "limit", "expected"),
    [
        pytest.param(
            Position(3, "E"),
            StreamRead("E", 3, 1, ()),
            10,
            Recovery(True, (), Position(3, "E")),
            id="nothing-missed",
        ),
        pytest.param(
            Position(0, "E"),
            StreamRead("E", 0, None, ()),
            10,
            Recovery(True, (), Position(0, "E")),
            id="empty-stream",
        ),
        pytest.param(
            Position(2, "E"),
            StreamRead("E", 5, 1, entries(3, 5)),
            10,
            Recovery(True, entries(3, 5), Position(5, "E")),
            id="three-missed",
        ),
        pytest.param(
            Position(2, "E"),
            StreamRead("E", 5, 1, entries(3, 5)),
            3,
            Recovery(True, entries(3, 5), Position(5, "E")),
            id="exactly-the-limit",
        ),
        pytest.param(
            Position(1, "E"),
            StreamRead("E", 5, 1, entries(2, 5)),
            3,
            Recovery(False, (), Position(5, "E")),
            id="beyond-the-limit",
        ),
        pytest.param(
            Position(2, "OLD"),
            StreamRead("NEW", 5, 1, entries(1, 5)),
            10,
            Recovery(False, (), Position(5, "NEW")),
            id="epoch-changed",
        ),
        pytest.param(
            Position(2, "E"),
            StreamRead("E", 9, 5, entries(5, 9)),
            10,
            Recovery(False, (), Position(9, "E")),
            id="trimmed",
        ),
        pytest.param(
            Position(2, "E"),
            StreamRead("E", 9, None, ()),
            10,
            Recovery(False, (), Position(9, "E")),
            id="expired",
        ),
        pytest.param(
            Position(7, "E"),
            StreamRead("E", 5, 1, entries(1, 5)),
            10,
            Recovery(False, (), Position(5, "E")),
            id="beyond-the-end",
        ),
        pytest.param(
            Position(2, "E"),
            StreamRead("E", 5, 1, entries(3, 4)),
            10,
            Recovery(False, (), Position(5, "E")),
            id="entries-short",
        ),
    ],
)
def test_recover(since: Position, stream: StreamRead, limit: int, expected: Recovery) -> None:
    assert recover(since, stream, limit) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        ({"offset": 0, "epoch": ""}, Position(0, "")),
        ({"offset": 12, "epoch": "abc", "extra": 1}, Position(12, "abc")),
    ],
)
def test_parse_since(raw: object, expected: Position | None) -> None:
    assert parse_since(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([1, "a"], "since must be an object"),
        ({"offset": -1, "epoch": "a"}, "since.offset must be a non-negative integer"),
        ({"offset": True, "epoch": "a"}, "since.offset must be a non-negative integer"),
        ({"offset": "1", "epoch": "a"}, "since.offset must be a non-negative integer"),
        ({"offset": 1}, "since.epoch must be a string of at most 64 characters"),
        ({"offset": 1, "epoch": "x" * 65}, "since.epoch must be a string of at most 64 characters"),
    ],
)
def test_parse_since_refuses(raw: object, message: str) -> None:
    with pytest.raises(MalformedMessage) as caught:
        parse_since(raw)
    assert caught.value.message == message


def test_a_tail_is_the_encoded_event_then_its_offset() -> None:
    assert tail('"{\\"a\\":1}"', 42) == '"{\\"a\\":1}","offset":42'


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ('{"type":"data","id":"s","event":"1","offset":42}', 42),
        ('"1","offset":7', 7),
        ('{"type":"data","id":"s","event":"1"}', None),
        # An event whose text looks like an offset is inside a JSON string: escaped quotes.
        ('{"type":"data","id":"s","event":"{\\"offset\\":3}"}', None),
    ],
)
def test_offset_of(frame: str, expected: int | None) -> None:
    assert offset_of(frame) == expected
