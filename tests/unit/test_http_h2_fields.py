"""RFC 9113 §8.2/§8.3 request field checks and response field writing (proxy.http.h2_fields), table-driven."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from proxy.http.h2_fields import H2Request, Malformed, check_request, head_fields, response_fields

BASE = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"example.com"), (b":path", b"/a?b=1")]


def test_a_well_formed_request() -> None:
    checked = check_request([*BASE, (b"accept", b"*/*"), (b"cookie", b"a=1"), (b"cookie", b"b=2")])
    assert checked == H2Request(
        method="GET",
        scheme="https",
        authority="example.com",
        path="/a?b=1",
        fields=(("accept", "*/*"), ("cookie", "a=1; b=2")),  # §8.2.3: crumbs joined
        content_length=None,
    )


def test_host_stands_in_for_a_missing_authority() -> None:
    checked = check_request([BASE[0], BASE[1], BASE[3], (b"host", b"h.example")])
    assert isinstance(checked, H2Request) and checked.authority == "h.example"


@pytest.mark.parametrize(
    "block",
    [
        [*BASE, (b"X-Upper", b"1")],  # §8.2.1 upper case
        [*BASE, (b"connection", b"keep-alive")],  # §8.2.2
        [*BASE, (b"keep-alive", b"5")],
        [*BASE, (b"transfer-encoding", b"chunked")],
        [*BASE, (b"upgrade", b"websocket")],
        [*BASE, (b"proxy-connection", b"x")],
        [*BASE, (b"te", b"gzip")],  # TE only "trailers"
        [(b"accept", b"*/*"), *BASE],  # pseudo after regular
        [*BASE, (b":path", b"/again")],  # duplicate
        [*BASE, (b":status", b"200")],  # response pseudo-header
        [*BASE, (b":protocol", b"websocket")],  # not offered (RFC 8441)
        [BASE[1], BASE[2], BASE[3]],  # no :method
        [BASE[0], BASE[2], BASE[3]],  # no :scheme
        [BASE[0], BASE[1], BASE[2]],  # no :path
        [BASE[0], BASE[1], BASE[2], (b":path", b"")],  # empty :path
        [BASE[0], BASE[1], BASE[2], (b":path", b"*")],  # * only for OPTIONS
        [*BASE, (b"x", b"a\r\nb")],  # CR LF in a value
        [*BASE, (b"x", b" padded")],  # leading whitespace
        [*BASE, (b"host", b"other.example")],  # differs from :authority
        [*BASE, (b"content-length", b"1"), (b"content-length", b"2")],
        [*BASE, (b"content-length", b"-1")],
        [(b":method", b"CONNECT"), (b":authority", b"x:443"), (b":path", b"/")],
    ],
)
def test_malformed_requests(block: list[tuple[bytes, bytes]]) -> None:
    assert isinstance(check_request(block), Malformed)


def test_te_trailers_and_options_asterisk_are_allowed() -> None:
    assert isinstance(check_request([*BASE, (b"te", b"trailers")]), H2Request)
    options = [(b":method", b"OPTIONS"), (b":scheme", b"https"), (b":authority", b"a"), (b":path", b"*")]
    assert isinstance(check_request(options), H2Request)


def test_response_fields_drop_connection_specific_fields() -> None:
    headers = CIMultiDict(
        [
            ("Content-Type", "text/plain"),
            ("Connection", "X-Private, close"),
            ("X-Private", "secret"),
            ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "h2c"),
            ("Proxy-Connection", "keep-alive"),
            ("Trailer", "X-Sum"),
            ("Content-Length", "999"),
            ("X-Split", "a\r\nInjected: 1"),
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2"),
        ]
    )
    fields = response_fields(200, headers.items(), [("content-length", "5")])
    assert fields == [
        (b":status", b"200"),
        (b"content-type", b"text/plain"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
        (b"content-length", b"5"),
    ]


def test_head_fields_reads_a_pre_encoded_head() -> None:
    parts = (b'Content-Type: text/html\r\nETag: "x"\r\n', b"Age: 3\r\n")
    assert head_fields(parts) == [("Content-Type", "text/html"), ("ETag", '"x"'), ("Age", "3")]
