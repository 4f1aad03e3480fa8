"""A throwaway ``redis-server`` on a free loopback port, for the fleet demo and the benchmarks.

Nothing is kept on disk (``--save '' --appendonly no``, a temporary directory removed at the end),
it listens on 127.0.0.1 only, and ``kill()`` / ``start()`` stop it hard and bring it back on the same
port, as a crashed and restarted Redis would be. Needs the ``redis-server`` program and redis-py.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["INSTALL_HINT", "RedisServer", "RedisServerMissing", "redis_server"]

#: What to tell a user whose machine lacks the program.
INSTALL_HINT = (
    "redis-server is not installed: install it with 'sudo apt-get install -y redis-server' "
    "(Debian, Ubuntu) or 'brew install redis' (macOS)"
)
_START_TIMEOUT = 10.0


class RedisServerMissing(RuntimeError):
    """The ``redis-server`` program is not on the PATH."""


def _redis_py() -> Any:
    try:
        import redis
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "talking to redis-server needs redis-py: pip install 'resilient-client[redis]'", name="redis"
        ) from None
    return redis


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1 (see the module docstring)."""

    def __init__(self) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RedisServerMissing(INSTALL_HINT)
        self.executable = executable
        self.directory = Path(tempfile.mkdtemp(prefix="resilient-client-redis-"))
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start it (again, on the same port) and return once it answers PING."""
        log = self.directory / "redis.log"
        log.unlink(missing_ok=True)
        # fmt: off
        self.process = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory), "--logfile", str(log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        # fmt: on
        if not self._answers():
            self.kill()
            said = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
            raise RuntimeError(f"redis-server did not start on 127.0.0.1:{self.port}: {' '.join(said)}")
        return self

    def _answers(self) -> bool:
        redis = _redis_py()
        deadline = time.monotonic() + _START_TIMEOUT
        with redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1.0) as client:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    return False
                try:
                    return bool(client.ping())
                except (redis.exceptions.ConnectionError, redis.exceptions.BusyLoadingError):
                    time.sleep(0.005)  # the process is up but has not opened its port yet
        return False

    def version(self) -> str:
        redis = _redis_py()
        with redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1.0) as client:
            return str(client.info("server")["redis_version"])

    def flush(self) -> None:
        """Forget every key (FLUSHALL); the scripts the stores registered stay."""
        redis = _redis_py()
        with redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5.0) as client:
            client.flushall()

    def kill(self) -> None:
        """SIGKILL: the server is gone at once, without closing anything cleanly."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A started RedisServer, stopped and its directory removed at the end; RedisServerMissing
    (with INSTALL_HINT) when the program is not installed."""
    server = RedisServer()
    try:
        yield server.start()
    finally:
        server.close()
