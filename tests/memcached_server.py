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
import socket

from tests.server_process import ServerProcess

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


class MemcachedServer(ServerProcess):
    """One ``memcached`` process on 127.0.0.1 (TCP only)."""

    program = "memcached"

    @property
    def url(self) -> str:
        """``memcached://127.0.0.1:<port>``."""
        return f"memcached://127.0.0.1:{self.port}"

    def raw(self) -> RawMemcached:
        """A new ``RawMemcached`` on this server (close it, or use it in a ``with``)."""
        return RawMemcached(self.port)

    def stop(self) -> None:
        """Stop the server; called at teardown. Safe to call twice.

        SIGKILL, like ``kill``: memcached keeps nothing on disk, and its graceful stop (SIGTERM) waits for a
        tick of its clock, a second per test.
        """
        self.kill()

    def _command(self) -> list[str]:
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
        return args

    def _answers(self, pid: int) -> bool:
        # The pid, not just an answer: tells our server from another one that already had the port.
        return server_pid(self.port) == pid
