"""The hit fast path's pre-encoded heads (``proxy.pipeline.encoded``) and ``Deliverer.from_entry`` using
them: which fields are encoded and in what order, purge tags, CR/LF safety, the entries that must take the
general path, HEAD, and Age per request."""

from __future__ import annotations

import dataclasses

import pytest
from multidict import CIMultiDict

from proxy.cache.entry import CacheEntry, decode_entry, encode_entry
from proxy.http.reasons import CacheResult
from proxy.messages import EdgeRequest
from proxy.pipeline.context import RequestContext
from proxy.pipeline.deliver import Deliverer
from proxy.pipeline.encoded import NOT_ENCODABLE, SERVER_LINE, entry_wire, stored_fields

DATE = ("Date", "Tue, 01 Jul 2025 10:00:00 GMT")
TYPE = ("Content-Type", "text/plain")


def entry(*headers: tuple[str, str], tags: tuple[str, ...] = (), status: int = 200) -> CacheEntry:
    return CacheEntry(
        status=status,
        headers=headers,
        body=b"hello",
        request_time=1000.0,
        response_time=1000.0,
        initial_age=0.0,
        ttl=60.0,
        tags=tags,
    )


@pytest.mark.parametrize(
    ("headers", "tags", "fields", "tail"),
    [
        (
            (DATE, TYPE),
            (),
            b"Date: Tue, 01 Jul 2025 10:00:00 GMT\r\nContent-Type: text/plain\r\n",
            SERVER_LINE,
        ),
        ((TYPE, DATE, ("Server", "origin")), (), None, b""),
        # Framing fields are the front's: never encoded.
        ((TYPE, ("Content-Length", "5"), ("Connection", "close"), DATE), (), None, SERVER_LINE),
        # Purge tags are stripped when the entry has tags, kept (as the general path) when it has none.
        ((TYPE, ("Surrogate-Key", "a b"), ("Cache-Tag", "c"), DATE), ("a", "b", "c"), None, SERVER_LINE),
        ((TYPE, ("Surrogate-Key", ""), DATE), (), None, SERVER_LINE),
        # Repeated fields keep their order and case.
        ((TYPE, ("set-COOKIE", "a=1"), ("Set-Cookie", "b=2"), DATE), (), None, SERVER_LINE),
    ],
)
def test_stored_fields(
    headers: tuple[tuple[str, str], ...], tags: tuple[str, ...], fields: bytes | None, tail: bytes
) -> None:
    got_fields, got_tail = stored_fields(entry(*headers, tags=tags))
    strip = {"content-length", "connection"} | ({"surrogate-key", "cache-tag"} if tags else set())
    expected = fields or "".join(f"{n}: {v}\r\n" for n, v in headers if n.lower() not in strip).encode()
    assert (got_fields, got_tail) == (expected, tail)


@pytest.mark.parametrize(
    "headers",
    [
        (TYPE,),  # no Date: the front would add its own after the framing fields
        (DATE,),  # no Content-Type: the front would add one
        (DATE, TYPE, ("Via", "1.1 upstream")),  # DELIVER appends to these
        (DATE, TYPE, ("Cache-Status", "upstream; hit")),
        (DATE, TYPE, ("Age", "3")),
        (DATE, TYPE, ("X-Cache", "Hit from elsewhere")),
        (DATE, TYPE, ("X-Evil", "a\r\nSet-Cookie: x=1")),  # response splitting
        (DATE, TYPE, ("X-Evil", "a\nb")),
        (DATE, TYPE, ("X-Odd", "\ud800")),  # a lone surrogate no encoding can write
    ],
)
def test_entries_the_general_path_serves(headers: tuple[tuple[str, str], ...]) -> None:
    assert stored_fields(entry(*headers)) is NOT_ENCODABLE


def test_non_ascii_values_are_written_as_the_general_path_writes_them() -> None:
    fields, _ = stored_fields(entry(DATE, TYPE, ("X-Name", "caf\u00e9"), ("X-Raw", "\udcff")))
    assert fields.endswith("X-Name: caf\u00e9\r\n".encode() + b"X-Raw: \xff\r\n")


def test_wire_is_built_once_derived_and_never_serialised() -> None:
    e = entry(DATE, TYPE)
    first = entry_wire(e)
    assert entry_wire(e) is first and e.wire is first
    assert dataclasses.replace(e).wire is None  # a changed copy encodes its own fields
    decoded = decode_entry(encode_entry(e))
    assert decoded.wire is None and decoded == e


def context(method: str = "GET", now: float = 1010.0, **headers: str) -> RequestContext:
    request = EdgeRequest(method, "/a", "", CIMultiDict(headers), "127.0.0.1", "example.com")
    ctx = RequestContext(request, now, 0.0)
    ctx.result = CacheResult.HIT
    return ctx


def test_fresh_hit_writes_the_encoded_fields_then_deliver_fields_with_age_per_request() -> None:
    deliver = Deliverer("edge-1")
    e = entry(DATE, TYPE)
    heads = []
    for now in (1010.2, 1013.9):
        response = deliver.from_entry(context(now=now), e, hit=True)
        assert not response.headers and response.body == b"hello" and response.content_length == 5
        assert response.head is not None
        heads.append(b"".join(response.head))
    fields = b"Date: Tue, 01 Jul 2025 10:00:00 GMT\r\nContent-Type: text/plain\r\n"
    decorated = b"Via: 1.1 edge-1\r\nCache-Status: edge-1; hit; ttl=%d\r\nX-Cache: Hit from edgeproxy\r\n"
    assert heads == [
        fields + b"Age: 10\r\n" + decorated % 49 + SERVER_LINE,
        fields + b"Age: 13\r\n" + decorated % 46 + SERVER_LINE,
    ]


def test_head_request_has_no_body_but_the_entry_length() -> None:
    response = Deliverer("edge-1").from_entry(context("HEAD"), entry(DATE, TYPE), hit=True)
    assert response.head is not None and response.no_body and response.content_length == 5


@pytest.mark.parametrize(
    "headers",
    [{"Range": "bytes=0-1"}, {"If-None-Match": '"x"'}, {"If-Modified-Since": DATE[1]}, {"If-Match": "*"}],
)
def test_requests_deliver_answers_itself_take_the_general_path(headers: dict[str, str]) -> None:
    response = Deliverer("edge-1").from_entry(context(**headers), entry(DATE, TYPE), hit=True)
    assert response.head is None and response.headers["X-Cache"] == "Hit from edgeproxy"


def test_general_path_for_entries_not_encodable_and_for_non_hits() -> None:
    deliver = Deliverer("edge-1")
    assert deliver.from_entry(context(), entry(TYPE), hit=True).head is None
    assert deliver.from_entry(context(), entry(DATE, TYPE), hit=False).head is None
    assert Deliverer("edge\r\n1").from_entry(context(), entry(DATE, TYPE), hit=True).head is None
