"""The runnable examples in examples/functions, called with the API objects, and the YAML in their
docstrings (a valid config whose functions resolve)."""

from __future__ import annotations

import json
import random
import re
import textwrap
from pathlib import Path
from types import ModuleType

import pytest
from multidict import CIMultiDict

from examples.functions import ab_test, device_origin, json_api, security_headers
from proxy.functions import Event, FunctionSet, RequestInfo, Response, ViewerRequest
from proxy.settings import parse_config

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1"
)
ROKU = "Roku/DVP-9.10 (519.10E04111A)"
DESKTOP = "Mozilla/5.0 (X11; Linux x86_64; rv:124.0) Gecko/20100101 Firefox/124.0"


def request(
    path: str = "/pricing",
    query: str = "",
    method: str = "GET",
    event: Event = Event.VIEWER_REQUEST,
    **headers: str,
) -> ViewerRequest:
    fields = {k.replace("_", "-"): v for k, v in headers.items()}
    return ViewerRequest(method, path, query, fields, "198.51.100.4", "www.example", "https", event)


def info_of(viewer: ViewerRequest) -> RequestInfo:
    return RequestInfo(
        viewer.method,
        viewer.path,
        viewer.query,
        viewer.headers,
        viewer.client_ip,
        viewer.host,
        viewer.scheme,
        Event.VIEWER_RESPONSE,
    )


def delivered(**headers: str) -> Response:
    fields: CIMultiDict[str] = CIMultiDict({k.replace("_", "-"): v for k, v in headers.items()})
    return Response.for_event(Event.VIEWER_RESPONSE, 200, fields, b"<html></html>")


# --------------------------------------------------------------------------------------------- A/B test


async def test_ab_new_viewer_gets_a_bucket_and_its_cookie() -> None:
    viewer = request(Cookie="other=1", X_AB_Assigned="z")  # a forged marker is dropped
    await ab_test.viewer_request(viewer)
    bucket = viewer.headers[ab_test.BUCKET_HEADER]
    assert bucket in ab_test.BUCKETS
    assert viewer.path == f"/{bucket}/pricing"
    assert viewer.headers.getall(ab_test.ASSIGNED_HEADER) == [bucket]
    response = delivered()
    await ab_test.viewer_response(info_of(viewer), response)
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"ab-bucket={bucket}; Path=/; Max-Age=2592000")


@pytest.mark.parametrize("bucket", ["a", "b"])
async def test_ab_returning_viewer_keeps_its_bucket_without_a_new_cookie(bucket: str) -> None:
    viewer = request(Cookie=f"session=xyz; ab-bucket={bucket}", X_AB_Assigned="a")
    await ab_test.viewer_request(viewer)
    assert viewer.path == f"/{bucket}/pricing"
    assert ab_test.ASSIGNED_HEADER not in viewer.headers
    response = delivered()
    await ab_test.viewer_response(info_of(viewer), response)
    assert "Set-Cookie" not in response.headers


async def test_ab_invalid_bucket_cookie_is_replaced() -> None:
    viewer = request(Cookie="ab-bucket=../../etc")
    await ab_test.viewer_request(viewer)
    assert viewer.headers[ab_test.BUCKET_HEADER] in ab_test.BUCKETS


async def test_ab_both_buckets_are_used(monkeypatch: pytest.MonkeyPatch) -> None:
    picks = iter(["a", "b"])
    monkeypatch.setattr(random, "choice", lambda buckets: next(picks))
    paths = []
    for _ in range(2):
        viewer = request()
        await ab_test.viewer_request(viewer)
        paths.append(viewer.path)
    assert paths == ["/a/pricing", "/b/pricing"]


# --------------------------------------------------------------------------------------------- device origin


@pytest.mark.parametrize(
    ("headers", "path"),
    [
        ({"Edge_Viewer_Device": "mobile"}, "/m/news"),
        ({"Edge_Viewer_Device": "smarttv"}, "/tv/news"),
        ({"Edge_Viewer_Device": "tablet"}, "/news"),
        ({"Edge_Viewer_Device": "desktop"}, "/news"),
        ({"Edge_Viewer_Device": "bot"}, "/news"),
        # Without the edge's header the User-Agent decides.
        ({"User_Agent": IPHONE}, "/m/news"),
        ({"User_Agent": ROKU}, "/tv/news"),
        ({"User_Agent": DESKTOP}, "/news"),
    ],
)
def test_device_origin(headers: dict[str, str], path: str) -> None:
    origin_request = request("/news", event=Event.ORIGIN_REQUEST, **headers)
    device_origin.origin_request(origin_request)
    assert origin_request.path == path


async def test_device_origin_runs_in_a_function_set() -> None:
    functions = FunctionSet({Event.ORIGIN_REQUEST: device_origin.origin_request})
    origin_request = request("/news", event=Event.ORIGIN_REQUEST, Edge_Viewer_Device="mobile")
    assert await functions.origin_request(origin_request) is None
    assert origin_request.path == "/m/news"


# ----------------------------------------------------------------------------------------- security headers


async def test_security_headers_are_added() -> None:
    response = delivered()
    await security_headers.viewer_response(info_of(request()), response)
    for name, value in security_headers.HEADERS.items():
        assert response.headers[name] == value
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


async def test_security_headers_keep_the_origins_own() -> None:
    response = delivered(Content_Security_Policy="default-src https://cdn.example")
    await security_headers.viewer_response(info_of(request()), response)
    assert response.headers.getall("Content-Security-Policy") == ["default-src https://cdn.example"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


# --------------------------------------------------------------------------------------------- JSON API


def body_of(response: Response | None) -> object:
    assert response is not None and response.body is not None
    assert response.headers["Content-Type"] == "application/json"
    return json.loads(response.body)


async def test_json_api_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(json_api, "clock", lambda: 1_700_000_000.25)
    response = await json_api.viewer_request(request("/api/time"))
    assert body_of(response) == {"epoch": 1_700_000_000.25, "iso": "2023-11-14T22:13:20.250+00:00"}
    assert response is not None and response.headers["Cache-Control"] == "no-store"


async def test_json_api_echo() -> None:
    viewer = request(
        "/api/echo", "a=1&a=2&b=x%20y", User_Agent=IPHONE, Edge_Viewer_Country="FR", Cookie="secret=1"
    )
    echo = body_of(await json_api.viewer_request(viewer))
    assert echo == {
        "method": "GET",
        "path": "/api/echo",
        "query": {"a": ["1", "2"], "b": ["x y"]},
        "client_ip": "198.51.100.4",
        "country": "FR",
        "device": "mobile",
        "user_agent": IPHONE,
    }


async def test_json_api_errors() -> None:
    missing = await json_api.viewer_request(request("/api/nope"))
    assert missing is not None and missing.status == 404
    assert body_of(missing) == {"error": "not found", "path": "/api/nope"}
    post = await json_api.viewer_request(request("/api/time", method="POST"))
    assert post is not None and post.status == 405 and post.headers["Allow"] == "GET, HEAD"


async def test_json_api_leaves_other_paths_to_the_origin() -> None:
    assert await json_api.viewer_request(request("/index.html")) is None


# --------------------------------------------------------------------------------------------- the YAML


EXAMPLES = [ab_test, device_origin, security_headers, json_api]


def yaml_of(module: ModuleType) -> str:
    """The indented YAML block at the end of the module's docstring."""
    doc = module.__doc__ or ""
    match = re.search(r"\n\n((?:    .*\n?|\n)+)\s*$", doc)
    assert match is not None, f"{module.__name__} has no YAML block in its docstring"
    return textwrap.dedent(match.group(1))


@pytest.mark.parametrize("module", EXAMPLES, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_docstring_yaml_is_a_valid_config_whose_functions_resolve(module: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    config = parse_config(yaml_of(module), str(tmp_path / "edge.yaml"), env={}, base_dir=tmp_path)
    sets = [FunctionSet.from_config(b.functions) for b in config.behaviours]
    named = [s for s in sets if s is not None]
    assert named, "the example's YAML names no function"
    for functions in named:
        for event in Event:
            spec = functions.spec(event)
            if spec is not None:
                assert spec.startswith(module.__name__ + ":")


async def test_fix_links_rewrites_own_host_links_in_html() -> None:
    from examples.functions import fix_links
    from proxy.functions import Event, RequestInfo, Response

    request = RequestInfo("GET", "/", host="www.example.test", event=Event.ORIGIN_RESPONSE)
    page = b'<a href="http://www.example.test/a">a</a> <a href="http://other.test/">b</a>'
    response = Response.for_event(
        Event.ORIGIN_RESPONSE, 200, CIMultiDict({"Content-Type": "text/html"}), page
    )
    await fix_links.origin_response(request, response)
    assert response.body == b'<a href="https://www.example.test/a">a</a> <a href="http://other.test/">b</a>'
    plain = Response.for_event(Event.ORIGIN_RESPONSE, 200, CIMultiDict({"Content-Type": "text/plain"}), page)
    await fix_links.origin_response(request, plain)
    assert plain.body == page
