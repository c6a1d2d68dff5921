"""The HTTP/2 frame scanner and its budgets (proxy.edge.h2_floods): pure, the clock passed in."""

from __future__ import annotations

from proxy.edge.h2_floods import PREFACE_LENGTH, Budget, FrameScanner


def frame(kind: int, flags: int = 0, stream: int = 1, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def scanner(**kwargs: int) -> FrameScanner:
    limits = {"max_stream_resets": 3, "max_control_frames": 3, "max_header_block": 100} | kwargs
    return FrameScanner(window=10.0, now=0.0, **limits)


def test_budget_refills_over_its_window() -> None:
    budget = Budget(2, 10.0, now=0.0)
    assert budget.take(0.0) and budget.take(0.0) and not budget.take(0.0)
    assert budget.take(10.0)  # refilled (capped at 2)


def test_rapid_reset_is_recognised() -> None:
    s = scanner()
    data = b"x" * PREFACE_LENGTH + frame(3, payload=b"\0\0\0\x08") * 3
    assert s.feed(data, 0.0) is None
    assert s.feed(frame(3, payload=b"\0\0\0\x08"), 0.0) == "rapid-reset"


def test_ping_and_settings_floods_but_acks_are_free() -> None:
    s = scanner()
    s.feed(b"x" * PREFACE_LENGTH, 0.0)
    assert s.feed(frame(6, 1, 0, b"\0" * 8) * 20, 0.0) is None  # PING acks
    assert s.feed(frame(6, 0, 0, b"\0" * 8) * 2 + frame(4, 0, 0), 0.0) is None
    assert s.feed(frame(4, 0, 0), 0.0) == "control-flood"


def test_window_updates_are_given_back_for_data_sent() -> None:
    s = scanner()
    s.feed(b"x" * PREFACE_LENGTH, 0.0)
    for _ in range(10):
        s.data_sent()
        assert s.feed(frame(8, 0, 1, b"\0\0\0\1") + frame(8, 0, 0, b"\0\0\0\1"), 0.0) is None


def test_continuation_flood_is_bounded_in_bytes_and_split_reads_are_followed() -> None:
    s = scanner()
    data = b"x" * PREFACE_LENGTH + frame(1, 0, 1, b"a" * 40) + frame(9, 0, 1, b"b" * 40)
    for i in range(len(data)):  # one byte at a time
        assert s.feed(data[i : i + 1], 0.0) is None
    assert s.feed(frame(9, 0, 1, b"c" * 40), 0.0) == "continuation-flood"


def test_a_header_block_that_ends_resets_the_count() -> None:
    s = scanner()
    s.feed(b"x" * PREFACE_LENGTH, 0.0)
    for stream in range(1, 20, 2):
        assert s.feed(frame(1, 0, stream, b"a" * 60) + frame(9, 4, stream, b"b" * 30), 0.0) is None


def test_empty_frames_count_as_control_frames() -> None:
    s = scanner()
    s.feed(b"x" * PREFACE_LENGTH, 0.0)
    assert s.feed(frame(0) * 3, 0.0) is None
    assert s.feed(frame(0), 0.0) == "control-flood"
    assert scanner().feed(b"x" * PREFACE_LENGTH + frame(0, 1) * 10, 0.0) is None  # END_STREAM: fine


def test_oversized_frames_are_refused_from_their_header() -> None:
    s = scanner()
    assert s.feed(b"x" * PREFACE_LENGTH + b"\xff" * 9, 0.0) == "frame-too-large"
