"""HTTP-date parsing and formatting (RFC 9110 §5.6.7).

``parse_http_date`` is called for Date, Expires, Last-Modified, If-Modified-Since, If-Unmodified-Since and
If-Range; ``format_http_date`` for every Date/Last-Modified the edge writes. Both are pure: times are epoch
seconds passed in by the caller. The calendar arithmetic is done here (days-from-civil) rather than with
``time``/``calendar`` so that any 4-digit year works and nothing depends on the platform's ``time_t``.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

__all__ = ["format_http_date", "parse_http_date"]

_MONTHS: dict[str, int] = {
    "jan": 1,
    "feb": 2,
    "mar": 3,
    "apr": 4,
    "may": 5,
    "jun": 6,
    "jul": 7,
    "aug": 8,
    "sep": 9,
    "oct": 10,
    "nov": 11,
    "dec": 12,
}
_DAY_NAMES = frozenset({"mon", "tue", "wed", "thu", "fri", "sat", "sun"})
_DAY_NAMES_LONG = frozenset({"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"})
_DAYS_IN_MONTH = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

# Formatting tables: index 0 of the weekday table is Sunday; 1970-01-01 (day 0) was a Thursday.
_FMT_DAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")
_FMT_MONTHS = ("", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# Longest accepted input; real HTTP-dates are 24-33 characters.
_MAX_LEN = 64

# Pivot for rfc850-date two-digit years when the caller gives no ``now`` (RFC 9110 §5.6.7 wants the current
# year; this module may not read the clock). Only dates 50 years away from it are affected.
_DEFAULT_REFERENCE_YEAR = 2025

# Compiled once at import. Recipients are encouraged to be robust (RFC 9110 §5.6.7): names are matched
# case-insensitively and a one-digit day is accepted in IMF-fixdate.
_IMF_RE = re.compile(
    r"([A-Za-z]{3}),[ ]+(\d{1,2})[ ]([A-Za-z]{3})[ ](\d{4})[ ](\d{2}):(\d{2}):(\d{2})[ ]GMT",
    re.ASCII | re.IGNORECASE,
)
_RFC850_RE = re.compile(
    r"([A-Za-z]{6,9}),[ ]+(\d{1,2})-([A-Za-z]{3})-(\d{2})[ ](\d{2}):(\d{2}):(\d{2})[ ]GMT",
    re.ASCII | re.IGNORECASE,
)
_ASCTIME_RE = re.compile(
    r"([A-Za-z]{3})[ ]([A-Za-z]{3})[ ]+(\d{1,2})[ ](\d{2}):(\d{2}):(\d{2})[ ](\d{4})", re.ASCII
)


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 for a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _civil_from_days(z: int) -> tuple[int, int, int]:
    """Inverse of :func:`_days_from_civil`: (year, month, day) for days since 1970-01-01."""
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (m <= 2), m, d


def _epoch(year: int, month_name: str, day: int, hour: int, minute: int, second: int) -> float | None:
    """Epoch seconds for validated calendar fields, or ``None`` when a field is out of range."""
    month = _MONTHS.get(month_name.lower())
    if month is None or day < 1 or hour > 23 or minute > 59 or second > 60:
        # RFC 9110 §5.6.7: second may be 60 (leap second); it rolls into the next minute here.
        return None
    dim = _DAYS_IN_MONTH[month]
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        dim = 29
    if day > dim:
        return None
    return float(_days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second)


def _two_digit_year(yy: int, now: float | None) -> int:
    """RFC 9110 §5.6.7: a two-digit year more than 50 years in the future is the most recent past one.

    The window slides both ways: the year chosen is the one within (reference - 50, reference + 50].
    """
    if now is not None and math.isfinite(now):
        ref = _civil_from_days(math.floor(now / 86400))[0]
    else:
        ref = _DEFAULT_REFERENCE_YEAR
    year = ref - ref % 100 + yy
    if year > ref + 50:
        year -= 100
    elif year <= ref - 50:
        year += 100
    return year


# The same few dates (Last-Modified of popular objects, the current Date) arrive over and over: results are
# memoised. Inputs are at most _MAX_LEN characters, so the memo stays small.
_MEMO_SIZE = 1024

# An rfc850-date whose century depends on the reference year: (yy, month name, day, hour, minute, second).
_Rfc850 = tuple[int, str, int, int, int, int]


@lru_cache(maxsize=_MEMO_SIZE)
def _parse_memo(s: str) -> float | _Rfc850 | None:
    """Parse a stripped value; rfc850-dates come back unresolved since their year needs ``now``."""
    # Fast path: the exact 29-character IMF-fixdate every modern sender generates.
    if (
        len(s) == 29
        and s[3] == ","
        and s[4] == " "
        and s[7] == " "
        and s[11] == " "
        and s[16] == " "
        and s[19] == ":"
        and s[22] == ":"
        and s[25:] == " GMT"
    ):
        digits = s[5:7] + s[12:16] + s[17:19] + s[20:22] + s[23:25]
        if digits.isascii() and digits.isdigit() and s[:3].lower() in _DAY_NAMES:
            return _epoch(int(s[12:16]), s[8:11], int(s[5:7]), int(s[17:19]), int(s[20:22]), int(s[23:25]))
    m = _IMF_RE.fullmatch(s)
    if m is not None:
        if m[1].lower() not in _DAY_NAMES:
            return None
        return _epoch(int(m[4]), m[3], int(m[2]), int(m[5]), int(m[6]), int(m[7]))
    m = _RFC850_RE.fullmatch(s)
    if m is not None:
        if m[1].lower() not in _DAY_NAMES_LONG:
            return None
        return (int(m[4]), m[3], int(m[2]), int(m[5]), int(m[6]), int(m[7]))
    m = _ASCTIME_RE.fullmatch(s)
    if m is not None:
        if m[1].lower() not in _DAY_NAMES:
            return None
        return _epoch(int(m[7]), m[2], int(m[3]), int(m[4]), int(m[5]), int(m[6]))
    return None


def parse_http_date(value: str | None, *, now: float | None = None) -> float | None:
    """Parse an HTTP-date into epoch seconds; ``None`` when absent or invalid. Never raises.

    Accepts IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``) and the obsolete rfc850-date
    (``Sunday, 06-Nov-94 08:49:37 GMT``) and asctime-date (``Sun Nov  6 08:49:37 1994``) forms that
    recipients MUST accept (RFC 9110 §5.6.7). ``now`` (epoch seconds) is only used to place rfc850 two-digit
    years (§5.6.7); without it a fixed reference year is used. The day name is checked to be a day name but
    not checked against the date. A list of dates is invalid (as RFC 9110 §13.1.3/§13.1.4 require).
    Results are memoised (bounded).
    """
    if not value or len(value) > _MAX_LEN:
        return None
    result = _parse_memo(value.strip())
    if isinstance(result, tuple):
        yy, month, day, hour, minute, second = result
        return _epoch(_two_digit_year(yy, now), month, day, hour, minute, second)
    return result


# IMF-fixdate years are 4DIGIT: formatting clamps to 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z.
_FMT_MIN = _days_from_civil(1, 1, 1) * 86400
_FMT_MAX = _days_from_civil(9999, 12, 31) * 86400 + 86399

# (second, text) of the last call: format_http_date runs for every response and ``now`` changes once a second.
_last_formatted: tuple[int, str] = (_FMT_MIN - 1, "")


def format_http_date(ts: float) -> str:
    """Format epoch seconds as an IMF-fixdate (RFC 9110 §5.6.7), e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``.

    Called for each Date the edge writes (and for synthesised Last-Modified values). The fraction of a second
    is dropped (floor). The string for the most recent second is cached. Raises ``ValueError`` for NaN or
    infinite input (a caller bug); out-of-range years are clamped to 0001..9999.
    """
    global _last_formatted
    if not math.isfinite(ts):
        raise ValueError(f"cannot format non-finite timestamp {ts!r}")
    sec = math.floor(ts)
    last = _last_formatted
    if last[0] == sec:
        return last[1]
    clamped = min(max(sec, _FMT_MIN), _FMT_MAX)
    days, rem = divmod(clamped, 86400)
    y, mo, d = _civil_from_days(days)
    hh, rem = divmod(rem, 3600)
    mm, ss = divmod(rem, 60)
    text = f"{_FMT_DAYS[(days + 4) % 7]}, {d:02d} {_FMT_MONTHS[mo]} {y:04d} {hh:02d}:{mm:02d}:{ss:02d} GMT"
    _last_formatted = (sec, text)
    return text
