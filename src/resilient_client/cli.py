"""The ``resilient-client`` command: explain codes, check policies, run the demo and the simulator.

    resilient-client codes hyper 10          # one code: meaning, category, retried or not and why
    resilient-client codes medable --json    # the whole catalog, for scripts
    resilient-client policy check my.toml    # the problems of a policy file, or its effective policy
    resilient-client policy show hyper       # the shipped policy of a vendor
    resilient-client demo                    # the clients against the simulator
    resilient-client simulate --port 8080    # the simulator as a loopback server

Bad input (an unknown vendor or code, a bad policy file) prints a message and exits non-zero,
never a traceback. Uses only the package's public names.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
from collections.abc import Sequence
from typing import Any, TextIO

import attrs

import resilient_client as rc

EXIT_BAD_INPUT = 2
EXIT_BAD_POLICY = 1
SOFT = ("incomplete_success", "no_results", "verification_required", "not_ready", "partial_failure")


def _vendor_policy(vendor: str) -> rc.RetryPolicy:
    # What a client built with no policy= would use.
    from_env = os.environ.get(rc.POLICY_ENV)
    return rc.load_policy(from_env) if from_env else rc.load_policy(vendor)


def explain(entry: rc.CatalogEntry, policy: rc.RetryPolicy) -> tuple[str, str]:
    """(``any`` | ``idempotent`` | ``no``, why) for a code under a policy."""
    rule = policy.rule(entry.code)
    where = f"codes.{entry.code}"
    if entry.category == "ok":
        return "no", "not retried: a success code, nothing is raised"
    if entry.category in SOFT and policy.returns(entry.category, entry.code):
        return "no", "not retried: a soft fault the policy returns to the caller instead of raising"
    if rule is not None and rule.retry is not None:
        retried, because = rule.retry, f"{where}.retry = {str(rule.retry).lower()}"
    else:
        retried = entry.category in policy.retry.categories
        because = f"{entry.category} is {'' if retried else 'not '}in retry.categories"
    if not retried:
        return "no", f"not retried: {because}"
    if rule is not None and rule.any_method is not None:
        any_method, how = rule.any_method, f"{where}.any_method = {str(rule.any_method).lower()}"
    else:
        any_method = entry.category in policy.retry.any_method_categories
        how = (
            f"{entry.category} says the vendor did not apply the request"
            if any_method
            else (f"{entry.category}: the vendor may have applied the request")
        )
    if any_method:
        return "any", f"retried for any method ({because}; {how})"
    methods = ", ".join(policy.retry.idempotent_methods)
    operations = policy.retry.idempotent_operations
    extra = f" and operations {', '.join(operations)}" if operations else ""
    return "idempotent", f"retried for idempotent methods only: {methods}{extra} ({because}; {how})"


def _entry_record(entry: rc.CatalogEntry, policy: rc.RetryPolicy) -> dict[str, Any]:
    retried, why = explain(entry, policy)
    return {
        "vendor": entry.vendor,
        "code": entry.code,
        "message": entry.message,
        "http_status": entry.http_status,
        "category": entry.category,
        "group": entry.group,
        "exception": f"{entry.exception.__module__}.{entry.exception.__name__}",
        "retried": retried,
        "why": why,
    }


def _codes(args: argparse.Namespace, out: TextIO) -> int:
    catalog = rc.catalog(args.vendor)
    policy = _vendor_policy(args.vendor)
    if args.code is not None:
        entry = catalog.lookup(args.code)
        if entry is None:
            raise _BadInput(
                f"{args.vendor} has no code {args.code!r}; `resilient-client codes {args.vendor}` lists them"
            )
        record = _entry_record(entry, policy)
        if args.json:
            json.dump(record, out, indent=2)
            out.write("\n")
            return 0
        for key in ("vendor", "code", "message", "http_status", "category", "group", "exception", "why"):
            label = "retried" if key == "why" else key.replace("_", " ")
            value = "none documented" if record[key] is None else record[key]
            out.write(f"{label:12s} {value}\n")
        return 0
    records = [_entry_record(entry, policy) for entry in catalog]
    if args.json:
        json.dump(records, out, indent=2)
        out.write("\n")
        return 0
    out.write(f"{catalog.title}: {len(records)} codes\n")
    out.write(f"{'code':>30s}  {'status':6s}  {'category':22s}  {'retried':10s}  exception\n")
    for r in records:
        status = "-" if r["http_status"] is None else str(r["http_status"])
        name = r["exception"].rpartition(".")[2]
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
    for table, values in data.items():
        lines.append(f"\n[{table}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
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
        rc.catalog(args.target)  # an unknown vendor is bad input
        out.write(render_policy(rc.load_policy(args.target)))
        return 0
    try:
        policy = rc.load_policy(args.target)
    except rc.PolicyError as error:
        for problem in error.problems:
            err.write(f"{problem}\n")
        return EXIT_BAD_POLICY
    out.write(render_policy(policy))
    return 0


def _simulate(args: argparse.Namespace, out: TextIO) -> int:
    from resilient_client.simulator import Simulator, serve

    if not 0 <= args.port <= 65535:
        raise _BadInput(f"--port {args.port}: must be between 0 and 65535")
    sim = Simulator()
    if args.scenario:
        sim.load_scenario(args.scenario)
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(serve(sim, host=args.host, port=args.port))
        except (RuntimeError, OSError) as error:  # a busy port, a host that is not ours
            raise _BadInput(f"{error} (is the port in use?)") from None
        out.write(f"simulator on {url} (vendors under /updox, /usta, /medable, /hyper); Ctrl-C stops it\n")
        out.flush()
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait(args.seconds)
    return 0


class _BadInput(Exception):
    """Input the command refuses with a message and exit status 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="resilient-client", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    codes = sub.add_parser("codes", help="explain one code of a vendor, or list its catalog")
    codes.add_argument("vendor", help=", ".join(rc.VENDORS))
    codes.add_argument("code", nargs="?", help="a code, e.g. 10 or kThrottled")
    codes.add_argument("--json", action="store_true", help="print JSON")
    policy = sub.add_parser("policy", help="check a policy file or show a vendor's policy")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    policy_sub.add_parser("check", help="validate a file; print its effective policy").add_argument(
        "target", metavar="FILE"
    )
    policy_sub.add_parser("show", help="print a vendor's shipped policy").add_argument(
        "target", metavar="VENDOR"
    )
    sub.add_parser("demo", help="run the vendor clients against the simulator")
    simulate = sub.add_parser("simulate", help="run the vendor simulator on a loopback port")
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--port", type=int, default=8080)
    simulate.add_argument("--scenario", help="one of: outage, throttled, transient")
    simulate.add_argument("--seconds", type=float, default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the command; returns the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    args = _parser().parse_args(argv)
    try:
        if args.command == "codes":
            return _codes(args, out)
        if args.command == "policy":
            return _policy(args, out, err)
        if args.command == "demo":
            from resilient_client._demo import run

            return run(lambda line: print(line, file=out))
        return _simulate(args, out)
    except (_BadInput, ValueError) as error:
        err.write(f"resilient-client: {error}\n")
        return EXIT_BAD_INPUT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
