"""Import time: ``import resilient_client`` beside ``import httpx``, each in fresh interpreters.

Each run starts a new ``python -X importtime -c "import <module>"`` and reads the cumulative
microseconds of the module's own line (the interpreter's start-up is not counted); the runs of the
two alternate, and the median of each is printed, with the ratio of the medians and of the fastest
runs. The goal is resilient_client <= 1.5x httpx (the bar 2x).

    python bench/import_time.py [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys


def import_microseconds(module: str) -> int:
    """The cumulative import time of ``module`` in a fresh interpreter, from ``-X importtime``."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
    )
    for line in done.stderr.splitlines():
        parts = [part.strip() for part in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[2] == module:
            return int(parts[1])
    raise RuntimeError(f"no import time line for {module}:\n{done.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="fresh interpreters per module (default 15)")
    args = parser.parse_args()
    modules = ("httpx", "resilient_client")
    runs: dict[str, list[int]] = {module: [] for module in modules}
    for module in modules:
        import_microseconds(module)  # a first run warms the file system cache and the .pyc files
    for _ in range(args.runs):
        for module in modules:  # alternated: a busy machine slows both alike
            runs[module].append(import_microseconds(module))
    medians: dict[str, float] = {}
    for module in modules:
        times = runs[module]
        medians[module] = statistics.median(times) / 1000
        print(
            f"import {module:<17} median {medians[module]:7.1f} ms"
            f"  (min {min(times) / 1000:.1f}, max {max(times) / 1000:.1f}, {args.runs} runs)"
        )
    ratio = medians["resilient_client"] / medians["httpx"]
    print(f"ratio resilient_client / httpx: {ratio:.2f}x of the medians (goal <= 1.5x, bar <= 2x)")
    # On a busy machine the fastest run is the one least disturbed: its ratio is the steadier one.
    fastest = min(runs["resilient_client"]) / min(runs["httpx"])
    print(f"ratio resilient_client / httpx: {fastest:.2f}x of the fastest runs")


if __name__ == "__main__":
    main()
