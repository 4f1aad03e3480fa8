"""What a retry policy does, read from a loaded ``RetryPolicy``: the ``resilient-client policy
explain | plot | simulate`` commands' logic, as pure functions (the command prints and writes).

- ``explain(policy)``: per code, retried or not and for which methods, the wait before each retry
  (jittered min, median, max), the worst-case time to give up; for the policy, the attempts per call
  at a total outage (``amplification_at_outage``) and one line per strategy table.
- ``plot_svg(policy)`` / ``plot_text(policy)``: the wait schedule per code as bands, as an SVG
  (standard library only) or a terminal chart.
- ``simulate(policy, clients)``: the AWS "Exponential Backoff and Jitter" experiment (Marc Brooker,
  2015) on the policy's backoff, beside the same backoff without jitter.

``amplification_at_outage`` is measured, not modelled from the tables: one client of the policy
sends ``OUTAGE_RATE`` GETs a second for ``OUTAGE_SECONDS`` simulated seconds (SPEC's outage bar)
through its own pipeline (``ResilientTransport`` over an in-memory transport that answers every
request 503, a fresh ``MemoryState``, simulated time, a seeded random), and the attempts that reach
the vendor are divided by the calls. Every strategy the policy turns on (budget, breaker, limiter,
guards, any table added later) acts as it would in production, so the figure follows the shipped
defaults wherever they move. Nothing is sent over a network and nothing sleeps.
"""

from __future__ import annotations

import contextlib
import heapq
import math
import random
import statistics
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from xml.sax.saxutils import escape

import attrs
import httpx

import resilient_client as rc
from resilient_client._catalog import CATEGORIES
from resilient_client._policy import CodeWaits

__all__ = [
    "OUTAGE_RATE",
    "OUTAGE_SECONDS",
    "Band",
    "Fleet",
    "explain",
    "outage_amplification",
    "outage_vendor",
    "plot_svg",
    "plot_text",
    "plotted_codes",
    "render_explain",
    "render_simulate",
    "simulate",
    "strategies",
]

#: The outage the amplification is measured under: SPEC's bar (2 requests a second, 10 minutes).
OUTAGE_RATE = 2.0
OUTAGE_SECONDS = 600.0
_OUTAGE_SEED = 1
#: Tables of a policy that configure no strategy of the pipeline (data, not behaviour).
_NOT_STRATEGIES = frozenset({"vendor", "source", "codes", "soft_faults", "body", "state"})
_ROUND = 6


def _r(value: float) -> float:
    """A float for JSON: a few digits, so golden files do not move with the last bit."""
    return round(value, _ROUND) + 0.0


# -- explain ----------------------------------------------------------------------------------------


def _methods(policy: rc.RetryPolicy, retried: str) -> str | list[str]:
    if retried == "any":
        return "any"
    if retried == "idempotent":
        return [*policy.retry.idempotent_methods, *policy.retry.idempotent_operations]
    if retried == "category":
        return "by category"
    return []


def _wait_band(policy: rc.RetryPolicy, ceiling: float) -> tuple[float, float, float]:
    """(min, median, max) of one wait: full jitter draws it uniformly below its ceiling."""
    if policy.retry.jitter == "full":
        return 0.0, ceiling / 2, ceiling
    return ceiling, ceiling, ceiling


def _worst_case(policy: rc.RetryPolicy, row: CodeWaits) -> float:
    """The longest a call answered with this code takes to give up, a server's Retry-After aside:
    every attempt made, each (when ``retry.attempt_timeout`` bounds it) at its timeout, every
    jittered wait at its ceiling; never beyond the total deadline."""
    retry = policy.retry
    waits = sum(row.waits) if row.retried != "no" else 0.0
    attempts = retry.max_attempts if row.retried != "no" else 1
    return min(retry.total_timeout, waits + attempts * retry.attempt_timeout)


def _code_record(policy: rc.RetryPolicy, row: CodeWaits) -> dict[str, Any]:
    retried = row.retried != "no"
    waits = []
    if retried:
        for number, ceiling in enumerate(row.waits, start=1):
            low, median, high = _wait_band(policy, ceiling)
            waits.append({"retry": number, "min": _r(low), "median": _r(median), "max": _r(high)})
    return {
        "code": row.code,
        "category": row.category,
        "retried": row.retried,
        "methods": _methods(policy, row.retried),
        "waits": waits,
        "wait_seconds_max": _r(sum(w["max"] for w in waits)),
        "worst_case_seconds": _r(_worst_case(policy, row)),
    }


def _category_records(policy: rc.RetryPolicy) -> list[dict[str, Any]]:
    """How each fault category is treated where no code rule says otherwise."""
    records = []
    for category in CATEGORIES:
        if category == "ok":
            continue
        if not policy.retries(category, None) or policy.returns(category, None):
            retried = "no"
        elif policy.retries_any_method(category, None):
            retried = "any"
        else:
            retried = "idempotent"
        records.append({"category": category, "retried": retried, "methods": _methods(policy, retried)})
    return records


def _seconds(value: float) -> str:
    return f"{value:g} s"


def _describe_retry(s: rc.RetryPolicy) -> str:
    r = s.retry
    jitter = "full jitter (each wait drawn below its ceiling)" if r.jitter == "full" else "no jitter"
    return (
        f"up to {r.max_attempts} attempts within {_seconds(r.total_timeout)}; backoff "
        f"{r.initial_wait:g} x {r.multiplier:g}^n s capped at {_seconds(r.max_wait)}, {jitter}; "
        f"a server's Retry-After is waited in full up to {_seconds(r.max_retry_after)}"
    )


def _describe_budget(s: rc.RetryPolicy) -> str:
    b = s.budget
    if not b.enabled or b.ratio <= 0:
        return "off: every retry the retry table allows is sent"
    return (
        f"each call earns {b.ratio:g} retry tokens (holding at most {b.burst:g}) and a retry that "
        f"succeeds puts back {b.refund:g}; a retry without a token is not sent: retries go on while "
        f"they succeed, and at an outage at most {b.ratio:g} retries per call"
    )


def _describe_breaker(s: rc.RetryPolicy) -> str:
    b = s.breaker
    return (
        f"opens when {b.failure_ratio:.0%} or more of at least {b.minimum_throughput} attempts in "
        f"{_seconds(b.sampling_duration)} failed"
        + (f", or {b.consecutive_failures} in a row" if b.consecutive_failures else "")
        + f"; then refuses calls for {_seconds(b.break_duration)} "
        f"(doubling up to {_seconds(b.max_break_duration)} while probes fail) and lets "
        f"{b.half_open_probes} probe through"
    )


def _describe_rate_limit(s: rc.RetryPolicy) -> str:
    r = s.rate_limit
    parts = [
        f"at most {r.requests} requests per {_seconds(r.period)} (burst {r.burst})"
        if r.requests
        else "no fixed rate"
    ]
    if r.adaptive:
        parts.append("a lower rate is learned from 429 answers")
    if r.pause_on_retry_after:
        parts.append("a 429's Retry-After pauses every request to the host")
    return "; ".join(parts)


def _describe_guards(s: rc.RetryPolicy) -> str:
    if not s.guards:
        return "none: no keyed limit on attempts in flight"
    return "; ".join(
        f"{name}: at most {g.limit} attempt(s) in flight per {', '.join(g.key_fields) or 'key'} for "
        f"operations {', '.join(g.operations)}, waiting up to {_seconds(g.max_wait)}"
        for name, g in s.guards.items()
    )


def _describe_concurrency(s: rc.RetryPolicy) -> str:
    c = s.concurrency
    return (
        f"at most a learned number of attempts in flight per endpoint (starting at {c.initial}, between "
        f"{c.min} and {c.max}); a 503 or kTooBusy lowers it to what the vendor held, successes raise it; "
        f"an attempt beyond it waits its turn within the deadline"
    )


_DESCRIBE: dict[str, Callable[[rc.RetryPolicy], str]] = {
    "retry": _describe_retry,
    "budget": _describe_budget,
    "breaker": _describe_breaker,
    "rate_limit": _describe_rate_limit,
    "guards": _describe_guards,
    "concurrency": _describe_concurrency,
}


def _describe_generic(table: Any) -> str:
    """A table this module has no sentence for (one added after it): its keys and values."""
    if not attrs.has(type(table)):
        return f"{table!r}"
    values = attrs.asdict(table, recurse=False)
    values.pop("enabled", None)
    return ", ".join(f"{key} = {value!r}" for key, value in values.items()) or "no keys"


def _enabled(name: str, table: Any, policy: rc.RetryPolicy) -> bool:
    if name == "budget":
        return policy.budget.ratio > 0
    if name == "guards":
        return bool(policy.guards)
    if name == "retry":
        return policy.retry.max_attempts > 1
    return bool(getattr(table, "enabled", True))


def strategies(policy: rc.RetryPolicy) -> list[dict[str, Any]]:
    """One record per strategy table of the policy, in the order the policy declares them: whether
    it is on and what it does. Read from the policy's fields, so a table added later is listed too."""
    records = []
    for field in attrs.fields(type(policy)):
        if field.name in _NOT_STRATEGIES:
            continue
        table = getattr(policy, field.name)
        describe = _DESCRIBE.get(field.name)
        enabled = _enabled(field.name, table, policy)
        does = describe(policy) if describe is not None else _describe_generic(table)
        records.append({"table": field.name, "enabled": enabled, "does": does if enabled else f"off; {does}"})
    return records


def outage_vendor(policy: rc.RetryPolicy) -> str:
    """The vendor whose client the outage run uses: the policy's, else the first it fits."""
    if policy.vendor is not None:
        return policy.vendor
    for vendor in rc.VENDORS:
        if not policy.problems_for(rc.catalog(vendor)):
            return vendor
    return rc.VENDORS[0]  # pragma: no cover - a vendor-less policy names no codes, so every vendor fits


class _OutageClock:
    """Simulated time for the outage run: a sleep moves time on, nothing waits for real."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_700_000_000.0 + self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)


def outage_amplification(
    policy: rc.RetryPolicy, per_second: float = OUTAGE_RATE, seconds: float = OUTAGE_SECONDS
) -> dict[str, Any]:
    """Attempts per call at a total outage, measured through the policy's own pipeline (see the
    module docstring): ``{"amplification": attempts / calls, ...}`` with the run's numbers."""
    vendor = outage_vendor(policy)
    clock = _OutageClock()
    attempts = 0

    def down(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        return httpx.Response(503)

    seeded = random.Random(_OUTAGE_SEED)
    transport = rc.ResilientTransport(
        vendor,
        policy=policy,
        transport=httpx.MockTransport(down),
        state=rc.MemoryState(),
        clock=clock,
        wall_clock=clock.wall,
        sleep=clock.sleep,
        random=seeded.random,
    )
    calls = math.ceil(per_second * seconds)
    start = clock.now
    with httpx.Client(transport=transport) as client:
        for index in range(calls):
            # The next call leaves on schedule, or when the previous one gave up if that is later.
            clock.now = max(clock.now, start + index / per_second)
            with contextlib.suppress(httpx.HTTPError):  # every call fails: only the count matters
                client.get(f"https://{vendor}.invalid/outage")
    return {
        "amplification": _r(attempts / calls),
        "vendor": vendor,
        "requests_per_second": per_second,
        "seconds": seconds,
        "calls": calls,
        "attempts": attempts,
        "without_strategies": policy.retry.max_attempts,
    }


def explain(policy: rc.RetryPolicy, name: str | None = None) -> dict[str, Any]:
    """Everything ``policy explain`` prints, as JSON-ready data; ``name`` is how the user named the
    policy (a shipped name or a path), shown instead of its resolved file."""
    rows = [_code_record(policy, row) for row in policy.effective_waits()]
    outage = outage_amplification(policy)
    return {
        "vendor": policy.vendor,
        "policy": name if name is not None else policy.source,
        "max_attempts": policy.retry.max_attempts,
        "deadline_seconds": policy.retry.total_timeout,
        "jitter": policy.retry.jitter,
        "worst_case_seconds": max(r["worst_case_seconds"] for r in rows),
        "amplification_at_outage": outage.pop("amplification"),
        "outage": outage,
        "strategies": strategies(policy),
        "categories": _category_records(policy),
        "codes": rows,
    }


def _code_label(code: object) -> str:
    return "other" if code is None else str(code)


def _waits_text(waits: Sequence[dict[str, Any]]) -> str:
    if not waits:
        return "-"
    return ", ".join(f"{w['max']:g}" if w["min"] == w["max"] else f"{w['min']:g}-{w['max']:g}" for w in waits)


def render_explain(data: dict[str, Any]) -> str:
    """``policy explain`` as text."""
    vendor = data["vendor"] or f"no vendor (measured as {data['outage']['vendor']})"
    outage = data["outage"]
    lines = [
        f"policy {data['policy']}: {vendor}",
        f"  attempts per call at most {data['max_attempts']}, deadline {data['deadline_seconds']:g} s, "
        f"jitter {data['jitter']}; worst case to give up {data['worst_case_seconds']:g} s "
        "(a server's Retry-After aside)",
        f"  at a total outage: {data['amplification_at_outage']:.3f} attempts per call "
        f"({outage['attempts']} attempts for {outage['calls']} calls at {outage['requests_per_second']:g} "
        f"a second for {outage['seconds']:g} s; {outage['without_strategies']} without the strategies)",
        "",
        "strategies:",
    ]
    width = max(len(s["table"]) for s in data["strategies"])
    lines.extend(f"  {s['table']:{width}s}  {s['does']}" for s in data["strategies"])
    lines += ["", "categories (where no code rule says otherwise):"]
    for c in data["categories"]:
        methods = c["methods"] if isinstance(c["methods"], str) else ", ".join(c["methods"]) or "-"
        lines.append(f"  {c['category']:22s}  {c['retried']:10s}  {methods}")
    lines += [
        "",
        "codes: retried for which methods, the wait before each retry in seconds (min-max, "
        "jittered), the worst case",
    ]
    codes = [_code_label(c["code"]) for c in data["codes"]]
    code_width = max(4, *map(len, codes))
    lines.append(f"  {'code':>{code_width}s}  {'category':22s}  {'retried':11s}  {'worst':>7s}  waits")
    for label, c in zip(codes, data["codes"], strict=True):
        category = c["category"] or "-"
        retried = "by category" if c["retried"] == "category" else c["retried"]
        worst = "-" if c["retried"] == "no" else f"{c['worst_case_seconds']:g} s"
        waits = _waits_text(c["waits"])
        lines.append(f"  {label:>{code_width}s}  {category:22s}  {retried:11s}  {worst:>7s}  {waits}")
    lines.append("  (other: every code without a rule of its own, and transport errors)")
    return "\n".join(lines) + "\n"


# -- plot -------------------------------------------------------------------------------------------


@attrs.frozen
class Band:
    """One code's wait schedule: (min, median, max) of the wait before each retry."""

    label: str
    waits: tuple[tuple[float, float, float], ...]


def plotted_codes(policy: rc.RetryPolicy) -> list[Band]:
    """The bands ``policy plot`` draws: every other code, then each code the policy has a rule for,
    where the code is retried."""
    rows = {row.code: row for row in policy.effective_waits()}
    wanted: list[CodeWaits] = [rows[None]]
    for key in policy.codes:
        row = next((r for code, r in rows.items() if code is not None and str(code) == key), None)
        if row is not None:
            wanted.append(row)
    bands = []
    for row in wanted:
        if row.retried == "no" or not row.waits:
            continue
        label = "every other code" if row.code is None else f"code {row.code}"
        if row.category:
            label += f" ({row.category})"
        bands.append(Band(label, tuple(_wait_band(policy, ceiling) for ceiling in row.waits)))
    return bands


_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def _ticks(top: float) -> list[float]:
    """Round tick values from 0 to at least ``top``."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / 5
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [step * i for i in range(math.ceil(top / step - 1e-9) + 1)]


def plot_svg(policy: rc.RetryPolicy, title: str) -> str:
    """The wait schedule as an SVG document: x the retry number, y the wait before it in seconds;
    per code a band from the jittered min to max and a line at the median."""
    bands = plotted_codes(policy)
    width, height = 720, 420
    left, right, top, bottom = 70, 230, 40, 60
    plot_w, plot_h = width - left - right, height - top - bottom
    retries = max((len(b.waits) for b in bands), default=1)
    y_ticks = _ticks(max((w[2] for b in bands for w in b.waits), default=1.0))
    y_top = y_ticks[-1] or 1.0

    def x(retry: float) -> float:
        return left + (retry - 1) / max(retries - 1, 1) * plot_w

    def y(seconds: float) -> float:
        return top + plot_h - seconds / y_top * plot_h

    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f"<title>{escape(title)}</title>",
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text class="title" x="{left + plot_w / 2:.1f}" y="22" text-anchor="middle" '
        f'font-size="14">{escape(title)}</text>',
        f'<g class="axes" stroke="black">'
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}"/></g>',
    ]
    for retry in range(1, retries + 1):
        parts.append(
            f'<text class="tick" x="{x(retry):.1f}" y="{top + plot_h + 18}" '
            f'text-anchor="middle">{retry}</text>'
        )
    for tick in y_ticks:
        parts.append(
            f'<text class="tick" x="{left - 8}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>'
            f'<line x1="{left}" y1="{y(tick):.1f}" x2="{left + plot_w}" y2="{y(tick):.1f}" stroke="#ddd"/>'
        )
    parts.append(
        f'<text class="x-label" x="{left + plot_w / 2:.1f}" y="{height - 18}" text-anchor="middle">'
        "retry (the nth retry of a call)</text>"
    )
    parts.append(
        f'<text class="y-label" transform="translate(20 {top + plot_h / 2:.1f}) rotate(-90)" '
        'text-anchor="middle">wait before the retry (seconds)</text>'
    )
    for index, band in enumerate(bands):
        colour = _COLOURS[index % len(_COLOURS)]
        upper = [(x(n), y(w[2])) for n, w in enumerate(band.waits, start=1)]
        lower = [(x(n), y(w[0])) for n, w in enumerate(band.waits, start=1)]
        median = [(x(n), y(w[1])) for n, w in enumerate(band.waits, start=1)]
        outline = " ".join(f"{px:.1f},{py:.1f}" for px, py in [*upper, *reversed(lower)])
        line = " ".join(f"{px:.1f},{py:.1f}" for px, py in median)
        legend_y = top + 10 + index * 20
        parts.append(
            f'<g class="band" data-code="{escape(band.label)}">'
            f'<polygon points="{outline}" fill="{colour}" fill-opacity="0.2" stroke="{colour}"/>'
            f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"/>'
            f'<rect x="{width - right + 15}" y="{legend_y - 9}" width="12" height="12" fill="{colour}" '
            'fill-opacity="0.4"/>'
            f'<text x="{width - right + 32}" y="{legend_y + 1}">{escape(band.label)}</text></g>'
        )
    note_y = top + 20 + len(bands) * 20
    parts.append(
        f'<text x="{width - right + 15}" y="{note_y}" font-size="10">band: jittered min to max;</text>'
        f'<text x="{width - right + 15}" y="{note_y + 13}" font-size="10">line: median</text>'
    )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def plot_text(policy: rc.RetryPolicy, title: str, width: int = 50) -> str:
    """The wait schedule as a terminal chart: per code, one row per retry, ``=`` from the jittered
    min to max and ``|`` at the median, over an axis in seconds."""
    bands = plotted_codes(policy)
    ticks = _ticks(max((w[2] for b in bands for w in b.waits), default=1.0))
    top = ticks[-1] or 1.0

    def column(seconds: float) -> int:
        return round(seconds / top * (width - 1))

    axis = [" "] * width
    labels = [" "] * (width + 8)
    for tick in ticks:
        at = column(tick)
        axis[at] = "+"
        text = f"{tick:g}"
        start = max(0, min(at - len(text) // 2, len(labels) - len(text)))
        if all(c == " " for c in labels[max(0, start - 1) : start + len(text) + 1]):
            labels[start : start + len(text)] = text
    indent = " " * 12
    lines = [
        title,
        "wait before each retry, seconds ('=' jittered min to max, '|' median)",
        "",
    ]
    for band in bands:
        lines.append(band.label)
        for number, (low, median, high) in enumerate(band.waits, start=1):
            row = [" "] * width
            for at in range(column(low), column(high) + 1):
                row[at] = "="
            row[column(median)] = "|"
            lines.append(f"  retry {number:<3d} {''.join(row).rstrip()}")
    lines.append(indent + "".join(axis).replace(" ", "-"))
    lines.append(indent + "".join(labels).rstrip())
    lines.append(f"{indent}seconds")
    skipped = [
        str(code) for code, rule in policy.codes.items() if rule.retry is False or rule.outcome == "return"
    ]
    if skipped:
        lines.append(f"not retried, so not drawn: code {', '.join(skipped)}")
    return "\n".join(lines) + "\n"


# -- simulate ---------------------------------------------------------------------------------------


@attrs.frozen
class Fleet:
    """One fleet size's result for one backoff: averages over the runs."""

    clients: int
    calls: float
    seconds: float
    succeeded: float
    gave_up: float


#: The network of the post's simulator: each message takes a normal delay, mean 10 ms, sd 2 ms.
_NET_MEAN, _NET_SD = 0.010, 0.002


def _occ_run(
    clients: int,
    ceilings: Sequence[float],
    jitter: bool,
    deadline: float,
    rng: random.Random,
    outage: float = 0.0,
) -> tuple[int, float, int]:
    """One run of the post's optimistic-concurrency experiment: ``clients`` start at once, each
    reads one row's version, then writes it conditionally; a write that lost (another write came
    between its read and its write) is a failed call, retried after the backoff. A client gives up
    after ``len(ceilings) + 1`` writes, or when its next read would start past ``deadline``. Every
    write before ``outage`` seconds fails (the vendor is down, then comes back).
    Returns (calls, time to finish, clients that succeeded)."""

    def net() -> float:
        return abs(rng.normalvariate(_NET_MEAN, _NET_SD))

    version = calls = succeeded = 0
    writes = [0] * clients
    # (time, tie-break, what, client, payload): a read reaching the server, a write reaching it,
    # or a write's answer reaching the client.
    events: list[tuple[float, int, str, int, int]] = []
    order = 0
    for client in range(clients):
        heapq.heappush(events, (net(), order, "read", client, 0))
        order += 1
    now = 0.0
    while events:
        now, _, what, client, payload = heapq.heappop(events)
        order += 1
        if what == "read":  # the version travels back, the write travels out
            heapq.heappush(events, (now + net() + net(), order, "write", client, version))
        elif what == "write":
            calls += 1
            writes[client] += 1
            won = payload == version and now >= outage
            version += won
            heapq.heappush(events, (now + net(), order, "answer", client, int(won)))
        elif payload:
            succeeded += 1
        elif writes[client] <= len(ceilings):
            ceiling = ceilings[writes[client] - 1]
            wait = rng.uniform(0.0, ceiling) if jitter else ceiling
            leaves = now + wait
            if leaves <= deadline:  # every client started at 0
                heapq.heappush(events, (leaves + net(), order, "read", client, 0))
    return calls, now, succeeded


#: Attempts a client of the until-success view may make: far more than it ever needs.
_UNTIL_SUCCESS_ATTEMPTS = 200


def _fleet(
    clients: int,
    ceilings: Sequence[float],
    jitter: bool,
    deadline: float,
    runs: int,
    seed: int,
    outage: float,
) -> Fleet:
    results = [
        _occ_run(clients, ceilings, jitter, deadline, random.Random(f"{seed}:{clients}:{run}"), outage)
        for run in range(runs)
    ]
    succeeded = statistics.fmean(r[2] for r in results)
    return Fleet(
        clients=clients,
        calls=_r(statistics.fmean(r[0] for r in results)),
        seconds=_r(statistics.fmean(r[1] for r in results)),
        succeeded=_r(succeeded),
        gave_up=_r(clients - succeeded),
    )


def simulate(
    policy: rc.RetryPolicy, clients: Iterable[int], runs: int = 20, seed: int = 0, outage: float = 0.0
) -> dict[str, Any]:
    """The AWS "Exponential Backoff and Jitter" experiment on the policy's backoff (every other
    code's: ``retry.initial_wait``, ``multiplier``, ``max_wait``, ``max_attempts`` and
    ``total_timeout``), beside the same backoff without jitter; each fleet size averaged over
    ``runs`` runs. With ``outage``, every write fails for that many seconds first. Simulated
    time, deterministic for a ``seed``."""
    retry = policy.retry
    ceilings = [policy.backoff_ceiling(n, None) for n in range(1, retry.max_attempts)]
    # The post's own setup: every client retries until it succeeds (the policy's waits, no cap on
    # attempts or time), where the ordering of jitter and no jitter shows in calls alone.
    endless = [policy.backoff_ceiling(n, None) for n in range(1, _UNTIL_SUCCESS_ATTEMPTS)]
    rows = []
    for size in clients:
        with_policy = _fleet(size, ceilings, retry.jitter == "full", retry.total_timeout, runs, seed, outage)
        no_jitter = _fleet(size, ceilings, False, retry.total_timeout, runs, seed, outage)
        fewer = 1 - with_policy.calls / no_jitter.calls if no_jitter.calls else 0.0
        until_policy = _fleet(size, endless, retry.jitter == "full", math.inf, runs, seed, outage)
        until_no_jitter = _fleet(size, endless, False, math.inf, runs, seed, outage)
        rows.append(
            {
                "clients": size,
                "policy": attrs.asdict(with_policy),
                "no_jitter": attrs.asdict(no_jitter),
                "fewer_calls": _r(fewer),
                "until_success": {
                    "policy": attrs.asdict(until_policy),
                    "no_jitter": attrs.asdict(until_no_jitter),
                    "fewer_calls": _r(1 - until_policy.calls / until_no_jitter.calls)
                    if until_no_jitter.calls
                    else 0.0,
                },
            }
        )
    return {
        "jitter": retry.jitter,
        "max_attempts": retry.max_attempts,
        "waits": [_r(c) for c in ceilings],
        "deadline_seconds": retry.total_timeout,
        "outage_seconds": outage,
        "runs": runs,
        "seed": seed,
        "fleets": rows,
    }


def render_simulate(data: dict[str, Any], name: str) -> str:
    """``policy simulate`` as a table."""
    waits = ", ".join(f"{w:g}" for w in data["waits"][:6]) + (", ..." if len(data["waits"]) > 6 else "")
    start = f"after an outage of {data['outage_seconds']:g} s, " if data["outage_seconds"] else "at once, "
    lines = [
        f"{name}: clients contending for one row, {start}as in the AWS 'Exponential Backoff and "
        "Jitter' experiment;",
        f"  each failed write retried after the policy's backoff (ceilings {waits} s; jitter "
        f"{data['jitter']}; {data['max_attempts']} attempts, {data['deadline_seconds']:g} s), "
        f"mean of {data['runs']} runs",
        "",
        f"{'clients':>7s}  {'policy: calls':>13s}  {'time s':>7s}  {'gave up':>7s}  "
        f"{'no jitter: calls':>16s}  {'time s':>7s}  {'gave up':>7s}  {'fewer calls':>11s}",
    ]
    for row in data["fleets"]:
        p, n = row["policy"], row["no_jitter"]
        lines.append(
            f"{row['clients']:>7d}  {p['calls']:>13.1f}  {p['seconds']:>7.2f}  {p['gave_up']:>7.1f}  "
            f"{n['calls']:>16.1f}  {n['seconds']:>7.2f}  {n['gave_up']:>7.1f}  {row['fewer_calls']:>11.0%}"
        )
    lines += [
        "",
        "the same waits, every client retrying until it succeeds (the post's own setup: no cap on attempts):",
        "",
        f"{'clients':>7s}  {'policy: calls':>13s}  {'time s':>7s}  {'no jitter: calls':>16s}  "
        f"{'time s':>7s}  {'fewer calls':>11s}",
    ]
    for row in data["fleets"]:
        until = row["until_success"]
        p, n = until["policy"], until["no_jitter"]
        lines.append(
            f"{row['clients']:>7d}  {p['calls']:>13.1f}  {p['seconds']:>7.2f}  {n['calls']:>16.1f}  "
            f"{n['seconds']:>7.2f}  {until['fewer_calls']:>11.0%}"
        )
    return "\n".join(lines) + "\n"
