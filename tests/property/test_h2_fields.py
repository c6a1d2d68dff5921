"""Property tests for the HTTP/2 request field checks (RFC 9113 §8.2, §8.3): never raises; accepts exactly
what the rules allow; every regular field it passes on is a valid lower-case HTTP/1.1 field."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from proxy.http.h2_fields import H2Request, Malformed, check_request, response_fields

PSEUDO = [b":method", b":scheme", b":authority", b":path", b":status", b":protocol", b":x"]
NAMES = st.one_of(
    st.sampled_from(PSEUDO),
    st.sampled_from([b"accept", b"cookie", b"host", b"te", b"connection", b"content-length", b"X-Up"]),
    st.binary(min_size=0, max_size=8),
)
VALUES = st.one_of(st.sampled_from([b"GET", b"/", b"https", b"a", b"trailers", b"7"]), st.binary(max_size=12))
BLOCKS = st.lists(st.tuples(NAMES, VALUES), max_size=12)
GOOD = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a.example"), (b":path", b"/")]


@given(BLOCKS)
def test_never_raises_and_passes_on_only_valid_fields(block: list[tuple[bytes, bytes]]) -> None:
    checked = check_request(block)
    assert isinstance(checked, H2Request | Malformed)
    if isinstance(checked, H2Request):
        for name, value in checked.fields:
            assert name == name.lower() and name and not name.startswith(":")
            assert name not in (
                "connection",
                "keep-alive",
                "transfer-encoding",
                "upgrade",
                "proxy-connection",
            )
            assert "\r" not in value and "\n" not in value and "\x00" not in value
        assert checked.method


@given(st.binary(min_size=1, max_size=10))
def test_upper_case_names_are_malformed(name: bytes) -> None:
    if name.lower() == name or name.startswith(b":"):
        return
    assert isinstance(check_request([*GOOD, (name, b"v")]), Malformed)


@given(st.permutations(GOOD), st.lists(st.tuples(st.sampled_from([b"accept", b"x-a"]), st.just(b"v"))))
def test_pseudo_headers_first_in_any_order(
    pseudo: list[tuple[bytes, bytes]], rest: list[tuple[bytes, bytes]]
) -> None:
    assert isinstance(check_request([*pseudo, *rest]), H2Request)
    if rest:
        assert isinstance(check_request([*rest, *pseudo]), Malformed)


@given(st.lists(st.tuples(st.text(max_size=8), st.text(max_size=12)), max_size=10), st.integers(100, 599))
def test_response_fields_are_always_sendable(headers: list[tuple[str, str]], status: int) -> None:
    fields = response_fields(status, headers)
    assert fields[0] == (b":status", str(status).encode())
    for name, value in fields[1:]:
        assert name == name.lower() and not name.startswith(b":")
        assert name not in (b"connection", b"keep-alive", b"transfer-encoding", b"upgrade", b"content-length")
        assert b"\r" not in value and b"\n" not in value and b"\x00" not in value
