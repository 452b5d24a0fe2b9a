"""Benchmark: the whole smoke pipeline from nothing to the HTML report, as `make report` runs it.

Targets (issue 7), on 2 cores after installation: all seven stages and the report for `ita` in at
most 5 minutes; for all four languages in at most 15 minutes. Every run starts from an empty run
folder (`ZAGREUS_RUNS`, `ZAGREUS_REPORT_DIR` in a temporary directory), so nothing is reused; the
per-stage wall times come from the manifests. Medians over `--repeat` runs per language set.

    .venv/bin/python benchmarks/bench_report.py [--repeat 3] [--sets ita all] [--report-source FILE]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LANGUAGE_SETS = {"ita": ["ita"], "all": ["ita", "spa", "fra", "por"]}
TARGET_S = {"ita": 300.0, "all": 900.0}


def one_run(languages: list[str], report_source: str | None) -> tuple[float, dict, bool]:
    """(seconds, {stage: seconds summed over languages}, learning per language) of one fresh run."""
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        env = dict(os.environ, ZAGREUS_RUNS=f"{tmp}/runs", ZAGREUS_REPORT_DIR=f"{tmp}/report")
        cmd = [sys.executable, "-m", "zagreus_utils.cli", "run", "--profile", "smoke", "--languages", *languages,
               "--quiet", *(["--report-source", report_source] if report_source else [])]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        seconds = time.perf_counter() - t0
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        if not (Path(tmp) / "report" / "smoke" / "index.html").is_file():
            raise SystemExit(f"no report at {tmp}/report/smoke/index.html")
        stages: dict[str, float] = {}
        for manifest in Path(tmp, "runs", "smoke").glob("**/manifest.json"):
            m = json.loads(manifest.read_text())
            name = manifest.parent.name
            stages[name] = stages.get(name, 0.0) + float(m.get("seconds") or 0.0)
        learning = {}
        for lang in languages:
            check = Path(tmp, "runs", "smoke", lang, "06_eval", "learning_check.json")
            learning[lang] = json.loads(check.read_text())["learning"] if check.is_file() else None
        return seconds, stages, learning


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sets", nargs="+", choices=sorted(LANGUAGE_SETS), default=["ita", "all"])
    ap.add_argument("--report-source", default=None)
    args = ap.parse_args()
    rows = []
    for name in args.sets:
        times, per_stage = [], []
        for k in range(args.repeat):
            seconds, stages, learning = one_run(LANGUAGE_SETS[name], args.report_source)
            times.append(seconds)
            per_stage.append(stages)
            print(f"{name} run {k + 1}/{args.repeat}: {seconds:.1f} s; stages "
                  + ", ".join(f"{s} {t:.1f}" for s, t in sorted(stages.items()))
                  + f"; learning {learning}", flush=True)
        median = statistics.median(times)
        rows.append((name, median, TARGET_S[name], min(times), max(times)))
    print("\nset   median_s  target_s  ratio  min_s  max_s  verdict")
    for name, median, target, lo, hi in rows:
        print(f"{name:5} {median:8.1f}  {target:8.0f}  {median / target:5.2f}  {lo:5.1f}  {hi:5.1f}  "
              + ("met" if median <= target else "MISSED"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
