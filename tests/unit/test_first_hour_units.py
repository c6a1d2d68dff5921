"""Pure pieces of the first-hour fixes: the https redirect authority, the error page's Accept rule and
text, the listen failure message, the startup line's shared-tier state."""

from __future__ import annotations

import errno

import pytest
from proxy.edge.policies import https_authority

from proxy.http.error_page import accepts_html, render
from proxy.settings import ListenAddress, config_for_origin
from proxy.startup import NOTHING_TO_RELOAD, listen_failure


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("www.example.test", 443, "www.example.test"),
        ("www.example.test:8080", 443, "www.example.test"),
        ("www.example.test:8080", 8443, "www.example.test:8443"),
        ("www.example.test", 8443, "www.example.test:8443"),
        ("127.0.0.1:8080", 8443, "127.0.0.1:8443"),
        ("[::1]:8080", 8443, "[::1]:8443"),
        ("[::1]", 443, "[::1]"),
        ("example.test:8080", 0, "example.test"),  # port 0: unknown until bound, the scheme's default
    ],
)
def test_https_authority(host: str, port: int, expected: str) -> None:
    assert https_authority(host, port) == expected


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, False),
        ("", False),
        ("*/*", False),
        ("application/json", False),
        ("text/html", True),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", True),
        ("application/xhtml+xml", True),
        ("TEXT/HTML;q=0.5", True),
        ("text/html;q=0", False),
        ("text/html;q=zero", False),
    ],
)
def test_accepts_html(accept: str | None, expected: bool) -> None:
    assert accepts_html(accept) is expected


def test_error_page_html_names_edge_and_request_id_and_escapes() -> None:
    content_type, body = render(
        502,
        "Bad Gateway: the origin could not be reached\n",
        edge="edge<1>",
        request_id="abc123",
        accept="text/html",
    )
    text = body.decode()
    assert content_type == "text/html; charset=utf-8"
    assert text.startswith("<!doctype html>") and "<style>" in text and "http" not in text.split("<style>")[1]
    assert "502" in text and "Bad Gateway" in text and "The origin could not be reached." in text
    assert "edge&lt;1&gt;" in text and "abc123" in text and "<1>" not in text
    assert len(body) < 2048


def test_error_page_plain_text() -> None:
    content_type, body = render(504, "Gateway Timeout\n", edge="edge-1", request_id="r1", accept="*/*")
    assert content_type == "text/plain; charset=utf-8"
    assert body == b"504 Gateway Timeout\nedge: edge-1\nrequest id: r1\n"


@pytest.mark.parametrize(
    ("setting", "hint"),
    [
        ("server.listen", "change server.listen in <origin>"),
        ("--listen", "choose another with --listen HOST:PORT"),
        ("admin.listen", "change admin.listen in"),
        ("server.tls.listen", "change server.tls.listen in"),
    ],
)
def test_listen_failure_names_address_setting_and_fix(setting: str, hint: str) -> None:
    config = config_for_origin("http://127.0.0.1:9")
    exc = OSError(errno.EADDRINUSE, "Address already in use")
    message = listen_failure(exc, (setting, ListenAddress(host="127.0.0.1", port=8080)), config)
    assert message.startswith(f"cannot listen on 127.0.0.1:8080 ({setting}): address already in use")
    assert hint.replace("<origin>", "the command line") in message


def test_listen_failure_ipv6_and_unknown() -> None:
    config = config_for_origin("http://127.0.0.1:9")
    message = listen_failure(
        OSError(errno.EACCES, "denied"), ("--listen", ListenAddress(host="::1", port=80)), config
    )
    assert "[::1]:80" in message and "permission denied" in message
    assert listen_failure(OSError("boom"), None, config) == "cannot listen: boom"
    assert "--origin" in NOTHING_TO_RELOAD
