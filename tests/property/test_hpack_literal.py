"""The stateless HPACK response encoder (proxy.http.hpack_literal) against the hpack library's decoder."""

from __future__ import annotations

from hpack import Decoder
from hypothesis import given
from hypothesis import strategies as st

from proxy.http.hpack_literal import LiteralEncoder

NAME = st.binary(min_size=1, max_size=300).map(lambda b: b.lower())
FIELDS = st.lists(st.tuples(NAME, st.binary(max_size=300)), max_size=20)
STATUS = st.sampled_from([b"200", b"204", b"304", b"404", b"500", b"103", b"302", b"999"])


@given(st.lists(st.tuples(STATUS, FIELDS), min_size=1, max_size=5), st.integers(0, 4096))
def test_blocks_decode_to_what_was_encoded(
    blocks: list[tuple[bytes, list[tuple[bytes, bytes]]]], size: int
) -> None:
    encoder, decoder = LiteralEncoder(), Decoder()
    decoder.max_header_list_size = 1 << 30
    for n, (status, fields) in enumerate(blocks):
        if n == 2:
            encoder.header_table_size = size  # the viewer changed its table size
            decoder.header_table.maxsize = size
        expected = [(b":status", status), *fields]
        assert decoder.decode(encoder.encode(expected), raw=True) == expected
        assert decoder.header_table.dynamic_entries == type(decoder.header_table.dynamic_entries)()
