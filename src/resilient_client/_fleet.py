"""``resilient-client fleet``: several worker processes share one Redis, against the simulator.

The command starts its own ``redis-server`` (a temporary directory, a free loopback port, nothing
saved) and the simulator on loopback with Hyper's habits on, then worker processes (fresh ones, from
a fork server or spawned: nothing is inherited but the arguments), each calling through a
``HyperClient(state=rc.RedisState(url))``. Three scenes, each started by all workers at once (one
event they all wait on), each reported from what the simulator saw and what the workers' hooks and
stores counted:

1. a busy day: journal calls for a few accounts and other calls, under the gateway's rate limit;
   the shared guard keeps one journal call per account in flight, a 429's Retry-After pauses all;
2. an outage: the shared circuit opens once for everyone, the shared budget caps the retries;
3. the recovery: after the break, one probe for the whole fleet closes the circuit.

Redis is flushed between the first two scenes, so each starts from clean shared state. Waits are
shortened (the server's Retry-After is still honoured in full) and the break is 1 s, so the whole
fleet part takes a few seconds. Without ``redis-server`` it prints how to install it and returns 0.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import queue
import signal
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar, cast

import attrs
import httpx

import resilient_client as rc
from resilient_client._redis_server import RedisServer, RedisServerMissing
from resilient_client.stores import Acquire, LimiterAdmit, Operation, PausedFor, RateTicket

__all__ = ["ACCOUNTS", "SCENES", "demo_policy", "run"]

Print = Callable[[str], None]
_T = TypeVar("_T")
Tally = Counter[str]

ACCOUNTS = ("A1", "A2", "A3")
SCENES = ("busy", "outage", "recovery")
#: Hyper's gateway allows 20 requests a minute per IP; scaled down so a demo sees it in a second.
GATEWAY_PERIOD = 1.0
JOURNAL_LATENCY = 0.05
BREAK = 1.0
JOURNAL_ROUNDS = 2
OUTAGE_CALLS = 10
RECOVERY_CALLS = 3
#: Each process does some work of its own between two calls of a busy day, so (as in a real fleet)
#: not every process has a request on the wire when the gateway's limit is met.
THINK = 0.05
#: A scene that takes longer than this means something is stuck: the demo gives up with a message.
SCENE_TIMEOUT = 60.0


def gateway_limit(workers: int) -> int:
    """Requests per GATEWAY_PERIOD the simulator lets through: about the first round of a busy
    scene, so the fleet meets the limit early, while every process still has calls to make."""
    return 4 * workers


def demo_policy() -> rc.RetryPolicy:
    """Hyper's shipped policy with short waits, a 1 s break, and no fixed rate: the fleet learns the
    gateway's limit from its 429s (adaptive) instead of pacing at 20 a minute."""
    shipped = rc.load_policy("hyper")
    return attrs.evolve(
        shipped,
        retry=attrs.evolve(shipped.retry, initial_wait=0.05, max_wait=0.2),
        rate_limit=attrs.evolve(shipped.rate_limit, requests=0, burst=1),
        breaker=attrs.evolve(shipped.breaker, break_duration=BREAK),
    )


# -- in each worker process -----------------------------------------------------------------------


class _Counting(rc.Hook):
    """Counts the pipeline's events into the current scene's tally."""

    def __init__(self) -> None:
        self.tally: Tally = Counter()

    def on_attempt(self, call: Any, event: rc.AttemptEvent) -> None:
        self.tally["sent"] += 1
        self.tally["429"] += event.status == 429
        self.tally["retries sent"] += event.attempt > 1

    def on_rejection(self, call: Any, event: rc.RejectionEvent) -> None:
        if event.attempt > 1:
            self.tally[f"retries refused by the {event.strategy}"] += 1

    def on_breaker(self, event: rc.BreakerEvent) -> None:
        self.tally[f"circuit {event.state}"] += 1


class _WatchedState(rc.RedisState):
    """A RedisState that notes when a call found the host paused or a guarded account busy."""

    paused = False
    busy = False

    def run(self, op: Operation[_T], now: float) -> _T:
        result = super().run(op, now)
        if isinstance(op, PausedFor):
            self.paused = self.paused or cast(float, result) > 0
        elif isinstance(op, LimiterAdmit):
            self.paused = self.paused or cast(RateTicket, result).paused > 0
        elif isinstance(op, Acquire):
            self.busy = self.busy or not result
        return result


class _Fallbacks(logging.Handler):
    """Counts the store's "did not answer" warnings (Redis too slow for ``[state] timeout``)."""

    def __init__(self, tally: Callable[[], Tally]) -> None:
        super().__init__(logging.WARNING)
        self._tally = tally

    def emit(self, record: logging.LogRecord) -> None:
        if "did not answer" in record.getMessage():
            self._tally()["fell back to local state"] += 1


class _Worker:
    def __init__(self, index: int, redis_url: str, base_url: str) -> None:
        self.index = index
        self.hook = _Counting()
        # A loaded demo machine (workers, Redis and the simulator on a few cores) can stall a
        # process for longer than the 50 ms default; that is not an outage of Redis.
        self.state = _WatchedState(redis_url, timeout=0.5)
        self.client = rc.HyperClient(
            base_url=base_url,
            token="demo-token",
            policy=demo_policy(),
            state=self.state,
            hooks=[self.hook],
        )
        logger = logging.getLogger("resilient_client")
        logger.addHandler(_Fallbacks(lambda: self.hook.tally))
        logger.propagate = False  # the parent prints the report; workers print nothing

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response | None:
        """One call, tallied: succeeded, failed (and why), refused by the circuit, held back."""
        tally = self.hook.tally
        self.state.paused = self.state.busy = False
        tally["calls"] += 1
        try:
            response = self.client.request(method, path, json=body)
            tally["succeeded"] += 1
            return response
        except rc.errors.CircuitOpenError:
            tally["refused by the circuit"] += 1
            raise
        except rc.errors.ApiError as error:
            tally["failed"] += 1
            if "budget" in error.reason:
                tally["retries not sent (budget)"] += 1
            return None
        finally:
            tally["held back by a pause"] += self.state.paused
            tally["waited for the account"] += self.state.busy

    def busy(self) -> None:
        # Each process starts at another account, so with more processes than accounts some of them
        # want the same account at the same moment.
        accounts = ACCOUNTS[self.index % len(ACCOUNTS) :] + ACCOUNTS[: self.index % len(ACCOUNTS)]
        for _ in range(JOURNAL_ROUNDS):
            self.call("GET", "/api/clients")
            for account in accounts:
                time.sleep(THINK)
                self.call("POST", "/api/journal", {"AccountNo": account, "Amount": 1})

    def outage(self) -> None:
        for _ in range(OUTAGE_CALLS):
            with contextlib.suppress(rc.errors.CircuitOpenError):
                self.call("GET", "/api/clients")

    def recovery(self) -> None:
        done = 0
        give_up = time.monotonic() + 10 * BREAK
        while done < RECOVERY_CALLS and time.monotonic() < give_up:
            try:
                self.call("GET", "/api/clients")
                done += 1
            except rc.errors.CircuitOpenError as refused:
                # Half-open, retry_after is the probe's lease: look again soon instead.
                time.sleep(min(refused.retry_after or BREAK, BREAK / 4))


def _work(index: int, redis_url: str, base_url: str, go: Sequence[Any], results: Any) -> None:
    """A worker process: says it is ready for each scene, starts it when the parent sets the
    scene's event (every worker at once), and sends its tally when done."""
    if hasattr(signal, "pthread_sigmask"):  # held by the parent while it started the fork server
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        worker = _Worker(index, redis_url, base_url)
        for scene, start in zip(SCENES, go, strict=True):
            worker.hook.tally = Counter()
            results.put((index, "ready", {}))
            if not start.wait(SCENE_TIMEOUT):
                return
            getattr(worker, scene)()
            results.put((index, scene, dict(worker.hook.tally)))
        worker.client.close()
        worker.state.close()
    except BaseException as error:
        results.put((index, "error", f"{type(error).__name__}: {error}"))


# -- in the parent ---------------------------------------------------------------------------------


class WorkerFailed(RuntimeError):
    """A worker process raised or stopped; the message says which and why."""


@attrs.define
class _Fleet:
    out: Print
    processes: Sequence[multiprocessing.process.BaseProcess]
    go: list[Any]
    results: Any
    interrupts: _Interrupts
    pending: dict[int, deque[tuple[str, Any]]] = attrs.Factory(lambda: defaultdict(deque))

    @property
    def workers(self) -> int:
        return len(self.processes)

    def scene(self, scene: str) -> list[Tally]:
        """Start ``scene`` in every worker at once, and gather their tallies in worker order."""
        self._gather("ready")
        self.go[SCENES.index(scene)].set()
        return self._gather(scene)

    def _gather(self, kind: str) -> list[Tally]:
        """One ``kind`` message from every worker; a worker's messages come in its order, but a fast
        worker's next ones may arrive before a slow worker's: those wait in ``pending``."""
        tallies: list[Tally] = [Counter() for _ in self.processes]
        waiting = set(range(self.workers))
        give_up = time.monotonic() + SCENE_TIMEOUT
        while waiting:
            for index in [i for i in waiting if self.pending[i]]:
                got, tally = self.pending[index].popleft()
                if got == "error":
                    raise WorkerFailed(f"worker {index + 1} failed: {tally}")
                if got != kind:
                    raise WorkerFailed(f"worker {index + 1} sent {got!r} while {kind!r} was expected")
                tallies[index] = Counter(tally)
                waiting.discard(index)
            if not waiting:
                break
            self.interrupts.check()
            try:
                index, got, tally = self.results.get(timeout=0.1)
                self.pending[index].append((got, tally))
            except queue.Empty:
                for i in waiting:
                    if self.processes[i].exitcode is not None:
                        raise WorkerFailed(
                            f"worker {i + 1} stopped (exit code {self.processes[i].exitcode})"
                        ) from None
                if time.monotonic() > give_up:
                    raise WorkerFailed(f"the workers did not finish within {SCENE_TIMEOUT:g} s") from None
        return tallies


def _total(tallies: Sequence[Tally], name: str) -> int:
    return sum(tally[name] for tally in tallies)


def _who(tallies: Sequence[Tally], name: str) -> str:
    return ", ".join(f"process {i + 1}" for i, tally in enumerate(tallies) if tally[name]) or "none"


def _report_busy(out: Print, sim: Any, tallies: list[Tally], workers: int) -> None:
    journal = sim.snapshot()["journal"]
    at_once = ", ".join(f"{a} {journal['max_in_flight'].get(a, 0)}" for a in ACCOUNTS)
    overlaps = sum(journal["overlaps"].values())
    calls = _total(tallies, "calls")
    out(f"   journal calls at once per account (max_in_flight at the simulator): {at_once}; "
        f"code 50 answers: {overlaps}")  # fmt: skip
    out(f"   journal calls that waited for another process's call of their account (shared guard): "
        f"{_total(tallies, 'waited for the account')}")  # fmt: skip
    held = [t["held back by a pause"] for t in tallies]
    unwarned = sum(1 for t in tallies if t["held back by a pause"] and not t["429"])
    out(f"   429s received: {sim.rate_limited['hyper']}, by {_who(tallies, '429')}; requests held back by "
        f"the shared Retry-After pause: {sum(held)}, in {sum(1 for n in held if n)} of {workers} "
        f"processes ({unwarned} of them got no 429 themselves)")  # fmt: skip
    out(f"   calls that succeeded: {_total(tallies, 'succeeded')} of {calls}")


def _report_outage(out: Print, sim: Any, tallies: list[Tally], workers: int) -> None:
    calls, sent = _total(tallies, "calls"), sim.outage_answers["hyper"]
    out(f"   circuit opened by {_who(tallies, 'circuit open')}, for every process: the failures of all "
        f"of them count in one shared window")  # fmt: skip
    refused = _total(tallies, "refused by the circuit")
    out(f"   calls refused before sending (CircuitOpenError): {refused} of {calls}, in "
        f"{sum(1 for t in tallies if t['refused by the circuit'])} of {workers} processes")  # fmt: skip
    out(f"   retries: {_total(tallies, 'retries sent')} sent, "
        f"{_total(tallies, 'retries not sent (budget)')} not sent because the shared budget was spent, "
        f"{_total(tallies, 'retries refused by the breaker')} refused by the open circuit")  # fmt: skip
    policy = demo_policy()
    out(f"   requests that reached Hyper: {sent} (each process on its own, with no breaker or budget: "
        f"up to {calls * policy.retry.max_attempts})")  # fmt: skip


def _report_recovery(out: Print, sim: Any, tallies: list[Tally], workers: int) -> None:
    probes = _total(tallies, "circuit half_open")
    out(f"   probes sent while half-open: {probes} ({_who(tallies, 'circuit half_open')}); "
        f"closed by {_who(tallies, 'circuit closed')}")  # fmt: skip
    succeeded = _total(tallies, "succeeded")
    out(f"   calls refused while open or half-open: {_total(tallies, 'refused by the circuit')}; "
        f"calls that succeeded: {succeeded} of {workers * RECOVERY_CALLS} wanted")  # fmt: skip


def run(workers: int = 4, out: Print = print) -> int:
    """Run the fleet demo with ``workers`` processes and print a report; returns the exit status."""
    from resilient_client.simulator import Simulator, serve

    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 32:
        raise ValueError(f"fleet: workers must be a whole number from 1 to 32, got {workers!r}")
    started = time.monotonic()
    try:
        server = RedisServer()
    except RedisServerMissing as missing:
        out(f"fleet demo skipped: {missing}")
        return 0
    with contextlib.ExitStack() as stack:
        interrupts = stack.enter_context(_Interrupts().installed())
        stack.callback(server.close)
        server.start()
        sim = Simulator(journal_latency=JOURNAL_LATENCY)
        url = stack.enter_context(serve(sim))
        limit = gateway_limit(workers)
        out(f"fleet: {workers} worker processes share one Redis (redis-server {server.version()} on "
            f"127.0.0.1:{server.port}); the simulator is on {url}")  # fmt: skip
        out(f"   Hyper's habits: {limit} requests per {GATEWAY_PERIOD:g} s per client IP (the real "
            f"gateway: 20 a minute), then 429 + Retry-After; journal calls take "
            f"{JOURNAL_LATENCY * 1000:g} ms, code 50 to another of the same AccountNo meanwhile")  # fmt: skip
        context = _process_context()
        go = [context.Event() for _ in SCENES]
        results = context.Queue()
        processes = [
            context.Process(
                target=_work,
                args=(i, server.url, f"{url}/hyper", go, results),
                name=f"resilient-client-fleet-{i + 1}",
                daemon=True,
            )
            for i in range(workers)
        ]
        stack.callback(_reap, processes)
        fleet = _Fleet(out, processes, go, results, interrupts)
        try:
            interrupts.check()
            with _signals_held():
                for process in processes:
                    process.start()
            _scenes(fleet, sim, server, limit)
        except WorkerFailed as failure:
            for process in processes:
                process.terminate()
            out(f"fleet: {failure}")
            return 1
        except BaseException:
            # Ctrl-C or SIGTERM: the workers stop now, not after their scene (or its timeout).
            for started_process in _started(processes):
                started_process.terminate()
            raise
    out(f"\nfleet done in {time.monotonic() - started:.1f} s; the workers, redis-server and the "
        f"simulator have stopped")  # fmt: skip
    return 0


def _process_context() -> multiprocessing.context.ForkServerContext | multiprocessing.context.SpawnContext:
    """Fresh worker processes: never a fork of this one (it runs the simulator's server thread).
    A fork server that imported this module once forks them in milliseconds; spawning each (where
    there is no fork server: Windows) costs an interpreter start and the imports, about a second."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("spawn")


def _scenes(fleet: _Fleet, sim: Any, server: RedisServer, limit: int) -> None:
    out, workers = fleet.out, fleet.workers
    out(f"\nA. a busy day: each process makes {JOURNAL_ROUNDS * len(ACCOUNTS)} journal calls (accounts "
        f"{', '.join(ACCOUNTS)}) and {JOURNAL_ROUNDS} other calls, with {THINK * 1000:g} ms of its own "
        "work between calls")  # fmt: skip
    sim.rate_limit("hyper", limit, period=GATEWAY_PERIOD)
    busy = fleet.scene("busy")
    _report_busy(out, sim, busy, workers)
    _fallbacks(out, busy)

    server.flush()  # the next scenes start from a clean circuit, budget and rate
    sim.reset()
    sim.outage("hyper", status=503)
    out(f"\nB. an outage: every Hyper request answers 503; each process makes {OUTAGE_CALLS} calls")
    outage = fleet.scene("outage")
    _report_outage(out, sim, outage, workers)
    _fallbacks(out, outage)

    sim.reset()
    out(f"\nC. Hyper is back: after the {BREAK:g} s break, one probe for the whole fleet")
    recovery = fleet.scene("recovery")
    _report_recovery(out, sim, recovery, workers)
    _fallbacks(out, recovery)


def _fallbacks(out: Print, tallies: Sequence[Tally]) -> None:
    lost = _total(tallies, "fell back to local state")
    if lost:
        out(f"   note: Redis answered too slowly {lost} times; those processes used in-process state "
            "until it answered again")  # fmt: skip


class _Interrupts:
    """While the fleet runs, Ctrl-C raises KeyboardInterrupt and SIGTERM raises ``SystemExit(143)``,
    so the workers, the simulator and redis-server are stopped on the way out instead of left
    behind. A handler can fire inside a ``__del__``, where Python swallows what it raises: the
    signal is remembered, and ``check()`` (asked while the parent waits for its workers) raises it
    again. A second signal during the clean-up is ignored, so it is not cut short. Only the main
    thread can set handlers: elsewhere (a test driving ``run`` from a thread) nothing changes."""

    def __init__(self) -> None:
        self.received: int | None = None

    def _raise(self, signum: int) -> None:
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.received is None:
            self.received = signum
            self._raise(signum)

    def check(self) -> None:
        """Raise a signal received earlier whose exception was swallowed."""
        if self.received is not None:
            self._raise(self.received)

    @contextlib.contextmanager
    def installed(self) -> Iterator[_Interrupts]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait while the workers are handed to the fork server: interrupted
    half-way, a worker would start after this process removed the events it waits on, and print
    a traceback. The fork server (started by the first worker) and the workers inherit the mask:
    each worker lifts it first thing (``_work``)."""
    held = {signal.SIGINT, signal.SIGTERM}
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _started(
    processes: Sequence[multiprocessing.process.BaseProcess],
) -> list[multiprocessing.process.BaseProcess]:
    return [process for process in processes if process.pid is not None]


def _reap(processes: Sequence[multiprocessing.process.BaseProcess]) -> None:
    processes = _started(processes)
    for process in processes:
        process.join(timeout=5)
    for process in processes:
        if process.is_alive():
            process.terminate()
            process.join(timeout=5)
