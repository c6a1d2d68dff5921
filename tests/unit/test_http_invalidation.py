"""Invalidation after unsafe requests (RFC 9111 §4.4)."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.http.invalidation import InvalidationTarget, invalidates, invalidation_targets

T = InvalidationTarget
HOST = "example.com"


@pytest.mark.parametrize(
    ("method", "status", "expected"),
    [
        pytest.param("POST", 200, True, id="§4.4 POST 2xx"),
        pytest.param("PUT", 201, True, id="§4.4 PUT 2xx"),
        pytest.param("DELETE", 204, True, id="§4.4 DELETE 2xx"),
        pytest.param("PATCH", 303, True, id="§4.4 3xx is a non-error status"),
        pytest.param("M-SEARCH", 200, True, id="§4.4 method of unknown safety counts as unsafe"),
        pytest.param("POST", 404, False, id="§4.4 error status: no invalidation"),
        pytest.param("POST", 500, False, id="§4.4 server error: no invalidation"),
        pytest.param("GET", 200, False, id="RFC 9110 §9.2.1 GET is safe"),
        pytest.param("HEAD", 200, False, id="RFC 9110 §9.2.1 HEAD is safe"),
        pytest.param("OPTIONS", 200, False, id="RFC 9110 §9.2.1 OPTIONS is safe"),
        pytest.param("PROPFIND", 207, False, id="RFC 4918 PROPFIND is safe"),
    ],
)
def test_invalidates(method: str, status: int, expected: bool) -> None:
    assert invalidates(method, status) is expected


CASES: list[Any] = [
    pytest.param({}, [T(HOST, "/a/b", "x=1")], id="§4.4 the target URI"),
    pytest.param({"status": 500}, [], id="§4.4 nothing after an error"),
    pytest.param({"method": "GET"}, [], id="§4.4 nothing after a safe method"),
    pytest.param(
        {"location": "/a/new"},
        [T(HOST, "/a/b", "x=1"), T(HOST, "/a/new", "")],
        id="§4.4 Location (absolute path)",
    ),
    pytest.param(
        {"location": "c?y=2"}, [T(HOST, "/a/b", "x=1"), T(HOST, "/a/c", "y=2")], id="§4.4 relative Location"
    ),
    pytest.param(
        {"content_location": "http://EXAMPLE.com:80/cl#frag"},
        [T(HOST, "/a/b", "x=1"), T(HOST, "/cl", "")],
        id="§4.4 Content-Location, same origin spelled differently",
    ),
    pytest.param(
        {"location": "http://other.example/x"}, [T(HOST, "/a/b", "x=1")], id="§4.4 other host: MUST NOT"
    ),
    pytest.param(
        {"location": "https://example.com/x"}, [T(HOST, "/a/b", "x=1")], id="§4.4 other scheme: MUST NOT"
    ),
    pytest.param(
        {"location": "http://example.com:8080/x"}, [T(HOST, "/a/b", "x=1")], id="§4.4 other port: MUST NOT"
    ),
    pytest.param(
        {"location": "//other.example/x"},
        [T(HOST, "/a/b", "x=1")],
        id="§4.4 network-path reference elsewhere",
    ),
    pytest.param({"location": "/a/b?x=1"}, [T(HOST, "/a/b", "x=1")], id="§4.4 duplicates removed"),
    pytest.param({"location": "/a/../z"}, [T(HOST, "/a/b", "x=1"), T(HOST, "/z", "")], id="dot-segments"),
    pytest.param({"location": "http://[::1/x"}, [T(HOST, "/a/b", "x=1")], id="unparseable Location ignored"),
    pytest.param({"location": "  "}, [T(HOST, "/a/b", "x=1")], id="blank Location ignored"),
]


@pytest.mark.parametrize(("args", "expected"), CASES)
def test_invalidation_targets(args: dict[str, Any], expected: list[InvalidationTarget]) -> None:
    kwargs: dict[str, Any] = {"scheme": "http", "host": HOST, "target": "/a/b?x=1"}
    method = args.pop("method", "POST")
    status = args.pop("status", 200)
    kwargs.update(args)
    assert invalidation_targets(method, status, **kwargs) == tuple(expected)


def test_host_with_port_keeps_the_viewer_spelling() -> None:
    targets = invalidation_targets(
        "PUT", 200, scheme="http", host="127.0.0.1:8080", target="/p", location="http://127.0.0.1:8080/q"
    )
    assert targets == (T("127.0.0.1:8080", "/p", ""), T("127.0.0.1:8080", "/q", ""))
