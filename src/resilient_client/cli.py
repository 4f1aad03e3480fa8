"""The ``resilient-client`` command: explain codes, check policies, run the demo and the simulator.

    resilient-client codes hyper 10          # one code: meaning, category, retried or not and why
    resilient-client codes medable --json    # the whole catalog, for scripts
    resilient-client policy check my.toml    # the problems of a policy file, or its effective policy
    resilient-client policy show hyper       # the shipped policy of a vendor (or "default")
    resilient-client policy explain hyper    # what the policy does: per code, waits, outage load
    resilient-client policy plot hyper       # the wait schedule per code (--output F.svg: an SVG)
    resilient-client policy simulate hyper --clients 10,50,100   # jitter vs none, AWS's experiment
    resilient-client demo                    # the clients against the simulator
    resilient-client fleet --workers 4       # worker processes sharing one Redis
    resilient-client simulate --port 8080    # the simulator as a loopback server

Bad input (an unknown vendor or code, a bad policy file) prints a message and exits non-zero,
never a traceback. Uses only the package's public names.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import errno
import json
import math
import os
import socket
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

import attrs

import resilient_client as rc

if TYPE_CHECKING:
    from resilient_client.simulator import Simulator

EXIT_BAD_INPUT = 2
EXIT_BAD_POLICY = 1
#: Something around the input failed: a missing extra, an unexpected error.
EXIT_FAILURE = 1
SOFT = ("incomplete_success", "no_results", "verification_required", "not_ready", "partial_failure")

# Plain text for --help: argparse prints it as is, so no reST markup here.
DESCRIPTION = (
    "Explain a vendor's error codes under the policy its clients use, check policy files, "
    "run the demo and the vendor simulator."
)
EXAMPLES = """\
examples:
  resilient-client codes hyper 10          one code: meaning, category, retried or not and why
  resilient-client codes usta 200699       a code the catalog lacks: what it falls back to
  resilient-client codes medable --json    the whole catalog, for scripts
  resilient-client policy check my.toml    the problems of a policy file, or its effective policy
  resilient-client policy show default     a shipped policy: default, updox, usta, medable, hyper
  resilient-client policy explain hyper    per code: retried for which methods, waits, worst case
  resilient-client policy plot hyper       the wait schedule per code as a terminal chart
  resilient-client policy plot hyper --output hyper.svg              the same as an SVG file
  resilient-client policy simulate hyper --clients 10,50,100         full jitter vs no jitter
  resilient-client demo                    the vendor clients against the simulator
  resilient-client fleet --workers 4       worker processes sharing one Redis, against the simulator
  resilient-client simulate --port 8080    the simulator on a loopback port
"""


def client_policy(vendor: str, policy: str | None = None) -> rc.RetryPolicy:
    """The policy a client of ``vendor`` uses, resolved and checked exactly as its transport does:
    ``policy`` (a path or a shipped name), else ``RESILIENT_CLIENT_<VENDOR>_POLICY``, else
    ``RESILIENT_CLIENT_POLICY``, else the vendor's shipped policy; a PolicyError when it does not
    fit the vendor."""
    return rc.ResilientTransport(vendor, policy=policy).policy


def explain(code: object, category: str, policy: rc.RetryPolicy) -> tuple[str, str]:
    """(``any`` | ``idempotent`` | ``no``, why) for a response carrying ``code`` that the classifier
    put in ``category``, under a policy (whose ``codes`` rules match the code as received)."""
    rule = policy.rule(code)
    where = f"codes.{code}"
    if category == "ok":
        return "no", "not retried: a success code, nothing is raised"
    if category in SOFT and policy.returns(category, code):
        return "no", "not retried: a soft fault the policy returns to the caller instead of raising"
    if rule is not None and rule.retry is not None:
        retried, because = rule.retry, f"{where}.retry = {str(rule.retry).lower()}"
    else:
        retried = category in policy.retry.categories
        because = f"{category} is {'' if retried else 'not '}in retry.categories"
    if not retried:
        return "no", f"not retried: {because}"
    if rule is not None and rule.any_method is not None:
        any_method, how = rule.any_method, f"{where}.any_method = {str(rule.any_method).lower()}"
    else:
        any_method = category in policy.retry.any_method_categories
        how = (
            f"{category} says the vendor did not apply the request"
            if any_method
            else (f"{category}: the vendor may have applied the request")
        )
    if any_method:
        return "any", f"retried for any method ({because}; {how})"
    methods = ", ".join(policy.retry.idempotent_methods)
    operations = policy.retry.idempotent_operations
    extra = f" and operations {', '.join(operations)}" if operations else ""
    return "idempotent", f"retried for idempotent methods only: {methods}{extra} ({because}; {how})"


def _record(
    catalog: rc.Catalog,
    code: Any,
    entry: rc.CatalogEntry | None,
    category: str,
    policy: rc.RetryPolicy,
    falls_back: str | None = None,
) -> dict[str, Any]:
    retried, why = explain(code, category, policy)
    # A success code raises nothing: it has no class.
    exception = None if category == "ok" else catalog.error_class(category, entry)
    return {
        "vendor": catalog.vendor,
        "code": code,
        "message": entry.message if entry is not None else "not in the catalog",
        "falls_back": falls_back,
        "http_status": entry.http_status if entry is not None else None,
        "category": category,
        "group": entry.group if entry is not None else None,
        "exception": None if exception is None else f"{exception.__module__}.{exception.__name__}",
        "retried": retried,
        "why": why,
        "policy": policy.source,
    }


def _code_record(catalog: rc.Catalog, given: str, policy: rc.RetryPolicy) -> dict[str, Any]:
    """What a response carrying ``given`` becomes, as the classifier reads it: the exact entry, else
    the code it refines (USTA 200699 -> 2006), else the catalog's range for it (Updox 4xxx)."""
    vendor = catalog.vendor
    code = catalog.normalize(given)
    entry = None if code is None else catalog.lookup(code) or _any_case(catalog, given)
    if code is None:
        pass
    elif entry is not None:
        return _record(catalog, entry.code, entry, entry.category, policy)
    elif (refined := catalog.resolve(code)) is not None:
        note = f"{code} is not in the catalog: it refines {refined.code}, whose entry applies"
        return _record(catalog, code, refined, refined.category, policy, note)
    else:
        for fallback in catalog.fallback_ranges:
            if isinstance(code, int) and fallback.first <= code <= fallback.last:
                note = (
                    f"{code} is not in the catalog: a failed response carrying it is classified "
                    f"{fallback.category}, as every code from {fallback.first} to {fallback.last}"
                )
                return _record(catalog, code, None, fallback.category, policy, note)
    hint = _did_you_mean(catalog, given) or f"`resilient-client codes {vendor}` lists the codes"
    raise _BadInput(
        f"{vendor} has no code {given!r} and nothing it falls back to (a response carrying it is "
        f"classified by its HTTP status); {hint}"
    )


def _any_case(catalog: rc.Catalog, given: str) -> rc.CatalogEntry | None:
    """The entry whose code is ``given`` in another case (``kthrottled`` -> ``kThrottled``)."""
    wanted = given.strip().casefold()
    return next((entry for entry in catalog if str(entry.code).casefold() == wanted), None)


def _did_you_mean(catalog: rc.Catalog, given: str) -> str:
    """``did you mean 'kThrottled'?`` for the catalog's codes nearest ``given`` (any case); ``""``
    when none is near."""
    by_folded = {str(entry.code).casefold(): str(entry.code) for entry in catalog}
    near = difflib.get_close_matches(given.strip().casefold(), by_folded, n=3, cutoff=0.6)
    if not near:
        return ""
    return "did you mean " + " or ".join(repr(by_folded[n]) for n in near) + "?"


_LABELS = {"why": "retried", "falls_back": "falls back"}


def _codes(args: argparse.Namespace, out: TextIO) -> int:
    catalog = rc.catalog(args.vendor)
    policy = client_policy(args.vendor, args.policy)
    if args.code is not None:
        record = _code_record(catalog, args.code, policy)
        if args.json:
            json.dump(record, out, indent=2)
            out.write("\n")
            return 0
        for key in ("vendor", "code", "message", "falls_back", "http_status", "category", "group",
                    "exception", "why", "policy"):  # fmt: skip
            if key == "falls_back" and record[key] is None:
                continue
            label = _LABELS.get(key, key.replace("_", " "))
            value = "none documented" if record[key] is None else record[key]
            if key == "exception" and record[key] is None:
                value = "none: a success raises nothing"
            out.write(f"{label:12s} {value}\n")
        return 0
    records = [_record(catalog, entry.code, entry, entry.category, policy) for entry in catalog]
    if args.json:
        json.dump(records, out, indent=2)
        out.write("\n")
        return 0
    out.write(f"{catalog.title}: {len(records)} codes, under the policy {policy.source}\n")
    out.write(f"{'code':>30s}  {'status':6s}  {'category':22s}  {'retried':10s}  exception\n")
    for r in records:
        status = "-" if r["http_status"] is None else str(r["http_status"])
        name = "-" if r["exception"] is None else r["exception"].rpartition(".")[2]
        out.write(f"{r['code']!s:>30s}  {status:6s}  {r['category']:22s}  {r['retried']:10s}  {name}\n")
    return 0


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def render_policy(policy: rc.RetryPolicy) -> str:
    """The effective policy as TOML: every key with its value, inherited ones included."""
    data = attrs.asdict(policy, recurse=True)
    lines = [f"# effective policy from {data.pop('source')}"]
    vendor = data.pop("vendor")
    if vendor is not None:
        lines.append(f"vendor = {_toml_value(vendor)}")
    codes = data.pop("codes")
    guards = data.pop("guards")
    for table, values in data.items():
        lines.append(f"\n[{table}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
    for name, guard in guards.items():
        lines.append(f"\n[guards.{name}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in guard.items())
    for code, rule in codes.items():
        set_keys = {k: v for k, v in rule.items() if v is not None}
        lines.append(f"\n[codes.{code}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in set_keys.items())
    return "\n".join(lines) + "\n" + render_waits(policy)


def render_waits(policy: rc.RetryPolicy) -> str:
    """Each code's effective backoff (``RetryPolicy.effective_waits``), as TOML comments."""
    rows = policy.effective_waits()
    codes = ["other" if r.code is None else str(r.code) for r in rows]
    width = max(map(len, codes))
    drawn = "each wait drawn below its ceiling" if policy.retry.jitter == "full" else "no jitter"
    lines = [
        f"\n# Effective backoff in seconds ({drawn}). retry.max_wait caps every code;",
        "# a server's Retry-After replaces the backoff, capped by retry.max_retry_after.",
        f"# {'code':{width}s}  {'category':22s}  {'retried':10s}  {'initial':>7s}  {'cap':>7s}  waits",
    ]
    for code, r in zip(codes, rows, strict=True):
        if r.retried == "no":
            initial = cap = waits = "-"
        else:
            initial, cap = f"{r.initial_wait:g}", f"{r.max_wait:g}"
            waits = ", ".join(f"{w:g}" for w in r.waits[:8]) + (", ..." if len(r.waits) > 8 else "")
        category = r.category or "-"
        lines.append(f"# {code:{width}s}  {category:22s}  {r.retried:10s}  {initial:>7s}  {cap:>7s}  {waits}")
    return "\n".join(lines) + "\n"


def _policy(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.policy_command == "show":
        return _show_policy(args.target, out)
    if args.policy_command in ("explain", "plot", "simulate"):
        return _policy_tool(args, out)
    try:
        policy = rc.load_policy(args.target)
    except rc.PolicyError as error:
        for problem in error.problems:
            err.write(f"{problem}\n")
        return EXIT_BAD_POLICY
    out.write(render_policy(policy))
    return 0


def _show_policy(name: str, out: TextIO) -> int:
    shipped = ("default", *rc.VENDORS)
    if name not in shipped:
        raise _BadInput(f"unknown vendor or policy {name!r}; shipped policies: {', '.join(shipped)}")
    out.write(render_policy(rc.load_policy(name)))
    return 0


def _named_policy(target: str) -> tuple[rc.RetryPolicy, str]:
    """The policy ``target`` names and how to show it: a vendor (any case; the policy its clients
    would use, as ``codes`` explains them), ``default``, or a policy file."""
    name = target.lower()
    if not os.path.exists(target) and name in rc.VENDORS:
        policy = client_policy(name)
        shipped = rc.load_policy(name)
        return policy, name if policy.source == shipped.source else f"{name} ({policy.source})"
    if not os.path.exists(target) and name == "default":
        return rc.load_policy(name), name
    return rc.load_policy(target), target


def _policy_tool(args: argparse.Namespace, out: TextIO) -> int:
    from resilient_client import _policy_tools as tools

    policy, name = _named_policy(args.target)
    if args.policy_command == "explain":
        data = tools.explain(policy, name)
        out.write(json.dumps(data, indent=2) + "\n" if args.json else tools.render_explain(data))
        return 0
    if args.policy_command == "plot":
        title = f"{name}: wait before each retry"
        if args.output is None:
            out.write(tools.plot_text(policy, title))
            return 0
        try:
            with open(args.output, "w", encoding="utf-8") as svg:
                svg.write(tools.plot_svg(policy, title))
        except OSError as error:
            raise _BadInput(f"--output {args.output}: {error.strerror or error}") from None
        out.write(f"wrote {args.output}\n")
        return 0
    data = tools.simulate(policy, args.clients, runs=args.runs, seed=args.seed, outage=args.outage)
    out.write(json.dumps(data, indent=2) + "\n" if args.json else tools.render_simulate(data, name))
    return 0


def _fleet_sizes(text: str) -> list[int]:
    """``--clients 10,50,100``: fleet sizes from 1 to 1,000."""
    sizes = []
    for part in text.split(","):
        try:
            size = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{part.strip()!r} is not a whole number; expected sizes such as 10,50,100"
            ) from None
        if not 1 <= size <= 1000:
            raise argparse.ArgumentTypeError(f"{size}: a fleet size must be from 1 to 1000")
        sizes.append(size)
    return sizes


def _runs(text: str) -> int:
    try:
        runs = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= runs <= 1000:
        raise argparse.ArgumentTypeError(f"{runs}: must be from 1 to 1000")
    return runs


def _outage_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= seconds <= 3600:
        raise argparse.ArgumentTypeError(f"{text}: must be from 0 to 3600 seconds")
    return seconds


def _check_listen_address(host: str, port: int) -> None:
    """Refuse a host or port the simulator could not listen on, saying which and why (the server
    itself only reports that it did not start)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise _BadInput(f"--host {host!r}: not a host name or address that resolves ({reason})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # As the server sets it: a port left in TIME_WAIT is free, one that is listened on is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise _BadInput(
                    f"--port {port}: already in use on {host}; pick another, or 0 for a free one"
                ) from None
            if error.errno == errno.EADDRNOTAVAIL:
                raise _BadInput(
                    f"--host {host}: not an address of this machine, so nothing can listen on it "
                    "(use 127.0.0.1, or an address of one of its network interfaces)"
                ) from None
            if error.errno == errno.EACCES:
                raise _BadInput(
                    f"--port {port}: needs privileges on this machine (ports below 1024 do); pick "
                    "another, or 0 for a free one"
                ) from None
            raise _BadInput(f"--host {host} --port {port}: cannot listen there ({error.strerror})") from None


def _simulate(args: argparse.Namespace, out: TextIO) -> int:
    from resilient_client.simulator import JOURNAL_ACCOUNT_FIELD, STATS_PATH, serve

    if not 0 <= args.port <= 65535:
        raise _BadInput(f"--port {args.port}: must be between 0 and 65535")
    sim = _simulator_from(args)
    _check_listen_address(args.host, args.port)
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(serve(sim, host=args.host, port=args.port))
        except (RuntimeError, OSError) as error:  # taken between the check and the server's bind
            raise _BadInput(f"{error}: the address was free a moment before; try again") from None
        out.write(f"simulator on {url} (vendors under /updox, /usta, /medable, /hyper); Ctrl-C stops it\n")
        for vendor, limit in sim.snapshot()["rate_limits"].items():
            out.write(
                f"  {vendor}: {limit['requests']} requests per {limit['period']:g} s per client IP, "
                "then 429 with Retry-After\n"
            )
        if sim.journal_latency:
            out.write(
                f"  hyper journal calls take {sim.journal_latency:g} s; another of the same "
                f"{JOURNAL_ACCOUNT_FIELD} meanwhile gets code 50\n"
            )
        out.write(f"  counters: GET {url}{STATS_PATH}\n")
        out.flush()
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait(args.seconds)
    return 0


def _simulator_from(args: argparse.Namespace) -> Simulator:
    """The simulator the ``simulate`` options describe (a scenario, rate limits, journal latency)."""
    from resilient_client.simulator import Simulator

    try:
        latency = float(args.journal_latency)
    except ValueError:
        raise _BadInput(f"--journal-latency {args.journal_latency!r}: expected seconds, e.g. 0.05") from None
    if not math.isfinite(latency) or latency < 0:
        raise _BadInput(
            f"--journal-latency {args.journal_latency}: expected a finite number of seconds, 0 or more"
        )
    sim = Simulator(journal_latency=latency)
    if args.scenario:
        sim.load_scenario(args.scenario)
    for text in args.rate_limit:
        vendor, _, rate = text.rpartition(":")
        count, _, period = rate.partition("/")
        try:
            requests, seconds = int(count), float(period)
        except ValueError:
            raise _BadInput(
                f"--rate-limit {text!r}: expected [VENDOR:]N/PERIOD, N requests per PERIOD seconds "
                "(e.g. 20/60 or hyper:20/60)"
            ) from None
        if requests < 1:
            raise _BadInput(f"--rate-limit {text!r}: requests must be 1 or more")
        if not math.isfinite(seconds) or seconds <= 0:
            raise _BadInput(f"--rate-limit {text!r}: period must be more than 0 seconds")
        try:
            sim.rate_limit(vendor.lower() or "hyper", requests, seconds)
        except ValueError as error:
            raise _BadInput(f"--rate-limit {text!r}: {error}") from None
    return sim


class _BadInput(Exception):
    """Input the command refuses with a message and exit status 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resilient-client",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-V", "--version", action="version", version=f"%(prog)s {rc.__version__}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    codes = sub.add_parser("codes", help="explain one code of a vendor, or list its catalog")
    # Vendor ids are lowercase; HYPER or Hyper mean the same vendor.
    codes.add_argument("vendor", type=str.lower, help=", ".join(rc.VENDORS) + " (any case)")
    codes.add_argument(
        "code", nargs="?", help="a code, e.g. 10 or kThrottled (any case); without it, the whole catalog"
    )
    codes.add_argument("--json", action="store_true", help="print JSON")
    codes.add_argument(
        "--policy",
        metavar="FILE_OR_NAME",
        help="explain under this policy; default: the one a client would use "
        "(RESILIENT_CLIENT_<VENDOR>_POLICY, else RESILIENT_CLIENT_POLICY, else the shipped one)",
    )
    policy = sub.add_parser("policy", help="check, show, explain, plot or simulate a policy")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    policy_sub.add_parser("check", help="validate a file; print its effective policy").add_argument(
        "target", metavar="FILE", help="a policy file (TOML); every problem is listed with its key path"
    )
    policy_sub.add_parser("show", help="print a shipped policy, every key").add_argument(
        "target", metavar="NAME", type=str.lower, help="default, " + ", ".join(rc.VENDORS) + " (any case)"
    )
    target_help = (
        "a vendor (" + ", ".join(rc.VENDORS) + ", any case: the policy its clients use), "
        "default, or a policy file"
    )
    explain = policy_sub.add_parser(
        "explain",
        help="per code: retried for which methods, the waits, the worst case; attempts per call at an "
        "outage; what each strategy does",
    )
    explain.add_argument("target", metavar="VENDOR_OR_FILE", help=target_help)
    explain.add_argument("--json", action="store_true", help="print JSON")
    plot = policy_sub.add_parser(
        "plot", help="the wait schedule per code as bands (jittered min, median, max per retry)"
    )
    plot.add_argument("target", metavar="VENDOR_OR_FILE", help=target_help)
    plot.add_argument(
        "--output", metavar="FILE.svg", help="write an SVG there; without it, draw a chart in the terminal"
    )
    simulate_policy = policy_sub.add_parser(
        "simulate",
        help="the AWS 'Exponential Backoff and Jitter' experiment on the policy's backoff, beside no jitter",
    )
    simulate_policy.add_argument("target", metavar="VENDOR_OR_FILE", help=target_help)
    simulate_policy.add_argument(
        "--clients",
        type=_fleet_sizes,
        default=[10, 50, 100],
        metavar="N,N,...",
        help="fleet sizes to simulate, comma-separated (default 10,50,100)",
    )
    simulate_policy.add_argument("--json", action="store_true", help="print JSON")
    simulate_policy.add_argument(
        "--runs", type=_runs, default=20, help="runs averaged per fleet size (default 20)"
    )
    simulate_policy.add_argument(
        "--outage",
        type=_outage_seconds,
        default=0.0,
        metavar="SECONDS",
        help="every call fails for this long first, then the vendor is back (default 0: the post's "
        "experiment, every client starting at once)",
    )
    simulate_policy.add_argument(
        "--seed", type=int, default=0, help="seed of the simulation's randomness (default 0: repeatable)"
    )
    sub.add_parser("demo", help="run the vendor clients against the simulator")
    fleet = sub.add_parser(
        "fleet", help="run worker processes that share one Redis (started here) against the simulator"
    )
    fleet.add_argument("--workers", type=int, default=4, help="worker processes, 1 to 32 (default 4)")
    simulate = sub.add_parser("simulate", help="run the vendor simulator on a loopback port")
    simulate.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    simulate.add_argument(
        "--port", type=int, default=8080, help="port to listen on; 0 picks a free one (default 8080)"
    )
    simulate.add_argument(
        "--scenario", type=str.lower, help="a scripted fault sequence: outage, throttled or transient"
    )
    simulate.add_argument(
        "--rate-limit",
        metavar="[VENDOR:]N/PERIOD",
        action="append",
        default=[],
        help="let N requests per PERIOD seconds through per client IP, then answer 429 with "
        "Retry-After, as Hyper's gateway does (e.g. 20/60; vendor hyper unless named; repeatable)",
    )
    simulate.add_argument(
        "--journal-latency",
        metavar="SECONDS",
        default="0",
        help="Hyper journal calls (paths containing 'journal', any case) take this long; another one "
        "naming the same AccountNo in its JSON body meanwhile gets code 50 (default 0)",
    )
    simulate.add_argument("--seconds", type=float, default=None, help=argparse.SUPPRESS)
    return parser


def _run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.command == "codes":
        return _codes(args, out)
    if args.command == "policy":
        return _policy(args, out, err)
    if args.command == "demo":
        from resilient_client._demo import run

        return run(lambda line: print(line, file=out))
    if args.command == "fleet":
        from resilient_client._fleet import run as run_fleet

        return run_fleet(args.workers, lambda line: print(line, file=out, flush=True))
    return _simulate(args, out)


def _say(err: TextIO, text: str) -> None:
    with contextlib.suppress(OSError):  # stderr closed too: nothing left to tell
        err.write(f"{text}\n")


def _stop_writing_to(out: TextIO) -> None:
    """After the reader of ``out`` went away (``| head``): point its descriptor at /dev/null, so the
    interpreter's last flush at exit does not fail too."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
        os.close(devnull)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the command; returns the exit status: 0, 1 (a bad policy, a missing extra, a failure)
    or 2 (bad input). Never a traceback."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        status = _run(_parser().parse_args(argv), out, err)
        out.flush()
        return status
    except BrokenPipeError:
        # The reader stopped reading (``| head``): not an error worth a message.
        _stop_writing_to(out)
        return EXIT_FAILURE
    except rc.PolicyError as error:
        for problem in error.problems:
            _say(err, str(problem))
        return EXIT_BAD_POLICY
    except (_BadInput, ValueError) as error:
        _say(err, f"resilient-client: {error}")
        return EXIT_BAD_INPUT
    except ImportError as error:  # an optional part (an extra) is not installed
        _say(err, f"resilient-client: {error}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # the last resort: one line, never a traceback
        _say(err, f"resilient-client: unexpected {type(error).__name__}: {error}")
        return EXIT_FAILURE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
