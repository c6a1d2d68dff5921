"""Path normalisation for security checks: what an origin may make of a raw request path.

The edge routes and caches on the raw (still percent-encoded) path, but an origin decodes it, and many
also resolve ``.``/``..`` segments and repeated slashes. A check that looks only at the raw path can be
walked around with ``/%61dmin``, ``/public/../admin`` or ``//admin``. ``normalise_path`` gives the
decoded, resolved form; the firewall and signed-cookie checks look at it as well as at the raw path.
Pure functions, called per request only by guards that need them (never on the plain hit path).
"""

from __future__ import annotations

from urllib.parse import unquote

__all__ = ["MAX_DECODE_ROUNDS", "needs_normalising", "normalise_path", "remove_dot_segments"]

MAX_DECODE_ROUNDS = 3  # %252e → %2e → . : some servers decode twice; three rounds cover that with margin
_SUSPECT = ("%", "/.", "//", "\\")


def needs_normalising(path: str) -> bool:
    """Whether ``normalise_path(path)`` may differ from ``path`` (a cheap test to skip the work)."""
    return any(marker in path for marker in _SUSPECT)


def remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 dot-segment removal, plus collapsing of empty segments (``//`` → ``/``).

    The result always starts with ``/``; a trailing ``/`` (or a trailing ``.``/``..`` segment, which means
    a directory) is kept.
    """
    segments = path.split("/")
    out: list[str] = []
    for segment in segments[1:] if path.startswith("/") else segments:
        if segment in ("", "."):
            continue
        if segment == "..":
            if out:
                out.pop()
            continue
        out.append(segment)
    trailing = path.endswith(("/", "/.", "/..")) or path in (".", "..")
    result = "/" + "/".join(out)
    if trailing and out:
        result += "/"
    return result


def normalise_path(path: str) -> str:
    """The path as a lenient origin may see it: percent-decoded (repeatedly, up to ``MAX_DECODE_ROUNDS``),
    backslashes read as slashes, dot segments resolved and empty segments collapsed.

    Called by guards for paths where ``needs_normalising`` is true. Never raises: undecodable escapes stay
    as they are (``errors="surrogateescape"`` keeps invalid UTF-8 visible as lone surrogates).
    """
    decoded = path
    for _ in range(MAX_DECODE_ROUNDS):
        if "%" not in decoded:
            break
        once = unquote(decoded, errors="surrogateescape")
        if once == decoded:
            break
        decoded = once
    decoded = decoded.replace("\\", "/")
    return remove_dot_segments(decoded)
