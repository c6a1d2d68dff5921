"""The disk tier with real edge processes, a real aiohttp origin and real files: kill -9 and restart, damaged
files, two workers on one folder, invalidations across a restart, a 50 MiB object, an unusable folder, and
what /stats, /metrics and ``edgeproxy check`` say. Waits are on conditions, bounded by ``asyncio.timeout``."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.redis_server import RedisServer
from tests.server_process import ServerProcess

REPO = Path(__file__).resolve().parents[2]
TOKEN = "disk-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

CONFIG = """
server: {{listen: "127.0.0.1:{port}", name: {name}, workers: {workers}, access_log: "off"}}
admin: {{listen: "127.0.0.1:{admin_port}", token: {token}}}
cache:
  memory: {{max_bytes: {memory_bytes}, max_object_bytes: {memory_object}}}
  disk: {{path: "{disk}", max_bytes: {disk_bytes}, max_object_bytes: {disk_object}}}
{shared}
origins: {{app: {{url: "http://127.0.0.1:{origin_port}"}}}}
behaviours: [{{path: "*", origin: app}}]
"""


def _port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class EdgeProcess(ServerProcess):
    """``edgeproxy serve`` as a real process on a free port, with its admin API on another one."""

    program = "edgeproxy"

    def __init__(self, workdir: Path, origin_port: int, **settings: object) -> None:
        super().__init__(workdir, binary=sys.executable)
        from tests.server_process import free_port

        self.admin_port = free_port()
        self.settings: dict[str, object] = {
            "name": "disk-edge",
            "workers": 1,
            "memory_bytes": "64MiB",
            "memory_object": "16MiB",
            "disk": str(workdir / "cache"),
            "disk_bytes": "256MiB",
            "disk_object": "64MiB",
            "shared": "",
            "origin_port": origin_port,
            "token": TOKEN,
        }
        self.settings.update(settings)

    def _command(self) -> list[str]:
        config = self.workdir / "edge.yaml"
        config.write_text(CONFIG.format(port=self.port, admin_port=self.admin_port, **self.settings))
        return [self.binary, "-m", "proxy", "serve", "--config", str(config)]

    def _answers(self, pid: int) -> bool:
        if self.settings["workers"] != 1 and "workers running" not in self.log_text:
            return False  # the supervisor handles SIGTERM only from then on
        return _port_answers(self.port) and _port_answers(self.admin_port)

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"


class Origin:
    """An aiohttp origin: ``/size/<n>/<anything>`` answers n bytes, cacheable for 10 minutes."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests[request.path] += 1
        parts = request.path.split("/")
        size = int(parts[2]) if len(parts) > 2 and parts[1] == "size" else 5
        headers = {"Cache-Control": "max-age=600", "Content-Type": "application/octet-stream"}
        if size <= 1 << 20:
            return web.Response(
                body=(request.path.encode() * (size // len(request.path) + 1))[:size], headers=headers
            )
        response = web.StreamResponse(headers=headers)
        response.content_length = size
        await response.prepare(request)
        chunk = b"z" * (1 << 20)
        for _ in range(size // len(chunk)):
            await response.write(chunk)
        await response.write(b"z" * (size % len(chunk)))
        return response


@pytest.fixture
async def origin() -> AsyncIterator[tuple[Origin, int]]:
    handler = Origin()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    assert server.port is not None
    yield handler, server.port
    await server.close()


@contextlib.asynccontextmanager
async def edge(tmp_path: Path, origin_port: int, **settings: object) -> AsyncIterator[EdgeProcess]:
    """An edge process, stopped at the end in a thread: the origin runs in this loop, and a stopping edge
    may still talk to it."""
    process = EdgeProcess(tmp_path / "edge", origin_port, **settings)
    try:
        yield process
    finally:
        await asyncio.to_thread(process.stop)


async def start(process: EdgeProcess, restart: bool = False) -> None:
    """Start (or restart) without blocking the loop the origin runs in."""
    await asyncio.to_thread(process.restart if restart else process.start)


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, bytes, str]:
    async with session.get(url) as response:
        return response.status, await response.read(), response.headers.get("Cache-Status", "")


def entry_files(root: Path) -> list[Path]:
    return [p for p in (root / "v1").rglob("*") if p.is_file()] if (root / "v1").exists() else []


def files_bytes(root: Path) -> int:
    """The bytes of the entry files under ``root`` now: the evictor may remove one between listing and
    reading its size (that one counts nothing)."""
    total = 0
    for path in entry_files(root):
        with contextlib.suppress(FileNotFoundError):
            total += path.stat().st_size
    return total


async def wait_for_files(root: Path, count: int) -> list[Path]:
    async with asyncio.timeout(20):
        while len(found := entry_files(root)) < count:
            await asyncio.sleep(0.02)
    return found


async def stats(session: aiohttp.ClientSession, process: EdgeProcess) -> dict[str, object]:
    async with session.get(process.admin + "/stats", headers=AUTH) as response:
        assert response.status == 200
        data: dict[str, object] = await response.json()
        return data


# ---------------------------------------------------------------- survives restarts


async def test_an_entry_is_a_disk_hit_after_kill_9_and_restart(
    tmp_path: Path, origin: tuple[Origin, int]
) -> None:
    handler, port = origin
    async with edge(tmp_path, port) as process:
        await start(process)
        async with aiohttp.ClientSession() as session:
            status, body, cache_status = await get(session, process.url + "/size/100000/a")
            assert status == 200 and len(body) == 100000 and "fwd=" in cache_status
            await wait_for_files(tmp_path / "edge" / "cache", 1)
            await asyncio.to_thread(process.kill)
            await start(process, restart=True)
            status, again, cache_status = await get(session, process.url + "/size/100000/a")
            assert (status, again) == (200, body)
            assert "hit" in cache_status and "detail=disk" in cache_status, cache_status
            assert handler.requests["/size/100000/a"] == 1  # the origin was not contacted again
            disk = (await stats(session, process))["disk"]
            assert isinstance(disk, dict) and disk["hits"] == 1
            async with session.get(process.admin + "/metrics", headers=AUTH) as response:
                text = await response.text()
            assert 'edgeproxy_cache_bytes{tier="disk"}' in text and "edgeproxy_disk_errors_total" in text


async def test_a_damaged_file_is_a_miss_removed_and_refetched(
    tmp_path: Path, origin: tuple[Origin, int]
) -> None:
    handler, port = origin
    root = tmp_path / "edge" / "cache"
    async with edge(tmp_path, port) as process:
        await start(process)
        async with aiohttp.ClientSession() as session:
            for name in ("flip", "cut"):
                await get(session, process.url + f"/size/5000/{name}")
            files = await wait_for_files(root, 2)
            await asyncio.to_thread(process.kill)
            for path in files:  # which file is which does not matter: both are damaged, differently
                data = path.read_bytes()
                if path == files[0]:
                    path.write_bytes(data[:-100] + bytes([data[-100] ^ 0x04]) + data[-99:])
                else:
                    path.write_bytes(data[: len(data) // 2])
            await start(process, restart=True)
            for name in ("flip", "cut"):
                status, body, cache_status = await get(session, process.url + f"/size/5000/{name}")
                assert status == 200 and len(body) == 5000 and "fwd=" in cache_status
                assert handler.requests[f"/size/5000/{name}"] == 2
            disk = (await stats(session, process))["disk"]
            assert isinstance(disk, dict) and disk["corrupt"] == 2
        assert "removed unusable entry file" in process.log_text


async def test_an_invalidation_before_a_restart_is_not_undone_by_the_disk(
    tmp_path: Path, origin: tuple[Origin, int]
) -> None:
    handler, port = origin
    async with edge(tmp_path, port) as process:
        await start(process)
        async with aiohttp.ClientSession() as session:
            await get(session, process.url + "/size/10/a")
            await get(session, process.url + "/size/10/b")
            await wait_for_files(tmp_path / "edge" / "cache", 2)
            async with session.post(
                process.admin + "/invalidations", json={"paths": ["/size/10/a"]}, headers=AUTH
            ) as response:
                assert response.status == 201
            await asyncio.to_thread(
                process.kill
            )  # the ban was in memory only, but also in the ban log next to the disk
            await start(process, restart=True)
            assert "fwd=" in (await get(session, process.url + "/size/10/a"))[2]
            assert "detail=disk" in (await get(session, process.url + "/size/10/b"))[2]
            assert handler.requests["/size/10/a"] == 2 and handler.requests["/size/10/b"] == 1


async def test_an_invalidation_made_while_a_node_was_down_is_honoured_after_its_restart(
    tmp_path: Path, origin: tuple[Origin, int], redis_server: RedisServer
) -> None:
    handler, port = origin
    shared = f'  shared: {{url: "{redis_server.url}"}}'
    async with (
        edge(tmp_path / "a", port, shared=shared, name="node-a") as node_a,
        edge(tmp_path / "b", port, shared=shared, name="node-b", disk=str(tmp_path / "b-cache")) as node_b,
    ):
        await asyncio.gather(start(node_a), start(node_b))
        async with aiohttp.ClientSession() as session:
            await get(session, node_a.url + "/size/10/a")
            await wait_for_files(tmp_path / "a" / "edge" / "cache", 1)
            await asyncio.to_thread(node_a.kill)
            async with session.post(
                node_b.admin + "/invalidations", json={"paths": ["/size/10/a"]}, headers=AUTH
            ) as response:
                assert response.status == 201, await response.text()
            await start(node_a, restart=True)
            status, _, cache_status = await get(session, node_a.url + "/size/10/a")
            assert status == 200 and "fwd=" in cache_status, cache_status
            assert handler.requests["/size/10/a"] == 2


# ---------------------------------------------------------------- workers share one folder


async def test_two_workers_write_the_same_keys_into_one_folder(
    tmp_path: Path, origin: tuple[Origin, int]
) -> None:
    _, port = origin
    root = tmp_path / "edge" / "cache"
    async with edge(tmp_path, port, workers=2) as process:
        await start(process)
        # Fresh connections, many at once, for the same few keys: both workers miss and write them.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
            results = await asyncio.gather(
                *(get(session, process.url + f"/size/200000/k{i % 3}") for i in range(60))
            )
            assert {r[0] for r in results} == {200}
            await wait_for_files(root, 3)
            async with asyncio.timeout(20):  # the write-throughs still running land
                while any((root.parent / "cache" / "tmp").iterdir()):
                    await asyncio.sleep(0.02)
            await asyncio.to_thread(
                process.stop
            )  # SIGTERM: the supervisor stops its workers (SIGKILL would orphan them)
        assert len(entry_files(root)) == 3
        process.settings["workers"] = 1
        await start(process, restart=True)
        async with aiohttp.ClientSession() as session:
            for i in range(3):
                status, body, cache_status = await get(session, process.url + f"/size/200000/k{i}")
                assert status == 200 and len(body) == 200000 and "detail=disk" in cache_status
            disk = (await stats(session, process))["disk"]
            assert isinstance(disk, dict) and disk["corrupt"] == 0


# ---------------------------------------------------------------- large objects, bounds, failures


def _kib(status: str, field: str) -> int:
    for line in status.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


async def test_a_50_mib_object_from_disk_keeps_rss_bounded(
    tmp_path: Path, origin: tuple[Origin, int]
) -> None:
    """Whole-body reads: the bound is a few times max_object_bytes (64 MiB), not streaming from the file."""
    handler, port = origin
    size = 50 * 1024 * 1024
    async with edge(tmp_path, port, memory_object="1MiB", memory_bytes="8MiB") as process:
        await start(process)
        async with aiohttp.ClientSession() as session:
            status, body, _ = await get(session, process.url + f"/size/{size}/big")
            assert status == 200 and len(body) == size
            del body
            await wait_for_files(tmp_path / "edge" / "cache", 1)
            await asyncio.to_thread(process.kill)
            await start(process, restart=True)
            before = _kib(Path(f"/proc/{process.pid}/status").read_text(), "VmRSS")
            for _ in range(2):
                async with session.get(process.url + f"/size/{size}/big") as response:
                    assert "detail=disk" in response.headers["Cache-Status"]
                    received = 0
                    async for chunk in response.content.iter_chunked(1 << 20):
                        received += len(chunk)
                assert received == size
            peak = _kib(Path(f"/proc/{process.pid}/status").read_text(), "VmHWM")
        assert handler.requests[f"/size/{size}/big"] == 1
        growth_mib = (peak - before) / 1024
        print(f"RSS growth serving 50 MiB from disk twice: {growth_mib:.0f} MiB")
        assert growth_mib < 3 * 64, growth_mib


async def test_eviction_keeps_the_folder_within_max_bytes(tmp_path: Path, origin: tuple[Origin, int]) -> None:
    _, port = origin
    root = tmp_path / "edge" / "cache"
    async with edge(
        tmp_path, port, disk_bytes="2MiB", disk_object="1MiB", memory_bytes="1MiB", memory_object="64KiB"
    ) as process:
        await start(process)
        async with aiohttp.ClientSession() as session:
            for i in range(40):
                assert (await get(session, process.url + f"/size/100000/e{i}"))[0] == 200
            async with asyncio.timeout(30):
                while len(entry_files(root)) < 10 or files_bytes(root) > 2 << 20:
                    await asyncio.sleep(0.05)
            disk = (await stats(session, process))["disk"]
            assert isinstance(disk, dict) and disk["evictions"] > 0


async def test_an_unwritable_folder_serves_from_memory_with_one_log_line(
    tmp_path: Path, origin: tuple[Origin, int]
) -> None:
    handler, port = origin
    (tmp_path / "a-file").write_text("a file where the folder should be")
    async with edge(tmp_path, port, disk=str(tmp_path / "a-file" / "cache")) as process:
        await start(process)
        async with aiohttp.ClientSession() as session:
            for _ in range(3):
                for name in ("x", "y"):
                    status, body, _ = await get(session, process.url + f"/size/100/{name}")
                    assert status == 200 and len(body) == 100
            assert handler.requests["/size/100/x"] == 1  # memory hits after the first
            disk = (await stats(session, process))["disk"]
            assert isinstance(disk, dict) and disk["writable"] == 0
    assert process.log_text.count("disk tier: cannot write") == 1


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs (a full disk); needs root and mount rights."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if result.returncode != 0:
        # Without mount rights (a container without CAP_SYS_ADMIN) the full disk cannot be made; the
        # unwritable-folder test still checks the same degradation to memory only.
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


async def test_a_full_disk_serves_from_memory_without_errors(
    tmp_path: Path, origin: tuple[Origin, int], tiny_tmpfs: Path
) -> None:
    handler, port = origin
    async with edge(
        tmp_path, port, disk=str(tiny_tmpfs / "cache"), disk_bytes="8MiB", disk_object="2MiB"
    ) as process:
        await start(process)
        async with aiohttp.ClientSession() as session:
            for i in range(6):  # 6 x 300 KB into 512 KiB
                for _ in range(2):
                    status, body, _ = await get(session, process.url + f"/size/300000/f{i}")
                    assert status == 200 and len(body) == 300000
            async with asyncio.timeout(20):
                while (disk := (await stats(session, process))["disk"]) and disk["writable"]:  # type: ignore[index]
                    await get(session, process.url + "/size/300000/more")
                    await asyncio.sleep(0.05)
            assert all(handler.requests[f"/size/300000/f{i}"] == 1 for i in range(6))
    assert process.log_text.count("disk tier: cannot write") == 1


# ---------------------------------------------------------------- edgeproxy check


def run_check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", "check", "--config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("disk", "expected"),
    [
        ('{path: "./a-file/cache"}', "edge.yaml:4: cache.disk.path: folder"),
        ('{path: "./a-file"}', "edge.yaml:4: cache.disk.path:"),
        ('{path: "./c", max_bytes: 1MiB, max_object_bytes: 2MiB}', "cache.disk.max_object_bytes"),
        ('{path: "./c", max_bytes: 0}', "cache.disk.max_bytes"),
    ],
)
def test_check_validates_the_disk_folder_and_bounds(tmp_path: Path, disk: str, expected: str) -> None:
    (tmp_path / "a-file").write_text("x")
    config = tmp_path / "edge.yaml"
    config.write_text(
        "origins: {app: {url: 'http://127.0.0.1:9'}}\n"
        "behaviours: [{path: '*', origin: app}]\n"
        "cache:\n"
        f"  disk: {disk}\n"
    )
    result = run_check(config)
    assert result.returncode == 2, result.stdout
    assert expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_check_accepts_a_creatable_folder(tmp_path: Path) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text(
        "origins: {app: {url: 'http://127.0.0.1:9'}}\n"
        "behaviours: [{path: '*', origin: app}]\n"
        "cache: {disk: {path: ./new/cache, max_bytes: 1GiB, max_object_bytes: 10MiB}}\n"
    )
    result = run_check(config)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "new").exists()  # checking creates nothing
