"""Benchmark: the smoke eval of all checkpoints of one language (issue 7: <= 90 s on 2 cores).

Builds a run folder like the pipeline's (held-out items at the smoke profile's scale, 4 base
checkpoints and an SFT model of the smoke model size: hidden 128, 4 layers, vocab 8192, seq 256;
random weights: the cost does not depend on them), then times ``evaluation.run_eval`` from an empty
stage folder, several times, in fresh processes; prints medians. The weights do not matter for the
time; lm-eval's own work (task building, loglikelihood requests, writing results and samples) and
the ingestion/figures are all inside the timed call.

    .venv/bin/python benchmarks/bench_eval.py [--language ita] [--repeat 3] [--batch-size 8] [--keep DIR]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 90.0

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from zagreus_utils.stages import evaluation
from zagreus_utils.pipeline import spec as specs
overrides = json.loads(sys.argv[3])
spec = specs.load_spec(sys.argv[2], "smoke", overrides)
summary = evaluation.run_eval(spec, sys.argv[1], sys.argv[1] + "/06_eval", overrides=overrides, log=lambda m: None)
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--language", default="ita")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=None, help="override eval.batch_size")
    ap.add_argument("--keep", default=None, help="build the run folder here and keep it")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "tests"))
    import eval_helpers

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="zagreus-bench-eval-"))
    env.setdefault("HF_HOME", str(base / "hf"))
    os.environ.update({k: env[k] for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")})
    run_dir = base / "run"
    t0 = time.perf_counter()
    if not (run_dir / "05_sft" / "model").is_dir():
        eval_helpers.make_run(run_dir, args.language, steps=(100, 200, 300, 400), sft=True, vocab_size=8192,
                              hidden=128, layers=4, seq=256, heldout_scale=1.0)
    print(f"built {run_dir} in {time.perf_counter() - t0:.1f} s (4 checkpoints + SFT, smoke model size)", flush=True)
    overrides = {"eval.batch_size": args.batch_size} if args.batch_size else {}
    times, per_model = [], []
    for i in range(args.repeat):
        shutil.rmtree(run_dir / "06_eval", ignore_errors=True)
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", CHILD, str(run_dir), args.language, json.dumps(overrides)],
                             env=env, cwd=REPO, capture_output=True, text=True)
        wall = time.perf_counter() - t
        if out.returncode:
            print(out.stderr[-3000:], file=sys.stderr)
            return 1
        times.append(wall)
        markers = sorted((run_dir / "06_eval" / "lm_eval").glob("*/*/zagreus_eval.json"))
        per_model.append({m.parent.parent.name: json.loads(m.read_text())["seconds"] for m in markers})
        print(f"run {i + 1}: {wall:.1f} s", flush=True)
    med = statistics.median(times)
    load = os.getloadavg()[0]
    print(f"\n{'what':44} {'median s':>9} {'min s':>7} {'max s':>7}   (load average now {load:.1f}, "
          f"{os.cpu_count()} CPUs; torch threads: ZAGREUS_EVAL_THREADS={os.environ.get('ZAGREUS_EVAL_THREADS', '1 (default)')})")
    for name in per_model[0]:
        vals = [p[name] for p in per_model]
        print(f"{'  lm-eval on ' + name:44} {statistics.median(vals):9.2f} {min(vals):7.2f} {max(vals):7.2f}")
    print(f"{'smoke eval, 5 models (' + args.language + '), whole process':44} {med:9.2f} {min(times):7.2f} "
          f"{max(times):7.2f}  target <= {TARGET_S:.0f} s: {'met' if med <= TARGET_S else 'MISSED'}")
    check = json.loads((run_dir / "06_eval" / "learning_check.json").read_text())
    print("(random weights: the learning check is not expected to pass here)", check["summary"][0])
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
