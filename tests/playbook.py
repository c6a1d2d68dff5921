"""Socketless pipeline tests (in the spirit of mitmproxy's Playbook): the real ``Pipeline`` and its phases,
driven with scripted origins, an in-memory clock, an in-memory lower tier and a fake cluster lock.

No socket is opened: a test builds a ``Playbook`` from a config text, scripts what each origin answers
(``ScriptedOrigin``), sends requests with ``get`` and reads the context, the response and what the origins
were asked. Time is the ``Clock``'s, moved by ``advance``; a test that needs two requests in flight holds an
origin's answers with its ``gate``. The real-socket tests in ``tests/integration`` stay the reference for the
fronts, the origin client and the shared tiers; these pin down the phases themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from multidict import CIMultiDict

from proxy.cache.bans import BanList
from proxy.cache.memory import MemoryStore
from proxy.cache.storage import MemoryStorage
from proxy.cache.tiers import LowerTier
from proxy.messages import EdgeRequest
from proxy.observability.access_log import AccessLog
from proxy.origin.base import OriginError, OriginRequest, OriginResponse
from proxy.pipeline.context import RequestContext
from proxy.pipeline.pipeline import Pipeline
from proxy.pipeline.runtime import build_runtime
from proxy.settings import OriginConfig, parse_config

START = 1_800_000_000.0  # the clock's first reading (epoch seconds)


class Clock:
    """The wall and monotonic clocks of one test: they move only when the test says so."""

    def __init__(self, start: float = START) -> None:
        self.now = start
        self.mono = 1000.0

    def __call__(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.mono += seconds


@dataclass
class Reply:
    """What a scripted origin answers: status, fields and a body (in ``chunks`` when given, each one a
    chunk of the stream; ``fail_after`` chunks then an ``OriginError`` mid-body)."""

    status: int = 200
    headers: Mapping[str, str] | Sequence[tuple[str, str]] = field(default_factory=dict)
    body: bytes = b""
    chunks: Sequence[bytes] | None = None
    known_length: bool = True
    fail_after: int | None = None


Script = Callable[[OriginRequest], Reply | OriginError]


class ScriptedOrigin:
    """An ``Origin`` answering from a script: a function of the request (or one ``Reply`` for every
    request). ``requests`` records what it was asked; ``gate``, when set, holds each answer until opened;
    ``asked`` is set at each request (a test waits on it rather than sleeping)."""

    def __init__(self, name: str, script: Script | Reply) -> None:
        self.name = name
        self.script: Script = script if callable(script) else (lambda _request: script)
        self.requests: list[OriginRequest] = []
        self.gate: asyncio.Event | None = None
        self.asked = asyncio.Event()
        self.released = 0

    async def fetch(self, request: OriginRequest) -> OriginResponse:
        self.requests.append(request)
        self.asked.set()
        if self.gate is not None:
            await self.gate.wait()
        reply = self.script(request)
        if isinstance(reply, OriginError):
            raise reply
        chunks = list(reply.chunks) if reply.chunks is not None else ([reply.body] if reply.body else [])
        size = sum(len(c) for c in chunks)
        headers = CIMultiDict(reply.headers.items() if isinstance(reply.headers, Mapping) else reply.headers)
        if reply.known_length and "Content-Length" not in headers:
            headers["Content-Length"] = str(size)

        async def body() -> AsyncIterator[bytes]:
            for index, chunk in enumerate(chunks):
                if reply.fail_after is not None and index >= reply.fail_after:
                    raise OriginError("the origin closed mid-body")
                yield chunk

        async def release() -> None:
            self.released += 1

        return OriginResponse(
            status=reply.status,
            headers=headers,
            body=body(),
            content_length=size if reply.known_length else None,
            release=release,
        )

    async def close(self) -> None:
        return None


class FakeLockService:
    """The cluster lock (``LockService``) of several edges, in memory: what Redis's ``SET NX`` gives."""

    def __init__(self) -> None:
        self.held: set[str] = set()
        self.available = True
        self.acquired = 0

    async def acquire(self, key: str, ttl: float) -> bool | None:
        if not self.available:
            return None
        if key in self.held:
            return False
        self.held.add(key)
        self.acquired += 1
        return True

    async def holds(self, key: str) -> bool | None:
        return key in self.held

    async def release(self, key: str) -> None:
        self.held.discard(key)


@dataclass
class Exchange:
    """One request's outcome: its context, the response head and the body as the viewer reads it."""

    ctx: RequestContext
    status: int
    headers: CIMultiDict[str]
    body: bytes
    completed: bool = True  # False: the body was cut (the origin failed mid-body)

    @property
    def cache_status(self) -> str:
        return self.headers.get("Cache-Status", "")


class Playbook:
    """One edge's pipeline over scripted origins. ``lower`` adds a lower cache tier (an in-memory
    ``Storage``, which several playbooks may share as a cluster shares Redis, labelled "shared") or is the
    whole list of lower tiers in lookup order (a disk tier, then a shared one…); ``locks`` turns the shield
    on with that fake cluster lock."""

    def __init__(
        self,
        config: str,
        origins: Mapping[str, Script | Reply],
        *,
        clock: Clock | None = None,
        lower: MemoryStorage | Sequence[LowerTier] | None = None,
        locks: FakeLockService | None = None,
        bans: BanList | None = None,
        name: str = "edge-1",
        memory_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.clock = clock or Clock()
        self.config = parse_config(config, "<playbook>", env={})
        self.origins = {name: ScriptedOrigin(name, script) for name, script in origins.items()}

        def origin_factory(origin_name: str, _config: OriginConfig) -> ScriptedOrigin:
            return self.origins[origin_name]

        runtime = build_runtime(self.config, origin_factory=origin_factory)
        self.memory = MemoryStore(memory_bytes, memory_bytes // 4)
        self.pipeline = Pipeline(
            runtime,
            self.memory,
            name=name,
            access_log=AccessLog("off"),
            lower=[LowerTier("shared", lower, memory_bytes)]
            if isinstance(lower, MemoryStorage)
            else list(lower or ()),
            collapse=self.config.cache.collapse,
            show_key=self.config.cache.status_key,
            bans=bans,
            coordinator=locks,
            clock=self.clock,
            monotonic=self.clock.monotonic,
        )

    async def get(
        self, path: str, headers: Mapping[str, str] | None = None, *, method: str = "GET", query: str = ""
    ) -> Exchange:
        """Send one request through ``Pipeline.handle``, read the whole body, and run LOG."""
        fields = CIMultiDict({"Host": "www.example.test"})
        fields.update(headers or {})
        request = EdgeRequest(
            method=method,
            path=path,
            query=query,
            headers=fields,
            client_ip="192.0.2.1",
            host="www.example.test",
            scheme="http",
        )
        ctx, response = await self.pipeline.handle(request)
        completed = True
        if response.stream is not None:
            parts: list[bytes] = []
            try:
                async for chunk in response.stream:
                    parts.append(bytes(chunk))
            except OriginError:
                completed = False  # a front aborts the viewer's connection here
            body = b"".join(parts)
        elif isinstance(response.body, list):
            body = b"".join(bytes(p) for p in response.body)
        else:
            body = bytes(response.body or b"")
        await response.finish(completed)
        self.pipeline.finish(ctx, response.status, len(body), completed)
        headers_out = CIMultiDict(response.headers)
        if response.head:
            # The hit fast path sends the pre-encoded head: read it back into fields.
            for line in b"".join(response.head).decode("latin-1").split("\r\n"):
                if line:
                    name, _, value = line.partition(":")
                    headers_out.add(name, value.strip())
        if response.no_body:
            body = b""
        return Exchange(ctx, response.status, headers_out, body, completed)

    async def settled(self) -> None:
        """Wait until the pipeline's background work (refreshes, fills, lower-tier writes) is done."""
        background = self.pipeline.parts.background
        for _ in range(100_000):
            if not len(background):
                return
            await asyncio.sleep(0)
        raise AssertionError(f"background work still running: {len(background)} tasks")

    async def close(self) -> None:
        await self.pipeline.close()
