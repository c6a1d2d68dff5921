"""Property tests: whatever a viewer's HTTP/3 field section holds, reading it never raises and writing a
response never sends a field HTTP/3 forbids."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from proxy.http.h3_fields import request_head, response_fields

_names = st.one_of(
    st.sampled_from(
        [b":method", b":path", b":authority", b":scheme", b":x", b"host", b"cookie", b"content-length"]
    ),
    st.binary(max_size=12),
)
_fields = st.lists(st.tuples(_names, st.binary(max_size=40)), max_size=12)
_text = st.text(max_size=20)


@given(_fields)
def test_request_head_never_raises(fields: list[tuple[bytes, bytes]]) -> None:
    head = request_head(fields)
    if not head.bad:
        assert head.method and (head.method == "CONNECT" or head.target)
        assert len(head.headers.getall("Host", [])) <= 1


@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "Connection",
                    "Keep-Alive",
                    "TE",
                    "Upgrade",
                    "Transfer-Encoding",
                    "X-A",
                    "Content-Length",
                    "Proxy-Connection",
                    "X:B",
                    "",
                ]
            )
            | _text,
            _text,
        ),
        max_size=10,
    )
)
def test_response_fields_never_connection_specific(pairs: list[tuple[str, str]]) -> None:
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in pairs:
        if name and "\n" not in name:
            headers.add(name, value)
    fields = response_fields(200, headers, None, ())
    assert fields[0] == (b":status", b"200")
    forbidden = {b"connection", b"keep-alive", b"te", b"upgrade", b"transfer-encoding", b"proxy-connection"}
    for name, value in fields[1:]:
        assert name == name.lower() and name not in forbidden and name != b"content-length"
        assert not name.startswith(b":") and b"\r" not in value and b"\n" not in value and b"\0" not in value
