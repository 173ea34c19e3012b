"""Server WebSocket frames built once per event (realtime/core/wsframe.py), against the
``websockets`` library's own serializer as the reference."""

from __future__ import annotations

import pytest
from websockets.frames import OP_TEXT, Frame

from realtime.core.wsframe import frame_header, text_frame


@pytest.mark.parametrize(
    ("length", "header"),
    [
        (0, b"\x81\x00"),
        (1, b"\x81\x01"),
        (125, b"\x81\x7d"),
        (126, b"\x81\x7e\x00\x7e"),
        (65535, b"\x81\x7e\xff\xff"),
        (65536, b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
        (2_621_440, b"\x81\x7f\x00\x00\x00\x00\x00\x28\x00\x00"),
    ],
)
def test_the_header_of_an_unmasked_final_text_frame(length: int, header: bytes) -> None:
    assert frame_header(length) == header


@pytest.mark.parametrize("length", [0, 5, 125, 126, 127, 65535, 65536, 300_000])
def test_a_text_frame_is_what_the_websockets_library_writes_for_a_server(length: int) -> None:
    payload = ('{"type":"data","id":"s1","event":"' + "é" * (length // 2) + '"}').encode()
    assert text_frame(payload) == Frame(OP_TEXT, payload).serialize(mask=False)
