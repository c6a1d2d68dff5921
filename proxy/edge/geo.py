"""Viewer country (``geoip.database``) and country rules (``firewall.countries.allow`` / ``deny``).

``CountryDatabase`` wraps a MaxMind DB reader (the ``maxminddb`` package, opened once at load time,
memory-mapped); ``country_of(record)`` is the pure part: the ISO code from a GeoIP2/GeoLite2 Country or
City record. ``GeoGuard`` looks up the client (after ``ClientAddressGuard``), sets the request header
``Edge-Viewer-Country`` (always replacing whatever the viewer sent, ``XX`` when unknown) so behaviours can
key their cache on it and origins and edge functions can read it, and refuses denied countries with 403.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from multidict import CIMultiDict

from proxy.edge.client_address import parse_ip
from proxy.edge.verdicts import refuse
from proxy.http.reasons import BlockReason
from proxy.messages import GuardInput, Verdict

if TYPE_CHECKING:
    import maxminddb

__all__ = ["COUNTRY_HEADER", "UNKNOWN_COUNTRY", "CountryDatabase", "GeoGuard", "country_of"]

COUNTRY_HEADER = "Edge-Viewer-Country"
UNKNOWN_COUNTRY = "XX"  # what Cloudflare's CF-IPCountry says for an address no database knows
_CODE_RE = re.compile(r"[A-Z]{2}")


def country_of(record: object) -> str | None:
    """The two-letter country of a MaxMind record (``country``, else ``registered_country``), or None."""
    if not isinstance(record, Mapping):
        return None
    for field in ("country", "registered_country"):
        section = record.get(field)
        if isinstance(section, Mapping):
            code = section.get("iso_code")
            if isinstance(code, str) and _CODE_RE.fullmatch(code):
                return code
    return None


class CountryDatabase:
    """A MaxMind DB opened for country lookups. Raises OSError when the file cannot be read and
    ValueError when it is not a MaxMind DB."""

    def __init__(self, path: str) -> None:
        import maxminddb  # imported only when geoip is configured

        self.path = path
        try:
            self._reader: maxminddb.Reader = maxminddb.open_database(path)
        except maxminddb.InvalidDatabaseError as exc:
            raise ValueError(str(exc)) from None

    def lookup(self, address: str) -> str | None:
        """The country of ``address`` (any text: a non-address is simply unknown), or None."""
        parsed = parse_ip(address)
        if parsed is None:
            return None
        try:
            record: Any = self._reader.get(parsed)
        except (ValueError, RuntimeError):  # IPv6 in an IPv4-only database; corrupt data
            return None
        return country_of(record)

    def close(self) -> None:
        """Release the memory map."""
        self._reader.close()


class GeoGuard:
    """RECV guard: sets ``Edge-Viewer-Country`` and applies ``firewall.countries``.

    With an allow list, only those countries pass (an unknown country does not); a denied country gets 403
    (reason ``geo-blocked``). The request's headers are replaced by a copy carrying the country (only when
    geoip is configured, so other edges pay nothing).
    """

    def __init__(
        self,
        database: CountryDatabase,
        allow: frozenset[str] = frozenset(),
        deny: frozenset[str] = frozenset(),
    ) -> None:
        self.database = database
        self.allow = allow
        self.deny = deny
        self.blocked = 0
        self.unknown = 0

    def check(self, ctx: GuardInput) -> Verdict | None:
        """Tag the request with its country; 403 when the country is not allowed."""
        request = ctx.request
        country = self.database.lookup(request.client_ip)
        if country is None:
            self.unknown += 1
        code = country or UNKNOWN_COUNTRY
        headers = CIMultiDict(request.headers)
        headers[COUNTRY_HEADER] = code
        request.headers = headers
        if (self.allow and code not in self.allow) or code in self.deny:
            self.blocked += 1
            return refuse(ctx, 403, BlockReason.GEO_BLOCKED)
        return None

    def stats(self) -> dict[str, dict[str, int]]:
        """Counters: requests refused by country, lookups that found no country."""
        return {"blocked": {"geo-blocked": self.blocked}, "geo": {"unknown": self.unknown}}
