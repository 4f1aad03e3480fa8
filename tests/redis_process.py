"""A real redis-server for the tests, started by the suite itself (fakeredis would not run our Lua).

Each RedisProcess listens on a free loopback port, keeps nothing on disk (``--save '' --appendonly
no``, a temporary directory) and is stopped when the tests end. ``shared()`` is the one server of
the session (conftest's ``redis_process`` fixture); tests that stop their server make their own.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from resilient_client.stores.redis import RedisState

_START_TIMEOUT = 10.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisProcess:
    """One redis-server process on 127.0.0.1; ``stop()`` and ``start()`` again keep its port."""

    def __init__(self, *options: str, password: str | None = None) -> None:
        self.password = password
        self.options = [*options, *(["--requirepass", password] if password else [])]
        self.directory = Path(tempfile.mkdtemp(prefix="resilient-client-redis-"))
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        secret = f":{self.password}@" if self.password else ""
        return f"redis://{secret}127.0.0.1:{self.port}/0"

    def admin(self) -> redis.Redis:
        """A plain client for looking at the server from the test (not the store's)."""
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=5)

    def start(self) -> RedisProcess:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError(
                "redis-server is not installed: `make test` installs it (apt-get install redis-server)"
            )
        log = self.directory / "redis.log"
        for _ in range(5):
            log.unlink(missing_ok=True)
            self.process = subprocess.Popen(
                [executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(self.directory), "--daemonize", "no", "--logfile", str(log), *self.options],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            if self._answers():
                return self
            self.stop()
            text = log.read_text(errors="replace") if log.exists() else ""
            if "Address already in use" not in text:
                break
            self.port = _free_port()  # another process took the port between our probe and its bind
        raise RuntimeError(f"redis-server did not start on 127.0.0.1:{self.port}:\n{text}")

    def _answers(self) -> bool:
        deadline = time.monotonic() + _START_TIMEOUT
        with self.admin() as client:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    return False
                try:
                    return bool(client.ping())
                except redis.exceptions.ConnectionError:
                    time.sleep(0.005)  # real-sleep: waiting for a real process to open its port
                except redis.exceptions.ResponseError:  # "LOADING": up, not ready
                    time.sleep(0.005)  # real-sleep: as above
        return False

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def freeze(self) -> None:
        """Stop the process without closing its port: connections open, nothing answers (a hung server)."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def flush(self) -> None:
        with self.admin() as client:
            client.flushall()

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.thaw()
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


_shared: RedisProcess | None = None


def shared() -> RedisProcess:
    """The session's server, started on first use and stopped when the tests end."""
    global _shared
    if _shared is None:
        _shared = RedisProcess().start()
        atexit.register(_shared.close)
    return _shared


def contract_store(timeline: Any) -> RedisState:
    """The contract suite's RedisState, on a flushed server, timed by the suite's timeline.

    The contract checks exact numbers (a break of 15 s has ``retry_after == 15.0``, waits of 0.5 s)
    and whole-second counting slots, which a clock that runs while the test does cannot give; so the
    scripts take the timeline's ``now`` instead of ``TIME`` here (test_redis_state.py checks the
    server's clock). A generous timeout and ``"raise"``: a slow answer on a busy machine must fail
    loudly, never move the test onto the in-process fallback.
    """
    process = shared()
    process.flush()
    store = RedisState(process.url, timeout=5.0, on_unavailable="raise")
    store._clock_from_caller = True
    return store


def round_trips(process: RedisProcess) -> int:
    """Scripts the server has run since its stats were last reset (``reset_round_trips``): each is
    one round trip of a RedisState operation (the admin's own commands are not scripts)."""
    with process.admin() as admin:
        stats = admin.info("commandstats")
    return sum(
        int(row["calls"]) for name, row in stats.items() if name in ("cmdstat_evalsha", "cmdstat_eval")
    )


def reset_round_trips(process: RedisProcess) -> None:
    with process.admin() as admin:
        admin.config_resetstat()


def counted_store(process: RedisProcess) -> RedisState:
    """A RedisState on the caller's clock (as ``contract_store``) whose scripts the server knows
    already (a script's first run is two round trips), its round trips counted from zero."""
    from resilient_client.stores._lua import SCRIPTS

    store = RedisState(process.url, timeout=5.0, on_unavailable="raise")
    store._clock_from_caller = True
    with process.admin() as admin:
        for text in SCRIPTS.values():
            admin.script_load(text)
    reset_round_trips(process)
    return store
