"""The pipeline's side of edge functions (proxy.functions.bridge): building the API objects from the
pipeline's messages and applying the results back, one call per event."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.functions import (
    Event,
    FunctionError,
    FunctionSet,
    RequestInfo,
    Response,
    ViewerRequest,
    respond,
)
from proxy.functions.bridge import (
    as_origin_response,
    edge_response,
    request_info,
    run_origin_request,
    run_origin_response,
    run_viewer_request,
    run_viewer_response,
)
from proxy.messages import EdgeRequest, EdgeResponse
from proxy.origin.base import OriginConnectError, OriginRequest, OriginResponse


def edge_request(method: str = "GET", path: str = "/page", query: str = "q=1") -> EdgeRequest:
    headers: CIMultiDict[str] = CIMultiDict({"User-Agent": "curl/8.5.0", "Cookie": "a=1"})
    return EdgeRequest(
        method=method,
        path=path,
        query=query,
        headers=CIMultiDictProxy(headers),  # the adapter hands the pipeline read-only headers
        client_ip="192.0.2.9",
        host="example.com",
        scheme="https",
    )


class Body:
    """An origin body that records how far it was read and whether it was released."""

    def __init__(self, *chunks: bytes, fail_after: int | None = None) -> None:
        self.chunks = chunks
        self.read = 0
        self.released = 0
        self.fail_after = fail_after

    async def stream(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            if self.fail_after is not None and self.read >= self.fail_after:
                raise OriginConnectError("connection reset")
            self.read += 1
            yield chunk

    async def release(self) -> None:
        self.released += 1

    def response(self, status: int = 200, length: int | None = None, **headers: str) -> OriginResponse:
        fields = CIMultiDict({k.replace("_", "-"): v for k, v in headers.items()})
        return OriginResponse(
            status=status, headers=fields, body=self.stream(), content_length=length, release=self.release
        )


async def read(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


# --------------------------------------------------------------------------------------------- RECV


async def test_viewer_request_changes_a_copy_of_the_request() -> None:
    async def rewrite(request: ViewerRequest) -> None:
        assert (request.client_ip, request.host, request.scheme) == ("192.0.2.9", "example.com", "https")
        assert request.event is Event.VIEWER_REQUEST
        request.path = "/b" + request.path
        request.query = "q=2"
        request.headers["X-Bucket"] = "b"
        del request.headers["Cookie"]

    original = edge_request()
    result = await run_viewer_request(FunctionSet({Event.VIEWER_REQUEST: rewrite}), original)
    assert isinstance(result, EdgeRequest)
    assert (result.path, result.query, result.target) == ("/b/page", "q=2", "/b/page?q=2")
    assert result.headers["X-Bucket"] == "b" and "Cookie" not in result.headers
    assert (result.client_ip, result.host, result.method) == ("192.0.2.9", "example.com", "GET")
    # The viewer's request is untouched (the access log shows what the viewer asked for).
    assert (original.path, original.query) == ("/page", "q=1")
    assert "X-Bucket" not in original.headers and "Cookie" in original.headers


async def test_viewer_request_answer() -> None:
    async def block(request: ViewerRequest) -> Response:
        return respond(403, "blocked\n", {"Content-Length": "999", "Connection": "close", "X-Why": "test"})

    result = await run_viewer_request(FunctionSet({Event.VIEWER_REQUEST: block}), edge_request())
    assert isinstance(result, Response)
    answer = edge_response(result, method="GET")
    assert (answer.status, answer.body, answer.content_length, answer.no_body) == (
        403,
        b"blocked\n",
        8,
        False,
    )
    # Framing is the edge's: the function's Content-Length and Connection are dropped.
    assert "Content-Length" not in answer.headers and "Connection" not in answer.headers
    assert answer.headers["X-Why"] == "test"
    assert edge_response(result, method="HEAD").no_body
    assert edge_response(respond(204), method="GET").no_body


# --------------------------------------------------------------------------------------------- FETCH


def origin_request(target: str = "/page?q=1", method: str = "GET") -> OriginRequest:
    headers: CIMultiDict[str] = CIMultiDict({"X-Forwarded-For": "192.0.2.9", "Via": "1.1 edge"})
    return OriginRequest(method=method, target=target, headers=headers, viewer_host="example.com")


async def test_origin_request_changes_the_origin_request_in_place() -> None:
    def sign(request: ViewerRequest) -> None:
        assert request.event is Event.ORIGIN_REQUEST
        assert request.headers["X-Forwarded-For"] == "192.0.2.9"  # the edge's own fields are there
        assert request.client_ip == "192.0.2.9" and request.host == "example.com"
        request.path = "/m" + request.path
        request.query = ""
        request.headers["X-Signature"] = "s3cr3t"

    sent = origin_request(method="GET")
    result = await run_origin_request(FunctionSet({Event.ORIGIN_REQUEST: sign}), edge_request("HEAD"), sent)
    assert result is sent
    assert sent.target == "/m/page"
    assert sent.headers["X-Signature"] == "s3cr3t"


async def test_origin_request_answer_stands_in_for_the_origin() -> None:
    async def local(request: ViewerRequest) -> Response:
        assert request.method == "GET"
        return respond(200, "from the function", {"Cache-Control": "max-age=60", "Content-Length": "1"})

    functions = FunctionSet({Event.ORIGIN_REQUEST: local})
    result = await run_origin_request(functions, edge_request(), origin_request())
    assert isinstance(result, Response)
    standin = as_origin_response(result)
    assert standin.status == 200 and standin.content_length == len(b"from the function")
    assert standin.headers["Cache-Control"] == "max-age=60" and "Content-Length" not in standin.headers
    assert await read(standin.body) == b"from the function"
    await standin.release()


# --------------------------------------------------------------------------------------------- STORE


async def upper(request: RequestInfo, response: Response) -> None:
    assert request.event is Event.ORIGIN_RESPONSE and request.path == "/page"
    response.headers["X-Seen-Body"] = "yes" if response.body is not None else "no"
    if response.body is not None:
        response.body = response.body.upper()
    response.status = 203


async def test_origin_response_small_body_is_read_and_can_be_changed() -> None:
    body = Body(b"hello ", b"world")
    response = body.response(length=11, Content_Length="11", ETag='"v1"')
    functions = FunctionSet({Event.ORIGIN_RESPONSE: upper})
    result = await run_origin_response(functions, edge_request(), response, max_body=1024)
    assert result is response
    assert (result.status, result.content_length) == (203, 11)
    assert result.headers["X-Seen-Body"] == "yes" and result.headers["ETag"] == '"v1"'
    assert "Content-Length" not in result.headers  # framing is redone for the new body
    assert await read(result.body) == b"HELLO WORLD"
    await result.release()
    assert body.released == 1  # the origin connection is released once, by the pipeline


async def test_origin_response_unchanged_body_is_replayed() -> None:
    async def headers_only(request: RequestInfo, response: Response) -> None:
        response.headers["X-Edge"] = "1"

    body = Body(b"a", b"b", b"c")
    response = body.response(length=None)
    result = await run_origin_response(
        FunctionSet({Event.ORIGIN_RESPONSE: headers_only}), edge_request(), response, max_body=1024
    )
    assert result.content_length == 3 and result.headers["X-Edge"] == "1"
    assert await read(result.body) == b"abc"


async def test_origin_response_large_body_streams_on_untouched() -> None:
    body = Body(b"x" * 10, b"y" * 10)
    response = body.response(length=20)
    functions = FunctionSet({Event.ORIGIN_RESPONSE: upper})
    result = await run_origin_response(functions, edge_request(), response, max_body=8)
    assert result.headers["X-Seen-Body"] == "no" and result.status == 203
    assert body.read == 0 and result.content_length == 20
    assert await read(result.body) == b"x" * 10 + b"y" * 10


async def test_origin_response_unknown_length_over_the_limit_is_chained() -> None:
    body = Body(b"1234", b"5678", b"9")
    functions = FunctionSet({Event.ORIGIN_RESPONSE: upper})
    result = await run_origin_response(functions, edge_request(), body.response(length=None), max_body=5)
    assert result.headers["X-Seen-Body"] == "no"
    assert result.content_length is None
    # What was read to find out it was too large is sent first, then the rest.
    assert await read(result.body) == b"123456789"


async def test_origin_response_replacing_a_streamed_body_releases_the_origin() -> None:
    async def replace(request: RequestInfo, response: Response) -> None:
        assert response.body is None
        response.body = "replaced"

    body = Body(b"x" * 100)
    result = await run_origin_response(
        FunctionSet({Event.ORIGIN_RESPONSE: replace}), edge_request(), body.response(length=100), max_body=10
    )
    assert body.released == 1
    assert result.content_length == 8 and await read(result.body) == b"replaced"
    await result.release()
    assert body.released == 1  # not released twice


async def test_origin_response_failure_releases_the_origin() -> None:
    async def fails(request: RequestInfo, response: Response) -> None:
        raise RuntimeError("template error")

    body = Body(b"abc")
    with pytest.raises(FunctionError):
        await run_origin_response(
            FunctionSet({Event.ORIGIN_RESPONSE: fails}), edge_request(), body.response(length=3), max_body=10
        )
    assert body.released == 1


async def test_origin_failure_while_reading_releases_and_raises_the_origin_error() -> None:
    body = Body(b"abc", b"def", fail_after=1)
    with pytest.raises(OriginConnectError):
        await run_origin_response(
            FunctionSet({Event.ORIGIN_RESPONSE: upper}), edge_request(), body.response(), max_body=100
        )
    assert body.released == 1


# --------------------------------------------------------------------------------------------- DELIVER


def delivered(body: bytes = b"stored body", **kwargs: object) -> EdgeResponse:
    return EdgeResponse(
        status=200,
        headers=CIMultiDict({"Content-Type": "text/plain"}),
        body=body,
        content_length=len(body),
        **kwargs,  # type: ignore[arg-type]
    )


async def test_viewer_response_changes_status_and_headers_in_place() -> None:
    async def per_viewer(request: RequestInfo, response: Response) -> None:
        assert request.event is Event.VIEWER_RESPONSE and request.path == "/page"
        assert response.body == b"stored body"
        response.headers["Set-Cookie"] = "seen=1"
        response.status = 404

    response = delivered()
    result = await run_viewer_response(
        FunctionSet({Event.VIEWER_RESPONSE: per_viewer}), edge_request(), response
    )
    assert result is response
    assert (result.status, result.headers["Set-Cookie"], result.body) == (404, "seen=1", b"stored body")
    assert not result.no_body


async def test_viewer_response_streamed_and_bodiless_responses() -> None:
    seen: list[bytes | None] = []

    async def record(request: RequestInfo, response: Response) -> None:
        seen.append(response.body)

    functions = FunctionSet({Event.VIEWER_RESPONSE: record})

    async def stream() -> AsyncIterator[bytes]:
        yield b"chunk"

    await run_viewer_response(functions, edge_request(), delivered(body=b"", stream=stream()))
    await run_viewer_response(functions, edge_request("HEAD"), delivered(no_body=True))
    assert seen == [None, b""]


async def test_viewer_response_to_204_sends_no_body() -> None:
    async def empty(request: RequestInfo, response: Response) -> None:
        response.status = 204

    result = await run_viewer_response(
        FunctionSet({Event.VIEWER_RESPONSE: empty}), edge_request(), delivered()
    )
    assert result.status == 204 and result.no_body


async def test_viewer_response_failure_closes_the_stream_and_finishes() -> None:
    finished: list[bool] = []
    closed: list[bool] = []

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield b"chunk"
        finally:
            closed.append(True)

    async def finish(completed: bool) -> None:
        finished.append(completed)

    async def changes_body(request: RequestInfo, response: Response) -> None:
        response.body = b"not allowed"

    body_stream = stream()
    await body_stream.__anext__()  # started, so closing it runs its cleanup
    response = delivered(body=b"", stream=body_stream, finish=finish)
    with pytest.raises(FunctionError, match="read-only"):
        await run_viewer_response(
            FunctionSet({Event.VIEWER_RESPONSE: changes_body}), edge_request(), response
        )
    assert finished == [False] and closed == [True]


def test_request_info_shares_the_headers() -> None:
    headers: CIMultiDict[str] = CIMultiDict({"A": "1"})
    request = EdgeRequest("GET", "/p", "", headers, "192.0.2.1", "h")
    view = request_info(request, Event.ORIGIN_RESPONSE)
    headers["A"] = "2"
    assert view.headers["A"] == "2" and view.event is Event.ORIGIN_RESPONSE
    assert isinstance(view.headers, CIMultiDictProxy)
