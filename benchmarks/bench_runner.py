"""Benchmark: a no-op `zagreus run` (everything up to date) and a report rebuild from existing runs.

Targets (issue 2): report rebuild <= 30 s, no-op run <= 10 s on 2 cores. Each is timed as a whole
command (a fresh process, as a user would run it), several times; medians are printed.

    .venv/bin/python benchmarks/bench_runner.py [--profile smoke] [--languages ita] [--repeat 5]
"""

import argparse
import statistics
import subprocess
import sys
import time

ZAGREUS = [sys.executable, "-m", "zagreus_utils.cli"]


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--languages", nargs="+", default=["ita"])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--report-source", default=None)
    args = ap.parse_args()
    source = ["--report-source", args.report_source] if args.report_source else []
    run = ZAGREUS + ["run", "--profile", args.profile, "--languages", *args.languages, "--quiet", *source]
    report = ZAGREUS + ["report", "--profile", args.profile, *source]

    print(f"warm-up: {' '.join(run[2:])} (runs whatever is not up to date yet)", flush=True)
    subprocess.run(run, check=True)
    rows = []
    for name, cmd, target in [("no-op run (all up to date)", run + ["--no-report"], 10.0),
                              ("no-op run + report rebuild", run, None),
                              ("report rebuild", report, 30.0)]:
        times = [timed(cmd) for _ in range(args.repeat)]
        med = statistics.median(times)
        verdict = "" if target is None else (f"target <= {target:.0f} s: " + ("met" if med <= target else "MISSED"))
        rows.append((name, med, min(times), max(times), verdict))
    print(f"\n{'what':32} {'median s':>9} {'min s':>7} {'max s':>7}")
    for name, med, lo, hi, verdict in rows:
        print(f"{name:32} {med:9.2f} {lo:7.2f} {hi:7.2f}  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
