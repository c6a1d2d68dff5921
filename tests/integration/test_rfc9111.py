"""RFC 9111 conformance through real sockets: an aiohttp origin, an edge with one ``*`` behaviour and no
``ttl`` (plain RFC 9111 mode), a client on 127.0.0.1.

The cases mirror what the public HTTP cache conformance suite (cache-tests.fyi) checks, rewritten here in
our own words and grouped by RFC section; each test's docstring names the rule. A response is "reused"
when the origin did not see the request. Staleness is produced without sleeping where possible, with an
``Age`` or ``Date`` from the origin that already exceeds the freshness lifetime.

Tests marked ``xfail(strict=True, reason="needs pipeline: …")`` check rules whose pure helpers exist in
``proxy/http`` but that the pipeline does not call yet; docs/conformance.md lists the calls to add.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from multidict import CIMultiDict

from proxy.http.dates import format_http_date
from tests.conftest import EdgeFactory, Origin, RunningEdge

RFC_MODE = """
server: {name: edge-t, access_log: "off"}
origins: {app: {url: "{origin}", read_timeout: 5s, connect_timeout: 1s}}
behaviours:
  - path: "*"
    origin: app
    methods: [GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, M-SEARCH]
"""

# Header fields as (name, value); an int value is an HTTP-date that many seconds from the moment the
# message is sent (so parametrised cases do not go stale while the suite runs).
Fields = Sequence[tuple[str, object]]


def http_date(offset: float = 0.0) -> str:
    """An IMF-fixdate ``offset`` seconds from now."""
    return format_http_date(time.time() + offset)


def render(fields: Fields) -> CIMultiDict[str]:
    """The fields with relative dates turned into HTTP-dates, now."""
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in fields:
        out.add(name, http_date(value) if isinstance(value, int) else str(value))
    return out


@dataclass
class Reply:
    """One scripted origin response."""

    headers: Fields = ()
    status: int = 200
    body: bytes = b"body"
    reason: str | None = None
    drop: bool = False  # close the connection without any response


@dataclass
class Script:
    """An origin route answering with the scripted replies in turn (the last one repeats); it records the
    request headers of every request it receives."""

    replies: list[Reply]
    seen: list[CIMultiDict[str]] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)

    @property
    def hits(self) -> int:
        return len(self.seen)

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(CIMultiDict(request.headers))
        self.methods.append(request.method)
        reply = self.replies[min(len(self.seen), len(self.replies)) - 1]
        if reply.drop:
            assert request.transport is not None
            request.transport.close()
            raise ConnectionResetError("dropped on purpose")
        body = None if reply.status in (204, 304) or request.method == "HEAD" else reply.body
        return web.Response(
            status=reply.status, reason=reply.reason, body=body, headers=render(reply.headers)
        )


def script(origin: Origin, path: str, *replies: Reply) -> Script:
    s = Script(list(replies) or [Reply()])
    origin.route(path, s.handle)
    return s


async def fetch(
    edge: RunningEdge, path: str, method: str = "GET", headers: Fields = ()
) -> tuple[int, CIMultiDict[str], bytes]:
    response, body = await edge.get(path, method=method, headers=render(headers))
    return response.status, CIMultiDict(response.headers), body


async def start(make_edge: EdgeFactory, origin: Origin) -> RunningEdge:
    return await make_edge(RFC_MODE, origin)


# ============================================================== §3 Storing responses in caches


async def test_no_store_response_is_not_stored(make_edge: EdgeFactory, origin: Origin) -> None:
    """RFC 9111 §5.2.2.5 / §3: a response with no-store (any letter case) is not stored, even when it also
    carries max-age and Expires."""
    a = script(origin, "/a", Reply([("Cache-Control", "max-age=10000, No-StOrE"), ("Expires", 10000)]))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    await fetch(edge, "/a")
    assert a.hits == 2


async def test_private_response_is_not_stored_by_a_shared_cache(
    make_edge: EdgeFactory, origin: Origin
) -> None:
    """RFC 9111 §5.2.2.7: a shared cache MUST NOT store a response with unqualified private."""
    a = script(origin, "/a", Reply([("Cache-Control", "private, max-age=3600")]))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    _, headers, _ = await fetch(edge, "/a")
    assert a.hits == 2
    assert "detail=private" in headers["Cache-Status"]


async def test_response_to_authorized_request_is_not_shared(make_edge: EdgeFactory, origin: Origin) -> None:
    """RFC 9111 §3.5: a response to a request with Authorization is not stored unless public, s-maxage or
    must-revalidate allow it; the Authorization header reaches the origin."""
    a = script(origin, "/a", Reply([("Cache-Control", "max-age=3600")]))
    b = script(origin, "/b", Reply([("Cache-Control", "max-age=3600, public")]))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a", headers=[("Authorization", "FOO")])
    await fetch(edge, "/a")
    assert a.hits == 2 and a.seen[0]["Authorization"] == "FOO"
    await fetch(edge, "/b", headers=[("Authorization", "FOO")])
    await fetch(edge, "/b")
    assert b.hits == 1


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (200, "OK"),
        (203, "Non-Authoritative"),
        (204, "No Content"),
        (299, "Whatever"),
        (301, "Moved"),
        (302, "Found"),
        (303, "See Other"),
        (307, "Temporary"),
        (308, "Permanent"),
        (400, "Bad Request"),
        (404, "Not Found"),
        (410, "Gone"),
        (499, "Whatever"),
        (500, "Error"),
        (502, "Bad Gateway"),
        (503, "Unavailable"),
        (504, "Timeout"),
        (599, "Whatever"),
    ],
)
async def test_final_status_with_explicit_freshness_is_stored(
    make_edge: EdgeFactory, origin: Origin, status: int, reason: str
) -> None:
    """RFC 9111 §3: any final status code with explicit freshness may be stored and reused, unknown codes
    (299, 499, 599) included; the reused response keeps its status."""
    headers = [("Cache-Control", "max-age=100000"), ("Expires", 100000), ("Date", 0)]
    a = script(origin, "/a", Reply(headers, status=status, reason=reason, body=b"payload"))
    edge = await start(make_edge, origin)
    first = await fetch(edge, "/a")
    second = await fetch(edge, "/a")
    assert first[0] == second[0] == status
    assert a.hits == 1
    if status != 204:
        assert second[2] == b"payload"


@pytest.mark.parametrize("status", [200, 204, 299, 301, 404, 503, 599])
async def test_stale_response_of_any_status_is_not_reused(
    make_edge: EdgeFactory, origin: Origin, status: int
) -> None:
    """RFC 9111 §4.2 / §3: a response whose Expires is before its Date is stale on arrival: the next
    request goes to the origin (here with If-Modified-Since, since it has Last-Modified)."""
    headers = [("Expires", -5000), ("Last-Modified", -100000), ("Date", 0)]
    a = script(origin, "/a", Reply(headers, status=status), Reply())
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    second = await fetch(edge, "/a")
    assert a.hits == 2 and second[0] == 200
    assert "If-Modified-Since" in a.seen[1]


async def test_must_understand_with_unknown_status_is_not_stored(
    make_edge: EdgeFactory, origin: Origin
) -> None:
    """RFC 9111 §5.2.2.3: with must-understand, a response whose status code the cache does not understand
    is not stored (here 599, despite max-age)."""
    a = script(
        origin, "/a", Reply([("Cache-Control", "max-age=3600, no-store, must-understand")], status=599)
    )
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    await fetch(edge, "/a")
    assert a.hits == 2


async def test_must_understand_overrides_no_store_for_known_status(
    make_edge: EdgeFactory, origin: Origin
) -> None:
    """RFC 9111 §5.2.2.3: a cache that understands the status code ignores no-store next to
    must-understand."""
    a = script(origin, "/a", Reply([("Cache-Control", "max-age=3600, no-store, must-understand")]))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    await fetch(edge, "/a")
    assert a.hits == 1


@pytest.mark.parametrize(
    ("status", "reused"),
    [
        (200, True),
        (203, True),
        (204, True),
        (404, True),
        (405, True),
        (410, True),
        (414, True),
        (501, True),
        (201, False),
        (202, False),
        (403, False),
        (502, False),
        (503, False),
        (504, False),
        (599, False),
    ],
)
async def test_heuristic_freshness_only_for_heuristically_cacheable_status(
    make_edge: EdgeFactory, origin: Origin, status: int, reused: bool
) -> None:
    """RFC 9111 §4.2.2 / RFC 9110 §15.1: a response with Last-Modified but no explicit freshness gets a
    heuristic lifetime only when its status is heuristically cacheable."""
    headers = [("Last-Modified", -86400), ("Date", 0)]
    a = script(origin, "/a", Reply(headers, status=status))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    await fetch(edge, "/a")
    assert a.hits == (1 if reused else 2)


async def test_public_makes_unknown_status_heuristically_fresh(
    make_edge: EdgeFactory, origin: Origin
) -> None:
    """RFC 9111 §4.2.2 / §5.2.2.9: public marks any response cacheable, so a 599 with Last-Modified may be
    given a heuristic lifetime."""
    headers = [("Cache-Control", "public"), ("Last-Modified", -86400), ("Date", 0)]
    a = script(origin, "/a", Reply(headers, status=599))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    await fetch(edge, "/a")
    assert a.hits == 1


async def test_response_without_freshness_or_validator_is_not_reused(
    make_edge: EdgeFactory, origin: Origin
) -> None:
    """RFC 9111 §4.2.2: nothing gives this 200 a lifetime (no explicit freshness, no Last-Modified)."""
    a = script(origin, "/a", Reply([("Date", 0)]))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    await fetch(edge, "/a")
    assert a.hits == 2


async def test_connection_listed_fields_are_not_stored(make_edge: EdgeFactory, origin: Origin) -> None:
    """RFC 9111 §3.1 / RFC 9110 §7.6.1: Connection and the fields it names are not stored (nor forwarded);
    other fields are."""
    headers = [("Cache-Control", "max-age=3600"), ("Connection", "a, b"), ("a", "1"), ("b", "2"), ("c", "3")]
    a = script(origin, "/a", Reply(headers))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    _, reused, _ = await fetch(edge, "/a")
    assert a.hits == 1
    assert reused["c"] == "3" and "a" not in reused and "b" not in reused


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Test-Header", "v"),
        ("X-Content-Foo", "v"),
        ("Content-Location", "/foo"),
        ("Content-MD5", "rL0Y20zC+F"),
        ("Content-Security-Policy", "default-src 'self'"),
        ("Content-Type", "text/plain"),
        ("Clear-Site-Data", "cache"),
        ("ETag", '"abcdef"'),
        ("Expires", "Fri, 01 Jan 2038 01:01:01 GMT"),
        ("Set-Cookie", "a=b"),
        ("Set-Cookie2", "a=b"),
        ("X-Frame-Options", "deny"),
        ("X-XSS-Protection", "1"),
    ],
)
async def test_end_to_end_fields_are_stored(
    make_edge: EdgeFactory, origin: Origin, name: str, value: str
) -> None:
    """RFC 9111 §3.1: caches MUST store all received end-to-end fields, unrecognised ones and Set-Cookie
    included (§7.3 of RFC 9111: a shared cache may store a response with Set-Cookie). Storing Set-Cookie
    is the RFC-literal ``set_cookie: store``; the edge's default (``pass``) does not store such responses
    (tests/integration/test_set_cookie.py)."""
    headers = [("Date", 0), (name, value)]
    if name != "Expires":
        headers.append(("Cache-Control", "max-age=3600"))
    a = script(origin, "/a", Reply(headers))
    if name.lower().startswith("set-cookie"):
        edge = await make_edge(RFC_MODE + "    set_cookie: store\n", origin)
    else:
        edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    _, reused, _ = await fetch(edge, "/a")
    assert a.hits == 1
    assert reused.getall(name) == [value]


async def test_qualified_no_cache_fields_are_not_reused(make_edge: EdgeFactory, origin: Origin) -> None:
    """RFC 9111 §5.2.2.4 / §3.1: fields named by a qualified no-cache are not reused without revalidation;
    the edge does not store them (the rest of the response is reused)."""
    headers = [("Cache-Control", 'no-cache="a"'), ("a", "1"), ("b", "2"), ("Cache-Control", "max-age=3600")]
    a = script(origin, "/a", Reply(headers))
    edge = await start(make_edge, origin)
    _, first, _ = await fetch(edge, "/a")
    _, reused, _ = await fetch(edge, "/a")
    assert a.hits == 1
    assert first["a"] == "1"  # the response that caused the fill is forwarded whole
    assert reused["b"] == "2" and "a" not in reused


async def test_qualified_private_fields_are_not_stored(make_edge: EdgeFactory, origin: Origin) -> None:
    """RFC 9111 §5.2.2.7: a shared cache MUST NOT store the fields named by a qualified private."""
    headers = [("Cache-Control", 'private="Set-Cookie", max-age=3600'), ("Set-Cookie", "s=1"), ("X", "y")]
    a = script(origin, "/a", Reply(headers))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    _, reused, _ = await fetch(edge, "/a")
    assert a.hits == 1
    assert reused["X"] == "y" and "Set-Cookie" not in reused


# ============================================================== §4.2 Freshness


@pytest.mark.parametrize(
    ("fields", "reused"),
    [
        pytest.param([("Cache-Control", "max-age=3600")], True, id="max-age"),
        pytest.param([("Cache-Control", "MaX-aGe=3600")], True, id="directive names are case-insensitive"),
        pytest.param([("Cache-Control", "foobar, max-age=3600")], True, id="§5.2.3 extension ignored"),
        pytest.param([("Cache-Control", "max-age=003600")], True, id="§1.2.2 leading zeros"),
        pytest.param([("Cache-Control", "max-age=2147483648")], True, id="§1.2.2 2^31"),
        pytest.param([("Cache-Control", "max-age=99999999999")], True, id="§1.2.2 beyond 2^31 clamped"),
        pytest.param([("Cache-Control", "max-age=0")], False, id="max-age=0"),
        pytest.param([("Cache-Control", "max-age=-3600")], False, id="§1.2.2 negative max-age"),
        pytest.param([("Cache-Control", "max-age='3600'")], False, id="§5.2 single quotes"),
        pytest.param([("Cache-Control", "max-age= 3600")], False, id="§5.2 space after '='"),
        pytest.param([("Cache-Control", "max-age =3600")], False, id="§5.2 space before '='"),
        pytest.param(
            [("Cache-Control", "max-age=3600"), ("Expires", -7200), ("Date", 0)],
            True,
            id="§5.3 max-age beats a past Expires",
        ),
        pytest.param(
            [("Cache-Control", "max-age=3600"), ("Expires", "0"), ("Date", 0)],
            True,
            id="§5.3 max-age beats an invalid Expires",
        ),
        pytest.param(
            [("Cache-Control", "max-age=0"), ("Expires", 3600), ("Date", 0)],
            False,
            id="§5.3 max-age=0 beats a future Expires",
        ),
        pytest.param([("Cache-Control", "max-age=3600, s-maxage=0")], False, id="§5.2.2.10 short s-maxage"),
        pytest.param([("Cache-Control", "s-maxage=0, max-age=3600")], False, id="§5.2.2.10 reversed"),
        pytest.param(
            [("Cache-Control", "max-age=3600"), ("Cache-Control", "s-maxage=0")],
            False,
            id="§5.2.2.10 two lines",
        ),
        pytest.param([("Cache-Control", "max-age=0, s-maxage=3600")], True, id="§5.2.2.10 long s-maxage"),
        pytest.param([("Cache-Control", "s-maxage=3600")], True, id="§5.2.2.10 s-maxage alone"),
        pytest.param([("Expires", 30 * 86400), ("Date", 0)], True, id="future Expires"),
        pytest.param([("Expires", -30 * 86400), ("Date", 0)], False, id="past Expires"),
        pytest.param([("Expires", 0), ("Date", 0)], False, id="Expires equal to Date"),
        pytest.param([("Expires", 300), ("Date", 400)], False, id="Expires before Date"),
        pytest.param([("Expires", "0"), ("Date", 0)], False, id="§5.3 invalid Expires is past"),
        pytest.param(
            [("Expires", "Thu, 18 Aug 2050 02:01:18 UTC"), ("Date", 0)],
            False,
            id="§5.3 UTC invalid",
        ),
        pytest.param([("Expires", 10), ("Date", "foo")], True, id="Expires with an invalid Date"),
        pytest.param(
            [("Cache-Control", 'extension="max-age=3600", max-age=1'), ("Age", "5")],
            False,
            id="§5.2 max-age inside a quoted-string is not a directive",
        ),
        pytest.param(
            [("Cache-Control", 'max-age=1, extension="max-age=3600"'), ("Age", "5")],
            False,
            id="§5.2 quoted max-age after the real one",
        ),
        pytest.param(
            [("Cache-Control", "max-age=1800, max-age=1")], True, id="§4.2.1 first of duplicate max-age used"
        ),
    ],
)
async def test_explicit_freshness(
    make_edge: EdgeFactory, origin: Origin, fields: list[tuple[str, str]], reused: bool
) -> None:
    """RFC 9111 §4.2.1: the freshness lifetime is s-maxage (shared cache), else max-age, else Expires minus
    Date; invalid or duplicate values are handled as §4.2.1/§5.3 say; stale responses are not reused."""
    a = script(origin, "/a", Reply(fields))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    await fetch(edge, "/a")
    assert a.hits == (1 if reused else 2)


@pytest.mark.parametrize(
    ("fields", "reused"),
    [
        pytest.param([("Date", 0), ("Cache-Control", "max-age=3600"), ("Age", "7200")], False, id="max-age"),
        pytest.param([("Date", -10), ("Expires", 10), ("Age", "25")], False, id="slow Date"),
        pytest.param([("Date", 10), ("Expires", 20), ("Age", "15")], False, id="fast Date"),
        pytest.param([("Date", -7200), ("Cache-Control", "max-age=3600")], False, id="apparent age"),
        pytest.param([("Date", 0), ("Cache-Control", "max-age=3600"), ("Age", "abc")], True, id="bad Age"),
        pytest.param([("Date", 0), ("Cache-Control", "max-age=3600"), ("Age", "-7200")], True, id="negative"),
        pytest.param([("Date", 0), ("Cache-Control", "max-age=3600"), ("Age", "7200.0")], True, id="float"),
        pytest.param([("Date", 0), ("Cache-Control", "max-age=3600"), ("Age", "0, 7200")], True, id="prefix"),
        pytest.param(
            [("Date", 0), ("Cache-Control", "max-age=3600"), ("Age", "7200, 0")], False, id="suffix"
        ),
    ],
)
async def test_age_counts_against_the_lifetime(
    make_edge: EdgeFactory, origin: Origin, fields: list[tuple[str, str]], reused: bool
) -> None:
    """RFC 9111 §4.2.3: current_age includes the response's own Age (when it is valid delta-seconds, §5.1)
    and its apparent age from Date; a response already older than its lifetime is not reused."""
    a = script(origin, "/a", Reply(fields))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    await fetch(edge, "/a")
    assert a.hits == (1 if reused else 2)


@pytest.mark.parametrize(
    ("lines", "reused"),
    [
        pytest.param(["7200", "0"], False, id="old first"),
        pytest.param(["0", "7200"], True, id="young first"),
    ],
)
async def test_several_age_lines_use_the_first(
    make_edge: EdgeFactory, origin: Origin, lines: list[str], reused: bool
) -> None:
    """RFC 9111 §5.1: several Age lines form a list (RFC 9110 §5.3), and a cache uses the first member of a
    list-based Age, discarding the rest (cache-tests age-parse-suffix-twoline / -prefix-twoline)."""
    fields = [("Date", 0), ("Cache-Control", "max-age=3600"), *(("Age", line) for line in lines)]
    a = script(origin, "/a", Reply(fields))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    await fetch(edge, "/a")
    assert a.hits == (1 if reused else 2)


async def test_response_becomes_stale(make_edge: EdgeFactory, origin: Origin) -> None:
    """RFC 9111 §4.2: a stored response is reused while fresh and not once its lifetime has passed."""
    a = script(origin, "/a", Reply([("Cache-Control", "max-age=1")]))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    await fetch(edge, "/a")
    assert a.hits == 1
    await asyncio.sleep(1.2)
    await fetch(edge, "/a")
    assert a.hits == 2


# ============================================================== §4 Constructing responses from caches


async def test_age_is_generated_and_includes_the_origin_age(make_edge: EdgeFactory, origin: Origin) -> None:
    """RFC 9111 §4 / §5.1: a response served from the cache carries Age, which includes the Age the origin
    sent (30 here) plus the time the response spent in the cache."""
    a = script(origin, "/a", Reply([("Expires", 30 * 86400), ("Date", 0), ("Age", "30")]))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    await asyncio.sleep(1.1)
    _, headers, _ = await fetch(edge, "/a")
    assert a.hits == 1
    assert int(headers["Age"]) >= 31


async def test_date_is_not_updated_on_reuse(make_edge: EdgeFactory, origin: Origin) -> None:
    """RFC 9110 §6.6.1 / RFC 9111 §4: the stored Date (and Expires) are served unchanged on reuse."""
    date, expires = http_date(-5), http_date(100000)
    script(origin, "/a", Reply([("Expires", expires), ("Date", date), ("Cache-Control", "max-age=100000")]))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    _, headers, _ = await fetch(edge, "/a")
    assert headers["Date"] == date and headers["Expires"] == expires


async def test_query_is_part_of_the_key(make_edge: EdgeFactory, origin: Origin) -> None:
    """RFC 9111 §2: different target URIs (here the query) are different cache keys; the same one reuses."""
    a = script(origin, "/a", Reply([("Cache-Control", "max-age=3600")]))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a?test=1")
    await fetch(edge, "/a?test=2")
    assert a.hits == 2
    await fetch(edge, "/a?test=1")
    assert a.hits == 2


async def test_stored_no_cache_response_is_revalidated(make_edge: EdgeFactory, origin: Origin) -> None:
    """RFC 9111 §5.2.2.4: a response with no-cache (any case) is not reused without successful validation,
    even with max-age and Expires; with an ETag the edge validates it with If-None-Match."""
    fields = [("Cache-Control", "max-age=10000, No-CaChE"), ("Expires", 10000), ("ETag", '"abcd"')]
    a = script(origin, "/a", Reply(fields), Reply([("ETag", '"abcd"')], status=304))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    status, _, body = await fetch(edge, "/a")
    assert a.hits == 2 and a.seen[1]["If-None-Match"] == '"abcd"'
    assert (status, body) == (200, b"body")


async def test_no_cache_response_without_lifetime_is_stored_and_revalidated(
    make_edge: EdgeFactory, origin: Origin
) -> None:
    """RFC 9111 §5.2.2.4: no-cache allows storing; a response with no-cache and an ETag but no lifetime
    (no max-age, Expires or Last-Modified) is stored and validated with If-None-Match before each reuse."""
    fields = [("Cache-Control", "no-cache"), ("ETag", '"abcd"')]
    a = script(origin, "/a", Reply(fields), Reply([("ETag", '"abcd"')], status=304))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    for hits in (2, 3):
        status, headers, body = await fetch(edge, "/a")
        assert a.hits == hits and a.seen[-1].get("If-None-Match") == '"abcd"'
        assert (status, body, headers["ETag"]) == (200, b"body", '"abcd"')


async def test_must_revalidate_response_is_revalidated_when_stale(
    make_edge: EdgeFactory, origin: Origin
) -> None:
    """RFC 9111 §5.2.2.2: a stale must-revalidate response is not reused without validation; the edge
    sends If-None-Match and serves the stored response on 304."""
    fields = [("Cache-Control", "max-age=2, must-revalidate"), ("ETag", '"abcd"'), ("Age", "5")]
    a = script(origin, "/a", Reply(fields), Reply([("ETag", '"abcd"')], status=304))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    status, _, body = await fetch(edge, "/a")
    assert a.hits == 2 and a.seen[1]["If-None-Match"] == '"abcd"'
    assert (status, body) == (200, b"body")


async def test_must_revalidate_forbids_serving_stale_on_error(make_edge: EdgeFactory, origin: Origin) -> None:
    """RFC 9111 §5.2.2.2 / §4.2.4: a stale must-revalidate response is never served when the origin fails,
    even with stale-if-error; the origin's error goes to the viewer."""
    fields = [
        ("Cache-Control", "max-age=1, must-revalidate, stale-if-error=600"),
        ("Age", "5"),
        ("ETag", '"x"'),
    ]
    a = script(origin, "/a", Reply(fields), Reply(status=500, body=b"boom"))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    status, _, body = await fetch(edge, "/a")
    assert a.hits == 2 and (status, body) == (500, b"boom")


async def test_expired_stale_if_error_window_is_not_used(make_edge: EdgeFactory, origin: Origin) -> None:
    """RFC 5861 §4: once the stale-if-error window has passed, an origin error is passed on as is."""
    a = script(
        origin,
        "/a",
        Reply([("Cache-Control", "max-age=0, stale-if-error=1"), ("Age", "10")]),
        Reply(status=500),
    )
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    status, _, _ = await fetch(edge, "/a")
    assert a.hits == 2 and status == 500


async def test_stale_is_served_when_the_origin_closes_without_a_response(
    make_edge: EdgeFactory, origin: Origin
) -> None:
    """RFC 9111 §4.2.4: a cache disconnected from the origin may serve a stale response even without
    stale-if-error; an origin closing the connection before any response counts (cache-tests stale-close)."""
    a = script(origin, "/a", Reply([("Cache-Control", "max-age=2"), ("Age", "5")]), Reply(drop=True))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    status, headers, body = await fetch(edge, "/a")
    assert a.hits >= 2 and (status, body) == (200, b"body")
    assert "fwd=stale" in headers["Cache-Status"]


@pytest.mark.parametrize("directive", ["must-revalidate", "proxy-revalidate", "no-cache", "s-maxage=2"])
async def test_stale_is_not_served_on_close_when_a_directive_forbids_it(
    make_edge: EdgeFactory, origin: Origin, directive: str
) -> None:
    """RFC 9111 §4.2.4 with §5.2.2.2, §5.2.2.8, §5.2.2.4, §5.2.2.10: must-revalidate, proxy-revalidate,
    no-cache and s-maxage forbid stale reuse, disconnected or not: the viewer gets the edge's 502."""
    fields = [("Cache-Control", f"max-age=2, {directive}"), ("Age", "5"), ("ETag", '"x"')]
    a = script(origin, "/a", Reply(fields), Reply(drop=True))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    status, _, body = await fetch(edge, "/a")
    assert a.hits >= 2 and status == 502 and body != b"body"


@pytest.mark.parametrize(
    ("request_fields", "reused"),
    [
        pytest.param([("Cache-Control", "no-cache")], False, id="§5.2.1.4 no-cache"),
        pytest.param([("Cache-Control", "max-age=0")], False, id="§5.2.1.1 max-age=0"),
        pytest.param([("Cache-Control", "min-fresh=200000")], False, id="§5.2.1.3 min-fresh"),
        pytest.param(
            [("Cache-Control", "no-store")], True, id="§5.2.1.5 no-store: only storing is forbidden"
        ),
        pytest.param([("Cache-Control", "nothing-to-see-here")], True, id="§5.2.3 unknown request directive"),
        pytest.param([("Pragma", "unrecognised-extension")], True, id="§5.4 Pragma extension ignored"),
    ],
)
async def test_request_directives(
    make_edge: EdgeFactory, origin: Origin, request_fields: list[tuple[str, str]], reused: bool
) -> None:
    """RFC 9111 §5.2.1: request directives are honoured in plain RFC mode: a fresh stored response is not
    used when the request asks for a fresher (or an unstored) one."""
    a = script(origin, "/a", Reply([("Cache-Control", "max-age=100000")]))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    await fetch(edge, "/a", headers=request_fields)
    assert a.hits == (1 if reused else 2)


async def test_request_max_stale_accepts_a_stale_response(make_edge: EdgeFactory, origin: Origin) -> None:
    """RFC 9111 §5.2.1.2: max-stale lets the client accept a stale response (not must-revalidate)."""
    a = script(origin, "/a", Reply([("Cache-Control", "max-age=1500"), ("Age", "2000")]))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    await fetch(edge, "/a", headers=[("Cache-Control", "max-stale=1000")])
    assert a.hits == 1


async def test_only_if_cached_without_stored_response_is_504(make_edge: EdgeFactory, origin: Origin) -> None:
    """RFC 9111 §5.2.1.7: only-if-cached with nothing stored is answered 504 without contacting the origin."""
    a = script(origin, "/a")
    edge = await start(make_edge, origin)
    status, _, _ = await fetch(edge, "/a", headers=[("Cache-Control", "only-if-cached")])
    assert status == 504 and a.hits == 0


async def test_only_if_cached_with_stale_stored_response_is_504(
    make_edge: EdgeFactory, origin: Origin
) -> None:
    """RFC 9111 §5.2.1.7: with only-if-cached the cache answers from storage or with 504; it does not go
    to the origin to revalidate a stale stored response."""
    a = script(origin, "/a", Reply([("Cache-Control", "max-age=1"), ("Age", "5"), ("ETag", '"x"')]))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    status, _, _ = await fetch(edge, "/a", headers=[("Cache-Control", "only-if-cached")])
    assert status == 504 and a.hits == 1


# ============================================================== §4.1 Vary


VARY_FIELDS = [("Cache-Control", "max-age=5000"), ("Last-Modified", -3000), ("Date", 0)]


@pytest.mark.parametrize(
    ("vary", "first", "second", "reused"),
    [
        pytest.param("Foo", [("Foo", "1")], [("Foo", "1")], True, id="match"),
        pytest.param("Foo", [("Foo", "1")], [("Foo", "2")], False, id="no match"),
        pytest.param("Foo", [("Foo", "1")], [], False, id="presented request omits the header"),
        pytest.param("Foo", [], [("Foo", "1")], False, id="stored request omitted the header"),
        pytest.param(
            "Foo", [("Foo", "1"), ("Other", "2")], [("Foo", "1"), ("Other", "3")], True, id="unlisted"
        ),
        pytest.param(
            "Foo, Bar", [("Foo", "1"), ("Bar", "abc")], [("Foo", "1"), ("Bar", "abc")], True, id="2 match"
        ),
        pytest.param(
            "Foo, Bar", [("Foo", "1"), ("Bar", "abc")], [("Foo", "2"), ("Bar", "abc")], False, id="2 no"
        ),
        pytest.param("Foo, Bar", [("Foo", "1"), ("Bar", "abc")], [], False, id="2 omitted"),
        pytest.param(
            "Foo, Bar, Baz",
            [("Foo", "1"), ("Bar", "abc"), ("Baz", "789")],
            [("Foo", "1"), ("Baz", "789"), ("Bar", "abcde")],
            False,
            id="3 no match in another order",
        ),
        pytest.param(
            "Foo, Bar, Baz", [("Foo", "1"), ("Baz", "789")], [("Foo", "1"), ("Baz", "789")], True, id="3 omit"
        ),
        pytest.param("Foo", [("Foo", "1, 2")], [("Foo", "1"), ("Foo", "2")], True, id="lines combined"),
        pytest.param("Foo", [("Foo", "1,2")], [("Foo", " 1, 2 ")], True, id="whitespace normalised"),
        pytest.param("*", [("Foo", "1")], [("Foo", "1")], False, id="star"),
        pytest.param("*, *", [("Foo", "1")], [("Foo", "1")], False, id="star star"),
        pytest.param(", *", [("Foo", "1")], [("Foo", "1")], False, id="empty member then star"),
        pytest.param("*, Foo", [("Foo", "1")], [("Foo", "1")], False, id="star first"),
        pytest.param("Foo, *", [("Foo", "1")], [("Foo", "1")], False, id="star last"),
    ],
)
async def test_vary_selects_the_stored_response(
    make_edge: EdgeFactory,
    origin: Origin,
    vary: str,
    first: list[tuple[str, str]],
    second: list[tuple[str, str]],
    reused: bool,
) -> None:
    """RFC 9111 §4.1: a stored response with Vary is reused only when the presented request's values of the
    listed fields match the original request's (absent matches only absent; field lines combined and
    whitespace normalised); a Vary member "*" never matches."""
    a = script(origin, "/a", Reply([*VARY_FIELDS, ("Vary", vary)]))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a", headers=first)
    await fetch(edge, "/a", headers=second)
    assert a.hits == (1 if reused else 2)


@pytest.mark.parametrize(
    ("second", "reused"),
    [
        pytest.param([("Accept-Language", "de, en")], True, id="order"),
        pytest.param([("Accept-Language", "eN, De")], True, id="case"),
        pytest.param([("Accept-Language", " en ,   de")], True, id="whitespace"),
        pytest.param([("Accept-Language", "de;q=1.0, en")], True, id="q=1 is no weight"),
        pytest.param([("Accept-Language", "de"), ("Accept-Language", "EN")], True, id="field lines"),
        pytest.param([("Accept-Language", "en, de;q=0.9")], False, id="other weights"),
        pytest.param([("Accept-Language", "fr;q=0.5, de;q=1.0")], False, id="other languages"),
    ],
)
async def test_vary_accept_language_is_normalised(
    make_edge: EdgeFactory, origin: Origin, second: list[tuple[str, str]], reused: bool
) -> None:
    """RFC 9111 §4.1: selecting fields match after a normalisation known to keep their meaning; for
    Accept-Language (RFC 9110 §12.5.4) language ranges are case-insensitive and the order of equally
    weighted ones is not significant."""
    a = script(origin, "/a", Reply([*VARY_FIELDS, ("Vary", "Accept-Language")]))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a", headers=[("Accept-Language", "en, de")])
    await fetch(edge, "/a", headers=second)
    assert a.hits == (1 if reused else 2)


async def test_vary_stars_on_two_lines_never_match(make_edge: EdgeFactory, origin: Origin) -> None:
    """RFC 9111 §4.1: "*" on any Vary field line (also after an empty one) never matches."""
    a = script(origin, "/a", Reply([*VARY_FIELDS, ("Vary", ""), ("Vary", "*")]))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    await fetch(edge, "/a")
    assert a.hits == 2


async def test_vary_keeps_several_variants(make_edge: EdgeFactory, origin: Origin) -> None:
    """RFC 9111 §4.1: several variants of one URI are stored side by side; each is selected by its own
    request headers (with a Vary miss reported in Cache-Status)."""
    a = script(
        origin,
        "/a",
        Reply([*VARY_FIELDS, ("Vary", "Foo")], body=b"foo-1"),
        Reply([*VARY_FIELDS, ("Vary", "Foo")], body=b"foo-2"),
    )
    edge = await start(make_edge, origin)
    await fetch(edge, "/a", headers=[("Foo", "1")])
    _, headers, body = await fetch(edge, "/a", headers=[("Foo", "2")])
    assert body == b"foo-2" and "fwd=vary-miss" in headers["Cache-Status"]
    _, _, body1 = await fetch(edge, "/a", headers=[("Foo", "1")])
    _, _, body2 = await fetch(edge, "/a", headers=[("Foo", "2")])
    assert (body1, body2, a.hits) == (b"foo-1", b"foo-2", 2)


# ============================================================== §4.3 Validation


async def test_304_freshens_and_keeps_stored_fields(make_edge: EdgeFactory, origin: Origin) -> None:
    """RFC 9111 §4.3.4: a 304 to the edge's If-Modified-Since freshens the stored response, which keeps
    the fields the 304 omits; the viewer gets the stored 200."""
    lm = "Wed, 01 Jan 2020 00:00:00 GMT"
    stored = [("Cache-Control", "max-age=2"), ("Last-Modified", lm), ("Test-Header", "A"), ("Age", "5")]
    a = script(origin, "/a", Reply(stored), Reply([("Last-Modified", lm), ("Date", 0)], status=304))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    status, headers, body = await fetch(edge, "/a")
    assert a.hits == 2 and a.seen[1]["If-Modified-Since"] == lm
    assert (status, headers["Test-Header"], body) == (200, "A", b"body")


@pytest.mark.parametrize("name", ["Test-Header", "X-Test-Header", "Content-Foo", "X-Content-Foo"])
async def test_304_updates_stored_fields(make_edge: EdgeFactory, origin: Origin, name: str) -> None:
    """RFC 9111 §4.3.4 / §3.2: the fields of a 304 replace the stored ones, in the response to the
    revalidating request and in later reuses."""
    etag = ("ETag", '"etag-1"')
    a = script(
        origin,
        "/a",
        Reply([("Cache-Control", "max-age=2"), ("Age", "5"), etag, (name, "A")]),
        Reply([("Cache-Control", "max-age=3600"), etag, (name, "B")], status=304),
    )
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    _, revalidated, _ = await fetch(edge, "/a")
    _, reused, _ = await fetch(edge, "/a")
    assert a.hits == 2 and a.seen[1]["If-None-Match"] == '"etag-1"'
    assert revalidated[name] == reused[name] == "B"


async def test_304_updates_cache_control(make_edge: EdgeFactory, origin: Origin) -> None:
    """RFC 9111 §4.3.4: a new Cache-Control in the 304 gives the stored response its new lifetime."""
    etag = ("ETag", '"e"')
    a = script(
        origin,
        "/a",
        Reply([("Cache-Control", "max-age=1"), ("Age", "5"), etag]),
        Reply([("Cache-Control", "max-age=3600"), etag], status=304),
    )
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    await fetch(edge, "/a")
    _, headers, _ = await fetch(edge, "/a")
    assert a.hits == 2 and headers["Cache-Control"] == "max-age=3600"


async def test_304_keeps_the_stored_content_length(make_edge: EdgeFactory, origin: Origin) -> None:
    """RFC 9111 §3.2: Content-Length is never updated from a 304 (it describes the stored content)."""
    etag = ("ETag", '"e"')
    a = script(
        origin,
        "/a",
        Reply([("Cache-Control", "max-age=1"), ("Age", "5"), etag], body=b"12345"),
        Reply([("Cache-Control", "max-age=3600"), etag, ("Content-Length", "10")], status=304),
    )
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    _, headers, body = await fetch(edge, "/a")
    assert a.hits == 2 and headers["Content-Length"] == "5" and body == b"12345"


async def test_304_updates_representation_metadata(make_edge: EdgeFactory, origin: Origin) -> None:
    """RFC 9111 §3.2: every field of the 304 but Content-Length replaces the stored one, Content-Type
    included (the edge stores the content as received, so nothing it did depends on the old value)."""
    etag = ("ETag", '"e"')
    a = script(
        origin,
        "/a",
        Reply([("Cache-Control", "max-age=1"), ("Age", "5"), etag, ("Content-Type", "text/plain")]),
        Reply(
            [("Cache-Control", "max-age=3600"), etag, ("Content-Type", "text/plain;charset=utf-8")],
            status=304,
        ),
    )
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    _, headers, _ = await fetch(edge, "/a")
    assert a.hits == 2 and headers["Content-Type"] == "text/plain;charset=utf-8"


async def test_304_for_another_representation_is_not_used(make_edge: EdgeFactory, origin: Origin) -> None:
    """RFC 9111 §4.3.4: a 304 whose strong validator differs from the stored one MUST NOT update it. The
    304 still answers the edge's If-None-Match built from the stored ETag (§4.3.3), so the stored response
    is served once, unchanged, without an unconditional re-request; it stays as stored (cache-tests
    304-etag-update-response-ETag)."""
    a = script(
        origin,
        "/a",
        Reply([("Cache-Control", "max-age=1"), ("Age", "5"), ("ETag", '"old"')], body=b"old"),
        Reply([("ETag", '"new"'), ("Cache-Control", "max-age=600")], status=304),
        Reply([("ETag", '"old"')], status=304),
    )
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    status, headers, body = await fetch(edge, "/a")
    assert a.hits == 2 and (status, body, headers["ETag"]) == (200, b"old", '"old"')
    await fetch(edge, "/a")  # not updated: still stale, so validated again with the stored ETag
    assert a.hits == 3 and a.seen[2]["If-None-Match"] == '"old"'


async def test_validation_sends_the_varied_request_fields(make_edge: EdgeFactory, origin: Origin) -> None:
    """RFC 9111 §4.3.1: the conditional request that validates a Vary response carries the request's
    values of the varied fields (so the origin selects the same variant)."""
    fields = [("Expires", -1), ("Date", 0), ("ETag", '"abcdef"'), ("Vary", "Abc")]
    a = script(origin, "/a", Reply(fields), Reply([("ETag", '"abcdef"')], status=304))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a", headers=[("Abc", "123")])
    status, _, _ = await fetch(edge, "/a", headers=[("Abc", "123")])
    assert a.hits == 2 and status == 200
    assert a.seen[1]["If-None-Match"] == '"abcdef"' and a.seen[1]["Abc"] == "123"


@pytest.mark.parametrize("etag", ['"abcdef"', 'W/"abcdef"'])
async def test_viewer_if_none_match_is_answered_304_with_etag(
    make_edge: EdgeFactory, origin: Origin, etag: str
) -> None:
    """RFC 9110 §13.1.2 / RFC 9111 §4.3.2: a fresh stored response answers a matching If-None-Match (weak
    comparison, any member of the list) with 304, which carries the ETag."""
    a = script(origin, "/a", Reply([("Expires", 100000), ("Date", 0), ("ETag", etag)]))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    status, headers, body = await fetch(edge, "/a", headers=[("If-None-Match", f'"1234", {etag}, "5678"')])
    assert (status, headers["ETag"], body, a.hits) == (304, etag, b"", 1)


async def test_if_none_match_takes_precedence_over_if_modified_since(
    make_edge: EdgeFactory, origin: Origin
) -> None:
    """RFC 9110 §13.2.2: If-None-Match is evaluated and If-Modified-Since is then ignored."""
    fields = [
        ("Expires", 100000),
        ("Date", 0),
        ("Last-Modified", -5000),
        ("ETag", '"abcdef"'),
    ]
    script(origin, "/a", Reply(fields))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    status, _, _ = await fetch(edge, "/a", headers=[("If-None-Match", '"zzz"'), ("If-Modified-Since", 0)])
    assert status == 200
    status, _, _ = await fetch(
        edge, "/a", headers=[("If-None-Match", '"abcdef"'), ("If-Modified-Since", -99999)]
    )
    assert status == 304


async def test_viewer_if_modified_since_is_answered_304(make_edge: EdgeFactory, origin: Origin) -> None:
    """RFC 9110 §13.1.3: a fresh stored response not modified since the given date answers 304."""
    lm = -3000
    a = script(origin, "/a", Reply([("Expires", 100000), ("Last-Modified", lm), ("Date", 0)]))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    status, _, _ = await fetch(edge, "/a", headers=[("If-Modified-Since", lm)])
    assert status == 304 and a.hits == 1


@pytest.mark.parametrize(("ims", "expected"), [(0, 304), (3600, 304), (-3000, 200)])
async def test_if_modified_since_without_last_modified_uses_the_date(
    make_edge: EdgeFactory, origin: Origin, ims: int, expected: int
) -> None:
    """RFC 9111 §4.3.2: a stored response without Last-Modified answers If-Modified-Since with its Date:
    304 when the Date is not after the given date, the full response otherwise (RFC 9110 §13.1.3).
    (cache-tests' conditional-lm-fresh-no-lm expects 304 for a date 3000 s before the Date: see
    docs/conformance.md.)"""
    a = script(origin, "/a", Reply([("Expires", 100000), ("Date", 0)]))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    status, _, _ = await fetch(edge, "/a", headers=[("If-Modified-Since", ims)])
    assert (status, a.hits) == (expected, 1)


# ============================================================== §4.4 Invalidation


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "M-SEARCH"])
async def test_unsafe_method_invalidates_the_target_uri(
    make_edge: EdgeFactory, origin: Origin, method: str
) -> None:
    """RFC 9111 §4.4: a non-error response to an unsafe method (or one of unknown safety, M-SEARCH)
    invalidates the stored response of the target URI."""
    a = script(origin, "/a", Reply([("Cache-Control", "max-age=100000")]))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    status, _, _ = await fetch(edge, "/a", method=method)
    assert status == 200
    await fetch(edge, "/a")
    assert a.hits == 3


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
async def test_failed_unsafe_request_does_not_invalidate(
    make_edge: EdgeFactory, origin: Origin, method: str
) -> None:
    """RFC 9111 §4.4: only a non-error status invalidates; after a 500 the stored response is reused."""
    stored = Script([Reply([("Cache-Control", "max-age=100000")])])
    failing = Script([Reply(status=500)])

    async def handle(request: web.Request) -> web.Response:
        return await (stored if request.method == "GET" else failing).handle(request)

    origin.route("/a", handle)
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    status, _, _ = await fetch(edge, "/a", method=method)
    await fetch(edge, "/a")
    assert status == 500 and stored.hits == 1 and failing.hits == 1


@pytest.mark.parametrize("field_name", ["Location", "Content-Location"])
async def test_unsafe_method_invalidates_same_origin_location(
    make_edge: EdgeFactory, origin: Origin, field_name: str
) -> None:
    """RFC 9111 §4.4: the URIs in Location and Content-Location of that response are invalidated too
    when they share the target URI's origin."""
    target = script(origin, "/target", Reply([("Cache-Control", "max-age=100000")]))
    poster = Script([Reply([(field_name, "/target")])])
    origin.app.router.add_route("POST", "/form", poster.handle)
    edge = await start(make_edge, origin)
    await fetch(edge, "/target")
    await fetch(edge, "/form", method="POST")
    await fetch(edge, "/target")
    assert target.hits == 2


async def test_other_origin_location_is_not_invalidated(make_edge: EdgeFactory, origin: Origin) -> None:
    """RFC 9111 §4.4: a cache MUST NOT invalidate a Location of another origin."""
    target = script(origin, "/target", Reply([("Cache-Control", "max-age=100000")]))
    poster = Script([Reply([("Location", "http://other.example/target")])])
    origin.app.router.add_route("POST", "/form", poster.handle)
    edge = await start(make_edge, origin)
    await fetch(edge, "/target")
    await fetch(edge, "/form", method="POST")
    await fetch(edge, "/target")
    assert target.hits == 1


# ============================================================== RFC 9110 §14 Ranges


@pytest.mark.parametrize(
    ("range_value", "expected"),
    [("bytes=0-1", b"01"), ("bytes=1-", b"123456789A"), ("bytes=-1", b"A"), ("bytes=2-4", b"234")],
)
async def test_range_served_from_a_stored_complete_response(
    make_edge: EdgeFactory, origin: Origin, range_value: str, expected: bytes
) -> None:
    """RFC 9110 §14.2 / RFC 9111 §3.4: a stored complete response answers a Range with 206 and the
    stored fields (a header field of the stored response is preserved)."""
    a = script(origin, "/a", Reply([("Cache-Control", "max-age=3600"), ("A", "1")], body=b"0123456789A"))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    status, headers, body = await fetch(edge, "/a", headers=[("Range", range_value)])
    assert (status, body, headers["A"], a.hits) == (206, expected, "1", 1)


async def test_range_miss_does_not_store_a_partial_body(make_edge: EdgeFactory, origin: Origin) -> None:
    """RFC 9111 §3.3: a range request that misses fetches the whole object, so the stored response is
    complete; the viewer still gets its 206."""
    a = script(origin, "/a", Reply([("Cache-Control", "max-age=3600")], body=b"0123456789"))
    edge = await start(make_edge, origin)
    status, _, body = await fetch(edge, "/a", headers=[("Range", "bytes=-5")])
    assert (status, body) == (206, b"56789")
    assert "Range" not in a.seen[0]
    status, _, body = await fetch(edge, "/a")
    assert (status, body, a.hits) == (200, b"0123456789", 1)


async def test_unsatisfiable_range_is_416(make_edge: EdgeFactory, origin: Origin) -> None:
    """RFC 9110 §15.5.17: a range entirely beyond the stored content is answered 416 with
    Content-Range: bytes */length."""
    script(origin, "/a", Reply([("Cache-Control", "max-age=3600")], body=b"0123456789"))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    status, headers, _ = await fetch(edge, "/a", headers=[("Range", "bytes=50-")])
    assert status == 416 and headers["Content-Range"] == "bytes */10"


# ============================================================== RFC 9213 targeted cache control


@pytest.mark.parametrize(
    ("fields", "reused"),
    [
        pytest.param(
            [("CDN-Cache-Control", "private"), ("Cache-Control", "max-age=10000")], False, id="private"
        ),
        pytest.param(
            [("CDN-Cache-Control", "no-cache"), ("Cache-Control", "max-age=10000")], False, id="no-cache"
        ),
        pytest.param(
            [("Cache-Control", "max-age=10000"), ("CDN-Cache-Control", "no-store")], False, id="no-store"
        ),
        pytest.param(
            [("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=10000")], True, id="fresh"
        ),
        pytest.param(
            [("Cache-Control", "max-age=3600"), ("CDN-Cache-Control", "max-age=0")], False, id="max-age=0"
        ),
        pytest.param(
            [("CDN-Cache-Control", "max-age=0"), ("Expires", 10000), ("Date", 0)],
            False,
            id="Expires ignored",
        ),
        pytest.param(
            [("Cache-Control", "max-age=10000"), ("Surrogate-Control", "no-store")], False, id="SC no-store"
        ),
        pytest.param(
            [("Cache-Control", "no-store"), ("Surrogate-Control", "max-age=10000")], True, id="SC fresh"
        ),
        pytest.param(
            [("Cache-Control", "no-store"), ("Surrogate-Control", "max-age=10000;edge-t")],
            True,
            id="SC for us",
        ),
        pytest.param(
            [("Surrogate-Control", "no-store"), ("CDN-Cache-Control", "max-age=10000")],
            True,
            id="CDN-CC > SC",
        ),
    ],
)
async def test_targeted_cache_control_takes_precedence(
    make_edge: EdgeFactory, origin: Origin, fields: list[tuple[str, str]], reused: bool
) -> None:
    """RFC 9213 §2.1: the first valid targeted field (CDN-Cache-Control, then Surrogate-Control) decides
    the edge's caching and Cache-Control and Expires are then ignored; Surrogate-Control directives
    targeted at this edge (``;edge-t``) apply to it."""
    a = script(origin, "/a", Reply(fields))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    await fetch(edge, "/a")
    assert a.hits == (1 if reused else 2)


@pytest.mark.parametrize(
    ("fields", "reused"),
    [
        pytest.param(
            [("CDN-Cache-Control", "max-age=10000, &&&&&"), ("Cache-Control", "no-store")],
            False,
            id="invalid SF",
        ),
        pytest.param(
            [("CDN-Cache-Control", 'max-age="10000"'), ("Cache-Control", "no-store")], False, id="string"
        ),
        pytest.param(
            [("Cache-Control", "max-age=0"), ("Surrogate-Control", "max-age=3600;not-for-you")],
            False,
            id="SC for another device",
        ),
    ],
)
async def test_invalid_targeted_field_falls_back(
    make_edge: EdgeFactory, origin: Origin, fields: list[tuple[str, str]], reused: bool
) -> None:
    """RFC 9213 §2.2: a targeted field that is not a valid Dictionary (or whose directive has the wrong
    type, or that targets another device) does not make a response cacheable."""
    a = script(origin, "/a", Reply(fields))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    await fetch(edge, "/a")
    assert a.hits == (1 if reused else 2)


async def test_targeted_fields_are_forwarded_unchanged(make_edge: EdgeFactory, origin: Origin) -> None:
    """RFC 9213 §2.1: the edge does not rewrite the viewer's Cache-Control from CDN-Cache-Control; both
    fields (and Surrogate-Control) reach the viewer as the origin sent them."""
    fields = [("Cache-Control", "max-age=10000"), ("CDN-Cache-Control", "foo"), ("Surrogate-Control", "bar")]
    script(origin, "/a", Reply(fields))
    edge = await start(make_edge, origin)
    _, headers, _ = await fetch(edge, "/a")
    assert headers["Cache-Control"] == "max-age=10000"
    assert headers["CDN-Cache-Control"] == "foo" and headers["Surrogate-Control"] == "bar"


async def test_surrogate_capability_is_announced(make_edge: EdgeFactory, origin: Origin) -> None:
    """Edge Architecture 1.0 §3: a surrogate announces itself in Surrogate-Capability so that the origin
    can target Surrogate-Control directives at it."""
    a = script(origin, "/a", Reply([("Cache-Control", "no-store")]))
    edge = await start(make_edge, origin)
    await fetch(edge, "/a")
    assert a.seen[0].get("Surrogate-Capability") == 'edge-t="Surrogate/1.0"'


# ============================================================== RFC 9211 Cache-Status


async def test_cache_status_describes_each_outcome(make_edge: EdgeFactory, origin: Origin) -> None:
    """RFC 9211 §2: hit on reuse; fwd=uri-miss, fwd-status and stored on a stored miss; detail on a
    response not stored; fwd=method for a method the cache does not handle; fwd=request when the request
    asked to bypass a fresh response; fwd=stale when a stale one was revalidated."""
    script(origin, "/a", Reply([("Cache-Control", "max-age=3600"), ("ETag", '"x"')]))
    script(origin, "/nostore", Reply([("Cache-Control", "no-store")]))
    script(origin, "/stale", Reply([("Cache-Control", "max-age=1"), ("Age", "5"), ("ETag", '"s"')]))
    edge = await start(make_edge, origin)
    _, miss, _ = await fetch(edge, "/a")
    _, hit, _ = await fetch(edge, "/a")
    _, request, _ = await fetch(edge, "/a", headers=[("Cache-Control", "no-cache")])
    _, nostore, _ = await fetch(edge, "/nostore")
    _, post, _ = await fetch(edge, "/nostore", method="POST")
    await fetch(edge, "/stale")
    _, stale, _ = await fetch(edge, "/stale")
    assert miss["Cache-Status"].startswith("edge-t; fwd=uri-miss; fwd-status=200; ttl=")
    assert miss["Cache-Status"].endswith("; stored")
    assert hit["Cache-Status"].startswith("edge-t; hit; ttl=")
    assert request["Cache-Status"].startswith("edge-t; fwd=request; fwd-status=200")
    assert nostore["Cache-Status"] == "edge-t; fwd=uri-miss; fwd-status=200; detail=no-store"
    assert post["Cache-Status"].startswith("edge-t; fwd=method; fwd-status=200")
    assert stale["Cache-Status"].startswith("edge-t; fwd=stale; fwd-status=200")


# ============================================================== interim responses (RFC 9110 §15.2)


@dataclass
class RawOrigin:
    """A socket origin that writes fixed bytes (for what aiohttp cannot send: interim responses)."""

    payload: bytes
    hits: int = 0
    server: asyncio.Server | None = None

    async def start(self) -> str:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while await reader.readuntil(b"\r\n\r\n"):
                    self.hits += 1
                    writer.write(self.payload)
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


EARLY_HINTS = (
    b"HTTP/1.1 103 Early Hints\r\nLink: </styles.css>; rel=preload; as=style\r\nX-My-Header: test\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nCache-Control: max-age=100000\r\nContent-Length: 5\r\n\r\nhello"
)


@pytest.fixture
async def hints_origin() -> AsyncIterator[RawOrigin]:
    raw = RawOrigin(EARLY_HINTS)
    yield raw
    await raw.stop()


async def raw_exchange(edge: RunningEdge, path: str) -> bytes:
    """Send one GET over a fresh connection and return every byte of the answer (interim ones included)."""
    host, port = edge.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


async def test_interim_response_does_not_break_the_exchange(
    make_edge: EdgeFactory, hints_origin: RawOrigin
) -> None:
    """RFC 9110 §15.2 / RFC 9111 §3: a 103 before the final response does not disturb it; only the final
    response is stored (and reused), and no field of the 103 is stored with it."""
    edge = await make_edge(RFC_MODE, origin_url=await hints_origin.start())
    status, first, body = await fetch(edge, "/a")
    status2, second, body2 = await fetch(edge, "/a")
    assert (status, body, status2, body2) == (200, b"hello", 200, b"hello")
    assert hints_origin.hits == 1
    assert "X-My-Header" not in first and "X-My-Header" not in second
    reused = await raw_exchange(edge, "/a")
    assert reused.startswith(b"HTTP/1.1 200") and b" 103 " not in reused


async def test_early_hints_are_relayed_to_the_viewer(make_edge: EdgeFactory, hints_origin: RawOrigin) -> None:
    """RFC 9110 §15.2: an intermediary forwards 1xx interim responses (103 Early Hints) it receives for a
    request to that request's client, before the final response."""
    edge = await make_edge(RFC_MODE, origin_url=await hints_origin.start())
    data = await raw_exchange(edge, "/a")
    assert data.startswith(b"HTTP/1.1 103")
