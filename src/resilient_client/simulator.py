"""An embedded simulator of the four vendor APIs: an ASGI app with scripted fault sequences.

It answers like each vendor under a path prefix (``/updox/...``, ``/usta/...``, ``/medable/...``,
``/hyper/...``): the vendor's success bodies by default, and the faults you script, built from the
catalogs exactly as the vendor sends them. It counts the requests it received and the writes it
applied, so a test can prove a POST was applied once::

    sim = Simulator()
    sim.script("hyper", "/api/journal", [Fault("hyper", 10), Fault("hyper", 10)])  # then success
    transport = httpx.ASGITransport(app=sim)               # in-process, for async tests
    with serve(sim) as url: ...                            # a real loopback server (needs uvicorn)
    sim.requests["hyper", "/api/journal"], sim.side_effects["hyper", "/api/journal"]

Medable habits: ``POST /medable/accounts/login`` opens a session (``md.sid`` cookie) and hands out a
``Medable-Csrf-Token`` header; later requests carrying the session must echo that token, or they get
kCSRFTokenMismatch.

The habits the SDK's resilience strategies exist for, off until switched on::

    sim = Simulator(clock=fake_clock)           # the rate limit's windows follow this clock
    sim.rate_limit("hyper", 20, period=60.0)    # Hyper's gateway: 20 requests a minute per client IP
    sim.journal_latency = 0.05                  # journal calls take this long; an overlap gets code 50
    sim.outage("hyper", status=503)             # every hyper request answers 503 until outage(..., None)
    sim.error_rate("usta", 0.3, seed=1)         # 30 % of usta requests, drawn at random, answer a 503
    sim.capacity("usta", 4, latency=0.05)       # 4 calls at once, 50 ms each; beyond: 503 (kTooBusy) at once
    sim.capacity("usta", 12)                    # change C while running (the latency stays); None: off
    sim.rate_limited["hyper"], sim.outage_answers["hyper"], sim.overlaps["A1"], sim.max_in_flight["A1"]
    sim.random_faults["usta"]                   # requests the error rate answered with a fault

``GET /_simulator/stats`` answers ``snapshot()`` as JSON: what the server saw from every client of a
fleet, readable from another process. Uses only the package's public names.
"""

from __future__ import annotations

import contextlib
import http
import json
import math
import random
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any

import anyio
import attrs

import resilient_client as rc
from resilient_client.testing import fault_body

__all__ = ["JOURNAL_ACCOUNT_FIELD", "SCENARIOS", "STATS_PATH", "Fault", "Ok", "Reply", "Simulator", "serve"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})

#: The JSON body field that names the account of a Hyper journal call. Its value is compared as the
#: SDK's guards compare keys: a string as it is, anything else as its JSON text (7 and "7" are one).
JOURNAL_ACCOUNT_FIELD = "AccountNo"
#: ``GET`` here answers ``Simulator.snapshot()`` as JSON (not a vendor path, counted nowhere).
STATS_PATH = "/_simulator/stats"
#: What Hyper's gateway says with its 429: undocumented, so nothing the SDK can read a code from.
GATEWAY_THROTTLED_BODY = {"message": "API rate limit exceeded"}


@attrs.frozen
class Fault:
    """Answer with a vendor's catalog code, as the vendor sends it (status, envelope, headers)."""

    vendor: str
    code: int | str
    retry_after: float | None = None
    status: int | None = None
    message: str | None = None
    details: tuple[Mapping[str, Any], ...] = ()
    headers: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen
class Reply:
    """Answer with exactly this: any status, body and headers (a proxy's HTML page, a bare 503)."""

    status: int = 200
    body: bytes | Mapping[str, Any] | Sequence[Any] = b""
    headers: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen
class Ok:
    """Answer with the vendor's usual success, optionally with this JSON body."""

    body: Mapping[str, Any] | None = None


Step = Fault | Reply | Ok
#: (HTTP status, JSON-ready body or raw bytes, response headers).
Answer = tuple[int, Any, dict[str, str]]


def _success_body(vendor: str, path: str, method: str) -> dict[str, Any]:
    if vendor == "updox":
        return {"successful": True, "responseCode": 2000, "responseMessage": "OK"}
    if vendor == "hyper":
        return {"ResponseCode": 0, "ResponseMsgEng": "Success", "Data": [{"Id": 1}]}
    if vendor == "medable":
        return {"object": "result", "path": path}
    return {"id": 1, "path": path, "method": method}


#: Named scenarios for ``resilient-client simulate --scenario NAME``: vendor -> (path, steps, repeat).
SCENARIOS: dict[str, dict[str, tuple[str, list[Step], bool]]] = {
    "transient": {
        "updox": ("*", [Fault("updox", 4650)], False),
        "usta": ("*", [Reply(503), Reply(503)], False),
        "medable": ("*", [Fault("medable", "kTooBusy")], False),
        "hyper": ("*", [Fault("hyper", 10), Fault("hyper", 10)], False),
    },
    "outage": {
        vendor: ("*", [Reply(503, b"<html>down</html>", {"content-type": "text/html"})], True)
        for vendor in rc.VENDORS
    },
    "throttled": {
        "medable": ("*", [Fault("medable", "kThrottled", retry_after=1)], False),
        "usta": ("*", [Reply(429, {"message": "slow down"}, {"Retry-After": "1"})], False),
        "hyper": ("*", [Reply(429, b"", {"Retry-After": "1"})], False),
    },
}


class Simulator:
    """The ASGI app. Script faults per (vendor, path); switch habits on (``rate_limit``, ``outage``,
    ``journal_latency``); read the counters or ``snapshot()``; ``reset()`` between runs.

    ``clock`` (seconds, monotonic) times the rate limit's windows, so a test moves time instead of
    waiting; ``asleep`` is how a journal call waits out ``journal_latency`` (``anyio.sleep``). The
    counters are written under one lock: the loopback server runs the app in its own thread, and
    tests may call it from many.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        journal_latency: float = 0.0,
        asleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        if not callable(clock):
            raise TypeError(f"Simulator(clock=...): expected a callable returning seconds, got {clock!r}")
        if not callable(asleep):
            raise TypeError(f"Simulator(asleep=...): expected an async sleep function, got {asleep!r}")
        self._lock = threading.Lock()
        self._clock = clock
        self._asleep = asleep
        self._journal_latency = _seconds("Simulator(journal_latency=...)", journal_latency)
        self._scripts: dict[tuple[str, str], deque[Step]] = {}
        self._repeat: set[tuple[str, str]] = set()
        self._csrf: dict[str, str] = {}
        self._limits: dict[str, tuple[int, float]] = {}
        #: Times of the requests each (vendor, client IP) window let through, oldest first.
        self._windows: dict[tuple[str, str], deque[float]] = {}
        self._outages: dict[str, int] = {}
        #: vendor -> (share of requests answered with a transient fault, status, the draws)
        self._error_rates: dict[str, tuple[float, int, random.Random]] = {}
        self._journal_in_flight: Counter[str] = Counter()
        #: vendor -> (calls served at once, seconds each, the status of a refusal)
        self._capacities: dict[str, tuple[int, float, int]] = {}
        self._capacity_in_flight: Counter[str] = Counter()
        #: Requests a capacity served, and refused (answered at once with the overload reply), by vendor.
        self.capacity_served: Counter[str] = Counter()
        self.capacity_refused: Counter[str] = Counter()
        #: The most requests a capacity served at once since it was last set, by vendor.
        self.capacity_peak: Counter[str] = Counter()
        #: Requests received, by (vendor, path): every one that reached the server, refused or not.
        self.requests: Counter[tuple[str, str]] = Counter()
        #: Writes (POST, PUT, PATCH, DELETE) answered with success, i.e. applied, by (vendor, path).
        self.side_effects: Counter[tuple[str, str]] = Counter()
        #: The headers of the last request, by (vendor, path), lower-case names.
        self.last_headers: dict[tuple[str, str], dict[str, str]] = {}
        #: Requests the rate limit refused with a 429, by vendor.
        self.rate_limited: Counter[str] = Counter()
        #: Requests answered by an outage, by vendor.
        self.outage_answers: Counter[str] = Counter()
        #: Requests answered with a transient fault by ``error_rate``, by vendor.
        self.random_faults: Counter[str] = Counter()
        #: Hyper journal requests that arrived while another one of the same account was being
        #: processed (each got code 50), by account.
        self.overlaps: Counter[str] = Counter()
        #: The most Hyper journal requests of one account at the server at once (the refused
        #: ones included), by account: 1 means the calls never overlapped.
        self.max_in_flight: Counter[str] = Counter()

    @property
    def journal_latency(self) -> float:
        """Seconds a Hyper journal request takes to process (0: answered at once); another journal
        request of the same account arriving meanwhile gets code 50."""
        return self._journal_latency

    @journal_latency.setter
    def journal_latency(self, seconds: float) -> None:
        self._journal_latency = _seconds("Simulator.journal_latency", seconds)

    def rate_limit(self, vendor: str, requests: int | None, period: float = 60.0) -> None:
        """Let through at most ``requests`` requests of ``vendor`` per client IP in any ``period``
        seconds (a sliding window); past that, answer 429 with ``Retry-After`` (whole seconds until
        the window frees a slot) and the gateway's undocumented body. ``requests=None`` lifts it.
        Refused requests do not use up the window."""
        where = f"rate_limit({vendor!r}, ...)"
        _check_vendor(vendor)
        if requests is not None:
            if isinstance(requests, bool) or not isinstance(requests, int):
                raise TypeError(f"{where}: requests must be a whole number or None, got {requests!r}")
            if requests < 1:
                raise ValueError(f"{where}: requests must be 1 or more (None lifts it), got {requests}")
            period = _seconds(f"{where}: period", period)
            if period == 0:
                raise ValueError(f"{where}: period must be more than 0 seconds")
        with self._lock:
            for key in [key for key in self._windows if key[0] == vendor]:
                del self._windows[key]
            if requests is None:
                self._limits.pop(vendor, None)
            else:
                self._limits[vendor] = (requests, period)

    def outage(self, vendor: str, status: int | None = 503) -> None:
        """Answer every request of ``vendor`` with ``status`` (an error status) and a proxy's HTML
        page until ``outage(vendor, None)``; scripts and habits wait until then."""
        _check_vendor(vendor)
        if status is not None and (isinstance(status, bool) or not isinstance(status, int)):
            raise TypeError(f"outage({vendor!r}, ...): status must be an HTTP status or None, got {status!r}")
        if status is not None and not 400 <= status <= 599:
            raise ValueError(f"outage({vendor!r}, {status}): status must be an error status, 400 to 599")
        with self._lock:
            if status is None:
                self._outages.pop(vendor, None)
            else:
                self._outages[vendor] = status

    def error_rate(self, vendor: str, rate: float | None, status: int = 503, seed: int | None = None) -> None:
        """Answer a random share ``rate`` (0 to 1) of ``vendor``'s requests with a transient fault:
        ``status`` with a proxy's HTML page, or for Medable (whose faults are bodies) kTooBusy, its
        503. Each request is drawn on its own (``seed`` makes the draws repeatable); an outage or the
        rate limit answers first. ``None`` or 0 turns it off."""
        where = f"error_rate({vendor!r}, ...)"
        _check_vendor(vendor)
        if rate is not None:
            if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
                raise ValueError(f"{where}: rate must be a share from 0 to 1 (or None), got {rate!r}")
            if isinstance(status, bool) or not isinstance(status, int) or not 500 <= status <= 599:
                raise ValueError(f"{where}: status must be a server error status, 500 to 599, got {status!r}")
        with self._lock:
            if not rate:
                self._error_rates.pop(vendor, None)
            else:
                self._error_rates[vendor] = (float(rate), status, random.Random(seed))

    def capacity(
        self, vendor: str, calls: int | None, latency: float | None = None, status: int = 503
    ) -> None:
        """Serve at most ``calls`` requests of ``vendor`` at once, each in ``latency`` seconds;
        answer any request beyond that at once with the vendor's overload reply: ``status`` (503)
        and the service_unavailable body (Medable: kTooBusy). Call again to change ``calls`` while
        running (``latency`` None keeps the one set); ``calls=None`` switches it off."""
        where = f"capacity({vendor!r}, ...)"
        _check_vendor(vendor)
        if calls is not None and (isinstance(calls, bool) or not isinstance(calls, int) or calls < 1):
            raise ValueError(f"{where}: calls must be a whole number of 1 or more, or None, got {calls!r}")
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise ValueError(f"{where}: status must be an error status, 400 to 599, got {status!r}")
        with self._lock:
            if calls is None:
                self._capacities.pop(vendor, None)
                return
            kept = self._capacities.get(vendor)
            self.capacity_peak[vendor] = self._capacity_in_flight[vendor]
            if latency is None:
                latency = kept[1] if kept is not None else 0.05
            self._capacities[vendor] = (calls, _seconds(f"{where}: latency", latency), status)

    def snapshot(self) -> dict[str, Any]:
        """One consistent, JSON-ready copy of the counters and switches (``GET /_simulator/stats``)."""
        with self._lock:
            return {
                "requests": _by_vendor(self.requests),
                "side_effects": _by_vendor(self.side_effects),
                "rate_limited": dict(self.rate_limited),
                "outage_answers": dict(self.outage_answers),
                "random_faults": dict(self.random_faults),
                "journal": {
                    "overlaps": dict(self.overlaps),
                    "max_in_flight": dict(self.max_in_flight),
                    "in_flight": {k: v for k, v in self._journal_in_flight.items() if v > 0},
                    "latency": self._journal_latency,
                },
                "rate_limits": {v: {"requests": n, "period": p} for v, (n, p) in self._limits.items()},
                "outages": dict(self._outages),
                "error_rates": {v: rate for v, (rate, _, _) in self._error_rates.items()},
                "capacity": {
                    vendor: {
                        "calls": calls,
                        "latency": latency,
                        "in_flight": self._capacity_in_flight[vendor],
                        "peak": self.capacity_peak[vendor],
                        "served": self.capacity_served[vendor],
                        "refused": self.capacity_refused[vendor],
                    }
                    for vendor, (calls, latency, _) in self._capacities.items()
                },
            }

    def script(self, vendor: str, path: str, steps: Sequence[Step], *, repeat: bool = False) -> None:
        """Answer the next requests to ``path`` (``"*"``: any path of the vendor) with ``steps``, in
        order, then as usual; with ``repeat=True`` the last step answers forever."""
        _check_vendor(vendor)
        for index, step in enumerate(steps):
            _check_step(vendor, index, step)
        key = (vendor, path if path == "*" else "/" + path.lstrip("/"))
        with self._lock:
            self._scripts[key] = deque(steps)
            if repeat:
                self._repeat.add(key)
            else:
                self._repeat.discard(key)

    def load_scenario(self, name: str) -> None:
        """Script one of ``SCENARIOS`` for every vendor it names."""
        if name not in SCENARIOS:
            raise ValueError(f"unknown scenario {name!r}; known: {', '.join(sorted(SCENARIOS))}")
        for vendor, (path, steps, repeat) in SCENARIOS[name].items():
            self.script(vendor, path, steps, repeat=repeat)

    def reset(self) -> None:
        """Forget scripts, sessions, rate limits, outages, error rates and counters (the clock and
        ``journal_latency`` stay)."""
        with self._lock:
            self._scripts.clear()
            self._repeat.clear()
            self._csrf.clear()
            self._limits.clear()
            self._windows.clear()
            self._outages.clear()
            self._error_rates.clear()
            self.random_faults.clear()
            self.requests.clear()
            self.side_effects.clear()
            self.last_headers.clear()
            self.rate_limited.clear()
            self.outage_answers.clear()
            self.overlaps.clear()
            self.max_in_flight.clear()
            self._capacities.clear()
            self.capacity_served.clear()
            self.capacity_refused.clear()
            self.capacity_peak.clear()

    def _next_step(self, vendor: str, path: str) -> Step | None:
        with self._lock:
            for key in ((vendor, path), (vendor, "*")):
                steps = self._scripts.get(key)
                if steps:
                    return steps[0] if key in self._repeat and len(steps) == 1 else steps.popleft()
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        method = scope["method"]
        if scope["path"] == STATS_PATH:
            await self._respond_stats(send, method)
            return
        vendor, _, rest = scope["path"].lstrip("/").partition("/")
        path = "/" + rest
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if vendor not in rc.VENDORS:
            await _respond(send, 404, b"no such vendor", {"content-type": "text/plain"})
            return
        key = (vendor, path)
        with self._lock:
            self.requests[key] += 1
            self.last_headers[key] = headers
        client = scope.get("client")
        answer = self._gateway(vendor, client[0] if client else "unknown")
        if answer is None and vendor == "hyper" and "journal" in path.lower():
            answer = await self._journal(path, method, headers, body)
        if answer is None and vendor in self._capacities:
            answer = await self._within_capacity(vendor, path, method, headers, body)
        status, payload, extra = answer or self._answer(vendor, path, method, headers, body)
        if method in WRITES and status < 300 and _is_success(vendor, payload):
            with self._lock:
                self.side_effects[key] += 1
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        if not isinstance(payload, bytes):
            extra.setdefault("content-type", "application/json")
        await _respond(send, status, raw, extra)

    def _gateway(self, vendor: str, client_ip: str) -> Answer | None:
        """The answer of what stands in front of the vendor (an outage, the rate limit), or None to
        let the request through."""
        with self._lock:
            status = self._outages.get(vendor)
            if status is not None:
                self.outage_answers[vendor] += 1
                return status, _error_page(status), {"content-type": "text/html"}
            limit = self._limits.get(vendor)
            if limit is None:
                return self._random_fault(vendor)
            allowed, period = limit
            now = self._clock()
            window = self._windows.setdefault((vendor, client_ip), deque())
            while window and window[0] <= now - period:
                window.popleft()
            if len(window) < allowed:
                window.append(now)
                return self._random_fault(vendor)
            self.rate_limited[vendor] += 1
            # Rounded first so float noise (59.000000001) does not ask for a second more than needed.
            wait = max(1, math.ceil(round(window[0] + period - now, 6)))
        return 429, dict(GATEWAY_THROTTLED_BODY), {"Retry-After": str(wait)}

    def _random_fault(self, vendor: str) -> Answer | None:
        """The transient fault ``error_rate`` draws for this request, or None (called locked)."""
        drawn = self._error_rates.get(vendor)
        if drawn is None:
            return None
        rate, status, draws = drawn
        if draws.random() >= rate:
            return None
        self.random_faults[vendor] += 1
        if vendor == "medable":
            code, body = fault_body("medable", "kTooBusy")
            return code, body, {}
        return status, _error_page(status), {"content-type": "text/html"}

    async def _journal(self, path: str, method: str, headers: dict[str, str], body: bytes) -> Answer:
        """A Hyper journal request: processed for ``journal_latency`` seconds, one at a time per
        account; one arriving while another of its account is processed gets code 50 at once."""
        account = _journal_account(body)
        latency = self._journal_latency
        if account is None:
            if latency:
                await self._asleep(latency)
            return self._answer("hyper", path, method, headers, body)
        with self._lock:
            self._journal_in_flight[account] += 1
            at_once = self._journal_in_flight[account]
            self.max_in_flight[account] = max(self.max_in_flight[account], at_once)
            if at_once > 1:
                self.overlaps[account] += 1
        try:
            if at_once > 1:
                # Hyper sends this one under 200 (its page says 503): the body code is the truth.
                return 200, fault_body("hyper", 50)[1], {}
            if latency:
                await self._asleep(latency)
            return self._answer("hyper", path, method, headers, body)
        finally:
            # Released before the answer is sent: once a client has read it, the account is free.
            with self._lock:
                self._journal_in_flight[account] -= 1
                if self._journal_in_flight[account] <= 0:
                    del self._journal_in_flight[account]

    async def _within_capacity(
        self, vendor: str, path: str, method: str, headers: dict[str, str], body: bytes
    ) -> Answer:
        """A request to a vendor with a capacity: served in its latency while fewer than the
        capacity are, else refused at once with the vendor's overload reply."""
        with self._lock:
            found = self._capacities.get(vendor)
            if found is None:
                return self._answer(vendor, path, method, headers, body)
            calls, latency, status = found
            if self._capacity_in_flight[vendor] >= calls:
                self.capacity_refused[vendor] += 1
                refused = True
            else:
                refused = False
                self._capacity_in_flight[vendor] += 1
                self.capacity_served[vendor] += 1
                self.capacity_peak[vendor] = max(self.capacity_peak[vendor], self._capacity_in_flight[vendor])
        if refused:
            if vendor == "medable":  # Medable says so in its envelope
                return status, fault_body("medable", "kTooBusy")[1], {}
            return status, _error_page(status), {"content-type": "text/html"}
        try:
            if latency:
                await self._asleep(latency)
            return self._answer(vendor, path, method, headers, body)
        finally:
            # Freed before the answer is sent: once a client has read it, the slot is free.
            with self._lock:
                self._capacity_in_flight[vendor] -= 1

    async def _respond_stats(self, send: Send, method: str) -> None:
        if method != "GET":
            await _respond(send, 405, b"GET only", {"content-type": "text/plain", "allow": "GET"})
            return
        body = json.dumps(self.snapshot()).encode()
        await _respond(send, 200, body, {"content-type": "application/json"})

    def _answer(self, vendor: str, path: str, method: str, headers: dict[str, str], body: bytes) -> Answer:
        step = self._next_step(vendor, path)
        if vendor == "medable" and step is None:
            session = _cookie(headers.get("cookie", ""), "md.sid")
            if path.endswith("/accounts/login") and method == "POST":
                sid, token = secrets.token_hex(8), secrets.token_hex(12)
                with self._lock:
                    self._csrf[sid] = token
                cookie = f"md.sid={sid}; Path=/; HttpOnly"
                return (
                    200,
                    {"object": "account", "_id": sid},
                    {"Medable-Csrf-Token": token, "set-cookie": cookie},
                )
            expected = self._csrf.get(session or "")
            if expected is not None and headers.get("medable-csrf-token") != expected:
                step = Fault("medable", "kCSRFTokenMismatch")
        if step is None or isinstance(step, Ok):
            answer = step.body if isinstance(step, Ok) and step.body is not None else None
            return 200, dict(answer) if answer is not None else _success_body(vendor, path, method), {}
        if isinstance(step, Reply):
            return step.status, step.body, dict(step.headers)
        status, payload = fault_body(step.vendor, step.code, message=step.message, details=step.details)
        extra = dict(step.headers)
        if step.retry_after is not None:
            extra["Retry-After"] = f"{step.retry_after:g}"
            if step.vendor == "medable":
                extra.update({"X-Rate-Limit-Limit": "100", "X-Rate-Limit-Remaining": "0"})
        return step.status or status, payload, extra


def _check_vendor(vendor: str) -> None:
    if vendor not in rc.VENDORS:
        raise ValueError(f"unknown vendor {vendor!r}; the simulator serves {', '.join(rc.VENDORS)}")


def _seconds(where: str, value: object) -> float:
    """``value`` as a finite, non-negative number of seconds, or a TypeError/ValueError saying where."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{where}: expected seconds (a number), got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{where}: expected a finite number of seconds, 0 or more, got {value!r}")
    return float(value)


def _journal_account(body: bytes) -> str | None:
    """The account a journal request names in its JSON body, as the SDK's guards key it; None
    when the body is not a JSON object or names none."""
    try:
        document = json.loads(body) if body else None
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested past the parser's depth
        return None
    value = document.get(JOURNAL_ACCOUNT_FIELD) if isinstance(document, dict) else None
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))


def _error_page(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return f"<html><body><h1>{status} {phrase}</h1></body></html>".encode()


def _by_vendor(counts: Counter[tuple[str, str]]) -> dict[str, dict[str, int]]:
    nested: dict[str, dict[str, int]] = {}
    for (vendor, path), count in counts.items():
        nested.setdefault(vendor, {})[path] = count
    return nested


def _check_step(vendor: str, index: int, step: object) -> None:
    """Refuse, when scripted, a step the simulator could not answer: a fault of another vendor, or
    a code the vendor's catalog lacks (a Reply sends any body you like)."""
    where = f"{vendor} step {index}"
    if not isinstance(step, Fault | Reply | Ok):
        raise TypeError(f"{where}: expected a Fault, Reply or Ok, got {type(step).__name__}")
    if not isinstance(step, Fault):
        return
    if step.vendor != vendor:
        known = "" if step.vendor in rc.VENDORS else f" (the simulator serves {', '.join(rc.VENDORS)})"
        raise ValueError(f"{where}: Fault({step.vendor!r}, {step.code!r}) is not a {vendor} fault{known}")
    if rc.catalog(vendor).lookup(step.code) is None:
        raise ValueError(
            f"{where}: {vendor} has no code {step.code!r} in its catalog, so the simulator cannot send "
            f"it; script a Reply with the exact body instead (`resilient-client codes {vendor}` lists them)"
        )


def _is_success(vendor: str, payload: Any) -> bool:
    if not isinstance(payload, dict):
        return True
    if vendor == "updox":
        return payload.get("responseCode") == 2000 and payload.get("successful") is True
    if vendor == "hyper":
        return payload.get("ResponseCode") == 0
    return payload.get("object") != "fault" and "errors" not in payload and "errorCode" not in payload


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond(send: Send, status: int, body: bytes, headers: Mapping[str, str]) -> None:
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


@contextlib.contextmanager
def serve(app: Simulator, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run ``app`` on a real loopback server in a background thread; yields its base URL.

    ``port=0`` picks a free port. Needs uvicorn: ``pip install 'resilient-client[server]'``, else
    ModuleNotFoundError.
    """
    try:
        import uvicorn
    except ImportError:
        raise ModuleNotFoundError(
            "the simulator's server needs uvicorn: pip install 'resilient-client[server]'", name="uvicorn"
        ) from None
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off"))

    def run() -> None:
        # uvicorn exits its thread with SystemExit when it cannot bind; the caller gets a RuntimeError.
        with contextlib.suppress(SystemExit):
            server.run()

    thread = threading.Thread(target=run, name="resilient-client-simulator", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the simulator could not start on {host}:{port}")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()
    try:
        yield f"http://{bound[0]}:{bound[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
