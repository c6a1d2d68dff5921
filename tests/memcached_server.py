"""A real ``memcached`` process for tests: loopback only, a free port, TCP only, its own directory for logs.

Tests use it to exercise the memcached shared tier against the real thing, including outages: ``kill()``
(SIGKILL, as a crash), ``restart()`` on the same port, and ``pause()``/``resume()`` (SIGSTOP/SIGCONT: the
server accepts connections but answers nothing, as a hung or overloaded memcached does). ``RawMemcached`` is a
tiny text-protocol client to look at and tamper with what the store wrote (flags, TTLs, garbage values).

The helpers are synchronous (they run between awaits, for a few milliseconds) so that fixtures and tests of
any kind can use them. Every wait is bounded and waits on a condition: the server answering (as itself: its
pid), the process having stopped or exited.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.redis_server import free_port

START_TIMEOUT = 10.0
"""Seconds ``start``/``restart`` wait for the server to answer before giving up."""

ITEM_SIZE_LIMIT = 1024 * 1024
"""The server's item size limit (``-I``), memcached's default: larger values are refused."""


def server_pid(port: int, timeout: float = 0.5) -> int | None:
    """The process id of the memcached answering on 127.0.0.1:``port`` (``stats``), or None when none answers
    within ``timeout`` seconds. Checking the pid, not just an answer, tells our server from another one that
    already had the port (a server that failed to bind exits, but the other one would answer)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            conn.sendall(b"stats\r\n")
            reply = b""
            while not reply.endswith(b"END\r\n"):
                chunk = conn.recv(65536)
                if not chunk:
                    return None
                reply += chunk
    except OSError:
        return None
    for line in reply.split(b"\r\n"):
        if line.startswith(b"STAT pid "):
            return int(line[9:])
    return None


def _stopped(task: Path) -> bool:
    """True when the thread ``/proc/<pid>/task/<tid>`` is stopped (state T) or gone."""
    try:
        stat = (task / "stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("T", "t")


class RawMemcached:
    """A blocking text-protocol client on one connection, for tests only (no pooling, no reconnects)."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self._conn = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self._buffer = b""

    def close(self) -> None:
        self._conn.close()

    def set(self, key: bytes, value: bytes, *, flags: int = 0, exptime: int = 0) -> bytes:
        """Run ``set`` and return the answer line (``b"STORED"`` …)."""
        self._conn.sendall(b"set %b %d %d %d\r\n%b\r\n" % (key, flags, exptime, len(value), value))
        return self._line()

    def get(self, key: bytes) -> bytes | None:
        """The value under ``key``, or None."""
        self._conn.sendall(b"get %b\r\n" % key)
        line = self._line()
        if line == b"END":
            return None
        parts = line.split()
        assert parts[:2] == [b"VALUE", key], line
        value = self._exactly(int(parts[3]) + 2)[:-2]
        assert self._line() == b"END"
        return value

    def ttl(self, key: bytes) -> int | None:
        """Seconds left before ``key`` expires (-1: never), or None when there is no such key (meta get)."""
        self._conn.sendall(b"mg %b t\r\n" % key)
        line = self._line()
        if line == b"EN":
            return None
        assert line.startswith(b"HD t"), line
        return int(line[4:])

    def delete(self, key: bytes) -> bytes:
        self._conn.sendall(b"delete %b\r\n" % key)
        return self._line()

    def stats(self) -> dict[str, str]:
        """``stats``: name → value."""
        self._conn.sendall(b"stats\r\n")
        found: dict[str, str] = {}
        while (line := self._line()) != b"END":
            _, name, value = line.decode().split(" ", 2)
            found[name] = value
        return found

    def _line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            self._receive()
        line, _, self._buffer = self._buffer.partition(b"\r\n")
        return line

    def _exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._receive()
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def _receive(self) -> None:
        chunk = self._conn.recv(65536)
        if not chunk:
            raise ConnectionError("memcached closed the connection")
        self._buffer += chunk

    def __enter__(self) -> RawMemcached:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MemcachedServer:
    """One ``memcached`` process on 127.0.0.1; ``port`` stays the same across ``kill``/``restart``."""

    def __init__(self, workdir: Path, binary: str | None = None) -> None:
        """Prepare a server that keeps its log in ``workdir``; ``start`` launches it.

        ``binary`` defaults to ``memcached`` on PATH (``ValueError`` when there is none).
        """
        found = binary or shutil.which("memcached")
        if found is None:
            raise ValueError("memcached is not installed")
        self.binary = found
        self.workdir = workdir
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False

    @property
    def url(self) -> str:
        """``memcached://127.0.0.1:<port>``."""
        return f"memcached://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """True while the process is alive (paused counts as alive)."""
        return self._process is not None and self._process.poll() is None

    @property
    def log_text(self) -> str:
        """What the server wrote to stderr so far (its log), for failure messages."""
        path = self.workdir / "memcached.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def raw(self) -> RawMemcached:
        """A new ``RawMemcached`` on this server (close it, or use it in a ``with``)."""
        return RawMemcached(self.port)

    def start(self) -> None:
        """Launch on a free port and return once it answers.

        A port taken between choosing and binding it is retried with another one; other failures raise
        ``RuntimeError`` with the server's log.
        """
        last_error = ""
        for _ in range(3):
            self.port = free_port()
            try:
                self._launch()
                return
            except RuntimeError as exc:
                last_error = str(exc)
                if "Address already in use" not in last_error:
                    raise
        raise RuntimeError(last_error)

    def restart(self) -> None:
        """Start the server again on the same port (after ``kill``/``stop``); returns once it answers.

        The data is gone: a restarted server is an empty one.
        """
        if self.running:
            raise RuntimeError("memcached is still running; kill() or stop() it first")
        self._launch()

    def kill(self) -> None:
        """Kill the process with SIGKILL (a crash: clients see their connections closed) and wait for it."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.kill()
        process.wait(timeout=START_TIMEOUT)
        self._paused = False

    def stop(self) -> None:
        """Stop the server; called at teardown. Safe to call twice.

        SIGKILL, like ``kill``: memcached keeps nothing on disk, and its graceful stop (SIGTERM) waits for a
        tick of its clock, a second per test.
        """
        self.kill()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections are accepted by the kernel but nothing is answered."""
        if self._process is None or not self.running:
            raise RuntimeError("memcached is not running")
        os.kill(self._process.pid, signal.SIGSTOP)
        self._paused = True
        # The signal is delivered asynchronously: return once every thread has stopped, or a command sent
        # right after could still be answered.
        tasks = Path(f"/proc/{self._process.pid}/task")
        deadline = time.monotonic() + START_TIMEOUT
        while tasks.is_dir() and not all(_stopped(task) for task in tasks.iterdir()):
            if time.monotonic() > deadline:
                raise RuntimeError("memcached did not stop on SIGSTOP")
            time.sleep(0.001)

    def resume(self) -> None:
        """Let a paused server run again (SIGCONT); pending commands are then answered."""
        if self._process is not None and self.running:
            os.kill(self._process.pid, signal.SIGCONT)
        self._paused = False

    def _launch(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            "-l", "127.0.0.1",
            "-p", str(self.port),
            "-U", "0",  # no UDP
            "-m", "64",  # MiB of memory for items
            "-I", str(ITEM_SIZE_LIMIT),
            "-t", "2",
            "-v",  # errors and warnings to stderr
        ]  # fmt: skip
        if os.geteuid() == 0:
            args += ["-u", "root"]  # memcached refuses to run as root without it (CI runs as root)
        log_path = self.workdir / "memcached.log"
        with log_path.open("ab") as log:  # the child keeps its own descriptor
            self._process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + START_TIMEOUT
        while server_pid(self.port) != self._process.pid:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"memcached exited with {self._process.returncode} on port {self.port}: "
                    f"{self.log_text[-2000:]}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"memcached did not answer within {START_TIMEOUT}s: {self.log_text[-2000:]}"
                )
            time.sleep(0.01)

    def __enter__(self) -> MemcachedServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
