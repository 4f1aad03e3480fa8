"""The resilience pipeline: one request's context, one attempt's result, events, hooks, composition.

Each attempt passes a chain of strategies, outermost first::

    retry (strategies/retry.py: tenacity; the budget is asked before each retry)
      └─ breaker (strategies/breaker.py)  refuses while the vendor's host is failing
         └─ limiter (strategies/limiter.py)  waits for a permit; a 429's Retry-After pauses the host
            └─ guard (strategies/guard.py)  at most ``limit`` attempts in flight per key
               └─ leaf (the transport)  send -> read the body -> classify -> Attempt

A strategy is a pair of methods, ``handle(next, call, number)`` and ``ahandle(next, call, number)``,
around no-I/O logic of its own; it returns an ``Attempt`` instead of raising (Polly's ``Outcome``), so a
refusal is an Attempt carrying a ``RejectedError`` that the retry strategy can weigh against the last
vendor answer. No strategy logs or calls user code: each reports what happened to ``Hooks``, which
hand it to logging, ``on_retry`` and instrumentation.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import threading
import weakref
from collections.abc import Awaitable, Callable, Generator, Iterable, Sequence
from typing import Any, ClassVar, Protocol

import attrs
import httpx

from resilient_client._classify import OK, Outcome
from resilient_client._clock import Clock
from resilient_client._decision import Decision
from resilient_client._policy import RetryPolicy
from resilient_client._redact import Secrets, redact_url
from resilient_client.errors import RejectedError

__all__ = [
    "ATTEMPTS_EXTENSION",
    "CALLER_TIMEOUT_EXTENSION",
    "OPERATION_EXTENSION",
    "POLICY_EXTENSION",
    "AsyncNext",
    "Attempt",
    "AttemptEvent",
    "BreakerEvent",
    "Call",
    "Hook",
    "Hooks",
    "Next",
    "OnRetry",
    "RejectionEvent",
    "RetryEvent",
    "Strategy",
    "WaitEvent",
    "add_global_hook",
    "chain",
    "is_testing",
    "remove_global_hook",
    "set_testing",
]

#: ``request.extensions`` key: a RetryPolicy (or a policy file path) for this request only.
POLICY_EXTENSION = "resilient_client.policy"
#: ``request.extensions`` key: the operation name matched by ``idempotent_operations`` and guards.
OPERATION_EXTENSION = "resilient_client.operation"
#: ``request.extensions`` key: the caller's own timeouts, kept there once an attempt shrank them.
CALLER_TIMEOUT_EXTENSION = "resilient_client.caller_timeout"
#: ``response.extensions`` key: how many attempts the request took.
ATTEMPTS_EXTENSION = "resilient_client.attempts"

_TIMEOUT_KEYS = ("connect", "read", "write", "pool")
_TIMEOUT_KEY_SET = frozenset(_TIMEOUT_KEYS)
_testing = False


def set_testing(enabled: bool) -> None:
    """Turn waits off (``True``) or back on, for users' own tests: retries still happen, at once.

    Off are the waits a strategy chooses (retry backoff, a server's Retry-After, rate-limit pacing
    and pauses); a guard still waits for the call that holds its key, since that ends by itself.
    """
    global _testing
    _testing = enabled


def is_testing() -> bool:
    """True while ``set_testing(True)`` is in force."""
    return _testing


#: The last timeouts measured by ``_longest`` (a copy) and their longest. Most requests carry the
#: client's timeouts, a new but equal dict each time: comparing two dicts costs a fifth of measuring
#: one (the key view's set test, ``None in`` comparing each float with None, ``max``).
_measured: tuple[dict[str, Any], float] = ({}, math.inf)


def _longest(timeouts: Any) -> float:
    """The longest of httpx's four timeouts; infinite when one is missing or None (no timeout)."""
    global _measured
    # A plain dict only: other mappings (a mappingproxy) compare equal to dicts, and have no longest.
    plain = type(timeouts) is dict
    measured = _measured
    if plain and timeouts == measured[0]:
        return measured[1]
    if not isinstance(timeouts, dict) or not timeouts.keys() >= _TIMEOUT_KEY_SET:
        return math.inf
    values = timeouts.values()
    longest = math.inf if None in values else float(max(values))
    # Kept only when every dict equal to this one has the same longest: plain floats, none NaN
    # (``max`` of values that do not order depends on their order, which equality ignores).
    if plain and all(type(value) is float and value == value for value in values):
        _measured = (dict(timeouts), longest)
    return longest


class Call:
    """One request's fixed context across its attempts, as every hook receives it.

    A hook may read ``request`` (the ``httpx.Request``; its headers may hold credentials, which
    ``secrets`` knows), ``vendor``, ``host``, ``endpoint``, ``policy`` (the ``RetryPolicy`` in
    force), ``deadline`` (on ``clock``'s monotonic time), ``operation``, ``time_left()``;
    ``hook_data`` is scratch space for hooks that follow a call (a tracing span, say). A plain
    slotted class: it is on the success path.
    """

    __slots__ = (
        "_operation",
        "clock",
        "deadline",
        "endpoint",
        "hook_data",
        "host",
        "longest",
        "policy",
        "replayable",
        "request",
        "secrets",
        "shrink",
        "timeouts",
        "vendor",
    )

    def __init__(
        self,
        request: httpx.Request,
        policy: RetryPolicy,
        clock: Clock,
        vendor: str,
        replayable: bool,
        secrets: Secrets,
    ) -> None:
        self.request = request
        #: The transport's known secrets: what a refusal's message must mask.
        self.secrets = secrets
        self.policy = policy
        self.clock = clock
        self.vendor = vendor
        url = request.url
        #: ``request.url.host`` (IDNA decoded), read once: each strategy keys on it.
        self.host = host = url.host
        port = url.port
        #: What per-endpoint state (breaker, limiter, concurrency) keys on: the host and, unless it
        #: is the scheme's default (which httpx leaves out), the port: ``api.example.com:8443``. Two
        #: services on one host are two endpoints. Worked out here: the breaker (on in every
        #: shipped policy) reads it on every attempt.
        self.endpoint = host if port is None else f"{host}:{port}"
        self.replayable = replayable
        retry = policy.retry
        self.deadline = clock.monotonic() + retry.total_timeout
        self.hook_data: dict[str, Any] | None = None
        self._operation: str | None = None
        #: The caller's own timeouts (kept under CALLER_TIMEOUT_EXTENSION once shrunk, so a request
        #: sent again starts from them, not from a shrunk leftover).
        extensions = request.extensions
        timeouts = extensions.get(CALLER_TIMEOUT_EXTENSION) or extensions.get("timeout")
        self.timeouts: Any = timeouts
        #: The longest of the caller's timeouts (infinite: one is missing or None). The client's
        #: own timeouts, equal to the last measured, are looked up here without a call.
        measured = _measured
        if type(timeouts) is dict and timeouts == measured[0]:
            self.longest = measured[1]
        else:
            self.longest = _longest(timeouts)
        # Usually the caller's timeouts (httpx's 5 s) end long before the deadline: nothing to shrink.
        self.shrink = retry.attempt_timeout > 0 or retry.total_timeout < self.longest

    @property
    def operation(self) -> str:
        """The name ``idempotent_operations`` and guards match: the extension, else the last path
        segment. Worked out once per call (guards ask on every attempt)."""
        operation = self._operation
        if operation is None:
            named = self.request.extensions.get(OPERATION_EXTENSION)
            if isinstance(named, str):
                operation = named
            else:
                operation = self.request.url.path.rstrip("/").rpartition("/")[2]
            self._operation = operation
        return operation

    def name_operation(self) -> str:
        """``operation``, as a function: what ``decide`` calls only when the method is not enough."""
        return self.operation

    def time_left(self, now: float | None = None) -> float:
        """Seconds until the deadline (negative once it has passed)."""
        return self.deadline - (self.clock.monotonic() if now is None else now)

    def shrink_timeouts(self) -> None:
        """Cut httpx's four timeouts to the time left (and ``attempt_timeout``) for the next attempt."""
        # Never zero or below: httpx refuses those, and the deadline check raises before sending.
        limit = max(self.time_left(), 0.001)
        if self.policy.retry.attempt_timeout > 0:
            limit = min(limit, self.policy.retry.attempt_timeout)
        current = self.timeouts or {}
        # The shrunk timeouts stay on the request: httpcore reads them again for the body the
        # caller reads after we return, which the deadline covers too.
        self.request.extensions[CALLER_TIMEOUT_EXTENSION] = current
        self.request.extensions["timeout"] = {
            key: limit if current.get(key) is None else min(current[key], limit) for key in _TIMEOUT_KEYS
        }


@attrs.define
class Attempt:
    """One attempt's result: a response, a transport error or a refusal, what it means, what next.

    ``rejection`` is set when a strategy refused to send (nothing reached the vendor); ``number`` is
    then the attempt that was refused.
    """

    number: int
    decision: Decision
    response: httpx.Response | None = None
    outcome: Outcome = OK
    error: Exception | None = None
    retry_after: float | None = None
    rejection: RejectedError | None = None
    #: The strategy that refused (``"breaker"``, ``"rate_limit"``, ``"guard"``, ``"concurrency"``,
    #: ``"budget"``).
    rejected_by: str | None = None


def rejected(number: int, error: RejectedError, strategy: str) -> Attempt:
    """The Attempt a strategy returns when it refuses to send."""
    return Attempt(number, Decision("raise", reason=error.reason), rejection=error, rejected_by=strategy)


Next = Callable[[Call, int], Attempt]
AsyncNext = Callable[[Call, int], Awaitable[Attempt]]


class Strategy(Protocol):
    """One layer of the pipeline: a sync and an async shell around no-I/O logic."""

    def handle(self, next: Next, call: Call, number: int) -> Attempt: ...

    async def ahandle(self, next: AsyncNext, call: Call, number: int) -> Attempt: ...


def chain(strategies: Sequence[Strategy], leaf: Next, aleaf: AsyncNext) -> tuple[Next, AsyncNext]:
    """The attempt functions that pass ``strategies`` (outermost first) and end in the leaf.

    Built once per transport; with no strategy the leaf itself is returned, so a pipeline of
    disabled strategies costs nothing per attempt.
    """
    run, arun = leaf, aleaf
    for strategy in reversed(strategies):
        run = _bind(strategy, run)
        arun = _abind(strategy, arun)
    return run, arun


# A partial, not a lambda: no Python frame of its own between two layers on every attempt; and
# ``next`` first in the Strategy protocol, so it is bound by position (a partial's keywords are
# copied into a new dict on every call).
def _bind(strategy: Strategy, next: Next) -> Next:
    return functools.partial(strategy.handle, next)


def _abind(strategy: Strategy, next: AsyncNext) -> AsyncNext:
    return functools.partial(strategy.ahandle, next)


# -- events ---------------------------------------------------------------------------------------


@attrs.frozen
class RetryEvent:
    """What the ``on_retry`` hook receives before each wait."""

    vendor: str
    method: str
    url: str
    attempt: int
    wait: float
    cause: str
    category: str | None
    code: int | str | None
    status: int | None
    error: BaseException | None = attrs.field(repr=False, default=None)


class AttemptEvent:
    """One attempt was sent and classified: what it got and what the pipeline decided.

    Built for every attempt while a hook listens, so it holds references and works its fields out
    when asked (the URL redacted, the code masked).
    """

    __slots__ = ("_attempt", "_call", "duration")

    def __init__(self, call: Call, attempt: Attempt, duration: float) -> None:
        self._call = call
        self._attempt = attempt
        #: Seconds from sending to classifying (the body the transport read included).
        self.duration = duration

    def __repr__(self) -> str:
        return (
            f"AttemptEvent(vendor={self.vendor!r}, method={self.method!r}, attempt={self.attempt}, "
            f"decision={self.decision!r}, category={self.category!r}, code={self.code!r}, "
            f"status={self.status!r})"
        )

    @property
    def vendor(self) -> str:
        """The vendor's id (``"hyper"``)."""
        return self._call.vendor

    @property
    def method(self) -> str:
        """The request's HTTP method."""
        return self._call.request.method

    @property
    def url(self) -> str:
        """The URL with its password and secret query values masked."""
        return self._call.secrets.redact(redact_url(self._call.request.url))

    @property
    def attempt(self) -> int:
        """The attempt's number, from 1."""
        return self._attempt.number

    @property
    def decision(self) -> str:
        """``"return"``, ``"raise"`` or ``"retry"``."""
        return self._attempt.decision.action

    @property
    def reason(self) -> str:
        """Why the pipeline decided what it did, in words (secrets masked)."""
        return self._call.secrets.redact(self._attempt.decision.reason)

    @property
    def category(self) -> str | None:
        """The outcome's category (``"ok"`` for a success); None after a transport error."""
        return None if self._attempt.error is not None else self._attempt.outcome.category

    @property
    def code(self) -> int | str | None:
        """The vendor's fault code (text codes masked), or None."""
        code = self._attempt.outcome.code
        return self._call.secrets.redact(code) if isinstance(code, str) else code

    @property
    def status(self) -> int | None:
        """The HTTP status, or None after a transport error."""
        response = self._attempt.response
        return None if response is None else response.status_code

    @property
    def error_type(self) -> str | None:
        """The transport error's class name (``"ConnectError"``), or None."""
        error = self._attempt.error
        return None if error is None else type(error).__name__

    @property
    def retry_after(self) -> float | None:
        """The server's Retry-After in seconds, as sent, or None."""
        return self._attempt.retry_after


@attrs.frozen
class RejectionEvent:
    """A strategy refused to send an attempt (nothing reached the vendor)."""

    vendor: str
    method: str
    url: str
    attempt: int
    strategy: str
    reason: str
    retry_after: float | None
    #: The refusal itself: its class says what kind of refusal it was, whatever the reason's words.
    error: RejectedError | None = attrs.field(repr=False, default=None)


@attrs.frozen
class BreakerEvent:
    """A circuit changed state: ``"open"``, ``"half_open"`` (a probe goes) or ``"closed"``."""

    vendor: str
    host: str
    state: str


@attrs.frozen
class WaitEvent:
    """An attempt waited before it was sent: ``strategy`` held it for ``seconds``.

    ``strategy`` names who made it wait: ``"rate_limit"`` (pacing or a server's Retry-After pause),
    ``"guard"`` (a guarded key was busy), or any later strategy's table name (``"concurrency"``).
    Told once per wait that ended, whether the attempt was then sent or refused.
    """

    vendor: str
    method: str
    #: The URL with its password and secret query values masked.
    url: str
    attempt: int
    strategy: str
    seconds: float


OnRetry = Callable[[RetryEvent], object]


class Hook:
    """Receives the pipeline's events; override the methods you need (the others cost nothing).

    Methods run in the request's thread or task; ``on_retry`` may return an awaitable, awaited by an
    async client. A hook that raises (or whose awaitable raises) never breaks the call nor changes a
    strategy's state: the error is logged once per hook and event kind, at WARNING, on the
    ``resilient_client`` logger, and the call goes on. A hook whose methods do not take the
    arguments below is refused when it is installed (``TypeError``).
    """

    #: False: ``on_attempt`` hears only the attempts that did not succeed (a fault, a transport
    #: error), so the success path does not build an event for this hook (the logging hook, which
    #: logs faults only, is one).
    attempt_successes: ClassVar[bool] = True

    def on_call_start(self, call: Call) -> None:
        """A request entered the pipeline."""

    def on_attempt_start(self, call: Call, number: int) -> None:
        """Attempt ``number`` is about to be sent (every strategy let it through)."""

    def on_attempt(self, call: Call, event: AttemptEvent) -> None:
        """An attempt ended and was classified."""

    def on_retry(self, call: Call, event: RetryEvent) -> object:
        """A retry will be sent after ``event.wait`` seconds."""
        return None

    def hears_retries(self) -> bool:
        """False while ``on_retry`` would do nothing (the logging hook's logger is off): the retry
        event, whose fields are redacted, is then not built for this hook, nor the hook called.
        Asked before every retry, so it must be cheap."""
        return True

    def on_rejection(self, call: Call, event: RejectionEvent) -> None:
        """A strategy refused to send."""

    def on_breaker(self, event: BreakerEvent) -> None:
        """A circuit changed state."""

    def on_wait(self, call: Call, event: WaitEvent) -> None:
        """An attempt waited ``event.seconds`` for a strategy (rate limiter, guard, concurrency)."""

    def on_call_end(self, call: Call, error: BaseException | None) -> None:
        """The request left the pipeline: with its response (``error`` None) or raising ``error``."""


def _overrides(hook: Hook, name: str) -> bool:
    return getattr(type(hook), name) is not getattr(Hook, name)


#: Each hook method, and the arguments the pipeline calls it with (what its signature must accept).
HOOK_SIGNATURES: dict[str, tuple[str, ...]] = {
    "on_call_start": ("call",),
    "on_attempt_start": ("call", "number"),
    "on_attempt": ("call", "event"),
    "on_retry": ("call", "event"),
    "hears_retries": (),
    "on_rejection": ("call", "event"),
    "on_breaker": ("event",),
    "on_wait": ("call", "event"),
    "on_call_end": ("call", "error"),
}

_logger = logging.getLogger("resilient_client")
_failures_lock = threading.Lock()
#: The event kinds each hook already failed on (logged once per hook and kind, not per call); held
#: weakly, so a new hook that reuses a dead one's id is logged too.
_failures_logged: weakref.WeakKeyDictionary[Hook, set[str]] = weakref.WeakKeyDictionary()
#: The same, by id, for hooks that cannot be weakly referenced or hashed (kept for the process).
_failures_by_id: set[tuple[int, str]] = set()


def check_hook(hook: object) -> Hook:
    """``hook``, when it is a ``Hook`` whose overridden methods take the pipeline's arguments; else a
    TypeError naming the method and what it must accept (raised when it is installed, not by the
    first request that would call it)."""
    if not isinstance(hook, Hook):
        raise TypeError(f"a hook must be a resilient_client.Hook, got {type(hook).__name__}")
    for name, arguments in HOOK_SIGNATURES.items():
        if not _overrides(hook, name):
            continue
        method = getattr(hook, name)
        if not callable(method):
            raise TypeError(f"{type(hook).__name__}.{name} must be a method, got {type(method).__name__}")
        try:
            signature = inspect.signature(method)
        except (TypeError, ValueError):
            continue  # a builtin without a signature: nothing to check
        try:
            signature.bind(*arguments)
        except TypeError:
            wanted = ", ".join(("self", *arguments))
            raise TypeError(
                f"{type(hook).__name__}.{name} must take ({wanted}), but its signature is "
                f"{name}{signature} (without self)"
            ) from None
    return hook


def _hook_failed(hook: Hook, name: str, error: Exception) -> None:
    """Log ``error``, raised by ``hook.name``, the first time that hook fails on that event kind."""
    with _failures_lock:
        try:
            kinds = _failures_logged.setdefault(hook, set())
        except TypeError:  # no __weakref__ slot, or unhashable
            kinds = None
        if kinds is None:
            if (id(hook), name) in _failures_by_id:
                return
            _failures_by_id.add((id(hook), name))
        else:
            if name in kinds:
                return
            kinds.add(name)
    where = ""
    trace = error.__traceback__
    while trace is not None and trace.tb_next is not None:
        trace = trace.tb_next
    if trace is not None:
        where = f" at {trace.tb_frame.f_code.co_filename}:{trace.tb_lineno}"
    # The type and the place, not the message: a hook's own message may quote a request's secret.
    callback = hook.callback if isinstance(hook, OnRetryHook) else None
    who = f"on_retry={getattr(callback, '__qualname__', type(callback).__name__)}"
    _logger.warning(
        "hook %s raised %s%s; the call went on (logged once per hook and event kind)",
        f"{type(hook).__name__}.{name}" if callback is None else who,
        type(error).__name__,
        where,
    )


def _shielded(hook: Hook, name: str) -> Callable[..., Any]:
    """``hook``'s method ``name``, made unable to break a call: what it raises is logged, not raised."""
    method = getattr(hook, name)

    def shielded(*arguments: Any) -> Any:
        try:
            return method(*arguments)
        except Exception as error:
            _hook_failed(hook, name, error)
            return None

    return shielded


class PendingHook:
    """What an ``on_retry`` hook returned that must be awaited (by an async client) before the wait:
    awaited, it lets nothing the hook raises out; ``discard()`` drops it where nothing can await it
    (a sync client), which is logged as that hook's failure."""

    __slots__ = ("awaitable", "hook")

    def __init__(self, hook: Hook, awaitable: Awaitable[object]) -> None:
        self.hook = hook
        self.awaitable = awaitable

    def __await__(self) -> Generator[Any, None, object]:
        return self._shielded().__await__()

    async def _shielded(self) -> object:
        try:
            return await self.awaitable
        except Exception as error:
            _hook_failed(self.hook, "on_retry", error)
            return None

    def discard(self) -> None:
        """Close the awaitable unawaited (no "never awaited" warning) and log it once."""
        close = getattr(self.awaitable, "close", None)
        if close is not None:
            close()
        _hook_failed(self.hook, "on_retry", TypeError("an async on_retry hook needs an httpx.AsyncClient"))


class Hooks:
    """The hooks of one transport, sorted by event once, so an event nobody listens to costs one
    truth test. Global hooks (``add_global_hook``) are sorted in too, and re-sorted into every live
    ``Hooks`` when they change, so instrumenting a process reaches transports built before it."""

    __slots__ = (
        "__weakref__",
        "all",
        "attempt",
        "attempt_start",
        "attempt_success",
        "breaker",
        "call_end",
        "call_start",
        "own",
        "rejection",
        "retry",
        "retry_hooks",
        "wait",
    )

    def __init__(self, hooks: Iterable[Hook] = ()) -> None:
        #: The transport's own hooks, without the global ones (each checked: see ``check_hook``).
        self.own = tuple(check_hook(hook) for hook in hooks)
        with _global_lock:
            self._sort()
            _live_hooks.add(self)

    def _sort(self) -> None:
        self.all = (*self.own, *_global_hooks)

        # Every listener is shielded: a hook that raises is logged, and the call and the strategy
        # that reported the event go on as if it had not (a breaker's probe, a guard's lease).
        def listening(name: str) -> tuple[Any, ...]:
            return tuple(_shielded(h, name) for h in self.all if _overrides(h, name))

        self.call_start = listening("on_call_start")
        self.attempt_start = listening("on_attempt_start")
        self.attempt = listening("on_attempt")
        #: The ``on_attempt`` listeners that also hear successes (see ``Hook.attempt_successes``).
        self.attempt_success = tuple(
            _shielded(h, "on_attempt")
            for h in self.all
            if _overrides(h, "on_attempt") and h.attempt_successes
        )
        self.retry = listening("on_retry")
        self.retry_hooks = tuple(h for h in self.all if _overrides(h, "on_retry"))
        self.rejection = listening("on_rejection")
        self.breaker = listening("on_breaker")
        self.wait = listening("on_wait")
        self.call_end = listening("on_call_end")

    def retrying(self, call: Call, event: Callable[[], RetryEvent]) -> list[PendingHook]:
        """Tell every retry hook that hears retries now, the event built (by ``event()``) once and
        only if one does; returns what they returned that must be awaited."""
        pending = []
        built: RetryEvent | None = None
        for hook in self.retry_hooks:
            try:
                if not hook.hears_retries():
                    continue
            except Exception as error:
                _hook_failed(hook, "hears_retries", error)
            if built is None:
                built = event()
            try:
                returned = hook.on_retry(call, built)
            except Exception as error:
                _hook_failed(hook, "on_retry", error)
                continue
            if inspect.isawaitable(returned):
                pending.append(PendingHook(hook, returned))
        return pending

    def waited(self, call: Call, number: int, strategy: str, seconds: float) -> None:
        """Tell the ``on_wait`` hooks that attempt ``number`` waited ``seconds`` for ``strategy``
        (the event built only when one listens). What a strategy that waits calls once its wait ended;
        cheap when nobody listens."""
        if not self.wait:
            return
        event = WaitEvent(
            vendor=call.vendor,
            method=call.request.method,
            url=call.secrets.redact(redact_url(call.request.url)),
            attempt=number,
            strategy=strategy,
            seconds=seconds,
        )
        for hook in self.wait:
            hook(call, event)


_global_lock = threading.Lock()
_global_hooks: tuple[Hook, ...] = ()
# Every Hooks alive, to re-sort when the global hooks change (weakly: a closed transport goes away).
_live_hooks: weakref.WeakSet[Hooks] = weakref.WeakSet()


def add_global_hook(hook: Hook) -> None:
    """Give ``hook`` every event of every transport, existing and future (after their own hooks).

    A call in flight may see the change between two of its events: a global hook must bear an
    event whose start it did not see.
    """
    global _global_hooks
    check_hook(hook)
    with _global_lock:
        if hook not in _global_hooks:
            _global_hooks = (*_global_hooks, hook)
            for hooks in _live_hooks:
                hooks._sort()


def remove_global_hook(hook: Hook) -> None:
    """Stop ``hook`` receiving the events ``add_global_hook`` gave it (no error when it has none)."""
    global _global_hooks
    with _global_lock:
        if hook in _global_hooks:
            _global_hooks = tuple(h for h in _global_hooks if h is not hook)
            for hooks in _live_hooks:
                hooks._sort()


class OnRetryHook(Hook):
    """The ``on_retry=`` callable of a transport or client, as a hook."""

    def __init__(self, callback: OnRetry) -> None:
        self.callback = callback

    def on_retry(self, call: Call, event: RetryEvent) -> object:
        return self.callback(event)
