"""HTTP/2 flood detection: a frame scanner that sees every frame header a viewer sends, with budgets.

``FrameScanner`` is created by the HTTP/2 front (``proxy.server.http2``) for each connection and fed every
received byte before the ``h2`` library parses it. It is pure (bytes and the clock in, a verdict out) and
looks only at the 9-byte frame headers (RFC 9113 §4.1), so it costs one small step per frame. ``feed``
returns None while the viewer stays within its budgets, or the name of the attack it recognised; the front
then sends GOAWAY (ENHANCE_YOUR_CALM) and closes the connection. What it catches:

- rapid reset (CVE-2023-44487): RST_STREAM frames beyond ``max_stream_resets`` per ``window`` (the front
  charges the same budget for the streams it resets itself because of the viewer, MadeYouReset);
- control-frame floods (CVE-2019-9512 ping, 9515 settings, 9516 empty frames, 9518 empty data; window
  update floods): SETTINGS, PING, PRIORITY, WINDOW_UPDATE frames and frames with an empty payload that do
  not end a stream beyond ``max_control_frames`` per ``window``; each DATA frame the edge sends gives back
  two (a viewer acknowledges received data with a stream and a connection WINDOW_UPDATE);
- frames larger than SETTINGS_MAX_FRAME_SIZE (RFC 9113 §4.2), refused before any of it is buffered;
- CONTINUATION floods (CVE-2024-27316 and kin): a header block (HEADERS plus CONTINUATION frames) larger
  than ``max_header_block`` compressed bytes, so header accumulation is bounded before HPACK runs.

Budgets are token buckets: ``capacity`` tokens, refilled at ``capacity / window`` per second.
"""

from __future__ import annotations

__all__ = ["Budget", "FrameScanner"]

PREFACE_LENGTH = 24  # RFC 9113 §3.4: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_HEADER = 9

_DATA, _HEADERS, _PRIORITY, _RST_STREAM, _SETTINGS, _PUSH, _PING, _GOAWAY, _WINDOW_UPDATE, _CONTINUATION = (
    range(10)
)
_END_STREAM = 0x1
_ACK = 0x1
_END_HEADERS = 0x4


class Budget:
    """A token bucket: ``take`` spends one token (False when none is left), ``give`` returns some."""

    __slots__ = ("_last", "_rate", "_tokens", "capacity")

    def __init__(self, capacity: int, window: float, now: float) -> None:
        self.capacity = float(capacity)
        self._rate = capacity / window if window > 0 else float("inf")
        self._tokens = float(capacity)
        self._last = now

    def take(self, now: float, count: float = 1.0) -> bool:
        """Spend ``count`` tokens at ``now`` (monotonic seconds); False when the budget is exhausted."""
        elapsed = now - self._last
        if elapsed > 0:
            self._tokens = min(self.capacity, self._tokens + elapsed * self._rate)
            self._last = now
        self._tokens -= count
        return self._tokens >= 0

    def give(self, count: float) -> None:
        """Return ``count`` tokens (never above the capacity)."""
        self._tokens = min(self.capacity, self._tokens + count)


class FrameScanner:
    """Follows the frame boundaries of one connection's received bytes (see the module docstring)."""

    __slots__ = ("_block", "_header", "_skip", "control", "max_frame_size", "max_header_block", "resets")

    def __init__(
        self,
        *,
        max_stream_resets: int,
        max_control_frames: int,
        max_header_block: int,
        window: float,
        now: float,
        preface: bool = True,
        max_frame_size: int = 16_384,
    ) -> None:
        self.max_frame_size = max_frame_size  # SETTINGS_MAX_FRAME_SIZE the edge announced (the default)
        self.resets = Budget(max_stream_resets, window, now)
        self.control = Budget(max_control_frames, window, now)
        self.max_header_block = max_header_block
        self._skip = PREFACE_LENGTH if preface else 0  # payload bytes still to pass over
        self._header = b""  # a frame header split across reads
        self._block = -1  # compressed bytes of the header block being received; -1: none

    def feed(self, data: bytes | memoryview, now: float) -> str | None:
        """Scan received bytes; None, or the attack recognised (``rapid-reset``, ``control-flood``,
        ``continuation-flood``, ``frame-too-large``)."""
        view = memoryview(data)
        size = len(view)
        pos = 0
        while pos < size:
            if self._skip:
                step = min(self._skip, size - pos)
                self._skip -= step
                pos += step
                continue
            if self._header or size - pos < _HEADER:
                take = min(_HEADER - len(self._header), size - pos)
                self._header += bytes(view[pos : pos + take])
                pos += take
                if len(self._header) < _HEADER:
                    return None
                header = self._header
                self._header = b""
            else:
                header = bytes(view[pos : pos + _HEADER])
                pos += _HEADER
            verdict = self._frame(header, now)
            if verdict is not None:
                return verdict
        return None

    def _frame(self, header: bytes, now: float) -> str | None:
        length = int.from_bytes(header[:3], "big")
        if length > self.max_frame_size:
            return "frame-too-large"  # RFC 9113 §4.2: never buffered up to 16 MiB waiting for it
        kind = header[3]
        flags = header[4]
        self._skip = length
        if kind == _DATA:
            if length == 0 and not flags & _END_STREAM and not self.control.take(now):
                return "control-flood"
            return None
        if kind in (_HEADERS, _CONTINUATION):
            if kind == _HEADERS:
                self._block = length
            elif self._block >= 0:
                self._block += length
            if self._block > self.max_header_block:
                return "continuation-flood"
            if flags & _END_HEADERS:
                self._block = -1
            if length == 0 and not flags & _END_STREAM and not self.control.take(now):
                return "control-flood"
            return None
        if kind == _RST_STREAM:
            return None if self.resets.take(now) else "rapid-reset"
        if kind in (_SETTINGS, _PING):
            if flags & _ACK:
                return None
            return None if self.control.take(now) else "control-flood"
        if kind in (_PRIORITY, _WINDOW_UPDATE):
            return None if self.control.take(now) else "control-flood"
        return None

    def data_sent(self) -> None:
        """The edge sent a DATA frame: the viewer may acknowledge it with WINDOW_UPDATEs."""
        self.control.give(2.0)
