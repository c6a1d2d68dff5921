"""A local folder as origin: the edge as a web server (``origins.NAME.root``).

Created at start-up; ``fetch`` is called by the FETCH phase exactly like an HTTP origin's, so responses from
a folder are cached by the same rules. It answers GET and HEAD with the index file for directories,
``Content-Type`` by extension, a strong ``ETag`` and ``Last-Modified``, conditional requests (304/412,
RFC 9110 §13) and ``Range`` (206/416, RFC 9110 §14). A path that would leave the root in any way (``..``,
encoded dots or slashes, NUL, a symlink pointing outside) is a 404, and directories are never listed.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import secrets
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import unquote

from multidict import CIMultiDict

from proxy.http.conditional import evaluate_preconditions
from proxy.http.dates import format_http_date
from proxy.http.error_page import render as render_error_page
from proxy.http.ranges import content_range, if_range_allows, multipart_byteranges, parse_range
from proxy.origin.base import OriginRequest, OriginResponse

CHUNK = 256 * 1024
MULTIPART_LIMIT = 16 * 1024 * 1024  # multi-range answers are built in memory only for files up to this size


def _text(status: int, message: str, extra: CIMultiDict[str] | None = None) -> OriginResponse:
    body = message.encode()
    headers = CIMultiDict({"Content-Type": "text/plain; charset=utf-8", "Content-Length": str(len(body))})
    if extra:
        headers.extend(extra)
    return OriginResponse(status=status, headers=headers, body=_once(body), content_length=len(body))


def _not_found(request: OriginRequest) -> OriginResponse:
    """A missing file: the edge's styled 404 page, HTML or plain text per ``Accept`` (hence ``Vary``; no
    request id: the page may be cached per error_ttl)."""
    content_type, body = render_error_page(
        404,
        "Not Found: no such file",
        edge="edgeproxy",
        request_id=None,
        accept=request.headers.get("Accept"),
    )
    headers = CIMultiDict({"Content-Type": content_type, "Content-Length": str(len(body)), "Vary": "Accept"})
    return OriginResponse(status=404, headers=headers, body=_once(body), content_length=len(body))


async def _once(data: bytes) -> AsyncIterator[bytes]:
    if data:
        yield data


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


async def _read_file(path: str, start: int, length: int) -> AsyncIterator[bytes]:
    """Stream ``length`` bytes of ``path`` from ``start`` in chunks, reading in a worker thread."""
    handle = await asyncio.to_thread(open, path, "rb")
    try:
        await asyncio.to_thread(handle.seek, start)
        left = length
        while left > 0:
            chunk = await asyncio.to_thread(handle.read, min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk
    finally:
        handle.close()


def content_type_for(path: str) -> str:
    """The Content-Type for a file name: by extension, with a charset for text types."""
    guessed, _ = mimetypes.guess_type(path, strict=False)
    if guessed is None:
        return "application/octet-stream"
    if guessed.startswith("text/") or guessed in ("application/javascript", "application/json"):
        return guessed + "; charset=utf-8"
    return guessed


class StaticOrigin:
    """Serves files below ``root``; ``index`` is the file served for a directory."""

    def __init__(self, name: str, root: str, index: str = "index.html") -> None:
        self.name = name
        self._root = os.path.realpath(root)
        self._index = index

    @property
    def root(self) -> str:
        return self._root

    def resolve(self, raw_path: str) -> str | None:
        """The real file system path for a raw request path, or None when it is not inside the root.

        The path is percent-decoded once; encoded slashes, backslashes, NUL and any ``.``/``..`` segment
        are refused outright rather than normalised, then the real path (symlinks followed) must still
        lie inside the root.
        """
        if "%2f" in raw_path.lower() or "%5c" in raw_path.lower():
            return None
        decoded = unquote(raw_path, errors="strict") if "%" in raw_path else raw_path
        if "\x00" in decoded or "\\" in decoded or not decoded.startswith("/"):
            return None
        segments = [s for s in decoded.split("/") if s]
        if any(s in (".", "..") for s in segments):
            return None
        candidate = os.path.realpath(os.path.join(self._root, *segments))
        if candidate != self._root and not candidate.startswith(self._root + os.sep):
            return None
        return candidate

    async def fetch(self, request: OriginRequest) -> OriginResponse:
        """Answer a request from the folder (see the module docstring for what is answered how)."""
        if request.method not in ("GET", "HEAD"):
            return _text(405, "Method Not Allowed\n", CIMultiDict({"Allow": "GET, HEAD"}))
        raw_path = request.target.split("?", 1)[0]
        try:
            file_path = self.resolve(raw_path)
        except UnicodeDecodeError:
            file_path = None
        if file_path is None:
            return _not_found(request)
        try:
            info = await asyncio.to_thread(os.stat, file_path)
        except (OSError, ValueError):
            return _not_found(request)
        if stat.S_ISDIR(info.st_mode):
            # Behind a rewrite the viewer asked for another path than ours: the redirect names the viewer's
            # (and a viewer path that already ends in "/" gets the index, never a redirect loop).
            viewer_path = request.viewer_path or raw_path
            if not viewer_path.endswith("/"):
                query = request.target[len(raw_path) :]
                # One leading slash only: "//host/dir" would be a protocol-relative URL (an open redirect).
                location = "/" + viewer_path.lstrip("/") + "/" + query
                return _text(301, "Moved Permanently\n", CIMultiDict({"Location": location}))
            file_path = os.path.join(file_path, self._index)
            try:
                info = await asyncio.to_thread(os.stat, file_path)
            except (OSError, ValueError):
                return _not_found(request)
            if self.resolve_real(file_path) is None:
                return _not_found(request)
        if not stat.S_ISREG(info.st_mode):
            return _not_found(request)
        return await self._file_response(request, file_path, info)

    def resolve_real(self, file_path: str) -> str | None:
        """``file_path`` with symlinks followed, or None when that leaves the root."""
        real = os.path.realpath(file_path)
        return real if real.startswith(self._root + os.sep) else None

    async def _file_response(
        self, request: OriginRequest, file_path: str, info: os.stat_result
    ) -> OriginResponse:
        size = info.st_size
        mtime = float(int(info.st_mtime))
        etag = f'"{info.st_mtime_ns:x}-{size:x}"'
        now = time.time()
        headers: CIMultiDict[str] = CIMultiDict()
        headers["Date"] = format_http_date(now)
        headers["Content-Type"] = content_type_for(file_path)
        headers["ETag"] = etag
        headers["Last-Modified"] = format_http_date(mtime)
        headers["Accept-Ranges"] = "bytes"
        # RFC 9110 §13.2.2: preconditions are evaluated before Range.
        precondition = evaluate_preconditions(request.method, request.headers, etag, mtime)
        if precondition is not None:
            if precondition == 304:
                del headers["Content-Type"]
                del headers["Accept-Ranges"]
            else:
                headers["Content-Length"] = "0"
            return OriginResponse(status=precondition, headers=headers, body=_empty(), content_length=0)
        ranges = None
        range_header = request.headers.get("Range")
        if range_header is not None and if_range_allows(
            request.headers.get("If-Range"), etag, mtime, date=now
        ):
            ranges = parse_range(range_header, size)
        head = request.method == "HEAD"
        if ranges == "unsatisfiable":
            # RFC 9110 §15.5.17: 416 carries Content-Range with the current length.
            headers["Content-Range"] = f"bytes */{size}"
            headers["Content-Length"] = "0"
            del headers["Content-Type"]
            return OriginResponse(status=416, headers=headers, body=_empty(), content_length=0)
        if isinstance(ranges, list) and len(ranges) == 1:
            first, last = ranges[0]
            length = last - first + 1
            headers["Content-Range"] = content_range(first, last, size)
            headers["Content-Length"] = str(length)
            body = _empty() if head else _read_file(file_path, first, length)
            return OriginResponse(status=206, headers=headers, body=body, content_length=length)
        if isinstance(ranges, list) and size <= MULTIPART_LIMIT:
            return await self._multipart(file_path, headers, ranges, size, head)
        headers["Content-Length"] = str(size)
        body = _empty() if head else _read_file(file_path, 0, size)
        return OriginResponse(status=200, headers=headers, body=body, content_length=size)

    async def _multipart(
        self, file_path: str, headers: CIMultiDict[str], ranges: list[tuple[int, int]], size: int, head: bool
    ) -> OriginResponse:
        data = await asyncio.to_thread(Path(file_path).read_bytes)
        content_type, parts = multipart_byteranges(
            data, ranges, headers.get("Content-Type"), size, secrets.token_hex(12)
        )
        total = sum(len(p) for p in parts)
        headers["Content-Type"] = content_type
        headers["Content-Length"] = str(total)

        async def stream() -> AsyncIterator[bytes]:
            for part in parts:
                yield bytes(part)

        return OriginResponse(
            status=206, headers=headers, body=_empty() if head else stream(), content_length=total
        )

    async def close(self) -> None:
        return None
