"""WebSocket frames as a server writes them (RFC 6455 §5.2). Pure: no Django, no I/O.

A server's frames are never masked, so a frame is a header that depends only on
the payload's length, followed by the payload. A ``data`` frame differs between
the subscribers of an event only by the subscription id in its prefix
(:func:`realtime.core.protocol.data_frame_prefix`): the hub builds the frame's
bytes once per event and distinct prefix with :func:`text_frame`, and hands the
same bytes object to every connection whose server lets us write to its
transport (:mod:`realtime.delivery.direct`).

Frames are always whole and unfragmented (FIN set) and never compressed (RSV1
clear). An uncompressed message is valid on a connection that negotiated
``permessage-deflate`` (RFC 7692 §6), and it leaves the server's compression
context untouched: the client's decompressor only sees messages with RSV1 set.
"""

from __future__ import annotations

# FIN + opcode 0x1 (text).
_TEXT = 0x81
# Payload lengths that fit the 7-bit field, and the 16-bit extended field (§5.2).
_SHORT = 126
_MEDIUM = 1 << 16


def frame_header(length: int) -> bytes:
    """The header of an unmasked, final text frame whose payload is ``length`` bytes."""
    if length < _SHORT:
        return bytes((_TEXT, length))
    if length < _MEDIUM:
        return bytes((_TEXT, 126)) + length.to_bytes(2, "big")
    return bytes((_TEXT, 127)) + length.to_bytes(8, "big")


def text_frame(payload: bytes) -> bytes:
    """One unmasked, final text frame carrying ``payload`` (UTF-8 text, already encoded)."""
    return frame_header(len(payload)) + payload
