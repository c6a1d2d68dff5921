"""A stateless HPACK encoder for responses (RFC 7541): every field a literal that never enters the
dynamic table, ``:status`` from the static table when it is there.

Installed by the HTTP/2 front (``proxy.server.http2``) as its ``h2`` connection's encoder: ``h2`` calls
``encode(fields)`` for each HEADERS block it sends and sets ``header_table_size`` when the viewer's
SETTINGS_HEADER_TABLE_SIZE changes. The pure-Python ``hpack`` encoder searches its tables for every field
(most of the CPU of an HTTP/2 cache hit); this one only copies bytes, at the price of no compression of
response fields. Its dynamic table is always empty: the first block, and the first after a table size
change, start with a size update to 0 (§6.3), so the viewer's decoder keeps nothing for it either.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["LiteralEncoder"]

# RFC 7541 Appendix A: static table indexes of ":status" values.
_STATUS_INDEX = {b"200": 8, b"204": 9, b"206": 10, b"304": 11, b"400": 12, b"404": 13, b"500": 14}


def _integer(value: int, prefix_bits: int, first: int) -> bytes:
    """RFC 7541 §5.1: ``value`` with an N-bit prefix, ``first`` holding the pattern bits above it."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class LiteralEncoder:
    """What ``h2`` needs of an encoder: ``encode`` and ``header_table_size``."""

    __slots__ = ("_resize",)

    def __init__(self) -> None:
        self._resize = True  # the next block starts with a table size update to 0

    @property
    def header_table_size(self) -> int:
        return 0

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        self._resize = True  # the viewer changed SETTINGS_HEADER_TABLE_SIZE: say again we use none

    def encode(self, headers: Iterable[tuple[bytes | str, bytes | str]], huffman: bool = True) -> bytes:
        """The header block of ``headers`` (names already lower-case)."""
        out = bytearray(b"\x20" if self._resize else b"")  # §6.3: dynamic table size update to 0
        self._resize = False
        for name, value in headers:
            if isinstance(name, str):
                name = name.encode("latin-1")
            if isinstance(value, str):
                value = value.encode("utf-8", "surrogateescape")
            if name == b":status":
                index = _STATUS_INDEX.get(value)
                if index is not None:
                    out.append(0x80 | index)  # §6.1 indexed field
                    continue
                out += b"\x08"  # §6.2.2 literal without indexing, indexed name 8 (:status)
            else:
                out += b"\x00"  # §6.2.2 literal without indexing, new name
                out += _integer(len(name), 7, 0)
                out += name
            out += _integer(len(value), 7, 0)
            out += value
        return bytes(out)
