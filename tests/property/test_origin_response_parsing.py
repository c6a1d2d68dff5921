"""The origin connection parses a response the same however its bytes are split across reads."""

from __future__ import annotations

import asyncio
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.origin.connection import OriginConnection

TOKEN = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1, max_size=12
)
VALUE = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30)
FIELDS = st.lists(
    st.tuples(TOKEN.filter(lambda n: n.lower() not in ("content-length", "transfer-encoding")), VALUE),
    max_size=8,
)
BODY = st.binary(max_size=300)


def _encode(status: int, reason: str, fields: list[tuple[str, str]], body: bytes, chunked: bool) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}\r\n"] + [f"{name}: {value}\r\n" for name, value in fields]
    if chunked:
        lines.append("Transfer-Encoding: chunked\r\n\r\n")
        framed = b"".join(
            b"%x\r\n%s\r\n" % (len(body[i : i + 7]), body[i : i + 7]) for i in range(0, len(body), 7)
        )
        return "".join(lines).encode() + framed + b"0\r\n\r\n"
    lines.append(f"Content-Length: {len(body)}\r\n\r\n")
    return "".join(lines).encode() + body


def _parse(pieces: list[bytes]) -> tuple[int, str, list[tuple[str, str]], bytes, bool]:
    loop = asyncio.new_event_loop()
    try:
        conn = OriginConnection(loop, 30.0, lambda _: None)
        conn.begin(False, None)
        for piece in pieces:
            conn.data_received(piece)
        assert conn.head_done and conn.complete

        async def body() -> bytes:
            parts = []
            while chunk := await conn.read():
                parts.append(chunk)
            return b"".join(parts)

        data = loop.run_until_complete(body())
        return conn.status, conn.reason, conn.headers, data, conn.end()
    finally:
        loop.close()


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges) if b > a]


@settings(max_examples=200, deadline=None)
@given(
    status=st.integers(200, 599).filter(lambda s: s not in (204, 304)),
    reason=st.sampled_from(["OK", "Not Found", "Something Else", "x"]),
    fields=FIELDS,
    body=BODY,
    chunked=st.booleans(),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
)
def test_split_response_parses_like_the_whole(
    status: int,
    reason: str,
    fields: list[tuple[str, str]],
    body: bytes,
    chunked: bool,
    cuts: list[int],
) -> None:
    data = _encode(status, reason, fields, body, chunked)
    whole = _parse([data])
    split = _parse(_split(data, cuts))
    assert whole == split
    got_status, got_reason, got_fields, got_body, reusable = whole
    assert (got_status, got_reason, got_body, reusable) == (status, reason, body, True)
    assert got_fields[: len(fields)] == fields  # names as sent, order kept, duplicates kept
