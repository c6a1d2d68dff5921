"""Property tests for the HTTP/1.1 front's request reader (``proxy.server.http1.parse.RequestReader``):
hostile bytes never raise, the same bytes split anywhere give the same requests, and well-formed requests
come out exactly as they were written (fields in order, duplicates kept)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.server.http1.parse import RequestHead, RequestReader

Event = tuple[object, ...]


class Recorder:
    """A RequestSink that writes down what it was told."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def on_head(self, head: RequestHead) -> bool:
        self.events.append(
            (
                "head",
                head.method,
                head.target,
                head.version,
                list(head.headers.items()),
                head.keep_alive,
                head.content_length,
                head.has_body,
                head.expect_continue,
            )
        )
        return True

    def on_body(self, chunk: bytes) -> None:
        if self.events and self.events[-1][0] == "body":
            self.events[-1] = ("body", self.events[-1][1] + chunk)  # type: ignore[operator]
        else:
            self.events.append(("body", chunk))

    def on_end(self) -> None:
        self.events.append(("end",))

    def on_error(self, status: int) -> None:
        self.events.append(("error",))


def read(data: bytes, cuts: list[int], limit: int = 16 * 1024) -> list[Event]:
    recorder = Recorder()
    reader = RequestReader(recorder, limit)
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        if cut > start:
            reader.feed(data[start:cut])
            start = cut
    return recorder.events


METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "PURGE"]
_TCHAR = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
names = st.text(alphabet=_TCHAR, min_size=1, max_size=20).filter(
    lambda n: n.lower() not in ("content-length", "transfer-encoding", "expect", "connection", "upgrade")
)
values = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40).map(str.strip)
path_chars = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._~%/=&?+!$'()*,;:@", max_size=60)


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, str, str, list[tuple[str, str]], bytes, bool]:
    method = draw(st.sampled_from(METHODS))
    target = "/" + draw(path_chars)
    fields = draw(st.lists(st.tuples(names, values), max_size=8))
    body = draw(st.binary(max_size=300)) if method in ("POST", "PUT", "PATCH") else b""
    chunked = bool(body) and draw(st.booleans())
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in fields)
    if chunked:
        cuts = sorted(set(draw(st.lists(st.integers(0, len(body)), max_size=4))))
        pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True) if b > a]
        framed = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
        data = (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + framed
    elif body:
        data = (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    else:
        data = (head + "\r\n").encode()
    return data, method, target, fields, body, chunked


@settings(max_examples=300)
@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=6))
def test_hostile_bytes_never_raise(data: bytes, cuts: list[int]) -> None:
    events = read(data, cuts)
    assert all(event[0] in ("head", "body", "end", "error") for event in events)
    assert [e for e in events if e[0] == "error"] in ([], [("error",)])


@settings(max_examples=300)
@given(st.lists(requests(), min_size=1, max_size=4), st.lists(st.integers(0, 3000), max_size=8))
def test_split_requests_read_the_same_and_as_written(
    batch: list[tuple[bytes, str, str, list[tuple[str, str]], bytes, bool]], cuts: list[int]
) -> None:
    data = b"".join(item[0] for item in batch)
    whole = read(data, [])
    assert read(data, [c % (len(data) + 1) for c in cuts]) == whole
    expected: list[Event] = []
    for _, method, target, fields, body, chunked in batch:
        field_list = list(fields)
        if chunked:
            field_list.append(("Transfer-Encoding", "chunked"))
        elif body:
            field_list.append(("Content-Length", str(len(body))))
        length = len(body) if body and not chunked else None
        expected.append(("head", method, target, (1, 1), field_list, True, length, bool(body), False))
        if body:
            expected.append(("body", body))
        expected.append(("end",))
    assert whole == expected


@settings(max_examples=200)
@given(
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=12),
    st.lists(st.integers(0, 60), max_size=4),
)
def test_any_method_token_is_read_or_refused(method: str, cuts: list[int]) -> None:
    data = f"{method} /x HTTP/1.1\r\nHost: a\r\n\r\n".encode()
    events = read(data, cuts)
    if method in METHODS:
        assert events[0][1] == method and events[-1] == ("end",)
    else:
        assert events[-1][0] in ("end", "error")


def test_heads_over_the_limit_and_bad_versions_are_refused() -> None:
    class Status(Recorder):
        def on_error(self, status: int) -> None:
            self.events.append(("error", status))

    def status_of(data: bytes, limit: int = 200) -> object:
        recorder = Status()
        RequestReader(recorder, limit).feed(data)
        return recorder.events[-1]

    assert status_of(b"GET /" + b"a" * 300 + b" HTTP/1.1\r\n\r\n") == ("error", 431)
    assert status_of(b"GET / HTTP/1.1\r\nX: " + b"v" * 300 + b"\r\n\r\n") == ("error", 431)
    assert status_of(
        b"GET / HTTP/1.1\r\n" + b"".join(b"X%d: 1\r\n" % i for i in range(130)) + b"\r\n", 10**6
    ) == (
        "error",
        431,
    )
    assert status_of(b"GET / HTTP/1.2\r\n\r\n") == ("error", 505)
    assert status_of(b"FOO / HTTP/1.1\r\n\r\n") == ("error", 501)
    assert status_of(b"G@T / HTTP/1.1\r\n\r\n") == ("error", 400)
    # Two pipelined HTTP/1.0 requests without keep-alive: the first is read, the rest never is.
    recorder = Recorder()
    RequestReader(recorder, 1000).feed(b"GET /1 HTTP/1.0\r\n\r\nGET /2 HTTP/1.0\r\n\r\n")
    assert [e[0] for e in recorder.events] == ["head", "end"]
