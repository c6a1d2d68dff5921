"""proxy.http.h3_fields: HTTP/3 field sections to request heads and back (RFC 9114 §4.2 - §4.3)."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from proxy.http.h3_fields import alt_svc_value, request_head, response_fields

GET = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"example.com"), (b":path", b"/a?b=1")]


@pytest.mark.parametrize(
    ("fields", "method", "target", "host", "bad"),
    [
        (GET, "GET", "/a?b=1", "example.com", False),
        # RFC 9114 §4.3.1: Host equal to :authority is fine, a different one is malformed.
        ([*GET, (b"host", b"example.com")], "GET", "/a?b=1", "example.com", False),
        ([*GET, (b"host", b"other.example")], "GET", "/a?b=1", "example.com", True),
        # No :authority: Host stands (one only).
        (
            [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/"), (b"host", b"h")],
            "GET",
            "/",
            "h",
            False,
        ),
        ([(b":method", b"GET"), (b":path", b"/"), (b"host", b"h"), (b"host", b"i")], "GET", "/", "h", True),
        (
            [(b":method", b"OPTIONS"), (b":scheme", b"https"), (b":authority", b"h"), (b":path", b"*")],
            "OPTIONS",
            "*",
            "h",
            False,
        ),
        ([(b":method", b"CONNECT"), (b":authority", b"h:443")], "CONNECT", "", "h:443", False),
        ([(b":method", b"GET"), (b":authority", b"h")], "GET", "", "h", True),  # no :path
        ([*GET, (b":unknown", b"x")], "GET", "/a?b=1", "example.com", True),
    ],
)
def test_request_head(
    fields: list[tuple[bytes, bytes]], method: str, target: str, host: str, bad: bool
) -> None:
    head = request_head(fields)
    assert (head.method, head.target, head.headers.get("Host"), head.bad) == (method, target, host, bad)


def test_request_head_joins_cookies_and_reads_length() -> None:
    head = request_head([*GET, (b"cookie", b"a=1"), (b"cookie", b"b=2"), (b"content-length", b"12")])
    assert head.headers.getall("Cookie") == ["a=1; b=2"]  # RFC 9114 §4.2.1
    assert head.content_length == 12 and not head.bad
    assert (b"cookie", b"a=1") in head.raw
    assert request_head([*GET, (b"content-length", b"1"), (b"content-length", b"2")]).bad


def test_response_fields_drop_connection_specific_and_framing() -> None:
    headers = CIMultiDict(
        [
            ("Content-Type", "text/plain"),
            ("Connection", "keep-alive, X-Hop"),
            ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "h2c"),
            ("X-Hop", "1"),
            ("Content-Length", "99"),
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2"),
            ("X-Split", "a\r\nInjected: 1"),
        ]
    )
    fields = response_fields(200, headers, None, [("content-length", "5"), ("date", "D")])
    assert fields == [
        (b":status", b"200"),
        (b"content-type", b"text/plain"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
        (b"content-length", b"5"),
        (b"date", b"D"),
    ]


def test_response_fields_of_a_pre_encoded_head() -> None:
    head = (b"Cache-Control: max-age=60\r\nContent-Type: text/html\r\n", b"Age: 3\r\n", b"Via: 1.1 e\r\n")
    fields = response_fields(200, CIMultiDict(), head, [("content-length", "10")])
    assert fields == [
        (b":status", b"200"),
        (b"cache-control", b"max-age=60"),
        (b"content-type", b"text/html"),
        (b"age", b"3"),
        (b"via", b"1.1 e"),
        (b"content-length", b"10"),
    ]


def test_alt_svc_value() -> None:
    assert alt_svc_value(8443) == 'h3=":8443"; ma=86400'  # RFC 7838 §3
