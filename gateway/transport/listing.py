"""What a listed item costs in a List response, so that a page stays under the gateway's message limit.

Owns: `list_budget` (the bytes of items one response may carry under `max_message_bytes`) and `entry_size` (an
item's bytes inside a response: its encoding, its field tag and its length prefix). The domain cuts pages with
them (`gateway.trust.pages.cut_to_bytes`, `gateway.jobs.reads.within_bytes`); it never sees protobuf.
"""

from __future__ import annotations

from google.protobuf.message import Message

LIST_HEADROOM = 1024  # bytes of a List response beyond its items: the page token and the framing


def list_budget(max_message_bytes: int) -> int:
    """Bytes of items one List response may carry under the gateway's message limit."""
    return max(max_message_bytes - LIST_HEADROOM, max_message_bytes // 2)


def entry_size(message: Message) -> int:
    """`message`'s bytes as one entry of a repeated field (field numbers below 16: a one-byte tag)."""
    size = message.ByteSize()
    return size + 1 + len(_varint(size))


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)
