"""A real redis-server for the tests: started on a free loopback port and stopped after;
`.ci/run` installs it from the system packages when it is missing.

`RedisProcess` is one the tests may hurt, as Redis is hurt in production: killed (SIGKILL),
paused (SIGSTOP) and resumed, and restarted on the same port, with its append-only file
(`appendonly yes`, `appendfsync always`) so that what it had acknowledged survives the kill.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisProcess:
    """One redis-server in *workdir*, on *port*, with AOF or nothing saved."""

    def __init__(self, workdir: str, *, aof: bool) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not installed (Debian: apt-get install redis-server)"
            )
        self._command = [binary, "--port", str(_free_port()), "--bind", "127.0.0.1"]
        self._command += ["--save", "", "--dir", workdir]
        self._command += (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if aof
            else [
                "--appendonly",
                "no",
            ]
        )
        self.port = int(self._command[2])
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen(
            self._command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait_for(self.port, self._proc)

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a lost host would: no shutdown, no last save."""
        assert self._proc is not None
        self._proc.kill()
        self._proc.wait(10)

    def pause(self) -> None:
        """SIGSTOP: connections stay open and nothing answers, as in a long fork or swap."""
        assert self._proc is not None
        os.kill(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self._proc is not None
        os.kill(self._proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self.resume()
            self._proc.terminate()
            self._proc.wait(10)


@contextmanager
def redis_process(*, aof: bool = False) -> Iterator[RedisProcess]:
    """A started `RedisProcess`, stopped after."""
    with tempfile.TemporaryDirectory() as workdir:
        redis = RedisProcess(workdir, aof=aof)
        redis.start()
        try:
            yield redis
        finally:
            redis.stop()


@contextmanager
def redis_server() -> Iterator[str]:
    """Run redis-server; yield its URL (`redis://127.0.0.1:PORT/0`)."""
    with redis_process() as redis:
        yield redis.url


def _wait_for(port: int, proc: subprocess.Popen[bytes]) -> None:
    # Bounded: 400 tries of 25 ms, or the process exits. A restart with AOF loads its file
    # first, answering LOADING meanwhile.
    for _ in range(400):
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.025)
    raise RuntimeError("redis-server did not answer PING within 10 s")
