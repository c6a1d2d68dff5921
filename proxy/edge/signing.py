"""Signed URLs and signed cookies (``behaviours[].signed``): HMAC-SHA256, several keys for rotation.

A signed URL carries three query parameters, always last and in this order:
``Expires`` (epoch seconds), ``Network`` (optional: a client network such as ``203.0.113.0/24``) and
``Signature`` (base64url, no padding) = HMAC-SHA256(key, ``edgeproxy-url-v1 \\n path \\n other-query \\n
expires \\n network``). The path is the raw (percent-encoded) path exactly as requested, the other query is
the rest of the query string in its original order, so neither the path nor any other parameter can be
changed without breaking the signature.

A signed cookie (``signed.cookies: true``) named ``Edge-Signed`` grants a path prefix instead of one URL:
its value is ``base64url(prefix \\n expires \\n network) "." base64url(HMAC(key, "edgeproxy-cookie-v1 \\n"
+ payload))``. The prefix is compared with the decoded, dot-resolved path, so ``/videos/../admin`` is not
under ``/videos/``. The two contexts differ, so a URL signature can never be replayed as a cookie.

Everything here is pure (``now`` is an argument); ``SignedGuard`` applies it in RECV and removes the
signature parameters from ``ctx.request.query`` before the cache key and the origin request are made.
``edgeproxy sign URL --expires 1h`` uses ``sign_url`` / ``sign_cookie``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from proxy.edge.client_address import parse_ip
from proxy.edge.paths import needs_normalising, normalise_path
from proxy.edge.verdicts import refuse
from proxy.http.cookies import cookie_values
from proxy.http.reasons import BlockReason
from proxy.messages import GuardInput, Verdict
from proxy.settings import EdgeConfig, SignedConfig

__all__ = [
    "COOKIE_NAME",
    "SIGNATURE_PARAMS",
    "Check",
    "SignedGuard",
    "SignedQuery",
    "SigningPolicy",
    "policies_by_behaviour",
    "sign_cookie",
    "sign_url",
    "signing_keys",
    "split_signed_query",
    "split_url",
    "verify_cookie",
    "verify_url",
]

COOKIE_NAME = "Edge-Signed"
SIGNATURE_PARAMS = ("Expires", "Network", "Signature")
_URL_CONTEXT = b"edgeproxy-url-v1"
_COOKIE_CONTEXT = b"edgeproxy-cookie-v1"
_MAX_EXPIRES_DIGITS = 12  # epoch seconds until the year 33658: anything longer is not an expiry
_MAX_COOKIE_CHARS = 4096
_SIGNATURE_CHARS = 43  # base64url of 32 bytes, no padding
MIN_KEY_CHARS = 16  # shorter keys work but are reported at start-up

log = logging.getLogger("edgeproxy.edge")


class Check(StrEnum):
    """The outcome of checking a signature; the value is the reason token of a refusal."""

    VALID = "valid"
    MISSING = "signature-missing"
    INVALID = "signature-invalid"
    EXPIRED = "signature-expired"
    NETWORK = "signature-network"


# ----------------------------------------------------------------------------------------------- helpers


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes | None:
    if not text or len(text) % 4 == 1 or not all(c.isalnum() or c in "-_" for c in text):
        return None
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


def _mac(key: bytes, message: bytes) -> str:
    return _b64(hmac.new(key, message, hashlib.sha256).digest())


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _any_key_matches(keys: Sequence[bytes], message: bytes, signature: str) -> bool:
    """Whether ``signature`` is the MAC of ``message`` under one of ``keys`` (constant time per key)."""
    if len(signature) != _SIGNATURE_CHARS:
        return False
    given = signature.encode("ascii", "replace")
    found = False
    for key in keys:
        found |= hmac.compare_digest(_mac(key, message).encode("ascii"), given)
    return found


def _expires(text: str | None) -> int | None:
    if text is None or not (0 < len(text) <= _MAX_EXPIRES_DIGITS) or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def _network(text: str) -> str | None:
    """The canonical form of a network (``10.1.2.3/8`` → ``10.0.0.0/8``), "" for none, None if invalid."""
    if not text:
        return ""
    if len(text) > 64:
        return None
    try:
        return str(ipaddress.ip_network(text.strip(), strict=False))
    except ValueError:
        return None


def _in_network(client_ip: str, network: str) -> bool:
    if not network:
        return True
    address = parse_ip(client_ip)
    if address is None:
        return False
    net = ipaddress.ip_network(network)
    return address.version == net.version and address in net


# ----------------------------------------------------------------------------------------------- URLs


@dataclass(frozen=True, slots=True)
class SignedQuery:
    """A query string taken apart: ``rest`` (every other parameter, original order and encoding) and the
    raw signature parameters (None when absent). ``duplicated`` is set when one of them appears twice."""

    rest: str
    expires: str | None = None
    network: str | None = None
    signature: str | None = None
    duplicated: bool = False

    @property
    def present(self) -> bool:
        """Whether any signature parameter is there."""
        return self.expires is not None or self.network is not None or self.signature is not None


def split_signed_query(query: str) -> SignedQuery:
    """Separate ``Expires``, ``Network`` and ``Signature`` from the other query parameters (pure, never
    raises). Names are matched exactly (case-sensitive), values are percent-decoded."""
    if not query or ("Signature=" not in query and "Expires=" not in query and "Network=" not in query):
        return SignedQuery(query)
    rest: list[str] = []
    found: dict[str, str] = {}
    duplicated = False
    for part in query.split("&"):
        name, sep, value = part.partition("=")
        if sep and name in SIGNATURE_PARAMS:
            if name in found:
                duplicated = True
            found[name] = unquote(value, errors="replace")
        else:
            rest.append(part)
    return SignedQuery(
        "&".join(rest),
        found.get("Expires"),
        found.get("Network"),
        found.get("Signature"),
        duplicated,
    )


def _url_message(path: str, rest: str, expires: int, network: str) -> bytes:
    return b"\n".join((_URL_CONTEXT, _encode(path), _encode(rest), str(expires).encode(), network.encode()))


def sign_url(url: str, key: str, expires: int, network: str | None = None) -> str:
    """``url`` (absolute or ``/path?query``) with signature parameters valid until ``expires`` (epoch
    seconds), optionally only for clients in ``network``. Signature parameters already in the URL are
    replaced. Raises ValueError for an empty key or an invalid network."""
    if not key:
        raise ValueError("the signing key is empty")
    canonical = _network(network or "")
    if canonical is None:
        raise ValueError(f"invalid network {network!r}")
    scheme, netloc, path, query = split_url(url)
    rest = split_signed_query(query).rest
    signature = _mac(_encode(key), _url_message(path, rest, expires, canonical))
    params = [f"Expires={expires}"]
    if canonical:
        params.append("Network=" + quote(canonical, safe=""))
    params.append(f"Signature={signature}")
    query = "&".join(([rest] if rest else []) + params)
    if not scheme and not netloc:
        return f"{path}?{query}"
    return urlunsplit((scheme, netloc, path, query, ""))


def split_url(url: str) -> tuple[str, str, str, str]:
    """(scheme, authority, raw path, raw query) of an absolute URL or of a ``/path?query`` target; a
    target starting with ``/`` is always a path (``//x`` is the path the edge would see, not a host)."""
    if url.startswith("/"):
        target = url.partition("#")[0]
        path, _, query = target.partition("?")
        return "", "", path, query
    parts = urlsplit(url)
    return parts.scheme, parts.netloc, parts.path or "/", parts.query


def verify_url(keys: Sequence[bytes], path: str, query: str, client_ip: str, now: float) -> tuple[Check, str]:
    """Check the signature parameters of a request (pure). Returns the outcome and the query without the
    signature parameters (the query unchanged when there were none: ``Check.MISSING``)."""
    signed = split_signed_query(query)
    if not signed.present:
        return Check.MISSING, query
    if signed.duplicated or signed.signature is None:
        return Check.INVALID, signed.rest
    expires = _expires(signed.expires)
    network = _network(signed.network or "")
    if expires is None or network is None:
        return Check.INVALID, signed.rest
    if not _any_key_matches(keys, _url_message(path, signed.rest, expires, network), signed.signature):
        return Check.INVALID, signed.rest
    if expires <= now:
        return Check.EXPIRED, signed.rest
    if not _in_network(client_ip, network):
        return Check.NETWORK, signed.rest
    return Check.VALID, signed.rest


# ----------------------------------------------------------------------------------------------- cookies


def sign_cookie(key: str, prefix: str, expires: int, network: str | None = None) -> str:
    """The value of an ``Edge-Signed`` cookie granting every path under ``prefix`` until ``expires``.
    Raises ValueError for an empty key, a prefix not starting with ``/`` or an invalid network."""
    if not key:
        raise ValueError("the signing key is empty")
    if not prefix.startswith("/") or "\n" in prefix:
        raise ValueError(f"a cookie prefix must be a path starting with '/', got {prefix!r}")
    canonical = _network(network or "")
    if canonical is None:
        raise ValueError(f"invalid network {network!r}")
    payload = _encode(f"{prefix}\n{expires}\n{canonical}")
    return _b64(payload) + "." + _mac(_encode(key), _COOKIE_CONTEXT + b"\n" + payload)


def verify_cookie(keys: Sequence[bytes], value: str, path: str, client_ip: str, now: float) -> Check:
    """Check one ``Edge-Signed`` cookie value for a request of raw ``path`` (pure, never raises)."""
    if len(value) > _MAX_COOKIE_CHARS:
        return Check.INVALID
    encoded, dot, signature = value.rpartition(".")
    payload = _unb64(encoded) if dot else None
    if payload is None or not _any_key_matches(keys, _COOKIE_CONTEXT + b"\n" + payload, signature):
        return Check.INVALID
    try:
        prefix, expires_text, network_text = payload.decode("utf-8").split("\n")
    except (UnicodeDecodeError, ValueError):
        return Check.INVALID
    expires = _expires(expires_text)
    network = _network(network_text)
    if expires is None or network is None or not prefix.startswith("/"):
        return Check.INVALID
    if expires <= now:
        return Check.EXPIRED
    resolved = normalise_path(path) if needs_normalising(path) else path
    if not resolved.startswith(prefix):
        return Check.INVALID
    if not _in_network(client_ip, network):
        return Check.NETWORK
    return Check.VALID


# ----------------------------------------------------------------------------------------------- guard


def signing_keys(config: SignedConfig) -> tuple[bytes, ...]:
    """The usable keys of a ``signed`` section (the first one signs, all of them verify); empty keys are
    dropped, so an unset ``${URL_SIGNING_KEY}`` leaves none."""
    keys = (config.key,) if isinstance(config.key, str) else config.key
    return tuple(_encode(key) for key in keys if key)


@dataclass(frozen=True, slots=True)
class SigningPolicy:
    """What one behaviour requires: a signature under one of ``keys`` (none usable: refuse everything),
    in the URL or, with ``cookies``, in an ``Edge-Signed`` cookie."""

    keys: tuple[bytes, ...]
    cookies: bool


def policies_by_behaviour(config: EdgeConfig) -> dict[str, SigningPolicy]:
    """The signing policy of each signed behaviour, by path (the first behaviour with a path wins, as in
    routing). Logs once, at load time, each behaviour left without a usable key (it refuses everything)
    and each key shorter than 16 characters."""
    policies: dict[str, SigningPolicy] = {}
    for index, behaviour in enumerate(config.behaviours):
        signed = behaviour.signed
        if signed is None or behaviour.path in policies:
            continue
        keys = signing_keys(signed)
        if not keys:
            log.error(
                "behaviours[%d].signed.key is empty (is URL_SIGNING_KEY set?): every request to %s is "
                "refused with 403 until a key is configured",
                index,
                behaviour.path,
            )
        elif any(len(key) < MIN_KEY_CHARS for key in keys):
            log.warning(
                "behaviours[%d].signed.key: a key shorter than %d characters is easy to guess",
                index,
                MIN_KEY_CHARS,
            )
        policies[behaviour.path] = SigningPolicy(keys, signed.cookies)
    return policies


class SignedGuard:
    """RECV guard for signed behaviours: 403 unless the URL (or, when allowed, a cookie) is validly
    signed; the signature parameters are removed from ``ctx.request.query`` once checked.

    A URL that carries signature parameters is judged by them alone (a bad URL signature is not rescued
    by a cookie). Reasons: ``signature-missing``, ``signature-invalid``, ``signature-expired``,
    ``signature-network`` and ``signing-key-missing`` (the behaviour has no usable key).
    """

    def __init__(self, policies: Mapping[str, SigningPolicy]) -> None:
        self._policies = dict(policies)
        self.refused: dict[str, int] = {}
        self.accepted = 0

    def _refuse(self, ctx: GuardInput, reason: BlockReason) -> Verdict:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        return refuse(ctx, 403, reason)

    def check(self, ctx: GuardInput) -> Verdict | None:
        """None for unsigned behaviours and valid signatures; a 403 Verdict otherwise."""
        behaviour = ctx.behaviour
        if behaviour is None:
            return None
        policy = self._policies.get(behaviour.path)
        if policy is None:
            return None
        if not policy.keys:
            return self._refuse(ctx, BlockReason.SIGNING_KEY_MISSING)
        request = ctx.request
        result, rest = verify_url(policy.keys, request.path, request.query, request.client_ip, ctx.now)
        if result is Check.MISSING and policy.cookies:
            result = Check.MISSING
            for value in cookie_values(request.headers.getall("Cookie", ()), COOKIE_NAME):
                result = verify_cookie(policy.keys, value, request.path, request.client_ip, ctx.now)
                if result is Check.VALID:
                    break
        if result is not Check.VALID:
            return self._refuse(ctx, BlockReason(result.value))  # every Check but VALID is a BlockReason
        request.query = rest
        self.accepted += 1
        return None

    def stats(self) -> dict[str, dict[str, int]]:
        """Counters: refusals per reason, requests let through with a valid signature."""
        return {"blocked": dict(self.refused), "signed": {"accepted": self.accepted}}
