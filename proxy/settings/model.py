"""The configuration as frozen, typed objects: what every other part of the edge reads after loading.

The loader validates the parsed YAML into ``EdgeConfig`` once, at start-up or reload; nothing reads raw YAML
after that. Attribute names are the YAML key names (``from`` and ``except`` become ``from_`` and
``except_``); lists become tuples, mappings become read-only ``FrozenMap`` objects, durations become float
seconds and sizes int bytes. Every model is frozen and refuses unknown keys.

Checks that span sections (a behaviour naming an origin, group members, firewall rule names, the final
``"*"`` behaviour) live in ``cross_check``, which works on the raw parsed data so that the loader can report
them together with the model's own errors, each with its line. Validating ``EdgeConfig`` directly (without
the loader) runs the same checks after the model is built.
"""

from __future__ import annotations

import ipaddress
import keyword
import os
import re
import socket
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from typing import Annotated, Any, Literal, Self, TypeAlias, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from proxy.settings.errors import did_you_mean
from proxy.settings.units import (
    MAX_CONNECTIONS,
    MAX_PROBE_COUNT,
    MAX_RATE_COUNT,
    MAX_WORKERS,
    Duration,
    HeaderSize,
    Period,
    PositiveDuration,
    PositiveSize,
    SharedObjectSize,
    Size,
    format_duration,
    format_size,
    split_listen,
)

__all__ = [
    "DEFAULT_METHODS",
    "AdminConfig",
    "BehaviourConfig",
    "BehaviourFirewallConfig",
    "CacheConfig",
    "CacheKeyConfig",
    "CorsConfig",
    "CountriesConfig",
    "CrossCheckFinding",
    "DiskConfig",
    "EdgeConfig",
    "FirewallConfig",
    "FirewallRule",
    "ForwardConfig",
    "ForwardPolicy",
    "FrozenMap",
    "FunctionsConfig",
    "GeoIPConfig",
    "HeaderPolicy",
    "HealthConfig",
    "KeyedValueError",
    "LimitsConfig",
    "ListenAddress",
    "MemoryConfig",
    "Network",
    "OriginConfig",
    "OriginGroupConfig",
    "QueryExcept",
    "QueryPolicy",
    "RateLimitConfig",
    "RedirectConfig",
    "RewriteConfig",
    "RuleMatch",
    "ServerConfig",
    "SharedConfig",
    "SignedConfig",
    "TLSConfig",
    "TTLConfig",
    "cross_check",
    "describe_value",
    "format_key_path",
    "known_keys",
]

K = TypeVar("K")
V = TypeVar("V")

DEFAULT_METHODS: tuple[str, ...] = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
ALIASES: Mapping[str, str] = {"behaviors": "behaviours"}  # top-level spellings accepted as aliases

_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token: header names, methods, cookies
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # origin and group names
_HOST_RE = re.compile(
    r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?"
)
_HOST_PATTERN_RE = re.compile(r"(\*\.)?" + _HOST_RE.pattern + r"(:[0-9]{1,5})?")
_FUNCTION_RE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", re.ASCII)
_COUNTRY_RE = re.compile(r"[A-Z]{2}")
_CORS_ORIGIN_RE = re.compile(r"https?://[^/\s?#]+")


# --------------------------------------------------------------------------------------------- helpers


class KeyedValueError(ValueError):
    """A model check that failed because of one of the model's own keys.

    Raised by model-level validators; the loader extends the error's location with ``key`` so the message
    points at that key's line (``at_key``: at the key itself, else at its value; a key absent from the file
    points at its parent).
    """

    def __init__(self, key: str, message: str, *, at_key: bool = False) -> None:
        super().__init__(message)
        self.key = key
        self.message = message
        self.at_key = at_key


class FrozenMap(Mapping[K, V]):
    """A read-only, hashable mapping: what every mapping in the config model becomes after validation."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[K, V] | Iterable[tuple[K, V]] = ()) -> None:
        self._data: dict[K, V] = dict(data)

    def __getitem__(self, key: K) -> V:
        return self._data[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"

    def __copy__(self) -> Self:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        return self

    def __reduce__(self) -> tuple[type[FrozenMap[K, V]], tuple[dict[K, V]]]:
        return (type(self), (self._data,))


def _freeze(value: Mapping[Any, Any]) -> FrozenMap[Any, Any]:
    """Turn a validated mapping into a ``FrozenMap``."""
    return FrozenMap(value)


def _plain_dict(value: Mapping[Any, Any]) -> dict[Any, Any]:
    """Serialise a ``FrozenMap`` as a plain dict (``model_dump``)."""
    return dict(value)


_FREEZE = AfterValidator(_freeze)
_AS_DICT = PlainSerializer(_plain_dict)


def describe_value(value: object) -> str:
    """Name a parsed YAML value the way its author would recognise it, for error messages."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def format_key_path(loc: Sequence[str | int]) -> str:
    """Write a location as a key path: ``("behaviours", 1, "ttl")`` -> ``behaviours[1].ttl``."""
    out = ""
    for elem in loc:
        if isinstance(elem, int):
            out += f"[{elem}]"
        else:
            out += f".{elem}" if out else str(elem)
    return out


def _null_as_empty(value: object) -> object:
    """Read a YAML null (``key:`` with nothing, e.g. an unset ``${VAR}``) as an empty string."""
    return "" if value is None else value


def _non_empty_text(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _header_name(value: str) -> str:
    if not _TOKEN_RE.fullmatch(value):
        raise ValueError(f"invalid header name {value!r} (letters, digits and !#$%&'*+-.^_`|~ only)")
    return value


def _header_value(value: str) -> str:
    if any(ch in value for ch in "\r\n\0"):
        raise ValueError("header values must not contain line breaks or NUL")
    return value


def _cookie_name(value: str) -> str:
    if not _TOKEN_RE.fullmatch(value):
        raise ValueError(f"invalid cookie name {value!r}")
    return value


def _method(value: str) -> str:
    if not _TOKEN_RE.fullmatch(value):
        raise ValueError(f"invalid HTTP method {value!r}")
    return value.upper()


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as error:
        raise ValueError(f"invalid regular expression {value!r}: {error}") from None
    return value


def _country(value: str) -> str:
    code = value.strip().upper()
    if not _COUNTRY_RE.fullmatch(code):
        raise ValueError(f"invalid country code {value!r} (use two letters, e.g. DE, US)")
    return code


def _absolute_url_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"must be a path starting with '/', got {value!r}")
    return value


def _error_status(value: int) -> int:
    if not 400 <= value <= 599:
        raise ValueError(f"must be an error status between 400 and 599, got {value}")
    return value


def _unique(values: tuple[str, ...]) -> tuple[str, ...]:
    """Drop repeated entries, keeping the first (``[GET, get]`` is one method)."""
    return tuple(dict.fromkeys(values))


def _not_empty_tuple(value: tuple[Any, ...]) -> tuple[Any, ...]:
    if not value:
        raise ValueError("must list at least one entry")
    return value


def _function_ref(value: str) -> str:
    if not _FUNCTION_RE.fullmatch(value) or any(keyword.iskeyword(p) for p in re.split(r"[.:]", value)):
        raise ValueError(f"invalid function reference {value!r} (use package.module:function)")
    return value


def _resolve_path(value: str, info: ValidationInfo) -> str:
    """Make a file path absolute, relative to the config file's directory (the loader's ``base_dir``)."""
    base = (info.context or {}).get("base_dir") or os.getcwd()
    return os.path.normpath(os.path.join(os.fspath(base), os.path.expanduser(value)))


def _network(value: object) -> IPv4Network | IPv6Network:
    """Accept ``10.0.0.0/8``, ``2001:db8::/32`` or a single address (a /32 or /128 network)."""
    if isinstance(value, IPv4Network | IPv6Network):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a network such as 10.0.0.0/8 or an address, got {describe_value(value)}")
    try:
        return ipaddress.ip_network(value.strip())
    except ValueError as error:
        raise ValueError(f"invalid network {value!r}: {error}") from None


HeaderName = Annotated[str, AfterValidator(_header_name)]
HeaderValue = Annotated[str, BeforeValidator(_null_as_empty), AfterValidator(_header_value)]
CookieName = Annotated[str, AfterValidator(_cookie_name)]
Method = Annotated[str, AfterValidator(_method)]
Methods = Annotated[tuple[Method, ...], AfterValidator(_unique), AfterValidator(_not_empty_tuple)]
Regex = Annotated[str, AfterValidator(_regex)]
Network = Annotated[IPv4Network | IPv6Network, PlainValidator(_network)]
CountryCode = Annotated[str, AfterValidator(_country)]
FunctionRef = Annotated[str, AfterValidator(_function_ref)]
NonEmptyText = Annotated[str, AfterValidator(_non_empty_text)]
ErrorStatus = Annotated[int, AfterValidator(_error_status)]
UrlPath = Annotated[str, AfterValidator(_absolute_url_path)]
HeaderMap = Annotated[Mapping[HeaderName, HeaderValue], _FREEZE, _AS_DICT]
ErrorPages = Annotated[Mapping[ErrorStatus, UrlPath], _FREEZE, _AS_DICT]
HeaderRegexMap = Annotated[Mapping[HeaderName, Regex], _FREEZE, _AS_DICT]


class _Model(BaseModel):
    """Base of every config section: frozen, unknown keys refused, numbers accepted where text is."""

    model_config = ConfigDict(frozen=True, extra="forbid", coerce_numbers_to_str=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_empty(cls, data: Any) -> Any:
        """A section written with nothing under it (``cache:``) means all its defaults."""
        return {} if data is None else data


# --------------------------------------------------------------------------------------------- server


class ListenAddress(BaseModel):
    """A socket address to listen on; written ``host:port``, ``[::]:8080``, ``:8080`` or a bare port."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str
    port: int = Field(ge=0, le=65535)

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, data: Any) -> Any:
        if isinstance(data, Mapping | ListenAddress):
            return data
        if isinstance(data, bool) or not isinstance(data, int | str):
            raise ValueError(f"expected host:port, got {describe_value(data)}")
        host, port = split_listen(data)
        return {"host": host, "port": port}

    @property
    def is_loopback(self) -> bool:
        """True when only this machine can connect (127.0.0.0/8, ::1 or ``localhost``)."""
        if self.host.lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        """``host:port`` as written in the config, with brackets around IPv6 hosts."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(value: str | int) -> ListenAddress:
    """Parse one listen address given outside the config file (``edgeproxy serve --listen HOST:PORT``).

    Same forms as ``server.listen``; raises ``ValueError`` with a message for the user.
    """
    host, port = split_listen(value)
    return ListenAddress(host=host, port=port)


def _listen_list(value: object) -> object:
    """Accept one address or a list of them."""
    if isinstance(value, list | tuple):
        if not value:
            raise ValueError("must list at least one address")
        return value
    return [value]


def _workers(value: object) -> int | Literal["auto"]:
    if value == "auto":
        return "auto"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        if value > MAX_WORKERS:
            raise ValueError(f"must be at most {MAX_WORKERS} processes, got {value}")
        return value
    raise ValueError(f'expected a number of processes (1 or more) or "auto", got {describe_value(value)}')


def _access_log(value: object, info: ValidationInfo) -> str:
    if value is False:  # "access_log: false" means off
        return "off"
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected stdout, off or a file path, got {describe_value(value)}")
    if value in ("stdout", "off"):
        return value
    return _resolve_path(value, info)


def _host_pattern(value: str) -> str:
    if not _HOST_PATTERN_RE.fullmatch(value):
        raise ValueError(f"invalid host {value!r} (use e.g. example.com or *.example.com)")
    return value.lower()


def _server_name(value: str) -> str:
    if not _TOKEN_RE.fullmatch(value):
        raise ValueError(f"invalid name {value!r}: one word (it is sent in Via and Cache-Status)")
    return value


class TLSConfig(_Model):
    """The optional HTTPS listener. ``cert`` and ``key`` are made absolute (relative to the config file)."""

    listen: ListenAddress
    cert: str
    key: str

    @field_validator("cert", "key")
    @classmethod
    def _absolute(cls, value: str, info: ValidationInfo) -> str:
        return _resolve_path(_non_empty_text(value), info)


class LimitsConfig(_Model):
    """Bounds on what a viewer may send; requests beyond them get 431, 413, or are dropped."""

    max_header_bytes: HeaderSize = 16 * 1024
    max_body_bytes: Size = 10 * 1024 * 1024
    client_timeout: PositiveDuration = 60.0
    # HTTP/2 (docs/protocols.md): SETTINGS the edge announces, and the flood budgets per flood_window.
    max_concurrent_streams: int = Field(default=100, ge=1, le=10_000)
    max_header_list_size: HeaderSize = 32 * 1024
    hpack_table_size: int = Field(default=4096, ge=0, le=65_536)
    max_stream_resets: int = Field(default=200, ge=1, le=1_000_000)
    max_control_frames: int = Field(default=1000, ge=1, le=1_000_000)
    flood_window: PositiveDuration = 10.0
    idle_timeout: PositiveDuration = 60.0
    send_timeout: PositiveDuration = 60.0


class ServerConfig(_Model):
    """The viewer-facing listener(s) and process settings."""

    listen: Annotated[tuple[ListenAddress, ...], BeforeValidator(_listen_list)] = (
        ListenAddress(host="0.0.0.0", port=8080),
    )
    name: Annotated[str, AfterValidator(_server_name)] = Field(default_factory=socket.gethostname)
    workers: Annotated[int | Literal["auto"], PlainValidator(_workers)] = 1
    tls: TLSConfig | None = None
    hosts: tuple[Annotated[str, AfterValidator(_host_pattern)], ...] = ()
    trusted_proxies: tuple[Network, ...] = ()
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    h2c: bool = False  # cleartext HTTP/2 with prior knowledge on the plain listeners
    access_log: Annotated[str, PlainValidator(_access_log)] = "stdout"
    access_log_format: Literal["json", "combined"] = "json"
    http3: bool = False

    @model_validator(mode="after")
    def _http3_needs_tls(self) -> Self:
        if self.http3 and self.tls is None:
            raise KeyedValueError("http3", "HTTP/3 needs server.tls (QUIC is always encrypted)", at_key=True)
        return self


class AdminConfig(_Model):
    """The admin API listener. A token is required unless it listens on loopback only."""

    listen: ListenAddress = ListenAddress(host="127.0.0.1", port=9090)
    token: Annotated[str, BeforeValidator(_null_as_empty)] = ""

    @model_validator(mode="after")
    def _token_when_exposed(self) -> Self:
        if not self.token and not self.listen.is_loopback:
            raise KeyedValueError(
                "token",
                f"a token is required when the admin API listens on {self.listen}, not on loopback",
                at_key=True,
            )
        return self


# --------------------------------------------------------------------------------------------- cache


def _object_within(max_object_bytes: int, max_bytes: int) -> None:
    """A tier's largest object must fit in the tier: the error names ``max_object_bytes``."""
    if max_object_bytes > max_bytes:
        raise KeyedValueError(
            "max_object_bytes",
            f"must not be more than max_bytes ({format_size(max_object_bytes)} > {format_size(max_bytes)})",
        )


class MemoryConfig(_Model):
    """The per-process memory tier, an LRU bounded in bytes."""

    max_bytes: PositiveSize = 256 * 1024 * 1024
    max_object_bytes: PositiveSize = 16 * 1024 * 1024

    @model_validator(mode="after")
    def _object_fits(self) -> Self:
        _object_within(self.max_object_bytes, self.max_bytes)
        return self


class SharedConfig(_Model):
    """The optional shared tier (Redis or memcached through aiocache)."""

    url: str
    max_object_bytes: SharedObjectSize = 8 * 1024 * 1024
    timeout: PositiveDuration = 0.1

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        scheme, sep, rest = value.partition("://")
        if not sep or scheme not in ("redis", "rediss", "memcached") or not rest:
            raise ValueError(
                f"invalid shared cache url {value!r} (use redis://host:port/db or memcached://host)"
            )
        return value


class DiskConfig(_Model):
    """The optional disk tier between memory and the shared tier (``proxy.cache.disk``)."""

    path: str  # a folder, created if missing; relative paths start at the config file's folder
    max_bytes: PositiveSize = 10 * 1024 * 1024 * 1024
    max_object_bytes: PositiveSize = 64 * 1024 * 1024

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str, info: ValidationInfo) -> str:
        # Whether the folder can be created and written is checked by ``edgeproxy check``; at run time an
        # unusable folder degrades the edge to memory only (one log line), it does not refuse to start.
        return _resolve_path(_non_empty_text(value), info)

    @model_validator(mode="after")
    def _object_fits(self) -> Self:
        _object_within(self.max_object_bytes, self.max_bytes)
        return self


class CacheConfig(_Model):
    """The cache tiers and request collapsing."""

    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    disk: DiskConfig | None = None
    shared: SharedConfig | None = None
    collapse: bool = True
    shield: bool = False
    status_key: bool = False  # add key="…" to Cache-Status (RFC 9211 §2.7); the key may hold cookie values

    @model_validator(mode="after")
    def _shield_needs_shared(self) -> Self:
        if self.shield and self.shared is None:
            raise KeyedValueError("shield", "needs cache.shared (shielding goes through the shared tier)")
        return self


# --------------------------------------------------------------------------------------------- origins


class HealthConfig(_Model):
    """The optional active health probe of one origin."""

    path: UrlPath = "/healthz"
    interval: PositiveDuration = 5.0
    timeout: PositiveDuration = 2.0
    unhealthy_after: int = Field(default=3, ge=1, le=MAX_PROBE_COUNT)
    healthy_after: int = Field(default=2, ge=1, le=MAX_PROBE_COUNT)


def _host_header(value: str) -> str:
    if value in ("origin", "viewer") or (_HOST_PATTERN_RE.fullmatch(value) and not value.startswith("*")):
        return value
    raise ValueError(f"expected origin, viewer or a host name, got {value!r}")


def _index_file(value: str) -> str:
    if not value or "/" in value or value in (".", ".."):
        raise ValueError(f"expected a file name such as index.html, got {value!r}")
    return value


class OriginConfig(_Model):
    """One origin: an HTTP server (``url``) or a local folder (``root``), exactly one of them."""

    url: str | None = None
    root: str | None = None
    index: Annotated[str, AfterValidator(_index_file)] = "index.html"
    host_header: Annotated[str, AfterValidator(_host_header)] = "origin"
    connect_timeout: PositiveDuration = 3.0
    read_timeout: PositiveDuration = 30.0
    max_connections: int = Field(default=100, ge=1, le=MAX_CONNECTIONS)
    # Idle keep-alive connections are closed after this: below the 5 s many origins use (Node), so the
    # origin seldom closes one we are about to reuse.
    keepalive_timeout: PositiveDuration = Field(default=4.0, le=3600.0)
    headers: HeaderMap = Field(default_factory=FrozenMap)
    health: HealthConfig | None = None
    tls_verify: bool = True  # verify an https:// origin's certificate (false: accept any, e.g. self-signed)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            parts = urlsplit(value)
            _ = parts.port  # raises ValueError for a port that is not a number in range
        except ValueError as error:
            raise ValueError(f"invalid url {value!r}: {error}") from None
        if any(ch.isspace() or not ch.isprintable() for ch in value):
            raise ValueError(f"invalid url {value!r}: spaces and control characters are not allowed")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"invalid url {value!r}: use http://host[:port][/prefix] or https://…")
        if parts.query or parts.fragment:
            raise ValueError(f"invalid url {value!r}: no query or fragment allowed")
        return value

    @field_validator("root")
    @classmethod
    def _existing_folder(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        path = _resolve_path(_non_empty_text(value), info)
        if not os.path.isdir(path):
            raise ValueError(
                f"folder {path!r} does not exist (relative paths start at the config file's folder)"
            )
        return path

    @model_validator(mode="after")
    def _url_or_root(self) -> Self:
        if self.url is None and self.root is None:
            raise KeyedValueError(
                "url",
                "missing: an origin needs 'url' (an HTTP server) or 'root' (a local folder)",
                at_key=True,
            )
        if self.url is not None and self.root is not None:
            raise KeyedValueError("root", "give either 'url' or 'root', not both", at_key=True)
        return self


class OriginGroupConfig(_Model):
    """Origins tried in order (or in turn) for one behaviour; members must be origins, not groups."""

    members: Annotated[tuple[str, ...], AfterValidator(_not_empty_tuple)]
    failover_on: tuple[ErrorStatus, ...] = (500, 502, 503, 504)
    balance: Literal["failover", "round_robin", "hash"] = "failover"


# --------------------------------------------------------------------------------------------- behaviours


class TTLConfig(_Model):
    """CloudFront-style TTLs: ``default`` when the origin says nothing, the origin's clamped to min..max."""

    min: Duration = 0.0
    default: Duration = 86400.0
    max: Duration = 365 * 86400.0

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        def fmt(value: float) -> str:
            return format_duration(value)

        if self.min > self.max:
            raise KeyedValueError("min", f"must not be more than max ({fmt(self.min)} > {fmt(self.max)})")
        if self.default < self.min:
            raise KeyedValueError(
                "default", f"must not be less than min ({fmt(self.default)} < {fmt(self.min)})"
            )
        if self.default > self.max:
            raise KeyedValueError(
                "default", f"must not be more than max ({fmt(self.default)} > {fmt(self.max)})"
            )
        return self


class QueryExcept(_Model):
    """``cache_key.query: {except: [names]}``: every query parameter but these is part of the key."""

    except_: tuple[str, ...] = Field(alias="except")


QueryPolicy: TypeAlias = Literal["all", "none"] | tuple[str, ...] | QueryExcept
ForwardPolicy: TypeAlias = Literal["all", "none"] | tuple[str, ...]


def _name_list(value: object, check: Callable[[str], str]) -> tuple[str, ...]:
    names: list[str] = []
    for index, item in enumerate(value if isinstance(value, list | tuple) else ()):
        if isinstance(item, bool) or not isinstance(item, str | int | float) or str(item) == "":
            raise ValueError(f"entry {index}: expected a name, got {describe_value(item)}")
        names.append(check(str(item)))
    return _unique(tuple(names))


def _policy_validator(check: Callable[[str], str], *, allow_except: bool) -> Callable[[object], Any]:
    """Build the validator of an ``all | none | [names]`` (``| {except: [names]}``) setting."""
    shapes = (
        "all, none, a list of names or {except: [names]}" if allow_except else "all, none or a list of names"
    )

    def validate(value: object) -> Any:
        if value in ("all", "none") and isinstance(value, str):
            return value
        if isinstance(value, list | tuple):
            return _name_list(value, check)
        if allow_except and isinstance(value, Mapping):
            unknown = [str(key) for key in value if key != "except"]
            if unknown:
                raise ValueError(f"unknown key '{unknown[0]}' (the only key here is 'except')")
            if not isinstance(value.get("except"), list | tuple):
                raise ValueError(f"'except' needs a list of names, got {describe_value(value.get('except'))}")
            return QueryExcept.model_validate({"except": _name_list(value["except"], check)})
        raise ValueError(f"expected {shapes}, got {describe_value(value)}")

    return validate


def _any_name(value: str) -> str:
    return value


_query_policy = PlainValidator(_policy_validator(_any_name, allow_except=True))


class CacheKeyConfig(_Model):
    """What makes two requests share one cache entry (host and path always do)."""

    query: Annotated[QueryPolicy, _query_policy] = "all"
    headers: tuple[HeaderName, ...] = ()
    cookies: tuple[CookieName, ...] = ()
    sort_query: bool = True


class ForwardConfig(_Model):
    """What reaches the origin beyond the cache key (CloudFront's origin request policy). A setting left
    out is None: its default depends on the behaviour's ttl (``proxy.edge.forwarding.resolve_forwarding``)."""

    headers: Annotated[
        ForwardPolicy | None, PlainValidator(_policy_validator(_header_name, allow_except=False))
    ] = None
    cookies: Annotated[
        ForwardPolicy | None, PlainValidator(_policy_validator(_cookie_name, allow_except=False))
    ] = None
    query: Annotated[
        ForwardPolicy | None, PlainValidator(_policy_validator(_any_name, allow_except=False))
    ] = None

    @model_validator(mode="after")
    def _cookie_is_not_a_header(self) -> Self:
        if isinstance(self.headers, tuple) and any(h.lower() == "cookie" for h in self.headers):
            raise KeyedValueError(
                "headers", "Cookie is forwarded per 'cookies' (all, none or a list of names)"
            )
        return self


class RedirectConfig(_Model):
    """A synthetic redirect answered at the edge instead of asking an origin."""

    to: NonEmptyText
    status: int = 301

    @field_validator("status")
    @classmethod
    def _redirect_status(cls, value: int) -> int:
        if value not in (301, 302, 303, 307, 308):
            raise ValueError(f"expected 301, 302, 303, 307 or 308, got {value}")
        return value


class RewriteConfig(_Model):
    """A path rewrite before the origin: ``re.sub(from, to, path)``."""

    from_: Regex = Field(alias="from")
    to: str

    @model_validator(mode="after")
    def _references_exist(self) -> Self:
        pattern = re.compile(self.from_)
        for match in re.finditer(r"\\(?:([0-9]{1,2})|g<([^>]*)>)", self.to):
            ref = match[1] or match[2]
            known = ref in pattern.groupindex or (ref.isdigit() and int(ref) <= pattern.groups)
            if not known:
                raise KeyedValueError("to", f"refers to group {ref!r}, which 'from' does not have")
        return self


class HeaderPolicy(_Model):
    """Headers to set (replacing) and to remove, on the way to the origin or to the viewer."""

    set: HeaderMap = Field(default_factory=FrozenMap)
    remove: tuple[HeaderName, ...] = ()


def _cors_origin(value: str) -> str:
    if value != "*" and not _CORS_ORIGIN_RE.fullmatch(value):
        raise ValueError(f"expected * or an origin such as https://app.example.com, got {value!r}")
    return value


class CorsConfig(_Model):
    """CORS answered at the edge: preflight responses and the Access-Control-* headers."""

    allow_origins: tuple[Annotated[str, AfterValidator(_cors_origin)], ...] = ()
    allow_methods: tuple[Method, ...] = ("GET", "HEAD")
    allow_headers: tuple[HeaderName, ...] = ()
    expose_headers: tuple[HeaderName, ...] = ()
    allow_credentials: bool = False
    max_age: Duration = 0.0

    @model_validator(mode="after")
    def _no_wildcard_credentials(self) -> Self:
        if self.allow_credentials and "*" in self.allow_origins:
            raise KeyedValueError(
                "allow_credentials", "cannot be true when allow_origins has '*' (browsers refuse it)"
            )
        return self


class FunctionsConfig(_Model):
    """Edge functions, each ``package.module:function`` (only the syntax is checked here)."""

    viewer_request: FunctionRef | None = None
    origin_request: FunctionRef | None = None
    origin_response: FunctionRef | None = None
    viewer_response: FunctionRef | None = None


def _signing_keys(value: object) -> str | tuple[str, ...]:
    if value is None:
        return ""
    if isinstance(value, str | int) and not isinstance(value, bool):
        return str(value)
    items = value if isinstance(value, list | tuple) else ()
    if items and all(isinstance(item, str | int) and not isinstance(item, bool) for item in items):
        return tuple(str(item) for item in items)
    raise ValueError(f"expected a key or a list of keys (for rotation), got {describe_value(value)}")


class SignedConfig(_Model):
    """Signed URLs / cookies: requests without a valid signature are refused. Several keys allow rotation."""

    key: Annotated[str | tuple[str, ...], PlainValidator(_signing_keys)]
    cookies: bool = False


class BehaviourFirewallConfig(_Model):
    """Firewall rules (by name, from ``firewall.rules``) that apply to one behaviour only."""

    rules: tuple[str, ...]


def _behaviour_path(value: str) -> str:
    if value != "*" and not value.startswith("/"):
        raise ValueError(f'a path must start with "/" or be "*", got {value!r}')
    return value


class BehaviourConfig(_Model):
    """How requests whose path matches ``path`` are handled; the first matching behaviour wins."""

    path: Annotated[str, AfterValidator(_behaviour_path)]
    origin: str | None = None
    methods: Methods = DEFAULT_METHODS
    ttl: TTLConfig | None = None
    cache_key: CacheKeyConfig = Field(default_factory=CacheKeyConfig)
    forward: ForwardConfig = Field(default_factory=ForwardConfig)
    stale_while_revalidate: Duration = 0.0
    stale_if_error: Duration = 0.0
    error_ttl: Duration = 10.0
    error_pages: ErrorPages = Field(default_factory=FrozenMap)
    compress: bool = False
    # What STORE does with a response carrying Set-Cookie (proxy.http.storing.set_cookie_handling).
    set_cookie: Literal["pass", "strip", "store"] = "pass"
    viewer_protocol: Literal["allow", "redirect-to-https", "https-only"] = "allow"
    redirect: RedirectConfig | None = None
    rewrite: RewriteConfig | None = None
    request_headers: HeaderPolicy = Field(default_factory=HeaderPolicy)
    response_headers: HeaderPolicy = Field(default_factory=HeaderPolicy)
    cors: CorsConfig | None = None
    functions: FunctionsConfig | None = None
    signed: SignedConfig | None = None
    firewall: BehaviourFirewallConfig | None = None
    # WebSocket handshakes are tunnelled to the origin (False: answered 400). Other upgrades are never
    # tunnelled: they are served as plain requests, without the Upgrade field.
    websocket: bool = True

    @model_validator(mode="after")
    def _origin_unless_synthetic(self) -> Self:
        answered_at_edge = self.redirect is not None or (
            self.functions is not None and self.functions.viewer_request is not None
        )
        if self.origin is None and not answered_at_edge:
            raise KeyedValueError(
                "origin",
                "required (it may be left out only when the behaviour has a redirect or "
                "functions.viewer_request)",
                at_key=True,
            )
        return self


# --------------------------------------------------------------------------------------------- firewall


def _rate_key(value: str) -> str:
    if value == "ip":
        return value
    kind, sep, name = value.partition(":")
    if kind == "header" and sep and _TOKEN_RE.fullmatch(name):
        return value
    raise ValueError(f"expected ip or header:<Name>, got {value!r}")


class RateLimitConfig(_Model):
    """A token bucket per client: ``requests`` per ``per`` seconds, bursts up to ``burst``."""

    requests: int = Field(ge=1, le=MAX_RATE_COUNT)
    per: Period = 1.0
    burst: int = Field(default=1, ge=1, le=MAX_RATE_COUNT)
    by: Annotated[str, AfterValidator(_rate_key)] = "ip"

    @model_validator(mode="before")
    @classmethod
    def _burst_defaults_to_requests(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "burst" not in data and "requests" in data:
            requests = data["requests"]
            if isinstance(requests, int) and not isinstance(requests, bool) and requests >= 1:
                return {**data, "burst": requests}
        return data


class RuleMatch(_Model):
    """What a firewall rule matches; every given condition must hold. Strings are regular expressions."""

    path: Regex | None = None
    method: tuple[Method, ...] = ()
    header: HeaderRegexMap = Field(default_factory=FrozenMap)
    query: Regex | None = None

    @model_validator(mode="after")
    def _some_condition(self) -> Self:
        if self.path is None and not self.method and not self.header and self.query is None:
            raise ValueError("a rule needs at least one condition: path, method, header or query")
        return self


class FirewallRule(_Model):
    """A named rule; ``block`` answers 403, ``allow`` skips the remaining rules, ``count`` only logs."""

    name: NonEmptyText
    match: RuleMatch
    action: Literal["block", "allow", "count"] = "block"


class CountriesConfig(_Model):
    """Viewer countries (ISO 3166 two-letter codes) allowed or denied; needs ``geoip.database``."""

    allow: tuple[CountryCode, ...] = ()
    deny: tuple[CountryCode, ...] = ()


class FirewallConfig(_Model):
    """Edge-wide access control: networks, countries, rate limit and named rules."""

    allow: tuple[Network, ...] = ()
    deny: tuple[Network, ...] = ()
    countries: CountriesConfig = Field(default_factory=CountriesConfig)
    rate_limit: RateLimitConfig | None = None
    rules: tuple[FirewallRule, ...] = ()


class GeoIPConfig(_Model):
    """The MaxMind database used to find a viewer's country (made absolute, relative to the config)."""

    database: str

    @field_validator("database")
    @classmethod
    def _absolute(cls, value: str, info: ValidationInfo) -> str:
        return _resolve_path(_non_empty_text(value), info)


# --------------------------------------------------------------------------------------------- the whole


def _name_problem(name: object) -> str | None:
    """Why ``name`` cannot name an origin or a group, or None when it can."""
    if not _NAME_RE.fullmatch(str(name)):
        return f"invalid name '{name}' (letters, digits, '-', '_' and '.'; a letter or digit first)"
    return None


def _check_names(value: Mapping[str, Any], info: ValidationInfo) -> Mapping[str, Any]:
    """Origin and group names; the loader checks them in ``cross_check`` instead (with their lines)."""
    if not (info.context or {}).get("cross_checked"):
        for name in value:
            problem = _name_problem(name)
            if problem:
                raise ValueError(problem)
    return value


def _at_least_one_origin(value: Mapping[str, Any]) -> Mapping[str, Any]:
    if not value:
        raise ValueError("at least one origin is required")
    return value


def _at_least_one_behaviour(value: tuple[Any, ...]) -> tuple[Any, ...]:
    if not value:
        raise ValueError('at least one behaviour is required (the last one with path "*")')
    return value


class EdgeConfig(_Model):
    """The whole configuration of an edge, as loaded from one file (or built by ``config_for_origin``).

    Besides the YAML sections it carries where it came from: ``source_file`` (the path, or ``"<origin>"``),
    ``source_keys`` (every key path present in the file, list indices as ``[]``, e.g.
    ``"behaviours[].ttl.min"``; what the report compares with the keys the edge acts on) and ``warnings``
    (from ``${VAR}`` interpolation). The loader sets these with ``with_source``.
    """

    server: ServerConfig = Field(default_factory=ServerConfig)
    admin: AdminConfig | None = None
    cache: CacheConfig = Field(default_factory=CacheConfig)
    origins: Annotated[
        Mapping[str, OriginConfig],
        AfterValidator(_check_names),
        AfterValidator(_at_least_one_origin),
        _FREEZE,
        _AS_DICT,
    ]
    origin_groups: Annotated[
        Mapping[str, OriginGroupConfig], AfterValidator(_check_names), _FREEZE, _AS_DICT
    ] = Field(default_factory=FrozenMap)
    behaviours: Annotated[tuple[BehaviourConfig, ...], AfterValidator(_at_least_one_behaviour)] = Field(
        validation_alias=AliasChoices("behaviours", "behaviors")
    )
    firewall: FirewallConfig = Field(default_factory=FirewallConfig)
    geoip: GeoIPConfig | None = None

    _source_file: str = PrivateAttr(default="<memory>")
    _source_key_paths: tuple[tuple[str, ...], ...] = PrivateAttr(default=())
    _warnings: tuple[str, ...] = PrivateAttr(default=())

    @property
    def source_file(self) -> str:
        """The file this config was loaded from, ``"<origin>"`` for ``config_for_origin``."""
        return self._source_file

    @property
    def source_keys(self) -> frozenset[str]:
        """Dotted key paths present in the file, list indices written ``[]`` (``"behaviours[].path"``)."""
        return frozenset(".".join(path) for path in self._source_key_paths)

    @property
    def source_key_paths(self) -> tuple[tuple[str, ...], ...]:
        """The same key paths as segment tuples, in file order (names may contain dots)."""
        return self._source_key_paths

    @property
    def warnings(self) -> tuple[str, ...]:
        """Warnings from loading (unset environment variables and the like), ready to print."""
        return self._warnings

    def with_source(
        self, source_file: str, key_paths: Iterable[tuple[str, ...]], warnings: Iterable[str] = ()
    ) -> EdgeConfig:
        """Return a copy that knows its file, its key paths and its warnings (called by the loader)."""
        copy = self.model_copy()
        copy._source_file = source_file
        copy._source_key_paths = tuple(dict.fromkeys(key_paths))
        copy._warnings = tuple(warnings)
        return copy

    @model_validator(mode="after")
    def _cross_sections(self, info: ValidationInfo) -> Self:
        """Run ``cross_check`` when validated directly; the loader runs it itself, with line numbers."""
        if (info.context or {}).get("cross_checked"):
            return self
        findings = cross_check(self.model_dump(by_alias=True))
        if findings:
            raise ValueError(
                "; ".join(f"{f.key_path or format_key_path(f.loc)}: {f.message}" for f in findings)
            )
        return self


# --------------------------------------------------------------------------------------------- cross checks


@dataclass(frozen=True, slots=True)
class CrossCheckFinding:
    """A problem found by ``cross_check``: where (a location in the parsed data) and what.

    ``at_key`` points the message at the key rather than its value; ``key_path`` overrides the key path
    shown to the user (else it is made from ``loc``).
    """

    loc: tuple[str | int, ...]
    message: str
    at_key: bool = False
    key_path: str | None = None


def _mapping(value: object) -> Mapping[Any, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def cross_check(data: object) -> list[CrossCheckFinding]:
    """Check what spans sections, on the parsed YAML (before or after model validation).

    Called by the loader on the raw data, so these problems are reported together with the model's own
    errors; tolerant of malformed parts (those are the model's to report). Returns every finding:
    behaviours naming unknown origins or firewall rules, a last behaviour that is not ``"*"``, a ``"*"``
    that hides later behaviours, group members that are unknown or groups, names used by both an origin and
    a group, invalid origin or group names, duplicate firewall rule names and country rules without
    ``geoip.database``.
    """
    root = _mapping(data)
    findings: list[CrossCheckFinding] = []
    origins = {str(name) for name in _mapping(root.get("origins"))}
    groups_data = _mapping(root.get("origin_groups"))
    groups = {str(name) for name in groups_data}

    for section in ("origins", "origin_groups"):
        for name in _mapping(root.get(section)):
            problem = _name_problem(name)
            if problem:
                findings.append(CrossCheckFinding((section, name), problem, at_key=True))
    for name in groups_data:
        if str(name) in origins:
            findings.append(
                CrossCheckFinding(
                    ("origin_groups", name), f"'{name}' is already the name of an origin", at_key=True
                )
            )
    for name, group in groups_data.items():
        seen: set[str] = set()
        for index, member in enumerate(_list(_mapping(group).get("members"))):
            loc = ("origin_groups", name, "members", index)
            if not isinstance(member, str):
                continue
            if member in seen:
                findings.append(CrossCheckFinding(loc, f"'{member}' is listed twice"))
            elif member in groups and member not in origins:
                findings.append(
                    CrossCheckFinding(loc, f"'{member}' is a group; a group can only list origins")
                )
            elif member not in origins:
                findings.append(
                    CrossCheckFinding(loc, f"unknown origin '{member}'{did_you_mean(member, origins)}")
                )
            seen.add(member)

    firewall = _mapping(root.get("firewall"))
    rule_names: dict[str, int] = {}
    for index, rule in enumerate(_list(firewall.get("rules"))):
        name = _mapping(rule).get("name")
        if not isinstance(name, str):
            continue
        if name in rule_names:
            findings.append(
                CrossCheckFinding(
                    ("firewall", "rules", index, "name"),
                    f"duplicate rule name '{name}' (also firewall.rules[{rule_names[name]}])",
                )
            )
        else:
            rule_names[name] = index
    countries = _mapping(firewall.get("countries"))
    if (_list(countries.get("allow")) or _list(countries.get("deny"))) and not _mapping(
        root.get("geoip")
    ).get("database"):
        findings.append(
            CrossCheckFinding(
                ("firewall", "countries"),
                "country rules need geoip.database (a MaxMind country database)",
                at_key=True,
            )
        )

    key = "behaviours" if "behaviours" in root else "behaviors"
    behaviours = _list(root.get(key))
    targets = origins | groups
    for index, behaviour in enumerate(behaviours):
        item = _mapping(behaviour)
        origin = item.get("origin")
        if isinstance(origin, str) and origin not in targets and (origins or groups_data):
            findings.append(
                CrossCheckFinding(
                    (key, index, "origin"),
                    f"unknown origin '{origin}'{did_you_mean(origin, sorted(targets))}",
                )
            )
        rules = _list(_mapping(item.get("firewall")).get("rules"))
        for rule_index, rule in enumerate(rules):
            if isinstance(rule, str) and rule not in rule_names:
                findings.append(
                    CrossCheckFinding(
                        (key, index, "firewall", "rules", rule_index),
                        f"unknown firewall rule '{rule}'{did_you_mean(rule, rule_names)}",
                    )
                )
        if item.get("path") == "*" and index < len(behaviours) - 1:
            findings.append(
                CrossCheckFinding(
                    (key, index, "path"),
                    f'"*" matches every request, so the {len(behaviours) - 1 - index} behaviour(s) after '
                    "it are never used",
                )
            )
    if behaviours:
        last = _mapping(behaviours[-1])
        if isinstance(last.get("path"), str) and last["path"] != "*":
            findings.append(
                CrossCheckFinding(
                    (key, len(behaviours) - 1),
                    'the last behaviour must have path "*" (the default)',
                    key_path=key,
                )
            )
    return findings


# --------------------------------------------------------------------------------------------- key names


def _unwrap(annotation: Any) -> list[Any]:
    """The plain types inside ``Annotated[...]`` and unions."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        return [inner for arg in typing.get_args(annotation) for inner in _unwrap(arg)]
    return [annotation]


def _yaml_names(name: str, field: Any) -> list[str]:
    """Every key under which a model field may be written."""
    names = [field.alias or name]
    choices = field.validation_alias
    if isinstance(choices, AliasChoices):
        names.extend(choice for choice in choices.choices if isinstance(choice, str))
    return names


def _children(annotation: Any, elem: str | int) -> list[Any]:
    found: list[Any] = []
    for tp in _unwrap(annotation):
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if isinstance(elem, str):
                for name, field in tp.model_fields.items():
                    if elem in _yaml_names(name, field):
                        found.append(field.annotation)
            continue
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is tuple and isinstance(elem, int) and args:
            found.append(args[0])
        elif origin in (Mapping, dict) and len(args) == 2:
            found.append(args[1])
    return found


def known_keys(loc: Sequence[str | int]) -> tuple[str, ...]:
    """The keys allowed in the mapping at ``loc`` (e.g. ``("server",)``), for "did you mean" hints.

    Called by the loader when a key is unknown. Returns ``()`` when ``loc`` is not a section of the model.
    """
    current: list[Any] = [EdgeConfig]
    for elem in loc:
        current = [child for annotation in current for child in _children(annotation, elem)]
    names: list[str] = []
    for annotation in current:
        for tp in _unwrap(annotation):
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                names.extend(field.alias or name for name, field in tp.model_fields.items())
    return tuple(dict.fromkeys(names))
