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
kCSRFTokenMismatch. Uses only the package's public names.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any

import attrs

import resilient_client as rc
from resilient_client.testing import fault_body

__all__ = ["SCENARIOS", "Fault", "Ok", "Reply", "Simulator", "serve"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


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
    """The ASGI app. Script faults per (vendor, path); read the counters; ``reset()`` between runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[tuple[str, str], deque[Step]] = {}
        self._repeat: set[tuple[str, str]] = set()
        self._csrf: dict[str, str] = {}
        #: Requests received, by (vendor, path).
        self.requests: Counter[tuple[str, str]] = Counter()
        #: Writes (POST, PUT, PATCH, DELETE) answered with success, i.e. applied, by (vendor, path).
        self.side_effects: Counter[tuple[str, str]] = Counter()
        #: The headers of the last request, by (vendor, path), lower-case names.
        self.last_headers: dict[tuple[str, str], dict[str, str]] = {}

    def script(self, vendor: str, path: str, steps: Sequence[Step], *, repeat: bool = False) -> None:
        """Answer the next requests to ``path`` (``"*"``: any path of the vendor) with ``steps``, in
        order, then as usual; with ``repeat=True`` the last step answers forever."""
        if vendor not in rc.VENDORS:
            raise ValueError(f"unknown vendor {vendor!r}; the simulator serves {', '.join(rc.VENDORS)}")
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
        """Forget scripts, sessions and counters."""
        with self._lock:
            self._scripts.clear()
            self._repeat.clear()
            self._csrf.clear()
            self.requests.clear()
            self.side_effects.clear()
            self.last_headers.clear()

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
        status, payload, extra = self._answer(vendor, path, method, headers, body)
        if method in WRITES and status < 300 and _is_success(vendor, payload):
            with self._lock:
                self.side_effects[key] += 1
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        if not isinstance(payload, bytes):
            extra.setdefault("content-type", "application/json")
        await _respond(send, status, raw, extra)

    def _answer(
        self, vendor: str, path: str, method: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
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
