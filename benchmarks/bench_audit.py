"""Benchmark: ``zagreus audit`` on the technical report repeated to 1x, 10x, 40x and ~50 MB.

Target (issue 12): linear in the input, a 50 MB report in <= 60 s. The repeated reports are
written to a temporary folder; each size is audited in this process (``audit.audit(path)``: read,
parse, every check), ``--repeat`` times at the small sizes and once at ~50 MB. The table gives the
median seconds, seconds per MB and that per-MB cost relative to 1x: a linear audit keeps the last
column near 1 (a quadratic one grows with the copies).

    .venv/bin/python benchmarks/bench_audit.py [--report ../shared/reference/tech-report.md]
                                               [--repeat 3] [--mb 50]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zagreus_utils.audit.core import audit  # noqa: E402

DEFAULT_REPORT = ROOT.parent / "shared" / "reference" / "tech-report.md"


def timed(path: Path) -> tuple[float, int]:
    gc.collect()
    t0 = time.perf_counter()
    findings = audit(path)
    return time.perf_counter() - t0, len(findings)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--report", type=Path, default=DEFAULT_REPORT, help="the report's markdown")
    p.add_argument("--repeat", type=int, default=3, help="runs per small size (median reported)")
    p.add_argument("--mb", type=float, default=50.0, help="size of the largest input, in MB (0: skip)")
    p.add_argument("--target", type=float, default=60.0, help="seconds allowed for the largest input")
    args = p.parse_args(argv)
    if not args.report.is_file():
        print(f"error: {args.report} not found; pass --report PATH.md", file=sys.stderr)
        return 2
    text = args.report.read_text(encoding="utf-8").rstrip("\n") + "\n\n"
    size = len(text.encode("utf-8"))
    sizes = [(1, args.repeat), (10, args.repeat), (40, args.repeat)]
    if args.mb > 0:
        sizes.append((max(1, round(args.mb * 1e6 / size)), 1))
    audit(args.report)  # first use: imports and schemas, not part of any size's time
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_audit_") as tmp:
        for copies, repeat in sizes:
            path = Path(tmp) / f"report-x{copies}.md"
            path.write_text(text * copies, encoding="utf-8")
            mb = path.stat().st_size / 1e6
            runs = [timed(path) for _ in range(repeat)]
            path.unlink()
            seconds = statistics.median(s for s, _ in runs)
            rows.append((copies, mb, repeat, seconds, runs[0][1]))
            print(f"  x{copies}: {mb:.2f} MB, {seconds:.2f} s", file=sys.stderr, flush=True)
    per_mb_1x = rows[0][3] / rows[0][1]
    print(f"{'copies':>7} {'MB':>8} {'runs':>4} {'median s':>9} {'s / MB':>7} {'s/MB vs 1x':>10} {'findings':>9}")
    for copies, mb, repeat, seconds, findings in rows:
        print(f"{copies:>7} {mb:>8.2f} {repeat:>4} {seconds:>9.2f} {seconds / mb:>7.2f} "
              f"{seconds / mb / per_mb_1x:>10.2f} {findings:>9}")
    if args.mb > 0:
        copies, mb, _, seconds, _ = rows[-1]
        verdict = "within" if seconds <= args.target else "OVER"
        print(f"{mb:.1f} MB in {seconds:.1f} s: {verdict} the {args.target:.0f} s target")
        return 0 if seconds <= args.target else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
