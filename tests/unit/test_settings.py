"""Config loading: every error message with its position, interpolation, the model, the report."""

from __future__ import annotations

import pickle
import socket
import textwrap
import tracemalloc
from ipaddress import ip_network
from pathlib import Path

import pydantic
import pytest

from proxy.settings import (
    ConfigError,
    ConfigProblem,
    EdgeConfig,
    ListenAddress,
    QueryExcept,
    config_for_origin,
    load_config,
    parse_config,
    report,
)
from proxy.settings.interpolate import interpolate
from proxy.settings.loader import MAX_CONFIG_BYTES
from proxy.settings.model import parse_listen
from proxy.settings.units import (
    format_duration,
    format_size,
    parse_duration,
    parse_size,
)

REPO = Path(__file__).resolve().parents[2]

# The smallest valid config; cases below add to it or replace parts of it.
MINIMAL = """\
origins:
  app:
    url: http://127.0.0.1:9000
behaviours:
  - path: "*"
    origin: app
"""


def load(text: str, env: dict[str, str] | None = None, base_dir: Path | None = None) -> EdgeConfig:
    return parse_config(textwrap.dedent(text), "edge.yaml", env=env or {}, base_dir=base_dir)


def problems(text: str, env: dict[str, str] | None = None, base_dir: Path | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(text, env, base_dir)
    return str(caught.value).splitlines()


# --------------------------------------------------------------------------------------------- errors

ERROR_CASES = [
    pytest.param(
        textwrap.dedent(
            """\
            server:
              listen: 0.0.0.0:8080
              listne: 1
            """
        )
        + MINIMAL,
        ["edge.yaml:3:3: server.listne: unknown key; did you mean 'listen'?"],
        id="unknown-key-with-hint",
    ),
    pytest.param(
        MINIMAL + "cache:\n  colour: blue\n",
        [
            "edge.yaml:8:3: cache.colour: unknown key "
            "(expected one of: memory, disk, shared, collapse, shield, status_key)"
        ],
        id="unknown-key-lists-choices",
    ),
    pytest.param(
        MINIMAL + "behaviors2: []\n",
        ["edge.yaml:7:1: behaviors2: unknown key; did you mean 'behaviours'?"],
        id="unknown-top-level-key",
    ),
    pytest.param(
        """\
        origins:
          app:
            url: http://127.0.0.1:9000
            max_connections: lots
        behaviours:
          - path: "*"
            origin: app
            compress: maybe
            methods: GET
        server:
          workers: many
        """,
        [
            "edge.yaml:4:22: origins.app.max_connections: expected a whole number, got 'lots'",
            "edge.yaml:8:15: behaviours[0].compress: expected true or false, got 'maybe'",
            "edge.yaml:9:14: behaviours[0].methods: expected a list, got 'GET'",
            "edge.yaml:11:12: server.workers: expected a number of processes (1 or more) "
            "or \"auto\", got 'many'",
        ],
        id="wrong-types",
    ),
    pytest.param(
        """\
        origins:
          app:
            url: http://127.0.0.1:9000
        behaviours:
          - path: "*"
            origin: app
            ttl:
              default: 5 minutes
        """,
        [
            "edge.yaml:8:16: behaviours[0].ttl.default: invalid duration '5 minutes' "
            "(use e.g. 30s, 5m, 2h, 7d, 1y, 100ms or a number of seconds)"
        ],
        id="bad-duration",
    ),
    pytest.param(
        MINIMAL + "cache:\n  memory:\n    max_bytes: 10 megs\n    max_object_bytes: 1mib\n",
        [
            "edge.yaml:9:16: cache.memory.max_bytes: invalid size '10 megs' "
            "(use e.g. 512KiB, 64MiB, 1GiB, 10MB or a number of bytes)",
            "edge.yaml:10:23: cache.memory.max_object_bytes: invalid size '1mib': "
            "unit names are case-sensitive; did you mean 'MiB'?",
        ],
        id="bad-size",
    ),
    pytest.param(
        """\
        origins:
          app:
            url: http://127.0.0.1:9000
        behaviours:
          - path: /api/*
            origin: ap
          - path: "*"
            origin: app
        """,
        ["edge.yaml:6:13: behaviours[0].origin: unknown origin 'ap'; did you mean 'app'?"],
        id="unknown-origin",
    ),
    pytest.param(
        """\
        origins:
          app:
            url: http://127.0.0.1:9000
        behaviours:
          - path: "*"
            origin: app
          - path: /static/*
            origin: app
        """,
        [
            'edge.yaml:5:11: behaviours[0].path: "*" matches every request, so the 1 behaviour(s) after it '
            "are never used",
            'edge.yaml:7:5: behaviours: the last behaviour must have path "*" (the default)',
        ],
        id="missing-final-star",
    ),
    pytest.param(
        "origins: {}\nbehaviours: []\n",
        [
            "edge.yaml:1:10: origins: at least one origin is required",
            'edge.yaml:2:13: behaviours: at least one behaviour is required (the last one with path "*")',
        ],
        id="empty-sections",
    ),
    pytest.param(
        "",
        [
            "edge.yaml:1:1: behaviours: required key is missing",
            "edge.yaml:1:1: origins: required key is missing",
        ],
        id="empty-file",
    ),
    pytest.param(
        "- origins\n",
        ["edge.yaml:1:1: expected a mapping (key: value), got a list"],
        id="top-level-not-a-mapping",
    ),
    pytest.param(
        """\
        origins:
          app:
            url: http://127.0.0.1:9000
        behaviours:
          - path: [
        """,
        [
            "edge.yaml:6:1: invalid YAML: expected the node content, but found '<stream end>' "
            "(while parsing a flow node on line 6)"
        ],
        id="yaml-syntax-error",
    ),
    pytest.param(
        "server:\n\tlisten: 1\n",
        ["edge.yaml:2:1: invalid YAML: found character '\\t' that cannot start any token"],
        id="yaml-tab",
    ),
    pytest.param(
        MINIMAL + "server:\n  name: a\n  name: b\n",
        ["edge.yaml:9:3: server.name: duplicate key (first on line 8); only one may be given"],
        id="duplicate-key",
    ),
    pytest.param(
        """\
        origins:
          app:
            host_header: viewer
          both:
            url: http://x
            root: .
          ftp:
            url: ftp://x
          bad.name!:
            url: http://x:99999
        behaviours:
          - path: "*"
            origin: app
        """,
        [
            "edge.yaml:2:3: origins.app.url: missing: an origin needs 'url' (an HTTP server) or 'root' "
            "(a local folder)",
            "edge.yaml:6:5: origins.both.root: give either 'url' or 'root', not both",
            "edge.yaml:8:10: origins.ftp.url: invalid url 'ftp://x': use "
            "http://host[:port][/prefix] or https://…",
            "edge.yaml:9:3: origins.bad.name!: invalid name 'bad.name!' (letters, digits, '-', '_' and '.'; "
            "a letter or digit first)",
            "edge.yaml:10:10: origins.bad.name!.url: invalid url 'http://x:99999': Port out of range 0-65535",
        ],
        id="origin-url-root",
    ),
    pytest.param(
        """\
        origins:
          app: {url: "http://a"}
          b: {url: "http://b"}
        origin_groups:
          g:
            members: [app, nope, g, app]
            balance: failovr
            failover_on: [200]
          b:
            members: [app]
        behaviours:
          - path: "*"
            origin: g
        """,
        [
            "edge.yaml:6:20: origin_groups.g.members[1]: unknown origin 'nope'",
            "edge.yaml:6:26: origin_groups.g.members[2]: 'g' is a group; a group can only list origins",
            "edge.yaml:6:29: origin_groups.g.members[3]: 'app' is listed twice",
            "edge.yaml:7:14: origin_groups.g.balance: expected failover | round_robin | hash, got 'failovr'; "
            "did you mean 'failover'?",
            "edge.yaml:8:19: origin_groups.g.failover_on[0]: must be an error status "
            "between 400 and 599, got 200",
            "edge.yaml:9:3: origin_groups.b: 'b' is already the name of an origin",
        ],
        id="origin-groups",
    ),
    pytest.param(
        """\
        origins:
          app: {url: "http://a"}
        behaviours:
          - path: /redirect
            redirect: {to: "https://example.com/", status: 200}
          - path: api
          - path: "*"
            origin: app
            ttl: {min: 2d, default: 1d}
            rewrite: {from: "(", to: "x"}
            error_pages: {404: x.html, abc: /y}
            methods: [GET, "BAD METHOD"]
        """,
        [
            "edge.yaml:5:52: behaviours[0].redirect.status: expected 301, 302, 303, 307 or 308, got 200",
            'edge.yaml:6:11: behaviours[1].path: a path must start with "/" or be "*", got \'api\'',
            "edge.yaml:9:29: behaviours[2].ttl.default: must not be less than min (1d < 2d)",
            "edge.yaml:10:21: behaviours[2].rewrite.from: invalid regular expression '(': "
            "missing ), unterminated subpattern at position 0",
            "edge.yaml:11:24: behaviours[2].error_pages.404: must be a path starting with '/', got 'x.html'",
            "edge.yaml:11:32: behaviours[2].error_pages.abc: expected a whole number, got 'abc'",
            "edge.yaml:12:20: behaviours[2].methods[1]: invalid HTTP method 'BAD METHOD'",
        ],
        id="behaviour-values",
    ),
    pytest.param(
        """\
        origins:
          app: {url: "http://a"}
        behaviours:
          - path: /no-origin
          - path: /synthetic
            functions: {viewer_request: "hooks:answer"}
          - path: "*"
            origin: app
        """,
        [
            "edge.yaml:4:5: behaviours[0].origin: required (it may be left out only when the behaviour has "
            "a redirect or functions.viewer_request)"
        ],
        id="behaviour-without-origin",
    ),
    pytest.param(
        MINIMAL + "admin:\n  listen: 0.0.0.0:9090\n  token: ${ADMIN_TOKEN}\n",
        [
            "edge.yaml:9:3: admin.token: a token is required when the admin API listens on 0.0.0.0:9090, "
            "not on loopback"
        ],
        id="admin-token-required",
    ),
    pytest.param(
        MINIMAL
        + textwrap.dedent(
            """\
            firewall:
              countries: {deny: [NO, usa]}
              rate_limit: {requests: 0, by: cookie}
              rules:
                - name: r
                  match: {path: "[", header: {X-Y: "("}}
                - name: r
                  match: {}
                  action: drop
            """
        ),
        [
            "edge.yaml:8:3: firewall.countries: country rules need geoip.database (a "
            "MaxMind country database)",
            "edge.yaml:8:26: firewall.countries.deny[1]: invalid country code 'usa' (use "
            "two letters, e.g. DE, US)",
            "edge.yaml:9:26: firewall.rate_limit.requests: must be at least 1, got 0",
            "edge.yaml:9:33: firewall.rate_limit.by: expected ip or header:<Name>, got 'cookie'",
            "edge.yaml:12:21: firewall.rules[0].match.path: invalid regular expression '[': "
            "unterminated character set at position 0",
            "edge.yaml:12:40: firewall.rules[0].match.header.X-Y: invalid regular expression '(': "
            "missing ), unterminated subpattern at position 0",
            "edge.yaml:13:13: firewall.rules[1].name: duplicate rule name 'r' (also firewall.rules[0])",
            "edge.yaml:14:14: firewall.rules[1].match: a rule needs at least one condition: path, method, "
            "header or query",
            "edge.yaml:15:15: firewall.rules[1].action: expected block | allow | count, got 'drop'",
        ],
        id="firewall",
    ),
    pytest.param(
        """\
        origins:
          app: {url: "http://a"}
        behaviours:
          - path: "*"
            origin: app
            firewall: {rules: [block-admn]}
        firewall:
          rules:
            - {name: block-admin, match: {path: "^/wp-admin"}}
        """,
        [
            "edge.yaml:6:24: behaviours[0].firewall.rules[0]: unknown firewall rule 'block-admn'; "
            "did you mean 'block-admin'?"
        ],
        id="behaviour-firewall-rule",
    ),
    pytest.param(
        textwrap.dedent(
            """\
            server:
              listen: [":80", "fe80::1:80", "x"]
              name: two words
              trusted_proxies: [10.0.0.1/8, nonsense]
            cache:
              memory: {max_bytes: 1MiB, max_object_bytes: 2MiB}
            """
        )
        + MINIMAL,
        [
            "edge.yaml:2:19: server.listen[1]: invalid listen address 'fe80::1:80': put IPv6 addresses in "
            "brackets, [::1]:8080",
            "edge.yaml:2:33: server.listen[2]: invalid listen address 'x': no port (use host:port, [::]:8080 "
            "or :8080)",
            "edge.yaml:3:9: server.name: invalid name 'two words': one word (it is sent in "
            "Via and Cache-Status)",
            "edge.yaml:4:21: server.trusted_proxies[0]: invalid network '10.0.0.1/8': "
            "10.0.0.1/8 has host bits set",
            "edge.yaml:4:33: server.trusted_proxies[1]: invalid network 'nonsense': "
            "'nonsense' does not appear to be an IPv4 or IPv6 network",
            "edge.yaml:6:47: cache.memory.max_object_bytes: must not be more than max_bytes (2MiB > 1MiB)",
        ],
        id="server-and-cache",
    ),
    pytest.param(
        """\
        origins:
          app: {url: "http://a"}
        behaviours:
          - path: "*"
            origin: app
            cache_key: {query: {except: [a], only: [b]}, cookies: ["a b"]}
            forward: {query: some}
            cors: {allow_origins: ["*"], allow_credentials: true}
            functions: {origin_request: "not a function"}
            rewrite: {from: "^/(a)$", to: "/\\\\2"}
        """,
        [
            "edge.yaml:6:24: behaviours[0].cache_key.query: unknown key 'only' (the only "
            "key here is 'except')",
            "edge.yaml:6:60: behaviours[0].cache_key.cookies[0]: invalid cookie name 'a b'",
            "edge.yaml:7:22: behaviours[0].forward.query: expected all, none or a list of names, got 'some'",
            "edge.yaml:8:53: behaviours[0].cors.allow_credentials: cannot be true when allow_origins has '*' "
            "(browsers refuse it)",
            "edge.yaml:9:33: behaviours[0].functions.origin_request: invalid function reference "
            "'not a function' (use package.module:function)",
            "edge.yaml:10:35: behaviours[0].rewrite.to: refers to group '2', which 'from' does not have",
        ],
        id="behaviour-policies",
    ),
    pytest.param(
        MINIMAL + "cache:\n  shield: true\n  shared:\n",
        ["edge.yaml:8:11: cache.shield: needs cache.shared (shielding goes through the shared tier)"],
        id="shield-needs-shared",
    ),
    pytest.param(
        MINIMAL + "behaviors:\n  - path: '*'\n    origin: app\n",
        ["edge.yaml:7:1: behaviors: use either 'behaviours' or 'behaviors', not both"],
        id="both-spellings",
    ),
]


@pytest.mark.parametrize(("text", "expected"), ERROR_CASES)
def test_error_messages(text: str, expected: list[str]) -> None:
    assert problems(text) == expected


def test_several_errors_reported_at_once_in_file_order() -> None:
    text = """\
        server:
          listne: 0.0.0.0:8080
        origins:
          app:
            url: http://127.0.0.1:9000
            read_timeout: soon
        behaviours:
          - path: /static/*
            origin: ap
            ttl:
              default: 5 minutes
          - path: /api/*
            origin: app
        """
    assert problems(text) == [
        "edge.yaml:2:3: server.listne: unknown key; did you mean 'listen'?",
        "edge.yaml:6:19: origins.app.read_timeout: invalid duration 'soon' "
        "(use e.g. 30s, 5m, 2h, 7d, 1y, 100ms or a number of seconds)",
        "edge.yaml:9:13: behaviours[0].origin: unknown origin 'ap'; did you mean 'app'?",
        "edge.yaml:11:16: behaviours[0].ttl.default: invalid duration '5 minutes' "
        "(use e.g. 30s, 5m, 2h, 7d, 1y, 100ms or a number of seconds)",
        'edge.yaml:12:5: behaviours: the last behaviour must have path "*" (the default)',
    ]


def test_config_error_holds_structured_problems() -> None:
    with pytest.raises(ConfigError) as caught:
        load(MINIMAL + "server:\n  workers: 0\n")
    assert caught.value.problems == [
        ConfigProblem(
            "edge.yaml",
            8,
            12,
            "server.workers",
            'expected a number of processes (1 or more) or "auto", got 0',
        )
    ]
    clone = pickle.loads(pickle.dumps(caught.value))
    assert clone.problems == caught.value.problems


def test_problem_formatting() -> None:
    assert str(ConfigProblem("e.yaml", 3, 5, "a.b[2].c", "bad")) == "e.yaml:3:5: a.b[2].c: bad"
    assert str(ConfigProblem("e.yaml", 3, 5, "", "bad")) == "e.yaml:3:5: bad"
    assert str(ConfigProblem("e.yaml", 0, 0, "", "cannot read")) == "e.yaml: cannot read"
    both = ConfigError([ConfigProblem("e", 9, 1, "b", "y"), ConfigProblem("e", 2, 1, "a", "x")])
    assert str(both) == "e:2:1: a: x\ne:9:1: b: y"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(None, "{path}: cannot read the file: No such file or directory", id="missing"),
        pytest.param(
            b"server:\n  name: caf\xe9\n", "{path}:2:12: the file is not UTF-8 text (byte 0xe9)", id="latin1"
        ),
        pytest.param(
            b"a: \x07\n",
            "{path}:1:4: invalid YAML: the character '\\x07' is not allowed in YAML text",
            id="control-char",
        ),
        pytest.param(
            b"a: 1\n---\nb: 2\n",
            "{path}:2:1: invalid YAML: but found another document (expected a single document in the "
            "stream on line 1)",
            id="two-documents",
        ),
        pytest.param(
            b"a: !!python/object:os.system x\n",
            "{path}:1:4: invalid YAML: could not determine a constructor for the tag "
            "'tag:yaml.org,2002:python/object:os.system'",
            id="python-tag",
        ),
        pytest.param(
            b"a: " + b"[" * 3000 + b"]" * 3000, "{path}: invalid YAML: nested too deeply", id="deep"
        ),
    ],
)
def test_file_level_problems(tmp_path: Path, content: bytes | None, expected: str) -> None:
    path = tmp_path / "edge.yaml"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert str(caught.value) == expected.format(path=path)


# --------------------------------------------------------------------------------------------- bounds

_ORIGIN = "origins:\n  app:\n    url: http://127.0.0.1:9000\n"
_BEHAVIOUR = 'behaviours:\n  - path: "*"\n    origin: app\n'

# (config with {v} where the value goes, the key path, the largest value accepted, a value just above it,
# the message for that value)
BOUND_CASES = [
    pytest.param(
        "server:\n  limits:\n    max_header_bytes: {v}\n" + _ORIGIN + _BEHAVIOUR,
        "server.limits.max_header_bytes", "1MiB", "1025KiB", "must be at most 1MiB, got 1025KiB",
        id="max_header_bytes",
    ),
    pytest.param(
        "server:\n  limits:\n    max_body_bytes: {v}\n" + _ORIGIN + _BEHAVIOUR,
        "server.limits.max_body_bytes", "1TiB", "1025GiB", "must be at most 1TiB, got 1025GiB",
        id="max_body_bytes",
    ),
    pytest.param(
        "server:\n  limits:\n    client_timeout: {v}\n" + _ORIGIN + _BEHAVIOUR,
        "server.limits.client_timeout", "1d", "25h", "must be at most 1d, got 25h",
        id="client_timeout",
    ),
    pytest.param(
        "server:\n  workers: {v}\n" + _ORIGIN + _BEHAVIOUR,
        "server.workers", "1024", "1025", "must be at most 1024 processes, got 1025",
        id="workers",
    ),
    pytest.param(
        "cache:\n  memory:\n    max_bytes: {v}\n" + _ORIGIN + _BEHAVIOUR,
        "cache.memory.max_bytes", "1TiB", "2TiB", "must be at most 1TiB, got 2TiB",
        id="memory.max_bytes",
    ),
    pytest.param(
        "cache:\n  memory:\n    max_object_bytes: {v}\n" + _ORIGIN + _BEHAVIOUR,
        "cache.memory.max_object_bytes", "1MiB", "1099511627777", "must be at most 1TiB, got 1099511627777B",
        id="memory.max_object_bytes",
    ),
    pytest.param(
        "cache:\n  shared:\n    url: redis://127.0.0.1:6379/0\n    max_object_bytes: {v}\n"
        + _ORIGIN
        + _BEHAVIOUR,
        "cache.shared.max_object_bytes", "512MiB", "513MiB", "must be at most 512MiB, got 513MiB",
        id="shared.max_object_bytes",
    ),
    pytest.param(
        "cache:\n  shared:\n    url: redis://127.0.0.1:6379/0\n    timeout: {v}\n" + _ORIGIN + _BEHAVIOUR,
        "cache.shared.timeout", "1d", "86401", "must be at most 1d, got 86401s",
        id="shared.timeout",
    ),
    pytest.param(
        _ORIGIN + "    connect_timeout: {v}\n" + _BEHAVIOUR,
        "origins.app.connect_timeout", "86400s", "1441m", "must be at most 1d, got 1441m",
        id="connect_timeout",
    ),
    pytest.param(
        _ORIGIN + "    read_timeout: {v}\n" + _BEHAVIOUR,
        "origins.app.read_timeout", "24h", "1e300", None,  # not a duration at all: its own message
        id="read_timeout",
    ),
    pytest.param(
        _ORIGIN + "    max_connections: {v}\n" + _BEHAVIOUR,
        "origins.app.max_connections", "100000", "100001", "must be at most 100000, got 100001",
        id="max_connections",
    ),
    pytest.param(
        _ORIGIN + "    health: {{interval: {v}}}\n" + _BEHAVIOUR,
        "origins.app.health.interval", "1d", "2d", "must be at most 1d, got 2d",
        id="health.interval",
    ),
    pytest.param(
        _ORIGIN + "    health: {{timeout: {v}}}\n" + _BEHAVIOUR,
        "origins.app.health.timeout", "1d", "2d", "must be at most 1d, got 2d",
        id="health.timeout",
    ),
    pytest.param(
        _ORIGIN + "    health: {{healthy_after: {v}}}\n" + _BEHAVIOUR,
        "origins.app.health.healthy_after", "1000", "1001", "must be at most 1000, got 1001",
        id="health.healthy_after",
    ),
    pytest.param(
        _ORIGIN + "    health: {{unhealthy_after: {v}}}\n" + _BEHAVIOUR,
        "origins.app.health.unhealthy_after", "1000", "10000000000000000000000",
        "must be at most 1000, got 10000000000000000000000",
        id="health.unhealthy_after",
    ),
    pytest.param(
        _ORIGIN + _BEHAVIOUR + "    ttl: {{max: {v}}}\n",
        "behaviours[0].ttl.max", "10y", "3651d", "must be at most 10y, got 3651d",
        id="ttl.max",
    ),
    pytest.param(
        _ORIGIN + _BEHAVIOUR + "    ttl: {{min: 0s, default: {v}, max: 10y}}\n",
        "behaviours[0].ttl.default", "3650d", "100000000000000000000y",
        "must be at most 10y, got 3153600000000000000000000000s",
        id="ttl.default",
    ),
    pytest.param(
        _ORIGIN + _BEHAVIOUR + "    stale_while_revalidate: {v}\n",
        "behaviours[0].stale_while_revalidate", "10y", "11y", "must be at most 10y, got 11y",
        id="stale_while_revalidate",
    ),
    pytest.param(
        _ORIGIN + _BEHAVIOUR + "    stale_if_error: {v}\n",
        "behaviours[0].stale_if_error", "10y", "11y", "must be at most 10y, got 11y",
        id="stale_if_error",
    ),
    pytest.param(
        _ORIGIN + _BEHAVIOUR + "    error_ttl: {v}\n",
        "behaviours[0].error_ttl", "10y", "11y", "must be at most 10y, got 11y",
        id="error_ttl",
    ),
    pytest.param(
        _ORIGIN + _BEHAVIOUR + "    cors: {{allow_origins: ['*'], max_age: {v}}}\n",
        "behaviours[0].cors.max_age", "10y", "11y", "must be at most 10y, got 11y",
        id="cors.max_age",
    ),
    pytest.param(
        _ORIGIN + _BEHAVIOUR + "firewall:\n  rate_limit: {{requests: {v}, burst: 1}}\n",
        "firewall.rate_limit.requests", "1000000000", "1000000001",
        "must be at most 1000000000, got 1000000001",
        id="rate_limit.requests",
    ),
    pytest.param(
        _ORIGIN + _BEHAVIOUR + "firewall:\n  rate_limit: {{requests: 1, burst: {v}}}\n",
        "firewall.rate_limit.burst", "1000000000", "1000000001",
        "must be at most 1000000000, got 1000000001",
        id="rate_limit.burst",
    ),
    pytest.param(
        _ORIGIN + _BEHAVIOUR + "firewall:\n  rate_limit: {{requests: 1, per: {v}}}\n",
        "firewall.rate_limit.per", "10y", "11y", "must be at most 10y, got 11y",
        id="rate_limit.per",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("template", "key_path", "largest", "above", "message"), BOUND_CASES)
def test_config_values_are_bounded(
    template: str, key_path: str, largest: str, above: str, message: str | None
) -> None:
    load(template.format(v=largest))  # the maximum itself is accepted
    found = problems(template.format(v=above))
    assert len(found) == 1, found
    lines = template.format(v=above).splitlines()
    line = next(number for number, text in enumerate(lines, 1) if above in text)
    assert found[0].startswith(f"edge.yaml:{line}:"), found
    if message is None:
        assert f": {key_path}: invalid duration" in found[0]
    else:
        assert found[0].endswith(f": {key_path}: {message}"), found


def test_file_larger_than_the_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_bytes(MINIMAL.encode() + b"#" * MAX_CONFIG_BYTES)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert str(caught.value) == f"{path}: the file is larger than 1MiB, the most a config may be"
    with pytest.raises(ConfigError) as caught:
        parse_config(MINIMAL + "#" * MAX_CONFIG_BYTES, "edge.yaml", env={})
    assert str(caught.value) == "edge.yaml: the file is larger than 1MiB, the most a config may be"
    path.write_bytes(MINIMAL.encode() + b"#" * (MAX_CONFIG_BYTES - len(MINIMAL) - 1) + b"\n")
    assert load_config(path, env={}).origins["app"].url == "http://127.0.0.1:9000"  # exactly the limit


def _alias_bomb(levels: int = 9) -> str:
    lines = ["a0: &a0 [" + ", ".join(['"lol"'] * 10) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_without_building_it() -> None:
    text = _alias_bomb()
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError) as caught:
            parse_config(text, "bomb.yaml", env={})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(caught.value) == (
        "bomb.yaml:5:45: invalid YAML: aliases expand the document by more than 100,000 nodes "
        "(the limit; a YAML alias bomb?)"
    )
    assert peak < 5 * 1024 * 1024  # 10^9 strings were never materialised, nor walked


def test_aliases_within_the_limit_still_work() -> None:
    config = load(
        """\
        origins:
          app:
            url: http://127.0.0.1:9000
        behaviours:
          - path: /a/*
            origin: app
            ttl: &ttl {default: 5m, max: 1d}
          - path: "*"
            origin: app
            ttl: *ttl
        """
    )
    assert config.behaviours[1].ttl == config.behaviours[0].ttl
    # Three levels of ten aliases add 12,330 nodes: accepted by the composer (the model refuses the keys).
    assert "aliases expand" not in "\n".join(problems(MINIMAL + _alias_bomb(3)))


def test_interpolation_cannot_blow_up_the_config() -> None:
    text = MINIMAL + "".join(f"# ${{A}}\nx{i}: ${{A}}\n" for i in range(1000))
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "edge.yaml", env={"A": "y" * 2000})
    message = str(caught.value)
    assert message.startswith("edge.yaml:")
    assert message.endswith(
        f"environment variables make the config longer than {MAX_CONFIG_BYTES} characters, "
        "the most a config may be"
    )
    line = int(message.split(":")[1])
    assert 500 < line < 1200  # the reference that crossed the limit (about the 525th), not the file


# --------------------------------------------------------------------------------------------- interpolation


def test_env_interpolation_values_defaults_and_warnings() -> None:
    text = """\
        # ${IN_A_COMMENT} is left alone
        server:
          name: ${NAME:-edge-9}
          access_log: "${LOG}"
        origins:
          app:
            url: ${ORIGIN_URL}
            headers: {X-Secret: "${SECRET}", X-Literal: "$${NOT_A_VAR}"}
        behaviours:
          - path: "*"
            origin: app
        """
    cfg = load(text, env={"ORIGIN_URL": "http://10.0.0.1:81", "LOG": "off"})
    assert cfg.server.name == "edge-9"
    assert cfg.server.access_log == "off"
    assert cfg.origins["app"].url == "http://10.0.0.1:81"
    assert dict(cfg.origins["app"].headers) == {"X-Secret": "", "X-Literal": "${NOT_A_VAR}"}
    assert cfg.warnings == ("edge.yaml:8:26: environment variable SECRET is not set; ${SECRET} became ''",)
    assert report.warnings(cfg) == list(cfg.warnings)


def test_interpolated_values_keep_line_numbers() -> None:
    text = """\
        origins:
          app:
            url: ${URL}
            read_timeout: 5 minutes
        behaviours:
          - path: "*"
            origin: app
        """
    lines = problems(text, env={"URL": "http://a\nb"})
    assert lines == [
        "edge.yaml:3:10: origins.app.url: invalid url 'http://a b': spaces and control "
        "characters are not allowed",
        "edge.yaml:4:19: origins.app.read_timeout: invalid duration '5 minutes' "
        "(use e.g. 30s, 5m, 2h, 7d, 1y, 100ms or a number of seconds)",
    ]


@pytest.mark.parametrize(
    ("text", "env", "expected", "warnings"),
    [
        ("a: ${X}", {"X": "1"}, "a: 1", []),
        ("a: ${X:-d}", {}, "a: d", []),
        ("a: ${X:-d}", {"X": ""}, "a: d", []),
        ("a: ${X:-}", {}, "a: ", []),
        ("a: ${X}", {}, "a: ", ["f:1:4: environment variable X is not set; ${X} became ''"]),
        ("a: $${X}", {}, "a: ${X}", []),
        ("a: $$X", {}, "a: $$X", []),
        ("a: x # ${X}", {}, "a: x # ${X}", []),
        ('a: "# ${X}"', {"X": "y"}, 'a: "# y"', []),
        (
            "a: ${1X}",
            {},
            "a: ${1X}",
            [
                "f:1:4: '${' is not followed by NAME} or NAME:-default}; "
                "left as written (write $${ for a literal ${)"
            ],
        ),
        (
            "a: ${X}\r\nb: 1\r",
            {"X": "p\r\nq"},
            "a: p  q\nb: 1\n",
            ["f:1:4: environment variable X contains line breaks; they were replaced by spaces"],
        ),
    ],
)
def test_interpolation_rules(text: str, env: dict[str, str], expected: str, warnings: list[str]) -> None:
    result = interpolate(text, env, "f")
    assert result.text == expected
    assert list(result.warnings) == warnings


# --------------------------------------------------------------------------------------------- the model


def test_minimal_config_defaults() -> None:
    cfg = load(MINIMAL)
    assert cfg.server.listen == (ListenAddress(host="0.0.0.0", port=8080),)
    assert cfg.server.name == socket.gethostname()
    assert cfg.server.workers == 1
    assert cfg.server.access_log == "stdout"
    assert cfg.server.limits.max_header_bytes == 16 * 1024
    assert cfg.server.limits.max_body_bytes == 10 * 1024 * 1024
    assert cfg.server.limits.client_timeout == 60.0
    assert cfg.admin is None and cfg.geoip is None and cfg.server.tls is None
    assert cfg.cache.memory.max_bytes == 256 * 1024 * 1024
    assert cfg.cache.memory.max_object_bytes == 16 * 1024 * 1024
    assert (cfg.cache.shared, cfg.cache.collapse, cfg.cache.shield) == (None, True, False)
    origin = cfg.origins["app"]
    assert (origin.index, origin.host_header, origin.connect_timeout, origin.read_timeout) == (
        "index.html",
        "origin",
        3.0,
        30.0,
    )
    assert origin.max_connections == 100 and dict(origin.headers) == {} and origin.health is None
    assert dict(cfg.origin_groups) == {}
    behaviour = cfg.behaviours[0]
    assert behaviour.methods == ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
    assert behaviour.ttl is None
    assert (behaviour.cache_key.query, behaviour.cache_key.sort_query) == ("all", True)
    # Unset: resolved from the ttl at runtime (proxy.edge.forwarding.resolve_forwarding).
    assert (behaviour.forward.headers, behaviour.forward.cookies, behaviour.forward.query) == (None,) * 3
    assert (behaviour.stale_while_revalidate, behaviour.stale_if_error, behaviour.error_ttl) == (
        0.0,
        0.0,
        10.0,
    )
    assert behaviour.viewer_protocol == "allow" and behaviour.compress is False
    assert cfg.firewall.rules == () and cfg.firewall.rate_limit is None
    assert cfg.source_file == "edge.yaml"
    assert cfg.source_keys == {
        "origins",
        "origins.app",
        "origins.app.url",
        "behaviours",
        "behaviours[].path",
        "behaviours[].origin",
    }
    assert cfg.warnings == ()


def test_models_are_frozen_and_collections_immutable() -> None:
    cfg = load(MINIMAL + "server:\n  listen: [':80', ':81']\n")
    assert isinstance(cfg.server.listen, tuple)
    with pytest.raises(pydantic.ValidationError):
        cfg.server.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.origins["new"] = cfg.origins["app"]  # type: ignore[index]
    assert hash(cfg) == hash(load(MINIMAL + "server:\n  listen: [':80', ':81']\n").model_copy())


def test_values_are_converted() -> None:
    cfg = load(
        """\
        server:
          listen: ["[::]:8443", ":8080", 9000, "localhost:1"]
          workers: auto
          hosts: [Example.COM, "*.example.com"]
          trusted_proxies: [10.0.0.0/8, 2001:db8::1]
          limits: {max_header_bytes: 32KiB, max_body_bytes: 1GB, client_timeout: 1.5}
        cache:
          shared: {url: "redis://r:6379/0", timeout: 100ms}
          shield: true
        origins:
          app:
            url: http://127.0.0.1:9000
            headers: {X-Num: 5}
            health: {interval: 1m}
        behaviours:
          - path: /api/*
            origin: app
            methods: [get, Head, GET]
            ttl: {min: 1s, default: 2h, max: 1y}
            cache_key: {query: {except: [utm_source]}, headers: [Accept-Language], cookies: [session]}
            forward: {headers: none, cookies: [session], query: [q]}
            error_pages: {404: /404.html}
            rewrite: {from: "^/api/(?P<rest>.*)$", to: "/\\\\g<rest>"}
            signed: {key: [old, new]}
            cors: {max_age: 1h}
          - path: "*"
            origin: app
            cache_key: {query: none}
        firewall:
          allow: [192.0.2.7]
          countries: {allow: [de, NO]}
          rate_limit: {requests: 50}
        geoip: {database: geo.mmdb}
        """,
        base_dir=Path("/etc/edge"),
    )
    assert [str(a) for a in cfg.server.listen] == ["[::]:8443", "0.0.0.0:8080", "0.0.0.0:9000", "localhost:1"]
    assert cfg.server.workers == "auto"
    assert cfg.server.hosts == ("example.com", "*.example.com")
    assert cfg.server.trusted_proxies == (ip_network("10.0.0.0/8"), ip_network("2001:db8::1/128"))
    assert cfg.server.limits.max_header_bytes == 32768
    assert cfg.server.limits.max_body_bytes == 1_000_000_000
    assert cfg.server.limits.client_timeout == 1.5
    assert cfg.cache.shared is not None and cfg.cache.shared.timeout == 0.1
    assert cfg.cache.shared.max_object_bytes == 8 * 1024 * 1024
    assert dict(cfg.origins["app"].headers) == {"X-Num": "5"}
    health = cfg.origins["app"].health
    assert health is not None and (health.path, health.interval, health.timeout) == ("/healthz", 60.0, 2.0)
    assert (health.unhealthy_after, health.healthy_after) == (3, 2)
    api = cfg.behaviours[0]
    assert api.methods == ("GET", "HEAD")
    assert api.ttl is not None and (api.ttl.min, api.ttl.default, api.ttl.max) == (1.0, 7200.0, 31536000.0)
    assert isinstance(api.cache_key.query, QueryExcept) and api.cache_key.query.except_ == ("utm_source",)
    assert (api.forward.headers, api.forward.cookies, api.forward.query) == ("none", ("session",), ("q",))
    assert dict(api.error_pages) == {404: "/404.html"}
    assert api.rewrite is not None and api.rewrite.from_ == "^/api/(?P<rest>.*)$"
    assert api.signed is not None and api.signed.key == ("old", "new") and api.signed.cookies is False
    assert api.cors is not None and api.cors.max_age == 3600.0 and api.cors.allow_methods == ("GET", "HEAD")
    assert cfg.behaviours[1].cache_key.query == "none"
    assert cfg.firewall.allow == (ip_network("192.0.2.7/32"),)
    assert cfg.firewall.countries.allow == ("DE", "NO")  # NO stays Norway, not false
    assert cfg.firewall.rate_limit is not None
    assert (cfg.firewall.rate_limit.per, cfg.firewall.rate_limit.burst) == (1.0, 50)
    assert cfg.geoip is not None and cfg.geoip.database == "/etc/edge/geo.mmdb"


def test_yaml_booleans_are_only_true_and_false() -> None:
    cfg = load(MINIMAL + "server:\n  access_log: off\ncache:\n  collapse: no\n  shield: false\n")
    assert cfg.server.access_log == "off"
    assert cfg.cache.collapse is False


def test_empty_sections_mean_defaults() -> None:
    cfg = load(MINIMAL + "server:\ncache:\nadmin:\n")
    assert cfg.server.listen[0].port == 8080 and cfg.admin is None


def test_behaviors_alias(tmp_path: Path) -> None:
    cfg = load(MINIMAL.replace("behaviours:", "behaviors:"))
    assert cfg.behaviours[0].origin == "app"
    assert "behaviours[].origin" in cfg.source_keys
    direct = EdgeConfig.model_validate(
        {"origins": {"a": {"url": "http://a"}}, "behaviors": [{"path": "*", "origin": "a"}]}
    )
    assert direct.behaviours[0].origin == "a"
    lines = problems(MINIMAL.replace("behaviours:", "behaviors:").replace("origin: app", "origin: apx"))
    assert lines == ["edge.yaml:6:13: behaviors[0].origin: unknown origin 'apx'; did you mean 'app'?"]


def test_direct_validation_runs_cross_checks() -> None:
    with pytest.raises(pydantic.ValidationError, match="behaviours: the last behaviour must have path"):
        EdgeConfig.model_validate(
            {"origins": {"a": {"url": "http://a"}}, "behaviours": [{"path": "/x", "origin": "a"}]}
        )


def test_root_is_resolved_from_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    config_file = tmp_path / "edge.yaml"
    config_file.write_text(
        "origins:\n  site:\n    root: ./site\nbehaviours:\n  - path: '*'\n    origin: site\n"
        "server:\n  access_log: logs/access.log\n"
    )
    cfg = load_config(config_file, env={})
    assert cfg.origins["site"].root == str(tmp_path / "site")
    assert cfg.server.access_log == str(tmp_path / "logs" / "access.log")
    config_file.write_text(config_file.read_text().replace("./site", "./nowhere"))
    with pytest.raises(ConfigError) as caught:
        load_config(config_file, env={})
    assert str(caught.value) == (
        f"{config_file}:3:11: origins.site.root: folder '{tmp_path / 'nowhere'}' does not exist "
        "(relative paths start at the config file's folder)"
    )


def test_reference_config_loads_with_an_empty_env() -> None:
    cfg = load_config(REPO / "config" / "reference.yaml", env={})
    assert [b.path for b in cfg.behaviours] == ["/static/*", "*"]
    assert set(cfg.origins) == {"app", "app-2", "site"}
    assert cfg.origin_groups["app-ha"].members == ("app", "app-2")
    assert cfg.firewall.rules[0].match.header["User-Agent"] == "sqlmap|nikto"
    assert cfg.behaviours[0].rewrite is not None and cfg.behaviours[0].rewrite.to == "/new/\\1"
    assert [w.split(": ", 1)[1] for w in cfg.warnings] == [
        "environment variable EDGEPROXY_ADMIN_TOKEN is not set; ${EDGEPROXY_ADMIN_TOKEN} became ''",
        "environment variable ORIGIN_SECRET is not set; ${ORIGIN_SECRET} became ''",
        "environment variable URL_SIGNING_KEY is not set; ${URL_SIGNING_KEY} became ''",
    ]
    with_env = load_config(REPO / "config" / "reference.yaml", env={"EDGEPROXY_ADMIN_TOKEN": "t"})
    assert with_env.admin is not None and with_env.admin.token == "t"


def test_config_for_origin() -> None:
    cfg = config_for_origin("http://127.0.0.1:9000/prefix")
    assert cfg.origins["origin"].url == "http://127.0.0.1:9000/prefix"
    assert [(b.path, b.origin) for b in cfg.behaviours] == [("*", "origin")]
    assert cfg.server.listen == (ListenAddress(host="0.0.0.0", port=8080),)
    assert cfg.source_file == "<origin>"
    assert report.inactive_keys(cfg) == []
    listening = config_for_origin("https://example.com", listen=["[::1]:8081", ":8082"])
    assert [str(a) for a in listening.server.listen] == ["[::1]:8081", "0.0.0.0:8082"]
    with pytest.raises(ConfigError) as caught:
        config_for_origin("example.com:80", listen="nowhere")
    assert str(caught.value).splitlines() == [
        "<origin>: origins.origin.url: invalid url 'example.com:80': use "
        "http://host[:port][/prefix] or https://…",
        "<origin>: server.listen[0]: invalid listen address 'nowhere': no port (use "
        "host:port, [::]:8080 or :8080)",
    ]


# --------------------------------------------------------------------------------------------- units


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("7d", 604800.0),
        ("1y", 31536000.0),
        ("100ms", 0.1),
        ("1.5h", 5400.0),
        (" 10s ", 10.0),
        ("45", 45.0),
        (0, 0.0),
        (2.5, 2.5),
    ],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "5 minutes",
            "invalid duration '5 minutes' (use e.g. 30s, 5m, 2h, 7d, 1y, 100ms or a number of seconds)",
        ),
        ("5M", "invalid duration '5M' (use e.g. 30s, 5m, 2h, 7d, 1y, 100ms or a number of seconds)"),
        ("-3s", "invalid duration '-3s': must not be negative"),
        (-1, "invalid duration -1: must not be negative"),
        (float("inf"), "invalid duration inf: must be a finite number of seconds"),
        (True, "invalid duration: expected text such as 30s or a number, got true"),
        (None, "invalid duration: expected text such as 30s or a number, got nothing (null)"),
        ("", "invalid duration '' (use e.g. 30s, 5m, 2h, 7d, 1y, 100ms or a number of seconds)"),
        ("9" * 401, f"invalid duration '{'9' * 401}': the number is too long"),
    ],
)
def test_parse_duration_errors(value: object, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(value)  # type: ignore[arg-type]
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512KiB", 524288),
        ("64MiB", 64 * 1024**2),
        ("1GiB", 1024**3),
        ("2TiB", 2 * 1024**4),
        ("10KB", 10_000),
        ("3MB", 3_000_000),
        ("1GB", 10**9),
        ("100B", 100),
        ("1.5KiB", 1536),
        ("42", 42),
        (4096, 4096),
        (4096.0, 4096),
    ],
)
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10 megs", "invalid size '10 megs' (use e.g. 512KiB, 64MiB, 1GiB, 10MB or a number of bytes)"),
        ("1kib", "invalid size '1kib': unit names are case-sensitive; did you mean 'KiB'?"),
        (
            "1Q",
            "invalid size '1Q': unknown unit 'Q' (use e.g. 512KiB, 64MiB, 1GiB, 10MB or a number of bytes)",
        ),
        ("-1KiB", "invalid size '-1KiB': must not be negative"),
        (-5, "invalid size -5: must not be negative"),
        (1.5, "invalid size 1.5: must be a whole number of bytes"),
        (False, "invalid size: expected text such as 64MiB or a number, got false"),
        ([1], "invalid size: expected text such as 64MiB or a number, got a list"),
    ],
)
def test_parse_size_errors(value: object, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_size(value)  # type: ignore[arg-type]
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (30, "30s"),
        (90, "90s"),
        (300, "5m"),
        (86400, "1d"),
        (365 * 86400, "1y"),
        (0.1, "100ms"),
        (1.5, "1500ms"),
        (1e-7, "0.0000001s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0B"), (1024, "1KiB"), (1536, "1536B"), (1000, "1KB"), (256 * 1024**2, "256MiB"), (1024**4, "1TiB")],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


def test_format_rejects_negative() -> None:
    with pytest.raises(ValueError):
        format_duration(-1)
    with pytest.raises(ValueError):
        format_size(-1)


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("0.0.0.0:8080", "0.0.0.0", 8080),
        ("[::]:8080", "::", 8080),
        (":8080", "0.0.0.0", 8080),
        ("8080", "0.0.0.0", 8080),
        ("localhost:0", "localhost", 0),
    ],
)
def test_parse_listen(text: str, host: str, port: int) -> None:
    assert parse_listen(text) == ListenAddress(host=host, port=port)


def test_listen_address_loopback() -> None:
    assert parse_listen("127.0.0.1:1").is_loopback and parse_listen("[::1]:1").is_loopback
    assert parse_listen("localhost:1").is_loopback and not parse_listen(":1").is_loopback


# --------------------------------------------------------------------------------------------- report


def test_behaviour_table() -> None:
    cfg = load(
        """\
        origins:
          app: {url: "http://a"}
        behaviours:
          - path: /static/*
            origin: app
            methods: [GET, HEAD]
            ttl: {min: 0, default: 1d, max: 365d}
            cache_key: {headers: [Accept-Language], cookies: [session]}
          - path: /search
            origin: app
            methods: [GET]
            cache_key: {query: [q, page], sort_query: false}
          - path: /old/*
            redirect: {to: "https://example.com/", status: 308}
            methods: [GET, HEAD, POST]
            cache_key: {query: {except: [utm]}}
          - path: "*"
            origin: app
            methods: [GET]
            cache_key: {query: none}
        """
    )
    assert report.behaviour_table(cfg).splitlines() == [
        "#  path       origin          methods        TTL min/default/max  cache key",
        "-  ---------  --------------  -------------  -------------------  " + "-" * 69,
        "0  /static/*  app             GET,HEAD       0s/1d/1y             "
        "host+path+query(all,sorted)+headers[Accept-Language]+cookies[session]",
        "1  /search    app             GET            origin (RFC 9111)    host+path+query[q,page]",
        "2  /old/*     (redirect 308)  GET,HEAD,POST  origin (RFC 9111)    "
        "host+path+query(all-except[utm],sorted)",
        "3  *          app             GET            origin (RFC 9111)    host+path",
    ]


def test_inactive_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load(
        """\
        server:
          listen: :8080
          workers: 2
        origins:
          api.example.com:
            url: http://a
            headers: {X-A: b}
            health: {path: /h}
        behaviours:
          - path: "*"
            origin: api.example.com
            ttl: {default: 1h}
            cache_key: {query: {except: [a]}}
            forward: {headers: none}
        """
    )
    assert report.inactive_keys(cfg) == []
    monkeypatch.setattr(report, "ACTIVE_KEYS", report.ACTIVE_KEYS - {"behaviours[].forward"})
    assert report.inactive_keys(cfg) == ["behaviours[].forward"]
