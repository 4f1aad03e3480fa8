"""A fleet of processes sharing one Redis (SPEC section 9): what one process learns holds the others.

Four worker processes (``tests/fleet_worker.py``, started once for the module, each with threads or
asyncio or trio tasks) call a simulator that this process serves on loopback, through Hyper clients
whose state is a RedisState on the session's redis-server (the outage test starts one of its own, to
stop it). The simulator notes when each request arrived and from which worker (``X-Worker``), so
every figure is the server's view; the Redis server's clock (``TIME``, the wall clock of this same
machine) says when a pause or a lease ends.

Each test prints its figures (``pytest -s`` shows them): overlaps, early requests, attempts per
request, failed calls, how long until the fleet shared state again.

Real time, unlike the rest of the suite: other processes, sockets and a Redis server's clock cannot
be faked. Each test is a few dozen calls, each real sleep says why, and the file takes about 20 s
(most of it the guard lease, which lasts the holder's 1 s deadline plus the guard's 5 s margin).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import resilient_client as rc
from redis_process import RedisProcess
from resilient_client.simulator import Reply, Simulator, serve
from resilient_client.stores import state_key
from store_ops import Store

WORKER_SCRIPT = Path(__file__).with_name("fleet_worker.py")
SOURCE = Path(rc.__file__).resolve().parents[1]
REDIS_URL_ENV = "RESILIENT_CLIENT_REDIS_URL"
PREFIX = "resilient_client"
#: The simulator's host: the key of the breaker and the limiter (vendor and host).
HOST = "127.0.0.1"


def endpoint(base_url: str) -> str:
    """What the breaker and the limiter key on for the simulator at ``base_url``: host and port."""
    url = httpx.URL(base_url)
    return f"{url.host}:{url.port}"


MODES = ("sync", "sync", "asyncio", "trio")


class Worker:
    """One fleet process: commands in on stdin, events out on stdout, its log in a file."""

    def __init__(self, name: str, log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        env = {key: value for key, value in os.environ.items() if key != REDIS_URL_ENV}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SOURCE), env.get("PYTHONPATH")]))
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(WORKER_SCRIPT)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                text=True,
                bufsize=1,
            )
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._events.put(json.loads(line))
        self._events.put(None)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, command: dict[str, Any] | str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((command if isinstance(command, str) else json.dumps(command)) + "\n")
        self.process.stdin.flush()

    def expect(self, event: str, timeout: float = 60.0) -> dict[str, Any]:
        """The next ``event`` line (the events before it are dropped)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                message = self._events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"{self.name}: no {event!r} within {timeout} s\n{self.log()}") from None
            if message is None:
                raise AssertionError(f"{self.name} exited ({self.process.poll()})\n{self.log()}")
            if message["event"] == event:
                if "crashed" in message:
                    raise AssertionError(f"{self.name}: {message['crashed']}\n{self.log()}")
                return message

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def close(self) -> None:
        if self.alive:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.process.stdout is not None:
            self.process.stdout.close()


class Fleet:
    """Four workers, started together; a killed one is started again when next asked for."""

    def __init__(self, log_dir: Path, size: int = 4) -> None:
        self.log_dir = log_dir
        self.workers = [Worker(f"w{index}", log_dir) for index in range(size)]
        for worker in self.workers:
            worker.expect("ready")

    def __getitem__(self, index: int) -> Worker:
        worker = self.workers[index]
        if not worker.alive:
            worker.close()
            worker = self.workers[index] = Worker(worker.name, self.log_dir)
            worker.expect("ready")
        return worker

    def __iter__(self) -> Iterator[Worker]:
        return (self[index] for index in range(len(self.workers)))

    def run(
        self, commands: dict[Worker, dict[str, Any]], timeout: float = 60.0
    ) -> dict[Worker, dict[str, Any]]:
        for worker, command in commands.items():
            worker.send(command)
        return {worker: worker.expect("done", timeout) for worker in commands}

    def close(self) -> None:
        for worker in self.workers:
            worker.close()


class RecordingSimulator(Simulator):
    """The simulator, noting each request's arrival: (wall time, the ``X-Worker`` header, path)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[tuple[float, str, str]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            worker = dict(scope["headers"]).get(b"x-worker", b"").decode()
            self.arrivals.append((time.time(), worker, scope["path"]))
        await super().__call__(scope, receive, send)

    def arrived(self, worker: Worker, after: float = 0.0, before: float = float("inf")) -> list[float]:
        return [t for t, name, _ in list(self.arrivals) if name == worker.name and after < t < before]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path_factory.mktemp("fleet"))
    yield fleet
    fleet.close()


@pytest.fixture
def simulator() -> Iterator[tuple[RecordingSimulator, str]]:
    sim = RecordingSimulator()
    with serve(sim) as url:
        yield sim, f"{url}/hyper"


#: The [state] timeout of every fleet here. The default 50 ms is a production setting; on the
#: machines that run this suite (two busy cores shared by the parent, four workers and whatever else
#: runs) a thread may wait longer than that for a core, and each such wait would move its process
#: onto local state for a moment (the outage test shows what that costs), so these tests would
#: measure the scheduler, not what the fleet shares.
STATE_TIMEOUT = 0.5
#: The journal fleet asserts that no two calls of one account ever overlap at the server: one Redis
#: answer later than the timeout would hand that process in-process state for a moment (availability
#: over strictness, as documented), so that test waits longer than a starved scheduler can.
STRICT_STATE_TIMEOUT = 5.0


def write_policy(tmp_path: Path, name: str, text: str = "", state_timeout: float = STATE_TIMEOUT) -> str:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'extends = "hyper"\n{text}[state]\ntimeout = {state_timeout}\n')
    return str(path)


def figures(label: str, **values: object) -> None:
    print(f"\n[fleet] {label}: " + ", ".join(f"{k}={v}" for k, v in values.items()))


def command(worker: Worker, base_url: str, redis: str, **options: Any) -> dict[str, Any]:
    """A worker's command (see fleet_worker.py) on ``redis``, its requests marked with its name."""
    return {
        "base_url": base_url,
        "redis": redis,
        "state_timeout": STATE_TIMEOUT,
        "name": worker.name,
        **options,
    }


def failures(results: dict[Worker, dict[str, Any]]) -> dict[str, Any]:
    return {w.name: (r["failed"], r["messages"]) for w, r in results.items() if r["failed"]}


JOURNAL = {"method": "POST", "path": "/api/journal", "json": {"AccountNo": 7}}
#: The shipped hyper policy without its 20-a-minute pace, which would make these fleets wait minutes.
NO_PACE = "[rate_limit]\nenabled = false\n"


def test_journal_calls_of_one_account_are_never_at_the_server_at_once_across_the_fleet(
    fleet: Fleet, simulator: tuple[RecordingSimulator, str], redis_url: str, tmp_path: Path
) -> None:
    sim, base_url = simulator
    sim.journal_latency = 0.02
    policy = write_policy(tmp_path, "journal", NO_PACE, state_timeout=STRICT_STATE_TIMEOUT)
    threads, calls = 3, 2
    # Selected by the environment variable: every client of a worker resolves the one RedisState.
    results = fleet.run(
        {
            worker: command(
                worker,
                base_url,
                redis_url,
                via_env=True,
                policy=policy,
                mode=mode,
                concurrency=threads,
                calls=calls,
                **JOURNAL,
            )
            for worker, mode in zip(fleet, MODES, strict=True)
        }
    )
    total = len(MODES) * threads * calls
    figures(
        "journal",
        calls=total,
        max_in_flight=sim.max_in_flight["7"],
        overlaps=sim.overlaps["7"],
        failed=sum(sum(r["failed"].values()) for r in results.values()),
    )
    assert failures(results) == {}
    assert sum(r["ok"] for r in results.values()) == total
    assert sim.max_in_flight["7"] == 1
    assert sim.overlaps["7"] == 0  # so no code 50 was answered, and nothing was sent twice
    assert sim.requests["hyper", "/api/journal"] == total


def test_a_retry_after_received_by_one_process_holds_back_the_others(
    fleet: Fleet,
    simulator: tuple[RecordingSimulator, str],
    redis_url: str,
    redis_process: RedisProcess,
    tmp_path: Path,
) -> None:
    sim, base_url = simulator
    policy = write_policy(tmp_path, "retry_after")  # the shipped pace: 20 a minute, burst 20
    sim.script("hyper", "/api/customers", [Reply(429, b"", {"Retry-After": "1"})])
    first, *others = list(fleet)
    path = "/api/customers"
    first.send(command(first, base_url, redis_url, policy=policy, path=path, calls=1, report_retry=True))
    first.expect("retry")  # its limiter has written the pause before the retry is announced
    with redis_process.admin() as admin:
        pause_ends = float(
            admin.get(f"{PREFIX}:pause:{state_key('limiter', 'hyper', endpoint(base_url))}") or 0
        )
    told_at = time.time()
    results = fleet.run(
        {
            worker: command(
                worker, base_url, redis_url, policy=policy, path=path, mode=mode, concurrency=2, calls=2
            )
            for worker, mode in zip(others, MODES[1:], strict=True)
        }
    )
    first_result = first.expect("done")
    sent = [t for worker in others for t in sim.arrived(worker)]
    early = [t for t in sent if t < pause_ends]
    figures(
        "retry_after",
        pause_left_when_others_started=f"{pause_ends - told_at:.3f}s",
        requests=len(sent),
        early=len(early),
        first_after_pause=f"{min(sent) - pause_ends:+.3f}s",
    )
    assert pause_ends - told_at > 0.3, "the others started after the pause: the test proves nothing"
    assert early == []
    assert len(sent) == 3 * 2 * 2
    assert failures({first: first_result, **results}) == {}
    retried = sim.arrived(first)[1:]
    assert retried and min(retried) >= pause_ends  # the one that got the 429 waited it out too


def test_a_circuit_opened_by_one_process_refuses_calls_in_the_others(
    fleet: Fleet, simulator: tuple[RecordingSimulator, str], redis_url: str, tmp_path: Path
) -> None:
    sim, base_url = simulator
    policy = write_policy(
        tmp_path, "breaker", NO_PACE + "[breaker]\nminimum_throughput = 4\nbreak_duration = 30.0\n"
    )
    sim.outage("hyper", 503)
    first, *others = list(fleet)
    opener = fleet.run({first: command(first, base_url, redis_url, policy=policy, testing=True, calls=6)})
    opener = opener[first]
    state = rc.RedisState(redis_url)
    circuit = Store(state).circuit(state_key("breaker", "hyper", endpoint(base_url)), 0.0)
    state.close()
    answered = sim.outage_answers["hyper"]
    results = fleet.run(
        {
            worker: command(
                worker, base_url, redis_url, policy=policy, testing=True, mode=mode, concurrency=2, calls=2
            )
            for worker, mode in zip(others, MODES[1:], strict=True)
        }
    )
    reached = sum(len(sim.arrived(worker)) for worker in others)
    figures(
        "breaker",
        opener_attempts=answered,
        opener_outcomes=opener["failed"],
        others_calls=sum(r["calls"] for r in results.values()),
        others_refused=sum(r["failed"].get("CircuitOpenError", 0) for r in results.values()),
        others_reaching_server=reached,
    )
    assert circuit.state == "open"
    assert opener["failed"].get("CircuitOpenError", 0) >= 1
    for worker, result in results.items():
        assert result["failed"] == {"CircuitOpenError": 4}, (worker.name, result)
    assert reached == 0
    assert sim.outage_answers["hyper"] == answered


def test_the_fleet_retries_within_one_shared_budget_under_a_total_outage(
    fleet: Fleet, simulator: tuple[RecordingSimulator, str], redis_url: str, tmp_path: Path
) -> None:
    sim, base_url = simulator
    # A Redis answer later than a short [state] timeout on a loaded machine would put a process on
    # its own in-process budget (burst 10 more) for a moment, as documented: this test is about
    # the shared budget, so Redis is waited for.
    policy = write_policy(
        tmp_path, "budget", NO_PACE + "[breaker]\nenabled = false\n", state_timeout=STRICT_STATE_TIMEOUT
    )
    sim.outage("hyper", 503)
    threads, calls = 2, 25
    results = fleet.run(
        {
            worker: command(
                worker,
                base_url,
                redis_url,
                policy=policy,
                testing=True,
                mode=mode,
                concurrency=threads,
                calls=calls,
            )
            for worker, mode in zip(fleet, MODES, strict=True)
        }
    )
    requests = len(MODES) * threads * calls
    attempts = sim.outage_answers["hyper"]
    ratio, burst = 0.2, 10.0  # the shipped [budget]
    bound = 1 + ratio + burst / requests
    figures("budget", requests=requests, attempts=attempts, per_request=attempts / requests, bound=bound)
    for result in results.values():
        assert result["failed"] == {"HyperServiceUnavailableError None": threads * calls}, result
    # A budget per process would allow 1 + ratio + 4 * burst / requests (1.4 here).
    assert attempts / requests <= bound


@pytest.fixture
def own_redis() -> Iterator[RedisProcess]:
    process = RedisProcess().start()
    yield process
    process.close()


def test_a_redis_outage_fails_no_call_and_the_fleet_shares_again_soon_after_it_returns(
    fleet: Fleet, simulator: tuple[RecordingSimulator, str], own_redis: RedisProcess, tmp_path: Path
) -> None:
    sim, base_url = simulator
    # Pauses and the learned rate only: no fixed pace to hold the fleet's steady calls back.
    policy = write_policy(tmp_path, "outage", "[rate_limit]\nrequests = 0\n")
    workers = list(fleet)
    for worker, mode in zip(workers, MODES, strict=True):
        worker.send(
            command(
                worker,
                base_url,
                own_redis.url,
                policy=policy,
                mode=mode,
                concurrency=2,
                calls=None,
                interval=0.02,
            )
        )
    deadline = time.monotonic() + 30
    while not all(len(sim.arrived(worker)) >= 10 for worker in workers):
        assert time.monotonic() < deadline, "the fleet did not get going"
        time.sleep(0.05)  # real-sleep: waiting for four other processes to call
    time.sleep(0.3)  # real-sleep: the fleet calls through a live Redis for a while
    with own_redis.admin() as admin:
        assert admin.keys(f"{PREFIX}:*"), "the fleet wrote nothing to Redis"
    port = own_redis.port
    own_redis.stop()
    stopped_at = time.time()
    time.sleep(1.5)  # real-sleep: the fleet runs on its own state while Redis is gone
    own_redis.start()
    restarted_at = time.time()
    assert own_redis.port == port

    # Shared again = a pause written to Redis by another process holds every worker back. One is
    # written every round; a worker whose requests still arrive in its middle is not sharing yet.
    pause_key = state_key("limiter", "hyper", endpoint(base_url))
    probe = rc.RedisState(own_redis.url, timeout=1.0, on_unavailable="raise")
    resumed_at = None
    rounds = 0
    with own_redis.admin() as admin:
        while resumed_at is None and time.time() < restarted_at + 10:
            rounds += 1
            set_at = time.time()
            Store(probe).pause(pause_key, 0.4, 0.0)
            ends = float(admin.get(f"{PREFIX}:pause:{pause_key}") or 0)
            time.sleep(max(0.0, ends - time.time()) + 0.05)  # real-sleep: the pause runs out
            # 0.15 s for the requests already past the limiter when the pause was written.
            if not any(sim.arrived(worker, set_at + 0.15, ends) for worker in workers):
                resumed_at = set_at
    probe.close()
    for worker in workers:
        worker.send("stop")
    results = {worker: worker.expect("done") for worker in workers}

    during = {w.name: len(sim.arrived(w, stopped_at + 0.05, restarted_at)) for w in workers}
    outage_warnings = {
        w.name: [m for m in r["warnings"] if "did not answer" in m] for w, r in results.items()
    }
    figures(
        "redis_outage",
        calls=sum(r["calls"] for r in results.values()),
        failed=sum(sum(r["failed"].values()) for r in results.values()),
        calls_during_outage=during,
        warnings={name: len(found) for name, found in outage_warnings.items()},
        resumed_after=None if resumed_at is None else f"{resumed_at - restarted_at:.2f}s",
        rounds=rounds,
    )
    assert failures(results) == {}
    assert all(count > 0 for count in during.values()), during
    for worker, result in results.items():
        assert len(outage_warnings[worker.name]) == 1, result["warnings"]
        assert result["warnings"] == outage_warnings[worker.name], result["warnings"]
    assert resumed_at is not None, "the fleet did not share state again within 10 s"
    assert resumed_at - restarted_at <= 5.0


def test_a_guard_lease_held_by_a_killed_process_frees_when_it_ends(
    fleet: Fleet,
    simulator: tuple[RecordingSimulator, str],
    redis_url: str,
    tmp_path: Path,
    redis_process: RedisProcess,
) -> None:
    sim, base_url = simulator
    # A 1 s deadline makes a lease of 1 s plus the guard's margin (guard.LEASE_MARGIN).
    short = write_policy(tmp_path, "short", NO_PACE + "[retry]\ntotal_timeout = 1.0\n")
    patient = write_policy(tmp_path, "patient", NO_PACE)
    sim.journal_latency = 2.0  # the holder's call is still at the server when it is killed
    holder, waiter = fleet[0], fleet[1]
    holder.send(command(holder, base_url, redis_url, policy=short, calls=1, **JOURNAL))
    deadline = time.monotonic() + 30
    while not sim.arrived(holder):
        assert time.monotonic() < deadline, holder.log()
        time.sleep(0.002)  # real-sleep: waiting for another process's request to arrive
    holder.kill()
    killed_at = time.time()
    with redis_process.admin() as admin:
        (lease_key,) = admin.keys(f"{PREFIX}:lease:*")
        (lease_ends,) = (float(v) for v in admin.hgetall(lease_key).values())
    sim.journal_latency = 0.02
    result = fleet.run({waiter: command(waiter, base_url, redis_url, policy=patient, calls=1, **JOURNAL)})
    result = result[waiter]
    got = sim.arrived(waiter)
    figures(
        "guard_lease",
        lease_left_at_kill=f"{lease_ends - killed_at:.2f}s",
        waiter_sent_after_kill=f"{got[0] - killed_at:.2f}s" if got else None,
        after_lease_end=f"{got[0] - lease_ends:+.3f}s" if got else None,
    )
    assert lease_key.decode().endswith(
        state_key("guard", "hyper", HOST) + "/" + state_key("journal", "AccountNo", "7")
    )
    assert lease_ends - killed_at > 4.0  # killed long before its lease would end
    assert result["ok"] == 1, result
    assert len(got) == 1
    assert lease_ends <= got[0] <= lease_ends + 0.5


def test_two_processes_of_200_tasks_each_never_overlap_one_accounts_journal_calls(
    fleet: Fleet, simulator: tuple[RecordingSimulator, str], redis_url: str, tmp_path: Path
) -> None:
    """The pool is sized for a process's concurrency: 200 tasks waiting on one account's lease in
    each of two processes run every acquire on Redis (none locally, which would let two overlap)."""
    sim, base_url = simulator
    sim.journal_latency = 0.002
    # 400 calls one after another on two busy cores: longer than the shipped 30 s a guard waits.
    longer = "[guards.journal]\nmax_wait = 300.0\n[retry]\ntotal_timeout = 300.0\n"
    # 400 tasks building their clients at once starve two busy cores for seconds: a Redis answer
    # later than the timeout would hand a process in-process state for a moment (availability over
    # strictness), which is not what this test is about (redis-py's pool failing past 100 tasks was).
    policy = write_policy(tmp_path, "journal-400", NO_PACE + longer, state_timeout=30.0)
    tasks = 200
    workers = [worker for worker, mode in zip(fleet, MODES, strict=True) if mode == "asyncio"]
    workers += [worker for worker, mode in zip(fleet, MODES, strict=True) if mode == "trio"]
    results = fleet.run(
        {
            worker: command(
                worker,
                base_url,
                redis_url,
                via_env=True,
                policy=policy,
                mode="asyncio",
                concurrency=tasks,
                calls=1,
                **JOURNAL,
            )
            for worker in workers
        },
        timeout=300.0,
    )
    total = len(workers) * tasks
    figures("journal 2x200", calls=total, max_in_flight=sim.max_in_flight["7"], overlaps=sim.overlaps["7"])
    assert failures(results) == {}
    assert sum(r["ok"] for r in results.values()) == total
    assert sim.overlaps["7"] == 0
    assert sim.max_in_flight["7"] == 1
