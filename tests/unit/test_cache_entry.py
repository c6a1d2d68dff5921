"""The cache entry binary format: exact round trips; every kind of bad input refused as EntryFormatError."""

from __future__ import annotations

import contextlib
import math
import struct

import pytest

from proxy.cache.entry import (
    ENTRY_FORMAT_VERSION,
    CacheEntry,
    EntryFormatError,
    decode_entry,
    encode_entry,
)


def make_entry(**overrides: object) -> CacheEntry:
    fields: dict[str, object] = {
        "status": 200,
        "headers": (("Content-Type", "text/html; charset=utf-8"), ("ETag", '"abc"')),
        "body": b"<h1>hello</h1>",
        "request_time": 1_700_000_000.25,
        "response_time": 1_700_000_000.5,
        "initial_age": 3.0,
        "ttl": 60.0,
    }
    fields.update(overrides)
    return CacheEntry(**fields)  # type: ignore[arg-type]


ROUND_TRIP_CASES = {
    "minimal": make_entry(),
    "empty body and no headers": make_entry(headers=(), body=b""),
    "all fields": make_entry(
        status=404,
        stale_while_revalidate=30.0,
        stale_if_error=86_400.0,
        must_revalidate=True,
        no_cache=True,
        vary=("accept-encoding", "accept-language"),
        tags=("product-1", "catalogue"),
        extra={"origin": "eu-1", "note": "", "ünïcode": "✓"},
    ),
    "only must_revalidate": make_entry(must_revalidate=True),
    "only no_cache": make_entry(no_cache=True),
    "duplicate headers kept in order": make_entry(
        headers=(("Set-Cookie", "a=1"), ("X-A", "1"), ("Set-Cookie", "b=2"), ("x-a", ""))
    ),
    "latin-1 header values": make_entry(headers=(("X-Name", "café ÿ\x80\xa0"), ("X-Tab", "a\tb"))),
    "non-UTF-8 header bytes via surrogateescape": make_entry(
        headers=(("X-Raw", b"caf\xe9 \xff".decode("utf-8", "surrogateescape")),)
    ),
    "any lone surrogate": make_entry(tags=("\ud800", "\udfff"), extra={"\udc80": "\ud83d"}),
    "non-BMP characters": make_entry(headers=(("X-Emoji", "😀"),), tags=("😀",)),
    "binary body": make_entry(body=bytes(range(256)) * 300),
    "large body": make_entry(body=b"x" * (3 * 1024 * 1024)),
    "vary marker (status 0, infinite ttl)": make_entry(status=0, headers=(), body=b"", ttl=math.inf),
    "infinite stale windows": make_entry(stale_while_revalidate=math.inf, stale_if_error=math.inf),
    "negative and tiny times": make_entry(initial_age=-0.0, request_time=5e-324, response_time=-1.5),
    "status 999": make_entry(status=999),
    "status 100": make_entry(status=100),
}


@pytest.mark.parametrize("entry", ROUND_TRIP_CASES.values(), ids=ROUND_TRIP_CASES.keys())
def test_round_trip(entry: CacheEntry) -> None:
    data = encode_entry(entry)
    assert data[:3] == b"EPC"
    assert data[3] == ENTRY_FORMAT_VERSION
    assert decode_entry(data) == entry


def test_round_trip_keeps_types() -> None:
    decoded = decode_entry(encode_entry(ROUND_TRIP_CASES["all fields"]))
    assert type(decoded.body) is bytes
    assert type(decoded.headers) is tuple
    assert all(type(pair) is tuple for pair in decoded.headers)
    assert type(decoded.vary) is tuple
    assert type(decoded.tags) is tuple
    assert type(decoded.extra) is dict


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview], ids=["bytes", "bytearray", "memoryview"])
def test_decode_accepts_buffers(wrap: type) -> None:
    entry = ROUND_TRIP_CASES["all fields"]
    assert decode_entry(wrap(encode_entry(entry))) == entry


def test_decode_memoryview_slice_of_larger_buffer() -> None:
    entry = make_entry()
    data = encode_entry(entry)
    buffer = b"junk" + data + b"junk"
    assert decode_entry(memoryview(buffer)[4 : 4 + len(data)]) == entry


def test_format_is_pinned() -> None:
    # Version 1 bytes are what other nodes and older workers read: changing them needs a new version.
    entry = CacheEntry(
        status=200,
        headers=(("A", "b"),),
        body=b"hi",
        request_time=1.0,
        response_time=2.0,
        initial_age=0.0,
        ttl=60.0,
        stale_if_error=5.0,
        no_cache=True,
        vary=("x",),
        tags=("t",),
        extra={"k": "v"},
    )
    expected = (
        b"EPC\x01"
        + struct.pack("!HddddddB", 200, 1.0, 2.0, 0.0, 60.0, 0.0, 5.0, 0b10)
        + b"\x00\x00\x00\x01" + b"\x00\x00\x00\x01A" + b"\x00\x00\x00\x01b"
        + b"\x00\x00\x00\x01" + b"\x00\x00\x00\x01x"
        + b"\x00\x00\x00\x01" + b"\x00\x00\x00\x01t"
        + b"\x00\x00\x00\x01" + b"\x00\x00\x00\x01k" + b"\x00\x00\x00\x01v"
        + b"\x00\x00\x00\x00\x00\x00\x00\x02hi"
    )  # fmt: skip
    assert encode_entry(entry) == expected
    assert decode_entry(expected) == entry


# ---- corruption ----------------------------------------------------------------------------------------

GOOD = encode_entry(ROUND_TRIP_CASES["all fields"])
FIXED_END = 4 + struct.calcsize("!HddddddB")


def u32(n: int) -> bytes:
    return struct.pack("!I", n)


def fixed(
    status: int = 200, times: tuple[float, ...] = (1.0, 2.0, 0.0, 60.0, 0.0, 0.0), flags: int = 0
) -> bytes:
    return b"EPC\x01" + struct.pack("!HddddddB", status, *times, flags)


def tail(
    headers: bytes = u32(0),
    vary: bytes = u32(0),
    tags: bytes = u32(0),
    extra: bytes = u32(0),
    body: bytes = struct.pack("!Q", 0),
) -> bytes:
    return headers + vary + tags + extra + body


def text(raw: bytes) -> bytes:
    return u32(len(raw)) + raw


def test_hand_built_minimal_entry_decodes() -> None:
    # The helpers below build valid data unless told otherwise.
    entry = decode_entry(fixed() + tail())
    assert entry.status == 200
    assert entry.body == b""


CORRUPT_CASES = {
    "empty": b"",
    "magic only": b"EPC",
    "wrong magic": b"XYZ" + GOOD[3:],
    "lower-case magic": b"epc" + GOOD[3:],
    "version 0": b"EPC\x00" + GOOD[4:],
    "version 2": b"EPC\x02" + GOOD[4:],
    "version 255": b"EPC\xff" + GOOD[4:],
    "truncated fixed part": GOOD[: FIXED_END - 1],
    "fixed part only": GOOD[:FIXED_END],
    "truncated body": GOOD[:-1],
    "trailing garbage": GOOD + b"\x00",
    "two entries back to back": GOOD + GOOD,
    "pickle": b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00.",
    "json": b'{"status": 200}',
    "unknown flag bit": fixed(flags=0b100) + tail(),
    "all flag bits": fixed(flags=0xFF) + tail(),
    "status 99": fixed(status=99) + tail(),
    "status 1000": fixed(status=1000) + tail(),
    "status 65535": fixed(status=65535) + tail(),
    "NaN ttl": fixed(times=(1.0, 2.0, 0.0, math.nan, 0.0, 0.0)) + tail(),
    "-inf ttl": fixed(times=(1.0, 2.0, 0.0, -math.inf, 0.0, 0.0)) + tail(),
    "NaN stale_if_error": fixed(times=(1.0, 2.0, 0.0, 1.0, 0.0, math.nan)) + tail(),
    "inf initial_age": fixed(times=(1.0, 2.0, math.inf, 60.0, 0.0, 0.0)) + tail(),
    "inf response_time": fixed(times=(1.0, math.inf, 0.0, 60.0, 0.0, 0.0)) + tail(),
    "NaN request_time": fixed(times=(math.nan, 2.0, 0.0, 60.0, 0.0, 0.0)) + tail(),
    "absurd header count": fixed() + tail(headers=u32(0xFFFFFFFF)),
    "header count one too many": fixed() + tail(headers=u32(2) + text(b"A") + text(b"b")),
    "absurd string length": fixed() + tail(headers=u32(1) + u32(0xFFFFFFFF) + b"A" + text(b"b")),
    "string length one too many": fixed() + u32(1) + u32(2) + b"A",
    "absurd vary count": fixed() + tail(vary=u32(0x7FFFFFFF)),
    "absurd tag count": fixed() + tail(tags=u32(1 << 31)),
    "absurd extra count": fixed() + tail(extra=u32(1 << 30)),
    "absurd body length": fixed() + tail(body=struct.pack("!Q", 0xFFFFFFFFFFFFFFFF)),
    "body length short by one": fixed() + tail(body=struct.pack("!Q", 1) + b"ab"),
    "missing body length": fixed() + u32(0) * 4 + b"\x00\x00\x00",
    "invalid UTF-8 in a header": fixed() + tail(headers=u32(1) + text(b"X") + text(b"\xff\xfe")),
    "invalid UTF-8 in a tag": fixed() + tail(tags=u32(1) + text(b"\xc3")),
    "overlong UTF-8": fixed() + tail(vary=u32(1) + text(b"\xc0\xaf")),
    "empty header name": fixed() + tail(headers=u32(1) + text(b"") + text(b"v")),
    "header name with colon": fixed() + tail(headers=u32(1) + text(b"A:B") + text(b"v")),
    "header name with space": fixed() + tail(headers=u32(1) + text(b"A B") + text(b"v")),
    "header value with CRLF (response splitting)": fixed()
    + tail(headers=u32(1) + text(b"X") + text(b"a\r\nSet-Cookie: evil=1")),
    "header value with LF": fixed() + tail(headers=u32(1) + text(b"X") + text(b"a\nb")),
    "header value with NUL": fixed() + tail(headers=u32(1) + text(b"X") + text(b"a\x00b")),
    "duplicate extra keys": fixed() + tail(extra=u32(2) + text(b"k") + text(b"1") + text(b"k") + text(b"2")),
}


@pytest.mark.parametrize("data", CORRUPT_CASES.values(), ids=CORRUPT_CASES.keys())
def test_corrupt_data_is_rejected(data: bytes) -> None:
    with pytest.raises(EntryFormatError):
        decode_entry(data)


def test_every_truncation_is_rejected() -> None:
    for end in range(len(GOOD)):
        with pytest.raises(EntryFormatError):
            decode_entry(GOOD[:end])


def test_every_single_byte_flip_raises_only_entry_format_error() -> None:
    data = bytearray(encode_entry(make_entry(vary=("a",), tags=("t",), extra={"k": "v"})))
    for i in range(len(data)):
        for flip in (0x01, 0x80, 0xFF):
            data[i] ^= flip
            with contextlib.suppress(EntryFormatError):
                decode_entry(bytes(data))
            data[i] ^= flip


def test_entry_format_error_is_a_value_error() -> None:
    assert issubclass(EntryFormatError, ValueError)


def test_non_contiguous_buffer_is_rejected() -> None:
    with pytest.raises(EntryFormatError):
        decode_entry(memoryview(GOOD)[::2])


# ---- what encode refuses (so nothing undecodable is ever written) --------------------------------------

UNENCODABLE_CASES = {
    "status 42": make_entry(status=42),
    "status 1000": make_entry(status=1000),
    "status -1": make_entry(status=-1),
    "NaN ttl": make_entry(ttl=math.nan),
    "inf response_time": make_entry(response_time=math.inf),
    "-inf stale_while_revalidate": make_entry(stale_while_revalidate=-math.inf),
    "header name with space": make_entry(headers=(("Bad Name", "v"),)),
    "header value with CR": make_entry(headers=(("X", "a\rb"),)),
    "non-str header value": make_entry(headers=(("X", 1),)),
}


@pytest.mark.parametrize("entry", UNENCODABLE_CASES.values(), ids=UNENCODABLE_CASES.keys())
def test_encode_refuses_what_decode_would_refuse(entry: CacheEntry) -> None:
    with pytest.raises(EntryFormatError):
        encode_entry(entry)
