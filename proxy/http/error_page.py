"""The edge's own error pages (404, 502, 503, 504 …): a small styled HTML page, or plain text for a viewer
that does not accept HTML (curl, API clients).

Called by the pipeline's DELIVER for responses the edge makes itself and by the static origin for a missing
file. Pure: ``render`` returns the Content-Type and the body; the caller adds the headers.
"""

from __future__ import annotations

import html

from proxy.http.headers import parse_list_header
from proxy.http.status import reason_phrase

__all__ = ["EDGE_PAGE_STATUSES", "accepts_html", "render"]

EDGE_PAGE_STATUSES = frozenset({404, 500, 502, 503, 504})
"""Statuses whose edge-made answers get this page (other synthetic answers keep their short text)."""

_HTML_TYPES = ("text/html", "application/xhtml+xml")

_STYLE = (
    "body{margin:0;font:16px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1d2430;"
    "background:#f4f6f9;display:flex;min-height:100vh;align-items:center;justify-content:center}"
    "main{background:#fff;max-width:34rem;margin:1rem;padding:2rem 2.25rem;border-radius:12px;"
    "box-shadow:0 2px 12px rgba(0,0,0,.08)}"
    "h1{margin:0 0 .5rem;font-size:1.5rem}.code{color:#c0392b;margin-right:.4rem}"
    "p{margin:.5rem 0}footer{margin-top:1.25rem;font-size:.85rem;color:#5b6573}"
    "code{background:#eef1f5;padding:.1rem .35rem;border-radius:4px}"
)


def accepts_html(accept: str | None) -> bool:
    """True when the ``Accept`` field lists an HTML type (RFC 9110 §12.5.1) with a non-zero weight.
    A missing field or ``*/*`` alone means a non-browser client: it gets plain text."""
    if not accept:
        return False
    for item in parse_list_header([accept]):
        media, _, params = item.partition(";")
        if media.strip().lower() not in _HTML_TYPES:
            continue
        weight = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value.strip())
                except ValueError:
                    weight = 0.0
        if weight > 0:
            return True
    return False


def render(
    status: int, message: str, *, edge: str, request_id: str | None, accept: str | None
) -> tuple[str, bytes]:
    """(Content-Type, body) of the page for ``status``. ``message`` is the edge's one-sentence reason
    (e.g. ``"Bad Gateway: the origin could not be reached"``); ``edge`` is ``server.name``."""
    phrase = reason_phrase(status)
    detail = message.strip()
    if detail.startswith(phrase):
        detail = detail[len(phrase) :].lstrip(":;,- ").strip()
    if not accepts_html(accept):
        lines = [f"{status} {phrase}"]
        if detail:
            lines.append(detail)
        lines.append(f"edge: {edge}")
        if request_id:
            lines.append(f"request id: {request_id}")
        return "text/plain; charset=utf-8", ("\n".join(lines) + "\n").encode()
    esc = html.escape
    reference = f" · request id <code>{esc(request_id)}</code>" if request_id else ""
    text = f"<p>{esc(detail[0].upper() + detail[1:])}.</p>" if detail else ""
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{status} {esc(phrase)}</title><style>{_STYLE}</style></head>"
        f'<body><main><h1><span class="code">{status}</span>{esc(phrase)}</h1>{text}'
        f"<footer>Served by edge <code>{esc(edge)}</code>{reference}</footer></main></body></html>\n"
    )
    return "text/html; charset=utf-8", page.encode()
