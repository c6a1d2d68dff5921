"""The objects edge functions receive and return (proxy.functions.api): what may change in which event."""

from __future__ import annotations

import json
from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.edge.geo import COUNTRY_HEADER as GEO_COUNTRY_HEADER
from proxy.functions import (
    COUNTRY_HEADER,
    DEVICE_HEADER,
    Event,
    ReadOnlyError,
    RequestInfo,
    Response,
    ViewerRequest,
    json_response,
    redirect,
    respond,
)

IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) Mobile/15E148 Safari/604.1"


def make_request(**headers: str) -> ViewerRequest:
    return ViewerRequest(
        "get",
        "/shop/cart",
        "b=2&a=1&a=3&empty=",
        {k.replace("_", "-"): v for k, v in headers.items()},
        client_ip="192.0.2.7",
        host="shop.example",
        scheme="https",
    )


# --------------------------------------------------------------------------------------------- requests


def test_request_fields() -> None:
    request = make_request(User_Agent=IPHONE)
    assert request.method == "GET"  # upper-cased
    assert (request.path, request.query) == ("/shop/cart", "b=2&a=1&a=3&empty=")
    assert request.target == "/shop/cart?b=2&a=1&a=3&empty="
    assert (request.client_ip, request.host, request.scheme) == ("192.0.2.7", "shop.example", "https")
    assert request.event is Event.VIEWER_REQUEST
    assert request.query_params.getall("a") == ["1", "3"]
    assert request.query_params["empty"] == ""


def test_query_params_follow_the_query_and_are_read_only() -> None:
    request = make_request()
    request.query = "x=%20y"
    assert dict(request.query_params) == {"x": " y"}
    with pytest.raises(TypeError):
        request.query_params["x"] = "z"  # type: ignore[index]


def test_cookies_are_parsed_from_every_cookie_header_first_wins() -> None:
    request = ViewerRequest("GET", "/", headers=[("Cookie", 'a=1; b="two words"'), ("Cookie", "a=9; c=")])
    assert dict(request.cookies) == {"a": "1", "b": "two words", "c": ""}
    request.headers["Cookie"] = "z=26"  # the view follows the header
    assert dict(request.cookies) == {"z": "26"}
    with pytest.raises(TypeError):
        request.cookies["z"] = "0"  # type: ignore[index]


def test_malformed_cookies_are_skipped() -> None:
    request = ViewerRequest("GET", "/", headers={"Cookie": "novalue; =x; ok=1;;"})
    assert dict(request.cookies) == {"ok": "1"}


def test_country_from_the_edge_header() -> None:
    assert COUNTRY_HEADER == GEO_COUNTRY_HEADER
    assert make_request().country is None
    assert make_request(Edge_Viewer_Country="DE").country == "DE"


def test_device_from_the_edge_header_else_from_the_user_agent() -> None:
    assert make_request(User_Agent=IPHONE).device == "mobile"
    assert make_request().device == "desktop"
    assert make_request(User_Agent=IPHONE, **{DEVICE_HEADER.replace("-", "_"): "smarttv"}).device == "smarttv"
    # A value that is not a device class is ignored: the User-Agent decides.
    assert make_request(User_Agent=IPHONE, Edge_Viewer_Device="fridge").device == "mobile"


def test_path_query_and_headers_can_change() -> None:
    request = make_request()
    request.path = "/b/shop/cart"
    request.query = "?x=1"  # a leading "?" is dropped
    request.headers["X-Bucket"] = "b"
    assert request.target == "/b/shop/cart?x=1"
    assert request.headers["X-Bucket"] == "b"


def test_a_cimultidict_is_used_in_place() -> None:
    headers: CIMultiDict[str] = CIMultiDict({"A": "1"})
    request = ViewerRequest("GET", "/", headers=headers)
    request.headers["B"] = "2"
    assert headers["B"] == "2"


@pytest.mark.parametrize("path", ["no-slash", "/with space", "/a?b=1", "/frag#x", "/\r\nX: y", "/é"])
def test_invalid_paths_are_refused(path: str) -> None:
    request = make_request()
    with pytest.raises(ValueError, match=r"request\.path"):
        request.path = path
    assert request.path == "/shop/cart"


@pytest.mark.parametrize("query", ["a b", "a#b", "a\nb"])
def test_invalid_queries_are_refused(query: str) -> None:
    with pytest.raises(ValueError, match=r"request\.query"):
        make_request().query = query


@pytest.mark.parametrize("field", ["method", "client_ip", "host", "scheme", "event", "cookies", "device"])
def test_read_only_request_fields(field: str) -> None:
    request = make_request()
    with pytest.raises(AttributeError, match=field):
        setattr(request, field, "x")


def test_unknown_fields_cannot_be_set() -> None:
    request: Any = make_request()
    with pytest.raises(AttributeError):
        request.pth = "/typo"


def test_request_info_is_read_only() -> None:
    info = RequestInfo("GET", "/p", "q=1", {"A": "1"}, "192.0.2.1", "h", "http")
    assert isinstance(info.headers, CIMultiDictProxy)
    assert info.event is Event.VIEWER_RESPONSE
    with pytest.raises(TypeError):
        info.headers["A"] = "2"  # type: ignore[index]
    for field in ("path", "query", "method", "headers"):
        with pytest.raises(AttributeError):
            setattr(info, field, "x")


def test_request_info_uses_a_proxy_as_is() -> None:
    headers: CIMultiDict[str] = CIMultiDict({"A": "1"})
    proxy = CIMultiDictProxy(headers)
    info = RequestInfo("GET", "/", headers=proxy)
    headers["A"] = "2"
    assert info.headers["A"] == "2"


# --------------------------------------------------------------------------------------------- responses


def test_respond_text_bytes_and_content_types() -> None:
    text = respond(403, "blocked")
    assert (text.status, text.body, text.headers["Content-Type"]) == (
        403,
        b"blocked",
        "text/plain; charset=utf-8",
    )
    raw = respond(200, b"\x00\x01")
    assert raw.headers["Content-Type"] == "application/octet-stream"
    given = respond(200, "<p>hi</p>", {"Content-Type": "text/html"})
    assert given.headers["Content-Type"] == "text/html"
    forced = respond(200, "x", {"Content-Type": "text/html"}, content_type="text/css")
    assert forced.headers.getall("Content-Type") == ["text/css"]
    empty = respond(204)
    assert empty.body == b"" and "Content-Type" not in empty.headers
    assert empty.event is None and not empty.body_replaced


def test_redirect() -> None:
    response = redirect("https://example.com/new", 301)
    assert (response.status, response.headers["Location"], response.body) == (
        301,
        "https://example.com/new",
        b"",
    )
    assert redirect("/x").status == 302
    with pytest.raises(ValueError, match="redirect status"):
        redirect("/x", 200)
    with pytest.raises(ValueError, match="location"):
        redirect("/x\r\nSet-Cookie: a=b")
    with pytest.raises(ValueError, match="location"):
        redirect("")


def test_json_response() -> None:
    response = json_response({"ok": True, "name": "é"}, 201, {"Cache-Control": "no-store"})
    assert response.status == 201
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert json.loads(response.body or b"") == {"ok": True, "name": "é"}


@pytest.mark.parametrize("status", [99, 100, 199, 600, True, "200", 200.0])
def test_status_must_be_a_final_status_code(status: Any) -> None:
    with pytest.raises(ValueError, match="status"):
        Response(status)
    response = Response()
    with pytest.raises(ValueError, match="status"):
        response.status = status
    assert response.status == 200


def test_body_must_be_bytes_or_text() -> None:
    response = Response()
    response.body = "é"
    assert response.body == "é".encode()
    response.body = bytearray(b"ab")  # type: ignore[assignment]
    assert response.body == b"ab"
    with pytest.raises(TypeError, match="body"):
        response.body = 5  # type: ignore[assignment]


def test_origin_response_body_is_writable_and_stored() -> None:
    headers: CIMultiDict[str] = CIMultiDict({"Content-Type": "text/html"})
    response = Response.for_event(Event.ORIGIN_RESPONSE, 200, headers, b"<p>old</p>")
    assert response.body == b"<p>old</p>" and not response.body_replaced
    response.body = b"<p>new</p>"
    response.status = 203
    response.headers["X-Rewritten"] = "1"
    assert response.body_replaced and response.body == b"<p>new</p>"
    assert headers["X-Rewritten"] == "1"  # headers are changed in place


def test_origin_response_streamed_body_is_none_until_replaced() -> None:
    response = Response.for_event(Event.ORIGIN_RESPONSE, 200, CIMultiDict(), None)
    assert response.body is None
    response.body = b"whole"
    assert response.body == b"whole" and response.body_replaced


def test_viewer_response_body_is_read_only() -> None:
    response = Response.for_event(Event.VIEWER_RESPONSE, 200, CIMultiDict(), b"stored")
    with pytest.raises(ReadOnlyError, match="viewer_response"):
        response.body = b"changed"
    assert response.body == b"stored" and not response.body_replaced
    # status and headers may change
    response.status = 404
    response.headers["X-Per-Viewer"] = "1"
    assert response.status == 404


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (b"abc", b"abc"),
        (memoryview(b"abcdef")[1:3], b"bc"),
        ([b"ab", memoryview(b"cd")], b"abcd"),
        (None, None),
    ],
)
def test_viewer_response_body_parts_are_joined_when_read(parts: Any, expected: bytes | None) -> None:
    response = Response.for_event(Event.VIEWER_RESPONSE, 200, CIMultiDict(), parts)
    assert response.body == expected
    assert response.body == expected  # joined once, then kept


def test_repr_names_the_event() -> None:
    assert "viewer_request" in repr(make_request())
    assert "generated" in repr(respond(200))
    assert "origin_response" in repr(Response.for_event(Event.ORIGIN_RESPONSE, 200, CIMultiDict(), None))
