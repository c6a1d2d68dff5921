"""A real ``redis-server`` process for tests: loopback only, a free port, no persistence, its own directory.

Tests use it to exercise the shared tier against the real thing, including outages: ``kill()`` (SIGKILL, as a
crash), ``restart()`` on the same port, and ``pause()``/``resume()`` (SIGSTOP/SIGCONT: the server accepts
connections but answers nothing, as a hung or overloaded Redis does).

The process handling (ports, log, waits, signals) is ``tests.server_process.ServerProcess``.
"""

from __future__ import annotations

import socket

from tests.server_process import START_TIMEOUT, ServerProcess, free_port

__all__ = ["START_TIMEOUT", "RedisServer", "free_port", "ping"]


def ping(port: int, timeout: float = 0.5) -> bool:
    """True when a Redis server on 127.0.0.1:``port`` answers PING with PONG within ``timeout`` seconds."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            conn.sendall(b"*1\r\n$4\r\nPING\r\n")
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = conn.recv(64)
                if not chunk:
                    return False
                reply += chunk
            return reply == b"+PONG\r\n"
    except OSError:
        return False


class RedisServer(ServerProcess):
    """One ``redis-server`` process on 127.0.0.1 with no persistence."""

    program = "redis-server"

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def _command(self) -> list[str]:
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--daemonize", "no",
        ]  # fmt: skip

    def _answers(self, pid: int) -> bool:
        return ping(self.port)
