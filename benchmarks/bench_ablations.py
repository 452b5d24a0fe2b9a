"""Benchmark the ablation stage's training part (stage 08, ``zagreus_utils.stages.ablations``).

Runs what the stage trains (the held-out split, then every variant x seed of the plan through the
local trainer, each measured on the held-out slice) on the smoke profile, ``--repeat`` times, each
repeat into a fresh folder (nothing reused), and prints the wall time of each repeat and their
median (target: <= 10 min for the plan's variants x 3 seeds on 2 cores), and per variant the median
training tokens/s and CPU seconds per step over seeds and repeats, with the ratio to the baseline
(target: within 10 %; a slower variant is flagged).

    .venv/bin/python benchmarks/bench_ablations.py [--repeat 2] [--run-dir runs/smoke/ita]
        [--steps N] [--seeds 1 2 3] [--variants baseline nope ...]

Without ``--run-dir`` a stage-02 output is built like stage 02 (bench_trainer.build_stage02).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from bench_trainer import build_stage02  # noqa: E402

from zagreus_utils.model.trainer import _load_tokenizer  # noqa: E402
from zagreus_utils.pipeline.context import StageContext  # noqa: E402
from zagreus_utils.stages.ablations import heldout, load_plan, probe, runs  # noqa: E402
from zagreus_utils.stages.ablations.tables import SLOWER  # noqa: E402
from zagreus_utils.stages.pretraining import _tokenizer_string  # noqa: E402


def train_part(run_dir: Path, out: Path, plan) -> tuple[float, list[dict]]:
    """The stage's training part into ``out``: (wall seconds, per-run rows)."""
    ctx = StageContext.create("ablations", profile="smoke", language="ita", run_dir=run_dir, out_dir=out)
    t0 = time.perf_counter()
    spec = ctx.spec
    tokenization = ctx.upstream("tokenization")
    out.mkdir(parents=True, exist_ok=True)
    vocab = spec.profile.tokenizer.vocab_size
    held = heldout.split([tokenization / "tokenized" / s.id for s in spec.language.mixture], out,
                         plan.heldout_fraction, vocab)
    tokenizer = _tokenizer_string(spec, tokenization)
    table = probe.token_bytes(_load_tokenizer(tokenizer), vocab)
    rows, _ = runs.train_all(ctx, plan, held, tokenizer, table, progress=False)
    return time.perf_counter() - t0, rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--run-dir", default=None, help="a run folder with a stage-02 output (default: build one)")
    ap.add_argument("--steps", type=int, default=None, help="steps per run (default: the plan's)")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default: the plan's)")
    ap.add_argument("--variants", nargs="+", default=None, help="variants (default: the plan's; baseline always)")
    args = ap.parse_args()
    plan = load_plan()
    update = {}
    if args.steps:
        update["steps"] = args.steps
    if args.seeds:
        update["seeds"] = args.seeds
    if args.variants:
        update["variants"] = {v: plan.variants[v] for v in ["baseline", *args.variants] if v in plan.variants}
        update["claims"] = [c for c in plan.claims if c.variant in update["variants"]]
    plan = plan.model_copy(update=update)
    tmp = tempfile.TemporaryDirectory(prefix="bench-ablations-")
    if args.run_dir:
        run_dir = Path(args.run_dir).resolve()
    else:
        run_dir = Path(tmp.name) / "smoke" / "ita"
        print("building a stage-02 output (sample corpus, BPE, datatrove) ...", flush=True)
        build_stage02(run_dir)
    n_runs = len(plan.runs())
    print(f"{len(plan.variants)} variants x {len(plan.seeds)} seeds = {n_runs} runs of {plan.steps} steps, "
          f"{args.repeat} repeat(s); load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores "
          "(above the core count other processes share the CPU and wall times grow; CPU s/step is steadier)",
          flush=True)
    walls, rows = [], []
    for r in range(args.repeat):
        wall, got = train_part(run_dir, Path(tmp.name) / f"repeat{r}", plan)
        walls.append(wall)
        rows += got
        print(f"repeat {r + 1}: {wall:.1f} s for {n_runs} runs ({wall / n_runs:.1f} s per run), "
              f"load {os.getloadavg()[0]:.2f}", flush=True)
    median = statistics.median(walls)
    print(f"\nwall time, median of {len(walls)}: {median:.1f} s = {median / 60:.1f} min "
          f"(target <= 10 min: {'met' if median <= 600 else 'NOT met'} on this machine, as loaded)")
    full = load_plan()
    if (plan.steps, len(plan.runs())) != (full.steps, len(full.runs())):
        per_step = statistics.median(x["s_per_step"] for x in rows)
        overhead = statistics.median(x["run_wall_s"] - per_step * x["steps"] for x in rows)
        guess = len(full.runs()) * (full.steps * per_step + overhead)
        print(f"the stage's plan ({len(full.runs())} runs of {full.steps} steps), extrapolated from these runs "
              f"({per_step:.2f} s/step, {overhead:.1f} s per run besides): {guess:.0f} s = {guess / 60:.1f} min")

    def med(variant, key):
        values = [x[key] for x in rows if x["variant"] == variant and x.get(key)]
        return statistics.median(values) if values else float("nan")

    base_tps, base_cpu = med("baseline", "tokens_per_sec"), med("baseline", "cpu_s_per_step")
    print(f"\n{'variant':<18}{'tokens/s':>10}{'ratio':>8}{'CPU s/step':>12}{'ratio':>8}  throughput")
    for variant in plan.variants:
        tps, cpu = med(variant, "tokens_per_sec"), med(variant, "cpu_s_per_step")
        ratio, cpu_ratio = tps / base_tps, base_cpu / cpu
        flag = f"SLOWER by {1 - ratio:.0%} (> {SLOWER:.0%})" if ratio < 1 - SLOWER else "ok"
        print(f"{variant:<18}{tps:>10,.0f}{ratio:>8.2f}{cpu:>12.3f}{cpu_ratio:>8.2f}  {flag}")
    print("(ratio: variant / baseline speed, from tokens/s and from CPU seconds per step; medians over seeds "
          "and repeats)")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
