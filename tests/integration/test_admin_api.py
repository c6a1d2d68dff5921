"""The admin API over real sockets on 127.0.0.1, driving a real in-memory edge (MemoryStore + BanList).

``LocalAdmin`` below is a complete ``AdminOps`` for one process: what the edge will provide, minus the
shared tier. Nothing is mocked; operations that must fail here fail for real (a raised exception, a wait
that never ends).
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from proxy.admin import AdminError, Invalidation, make_admin_app
from proxy.admin.metrics import CONTENT_TYPE, Family, format_value, merge, render
from proxy.cache.bans import Ban, BanList, target_of_key
from proxy.cache.entry import CacheEntry
from proxy.cache.memory import MemoryStore

TOKEN = "s3cret-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRET_PATH = "/work/main/proxy/secret_module.py"


# --------------------------------------------------------------------------------------- the edge's side


def make_entry(now: float, tags: tuple[str, ...] = (), ttl: float = 300.0) -> CacheEntry:
    return CacheEntry(
        status=200,
        headers=(("content-type", "text/plain"),),
        body=b"cached",
        request_time=now,
        response_time=now,
        initial_age=0.0,
        ttl=ttl,
        tags=tags,
    )


@dataclass
class LocalAdmin:
    """``AdminOps`` over one process's memory tier and ban list; a clock that tests move by hand."""

    memory: MemoryStore = field(default_factory=lambda: MemoryStore(1 << 20, 1 << 16))
    bans: BanList = field(default_factory=BanList)
    clock: float = 1_700_000_000.0
    invalidations: dict[str, Invalidation] = field(default_factory=dict)
    results: dict[str, int] = field(default_factory=lambda: {"hit": 0, "miss": 0, "stale": 0})
    healthy: bool = True
    failure: str | None = None  # "crash": stats() raises; "refuse": reload() refuses; "hang": metrics() hangs
    calls: list[str] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def tick(self, seconds: float = 1.0) -> float:
        self.clock += seconds
        return self.clock

    def store(self, key: str, tags: tuple[str, ...] = ()) -> None:
        """STORE: the origin answered just now."""
        self.memory.set(key, make_entry(self.tick(), tags))

    def lookup(self, key: str) -> str:
        """LOOKUP as the edge will do it: "hit", "stale" (soft ban), "miss" (absent or hard ban)."""
        now = self.tick()
        entry = self.memory.get(key)
        if entry is None:
            result = "miss"
        else:
            ban = self.bans.matches(target_of_key(key), entry.tags, entry.request_time)
            if ban is None:
                result = "hit" if entry.is_fresh(now) else "stale"
            elif ban.soft:
                entry.ttl = min(entry.ttl, entry.age(ban.created))  # stale from the ban on
                result = "stale"
            else:
                self.memory.delete(key)
                result = "miss"
        self.results[result] += 1
        return result

    async def invalidate(self, paths: list[str]) -> Invalidation:
        self.calls.append("invalidate")
        ban = Ban(id=f"I{next(self._ids)}", created=self.tick(), paths=tuple(paths))
        self.bans.add(ban)
        invalidation = Invalidation(ban.id, "Completed", ban.created, ban.paths)
        self.invalidations[ban.id] = invalidation
        return invalidation

    async def get_invalidation(self, invalidation_id: str) -> Invalidation | None:
        self.calls.append("get_invalidation")
        return self.invalidations.get(invalidation_id)

    async def purge(self, tags: list[str], soft: bool) -> dict[str, Any]:
        self.calls.append("purge")
        ban = Ban(id=f"P{next(self._ids)}", created=self.tick(), tags=tuple(tags), soft=soft)
        self.bans.add(ban)
        return {"id": ban.id, "status": "Completed", "tags": list(ban.tags), "soft": soft}

    async def stats(self) -> dict[str, Any]:
        self.calls.append("stats")
        if self.failure == "crash":
            raise RuntimeError(f"boom in {SECRET_PATH}, line 42")
        memory = self.memory.stats()
        looked = memory.hits + memory.misses
        return {
            "entries": memory.entries,
            "bytes": memory.bytes,
            "hit_ratio": memory.hits / looked if looked else None,
            "evictions": memory.evictions,
            "bans": len(self.bans),
            "oldest_ban": self.bans.snapshot()[0].created if len(self.bans) else float("nan"),
        }

    async def metrics(self) -> str:
        self.calls.append("metrics")
        if self.failure == "hang":
            await asyncio.Event().wait()
        memory = self.memory.stats()
        requests = Family("edgeproxy_requests_total", "counter", "Viewer requests by cache result.")
        for result, count in self.results.items():
            requests.set(count, {"result": result})
        latency = Family("edgeproxy_origin_latency_seconds", "summary", "Origin response time.")
        latency.observe(1.5, 3, {"origin": 'odd "name" \\ with\nnewline'})
        return render(
            [
                requests,
                Family("edgeproxy_cache_bytes", "gauge", "Bytes in the memory tier.").set(memory.bytes),
                Family("edgeproxy_cache_evictions_total", "counter", "Evictions.").set(memory.evictions),
                Family("edgeproxy_bans", "gauge", "Bans in force\\here.").set(len(self.bans)),
                latency,
            ]
        )

    async def healthz(self) -> tuple[bool, dict[str, Any]]:
        self.calls.append("healthz")
        return self.healthy, {"memory": "pass", "origins": "pass" if self.healthy else "fail"}

    async def readyz(self) -> tuple[bool, dict[str, Any]]:
        self.calls.append("readyz")
        return self.healthy, {"listeners": "pass" if self.healthy else "fail"}

    async def reload(self) -> dict[str, Any]:
        self.calls.append("reload")
        if self.failure == "refuse":
            raise AdminError("config.yaml:3: behaviours: at least one behaviour is required", 500)
        return {"reloaded": True, "workers": 1}


# --------------------------------------------------------------------------------------- fixtures

Client = Any  # pytest-aiohttp's TestClient
ClientFactory = Callable[..., Any]


@pytest.fixture
def ops() -> LocalAdmin:
    return LocalAdmin()


@pytest.fixture
async def client(aiohttp_client: ClientFactory, ops: LocalAdmin) -> Client:
    """The admin app with a token, on a real 127.0.0.1 socket."""
    return await aiohttp_client(make_admin_app(ops, TOKEN), server_kwargs={"host": "127.0.0.1"})


async def call(
    client: Client, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[aiohttp.ClientResponse, Any]:
    """One request; returns the response and its body (parsed when JSON)."""
    kwargs: dict[str, Any] = {"headers": AUTH if headers is None else headers}
    if body is not None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        kwargs["data"] = io.BytesIO(raw)  # aiohttp warns about large raw bytes bodies
    async with client.request(method, path, **kwargs) as response:
        raw = await response.read()
        if response.content_type == "application/json":
            return response, json.loads(raw)
        return response, raw.decode()


def assert_common_headers(response: aiohttp.ClientResponse) -> None:
    assert response.headers["Server"] == "edgeproxy"
    assert response.headers["Cache-Control"] == "no-store"


# --------------------------------------------------------------------------------------- invalidations


async def test_invalidation_is_created_visible_and_in_force(client: Client, ops: LocalAdmin) -> None:
    ops.store("example.com/index.html")
    ops.store("example.com/index.html?v=2")
    ops.store("example.com/images/a/b.png")
    ops.store("example.com/imagesX.png")
    ops.store("example.com/other.css")
    assert ops.lookup("example.com/index.html") == "hit"

    response, body = await call(client, "POST", "/invalidations", {"paths": ["/index.html", "/images/*"]})
    assert response.status == 201
    assert_common_headers(response)
    assert body["status"] == "Completed"
    assert body["paths"] == ["/index.html", "/images/*"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["created"])
    assert response.headers["Location"] == f"/invalidations/{body['id']}"

    shown, again = await call(client, "GET", response.headers["Location"])
    assert shown.status == 200
    assert again == body

    # The ban is in force for entries stored before it, whatever their query; others are untouched.
    assert [b.paths for b in ops.bans.snapshot()] == [("/index.html", "/images/*")]
    assert ops.lookup("example.com/index.html") == "miss"
    assert ops.lookup("example.com/index.html?v=2") == "miss"
    assert ops.lookup("example.com/images/a/b.png") == "miss"
    assert ops.lookup("example.com/imagesX.png") == "hit"
    assert ops.lookup("example.com/other.css") == "hit"
    # Refetched after the invalidation: served again.
    ops.store("example.com/index.html")
    assert ops.lookup("example.com/index.html") == "hit"


async def test_duplicate_paths_are_sent_once(client: Client, ops: LocalAdmin) -> None:
    response, body = await call(client, "POST", "/invalidations", {"paths": ["/a", "/b", "/a"]})
    assert response.status == 201
    assert body["paths"] == ["/a", "/b"]


async def test_everything_invalidation(client: Client, ops: LocalAdmin) -> None:
    ops.store("a.com/x")
    ops.store("b.com/y/z?q=1")
    response, _ = await call(client, "POST", "/invalidations", {"paths": ["/*"]})
    assert response.status == 201
    assert ops.lookup("a.com/x") == "miss"
    assert ops.lookup("b.com/y/z?q=1") == "miss"


@pytest.mark.parametrize("invalidation_id", ["I999", "nope", "..", "a%2Fb", "x" * 200])
async def test_unknown_invalidation_is_404(client: Client, invalidation_id: str) -> None:
    response, body = await call(client, "GET", f"/invalidations/{invalidation_id}")
    assert response.status == 404
    assert body == {"error": "not found"}


# --------------------------------------------------------------------------------------- purge


async def test_hard_purge_by_tag(client: Client, ops: LocalAdmin) -> None:
    ops.store("shop.com/p/42", tags=("product-42", "all"))
    ops.store("shop.com/p/43", tags=("product-43", "all"))
    response, body = await call(client, "POST", "/purge", {"tags": ["product-42"], "soft": False})
    assert response.status == 200
    assert body["soft"] is False and body["tags"] == ["product-42"]
    (ban,) = ops.bans.snapshot()
    assert ban.tags == ("product-42",) and not ban.soft and ban.id == body["id"]
    assert ops.lookup("shop.com/p/42") == "miss"
    assert ops.memory.peek("shop.com/p/42") is None  # a hard ban lets LOOKUP delete the entry
    assert ops.lookup("shop.com/p/43") == "hit"


async def test_soft_purge_marks_stale_and_keeps_the_entry(client: Client, ops: LocalAdmin) -> None:
    ops.store("shop.com/p/42", tags=("product-42",))
    ops.store("shop.com/p/43", tags=("product-43",))
    response, body = await call(client, "POST", "/purge", {"tags": ["product-42"], "soft": True})
    assert response.status == 200
    assert body["soft"] is True
    (ban,) = ops.bans.snapshot()
    assert ban.soft
    assert ops.lookup("shop.com/p/42") == "stale"
    entry = ops.memory.peek("shop.com/p/42")
    assert entry is not None and not entry.is_fresh(ops.clock)  # kept for stale-if-error / revalidation
    assert ops.lookup("shop.com/p/43") == "hit"


async def test_soft_defaults_to_false(client: Client, ops: LocalAdmin) -> None:
    response, _ = await call(client, "POST", "/purge", {"tags": ["t"]})
    assert response.status == 200
    assert not ops.bans.snapshot()[0].soft


# --------------------------------------------------------------------------------------- authentication

ENDPOINTS = [
    ("POST", "/invalidations", {"paths": ["/a"]}),
    ("GET", "/invalidations/I1", None),
    ("POST", "/purge", {"tags": ["t"]}),
    ("GET", "/stats", None),
    ("GET", "/metrics", None),
    ("POST", "/reload", None),
    ("GET", "/no/such/endpoint", None),  # would be 404
    ("DELETE", "/stats", None),  # would be 405
    ("POST", "/invalidations", b"{not json"),  # would be 400
    ("GET", "/invalidations/", None),
]
BAD_CREDENTIALS = {
    "none": {},
    "wrong token": {"Authorization": "Bearer wrong"},
    "token prefix": {"Authorization": f"Bearer {TOKEN[:-1]}"},
    "token plus": {"Authorization": f"Bearer {TOKEN}x"},
    "empty bearer": {"Authorization": "Bearer "},
    "basic scheme": {"Authorization": f"Basic {TOKEN}"},
    "no scheme": {"Authorization": TOKEN},
    "non-ascii": {"Authorization": "Bearer t\u00f6ken"},
}


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
@pytest.mark.parametrize("credentials", list(BAD_CREDENTIALS))
async def test_every_endpoint_answers_401_without_the_token(
    client: Client, ops: LocalAdmin, method: str, path: str, body: Any, credentials: str
) -> None:
    response, answer = await call(client, method, path, body, headers=BAD_CREDENTIALS[credentials])
    assert response.status == 401
    assert answer == {"error": "unauthorized"}
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Allow" not in response.headers and "Location" not in response.headers
    assert_common_headers(response)
    assert ops.calls == []
    assert len(ops.bans) == 0


async def test_two_authorization_headers_are_refused(client: Client, ops: LocalAdmin) -> None:
    headers = [("Authorization", f"Bearer {TOKEN}"), ("Authorization", f"Bearer {TOKEN}")]
    async with client.get("/stats", headers=headers) as response:
        assert response.status == 401
    assert ops.calls == []


async def test_the_scheme_is_case_insensitive(client: Client) -> None:
    response, _ = await call(client, "GET", "/stats", headers={"Authorization": f"bearer {TOKEN}"})
    assert response.status == 200


async def test_routing_errors_are_json_once_authenticated(client: Client) -> None:
    response, body = await call(client, "GET", "/no/such/endpoint")
    assert response.status == 404
    assert body == {"error": "not found"}
    assert_common_headers(response)
    response, body = await call(client, "DELETE", "/stats")
    assert response.status == 405
    assert body == {"error": "method not allowed"}
    assert "GET" in response.headers["Allow"]


async def test_an_empty_token_leaves_the_api_open(aiohttp_client: ClientFactory, ops: LocalAdmin) -> None:
    client = await aiohttp_client(make_admin_app(ops, ""), server_kwargs={"host": "127.0.0.1"})
    response, body = await call(client, "GET", "/stats", headers={})
    assert response.status == 200
    assert body["entries"] == 0


# --------------------------------------------------------------------------------------- bad requests

BAD_BODIES: list[tuple[str, str, bytes | str | dict[str, Any] | list[Any], str]] = [
    # endpoint, case, body, expected message fragment
    ("/invalidations", "malformed", b"{not json", "malformed JSON"),
    ("/invalidations", "empty body", b"", "malformed JSON"),
    ("/invalidations", "not utf-8", b'{"paths": ["/\xff"]}', "malformed JSON"),
    ("/invalidations", "NaN", b'{"paths": NaN}', "NaN is not allowed"),
    ("/invalidations", "duplicate keys", b'{"paths": ["/a"], "paths": ["/b"]}', "duplicate keys"),
    ("/invalidations", "deep nesting", b"[" * 100_000 + b"]" * 100_000, "malformed JSON"),
    ("/invalidations", "not an object", ["/a"], "must be a JSON object"),
    ("/invalidations", "missing paths", {}, '"paths" is required'),
    ("/invalidations", "unknown field", {"paths": ["/a"], "callerReference": "x"}, "unknown field"),
    ("/invalidations", "paths not a list", {"paths": "/a"}, "must be a list"),
    ("/invalidations", "empty paths", {"paths": []}, "must not be empty"),
    ("/invalidations", "not a string", {"paths": ["/a", 3]}, "paths[1] must be a string"),
    ("/invalidations", "no slash", {"paths": ["index.html"]}, 'paths[0] must start with "/"'),
    ("/invalidations", "inner star", {"paths": ["/a*/b"]}, "only allowed as the last character"),
    ("/invalidations", "space", {"paths": ["/a b"]}, "percent-encode"),
    ("/invalidations", "too long", {"paths": ["/" + "a" * 4096]}, "at most 4096 characters"),
    ("/invalidations", "too many", {"paths": [f"/{i}" for i in range(3001)]}, "at most 3000"),
    ("/purge", "missing tags", {"soft": True}, '"tags" is required'),
    ("/purge", "empty tags", {"tags": []}, "must not be empty"),
    ("/purge", "blank tag", {"tags": [""]}, "tags[0] must not be empty"),
    ("/purge", "tag with space", {"tags": ["a b"]}, "whitespace"),
    ("/purge", "soft not bool", {"tags": ["t"], "soft": "yes"}, '"soft" must be true or false'),
    ("/purge", "soft as int", {"tags": ["t"], "soft": 1}, '"soft" must be true or false'),
    ("/purge", "unknown field", {"tags": ["t"], "hard": True}, "unknown field"),
]


@pytest.mark.parametrize(
    ("path", "body", "fragment"),
    [pytest.param(path, body, fragment, id=f"{path}-{case}") for path, case, body, fragment in BAD_BODIES],
)
async def test_bad_bodies_are_400(
    client: Client, ops: LocalAdmin, path: str, body: Any, fragment: str
) -> None:
    response, answer = await call(client, "POST", path, body)
    assert response.status == 400
    assert set(answer) == {"error"}
    assert fragment in answer["error"]
    assert ops.calls == []
    assert len(ops.bans) == 0


async def test_the_largest_valid_invalidation_is_accepted(client: Client, ops: LocalAdmin) -> None:
    paths = [f"/{i:04d}/" + "a" * 4090 for i in range(3000)]
    response, body = await call(client, "POST", "/invalidations", {"paths": paths})
    assert response.status == 201
    assert len(body["paths"]) == 3000


async def test_bodies_are_bounded(aiohttp_client: ClientFactory, ops: LocalAdmin) -> None:
    app = make_admin_app(ops, TOKEN, max_body_bytes=1024)
    client = await aiohttp_client(app, server_kwargs={"host": "127.0.0.1"})
    response, body = await call(client, "POST", "/invalidations", {"paths": ["/" + "a" * 2000]})
    assert response.status == 413
    assert body == {"error": "request body too large"}
    assert ops.calls == []


# --------------------------------------------------------------------------------------- errors, health


def assert_no_internals(text: str) -> None:
    for leak in ("Traceback", "RuntimeError", "boom", SECRET_PATH, ".py", "line 42"):
        assert leak not in text


async def test_an_unexpected_failure_is_500_without_internals(
    client: Client, ops: LocalAdmin, caplog: pytest.LogCaptureFixture
) -> None:
    ops.failure = "crash"
    async with client.get("/stats", headers=AUTH) as response:
        text = await response.text()
    assert response.status == 500
    assert json.loads(text) == {"error": "internal error"}
    assert_common_headers(response)
    assert_no_internals(text + "".join(f"{k}: {v}" for k, v in response.headers.items()))
    assert "boom" in caplog.text  # the operator finds it in the log instead


async def test_reload(client: Client, ops: LocalAdmin) -> None:
    response, body = await call(client, "POST", "/reload")
    assert response.status == 200
    assert body == {"reloaded": True, "workers": 1}
    ops.failure = "refuse"
    response, body = await call(client, "POST", "/reload")
    assert response.status == 500
    assert body == {"error": "config.yaml:3: behaviours: at least one behaviour is required"}


async def test_healthz(client: Client, ops: LocalAdmin) -> None:
    response, body = await call(client, "GET", "/healthz")
    assert response.status == 200
    assert body == {"status": "pass", "checks": {"memory": "pass", "origins": "pass"}}
    ops.healthy = False
    response, body = await call(client, "GET", "/healthz")
    assert response.status == 503
    assert body["status"] == "fail"


@pytest.mark.parametrize("credentials", list(BAD_CREDENTIALS))
async def test_probes_answer_without_the_token_and_reveal_nothing_else(
    client: Client, ops: LocalAdmin, credentials: str
) -> None:
    headers = BAD_CREDENTIALS[credentials]
    response, body = await call(client, "GET", "/healthz", headers=headers)
    assert (response.status, body) == (200, {"status": "pass"})
    assert ops.calls == []  # liveness is the API answering: nothing of the edge is read
    response, body = await call(client, "GET", "/readyz", headers=headers)
    assert (response.status, body) == (200, {"status": "pass"})
    ops.healthy = False
    response, body = await call(client, "GET", "/readyz", headers=headers)
    assert (response.status, body) == (503, {"status": "fail"})
    assert_common_headers(response)
    async with client.head("/readyz", headers=headers) as head:
        assert head.status == 503
    # Only GET/HEAD on exactly those paths: anything else still needs the token.
    for method, path in (("POST", "/healthz"), ("GET", "/healthz/"), ("GET", "/readyz/x")):
        response, body = await call(client, method, path, headers=headers)
        assert (response.status, body) == (401, {"error": "unauthorized"})


async def test_probes_with_the_token_show_their_checks(client: Client, ops: LocalAdmin) -> None:
    response, body = await call(client, "GET", "/readyz")
    assert (response.status, body) == (200, {"status": "pass", "checks": {"listeners": "pass"}})
    response, body = await call(client, "GET", "/healthz")
    assert body["checks"] == {"memory": "pass", "origins": "pass"}


async def test_stats_are_strict_json(client: Client, ops: LocalAdmin) -> None:
    ops.store("a.com/x")
    ops.lookup("a.com/x")
    ops.lookup("a.com/y")
    async with client.get("/stats", headers=AUTH) as response:
        text = await response.text()
    assert response.status == 200
    body = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in JSON"))
    assert body["entries"] == 1
    assert body["hit_ratio"] == 0.5
    assert body["oldest_ban"] is None  # NaN became null


async def test_a_hanging_operation_is_cut_off(aiohttp_client: ClientFactory, ops: LocalAdmin) -> None:
    ops.failure = "hang"
    app = make_admin_app(ops, TOKEN, operation_timeout=0.05)
    client = await aiohttp_client(app, server_kwargs={"host": "127.0.0.1"})
    response, body = await call(client, "GET", "/metrics")
    assert response.status == 504
    assert "timed out" in body["error"]


# --------------------------------------------------------------------------------------- metrics

_LABEL_VALUE = r'"(?:[^"\\\n]|\\[\\"n])*"'
_LABELS = rf"\{{[a-zA-Z_][a-zA-Z0-9_]*={_LABEL_VALUE}(?:,[a-zA-Z_][a-zA-Z0-9_]*={_LABEL_VALUE})*\}}"
_VALUE = r"(?:NaN|[+-]Inf|[-+]?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)"
_SAMPLE_RE = re.compile(rf"(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:{_LABELS})? {_VALUE}")
_HELP_RE = re.compile(r"# HELP (?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*) (?:[^\\\n]|\\[\\n])*")
_TYPE_RE = re.compile(r"# TYPE (?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*) (?P<kind>counter|gauge|summary|untyped)")


def check_exposition(text: str) -> dict[str, str]:
    """Check Prometheus text format 0.0.4 line by line; returns the declared families and their kinds."""
    assert text.endswith("\n")
    kinds: dict[str, str] = {}
    helped: set[str] = set()
    for line in text[:-1].split("\n"):
        if match := _HELP_RE.fullmatch(line):
            assert match["name"] not in helped, f"second HELP: {line}"
            helped.add(match["name"])
        elif match := _TYPE_RE.fullmatch(line):
            assert match["name"] not in kinds, f"second TYPE: {line}"
            kinds[match["name"]] = match["kind"]
        else:
            match = _SAMPLE_RE.fullmatch(line)
            assert match, f"not a Prometheus sample line: {line!r}"
            name = match["name"]
            family = re.sub(r"_(sum|count)$", "", name) if name not in kinds else name
            assert family in kinds, f"sample before its TYPE: {line}"
            if kinds[family] == "summary":
                assert name != family
    assert helped == set(kinds)
    return kinds


async def test_metrics_endpoint_is_prometheus_text(client: Client, ops: LocalAdmin) -> None:
    ops.store("a.com/x")
    ops.lookup("a.com/x")
    async with client.get("/metrics", headers=AUTH) as response:
        text = await response.text()
    assert response.status == 200
    assert response.headers["Content-Type"] == CONTENT_TYPE
    assert_common_headers(response)
    kinds = check_exposition(text)
    assert kinds["edgeproxy_requests_total"] == "counter"
    assert kinds["edgeproxy_origin_latency_seconds"] == "summary"
    assert 'edgeproxy_requests_total{result="hit"} 1\n' in text
    assert "edgeproxy_bans 0\n" in text


# The text format itself (pure; no server needed).


def test_render_writes_help_type_and_samples() -> None:
    text = render(
        [
            Family("edgeproxy_requests_total", "counter", "Viewer requests.")
            .set(3, {"result": "hit"})
            .set(1, {"result": "miss"}),
            Family("edgeproxy_origin_latency_seconds", "summary", "Origin latency.").observe(
                0.25, 2, {"origin": "app"}
            ),
            Family("edgeproxy_up", "gauge", "Whether the edge serves.").set(1),
        ]
    )
    assert text == (
        "# HELP edgeproxy_requests_total Viewer requests.\n"
        "# TYPE edgeproxy_requests_total counter\n"
        'edgeproxy_requests_total{result="hit"} 3\n'
        'edgeproxy_requests_total{result="miss"} 1\n'
        "# HELP edgeproxy_origin_latency_seconds Origin latency.\n"
        "# TYPE edgeproxy_origin_latency_seconds summary\n"
        'edgeproxy_origin_latency_seconds_sum{origin="app"} 0.25\n'
        'edgeproxy_origin_latency_seconds_count{origin="app"} 2\n'
        "# HELP edgeproxy_up Whether the edge serves.\n"
        "# TYPE edgeproxy_up gauge\n"
        "edgeproxy_up 1\n"
    )
    check_exposition(text)


def test_escaping_and_label_order() -> None:
    family = Family("x", "gauge", "back\\slash and\nnewline").set(1, {"b": 'q"uote', "a": "back\\slash\nnl"})
    assert family.lines() == [
        "# HELP x back\\\\slash and\\nnewline",
        "# TYPE x gauge",
        'x{a="back\\\\slash\\nnl",b="q\\"uote"} 1',
    ]
    check_exposition(render([family]))


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0"), (7, "7"), (2.0, "2"), (0.5, "0.5"), (1e20, "1e+20"), (float("inf"), "+Inf"),
     (float("-inf"), "-Inf"), (float("nan"), "NaN"), (-3.25, "-3.25"), (True, "1")],
)  # fmt: skip
def test_values(value: float, text: str) -> None:
    assert format_value(value) == text
    assert re.fullmatch(_VALUE, text)


def test_invalid_names_and_misuse_are_refused() -> None:
    with pytest.raises(ValueError):
        Family("1bad", "counter", "")
    with pytest.raises(ValueError):
        Family("bad-name", "gauge", "")
    with pytest.raises(ValueError):
        Family("x", "gauge", "").set(1, {"__reserved": "v"})
    with pytest.raises(ValueError):
        Family("x", "gauge", "").set(1, {"bad-label": "v"})
    with pytest.raises(ValueError):
        Family("x", "summary", "").set(1)
    with pytest.raises(ValueError):
        Family("x", "counter", "").observe(1, 1)
    with pytest.raises(ValueError):
        render([Family("x", "gauge", ""), Family("x", "gauge", "")])
    with pytest.raises(ValueError):
        render([Family("x", "summary", ""), Family("x_count", "gauge", "")])


def test_render_of_nothing_is_empty() -> None:
    assert render([]) == ""


def test_merge_adds_up_workers() -> None:
    def worker(hits: int, latency: float) -> list[Family]:
        return [
            Family("r_total", "counter", "R.").set(hits, {"result": "hit"}).set(1, {"result": "miss"}),
            Family("lat", "summary", "L.").observe(latency, 1),
        ]

    merged = render(merge([worker(2, 0.5), worker(3, 0.25)]))
    assert 'r_total{result="hit"} 5\n' in merged
    assert 'r_total{result="miss"} 2\n' in merged
    assert "lat_sum 0.75\nlat_count 2\n" in merged
    with pytest.raises(ValueError):
        merge([[Family("m", "gauge", "")], [Family("m", "counter", "")]])


def test_invalidation_json() -> None:
    invalidation = Invalidation("I1", "InProgress", 0.25, ("/a", "/b*"))
    assert invalidation.to_json() == {
        "id": "I1",
        "status": "InProgress",
        "created": "1970-01-01T00:00:00.250Z",
        "paths": ["/a", "/b*"],
    }


async def test_the_app_runs_on_an_app_runner_and_tcp_site() -> None:
    """How the edge will run it: ``web.AppRunner`` + ``web.TCPSite`` on ``admin.listen``."""
    runner = web.AppRunner(make_admin_app(LocalAdmin(), TOKEN))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        host, port = runner.addresses[0][:2]
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://{host}:{port}/healthz", headers=AUTH) as response,
        ):
            assert response.status == 200
            assert response.headers["Server"] == "edgeproxy"
    finally:
        await runner.cleanup()
