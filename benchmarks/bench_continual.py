"""Benchmark the continual-pretraining demonstration stage (``09_continual``). Target: <= 180 s.

Each repetition runs ``zagreus run --profile smoke --languages <lang> --stages continual --no-report``
through the real CLI (papermill, a fresh kernel: what a user waits for) in a fresh copy of a
finished smoke run (``--run-dir``: the folder holding ``<lang>/01_data`` .. ``06_eval``; the copy
hard-links the upstream files, which the stage only reads, and has no ``09_continual``), so that
the second language's data is generated and tokenized and both runs are trained every time. It
prints each repetition's wall time and CPU time (the CLI process tree's user + system seconds: on
a shared machine the wall time measures the other load too, and CPU-s / 2 is what 2 dedicated
cores would need at best), the stage's own timings (``continual.json``) and the medians.

    .venv/bin/python benchmarks/bench_continual.py --run-dir runs/smoke [--language ita] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 180.0


def one_run(run_dir: Path, language: str, work: Path) -> dict:
    runs = work / "runs"
    target = runs / "smoke"
    target.mkdir(parents=True)
    for item in run_dir.iterdir():  # the profile folder: per-profile stages and each language
        if item.name == language:
            (target / language).mkdir()
            for stage in item.iterdir():
                if stage.name != "09_continual":
                    shutil.copytree(stage, target / language / stage.name, copy_function=os.link)
        elif item.is_dir() and not item.name.startswith("."):
            shutil.copytree(item, target / item.name, copy_function=os.link)
    env = {**os.environ, "ZAGREUS_RUNS": str(runs), "ZAGREUS_REPORT_DIR": str(work / "report"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))}
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, "-m", "zagreus_utils.cli", "run", "--profile", "smoke", "--languages",
                           language, "--stages", "continual", "--no-report", "--quiet"],
                          capture_output=True, text=True, env=env, cwd=REPO)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)  # the CLI, its kernel, workers
    if proc.returncode:
        raise SystemExit(f"the stage failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    stage = target / language / "09_continual"
    info = json.loads((stage / "continual.json").read_text())
    manifest = json.loads((stage / "manifest.json").read_text())
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "stage_s": manifest.get("seconds"),
            "parts_s": info["seconds"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", type=Path, default=REPO / "runs" / "smoke",
                    help="a finished smoke run's profile folder (default runs/smoke)")
    ap.add_argument("--language", default="ita")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if not (args.run_dir / args.language / "03_pretraining" / "checkpoints").is_dir():
        raise SystemExit(f"{args.run_dir}/{args.language} holds no finished smoke run: "
                         f"zagreus run --profile smoke --languages {args.language}")
    results = []
    for k in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="bench-continual-") as tmp:
            r = one_run(args.run_dir.resolve(), args.language, Path(tmp))
        results.append(r)
        load = os.getloadavg()
        print(f"run {k + 1}: {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} CPU-s (stage {r['stage_s']} s; load average "
              f"{load[0]:.1f}): {json.dumps(r['parts_s'])}", flush=True)
    median = statistics.median(r["wall_s"] for r in results)
    cpu = statistics.median(r["cpu_s"] for r in results)
    print(f"median of {len(results)}: {median:.1f} s wall (target <= {TARGET_S:.0f} s: "
          f"{'met' if median <= TARGET_S else 'NOT met'}), {cpu:.1f} CPU-s, i.e. >= {cpu / 2:.1f} s on 2 dedicated "
          f"cores; this machine: {os.cpu_count()} cores, load average now {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
