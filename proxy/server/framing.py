"""What every viewer front (HTTP/1.1, HTTP/2, HTTP/3) decides the same way about a response's body.

Called by each front's response writer once per response, before it frames the head: whether a body may be
sent at all, the parts of a body already in memory, and its length when known.
"""

from __future__ import annotations

from proxy.messages import BodyPart, EdgeResponse

# RFC 9110 §15.3.5, §15.4.5: these never carry content (nor do 1xx answers and responses to HEAD).
NO_BODY_STATUSES = frozenset({204, 304})


def body_of(response: EdgeResponse, method: str, status: int) -> tuple[bool, list[BodyPart], int | None]:
    """``(no_body, parts, length)`` of ``response`` to a ``method`` request, answered with ``status``.

    ``no_body``: nothing may follow the head (RFC 9110 §6.4.1: HEAD, 1xx, 204, 304, or the pipeline said
    so). ``parts``: the body's bytes when it is in memory (empty for a streamed one). ``length``: the
    body's length (summed from ``parts`` when it is sent), else the response's ``content_length`` (which a
    HEAD answer keeps as the length the GET would have had), None when unknown.
    """
    no_body = response.no_body or method == "HEAD" or status in NO_BODY_STATUSES or status < 200
    length = response.content_length
    if response.stream is not None:
        return no_body, [], length
    payload = response.body
    parts: list[BodyPart] = [payload] if isinstance(payload, bytes | memoryview) else list(payload)
    if not no_body:
        length = len(parts[0]) if len(parts) == 1 else sum([len(part) for part in parts])
    return no_body, parts, length
