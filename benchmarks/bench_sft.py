"""Benchmark: the smoke SFT of one language (axolotl preprocess + train on CPU, offline).

Target (issue 6): <= 90 s on 2 cores, median of repeated runs. Each repeat starts from a fresh
stage folder (so axolotl tokenizes and packs the data again) and times what the stage does:
``sft.prepare`` (input checks, render, axolotl's validation, in this process) and
``sft.run_local`` (``axolotl.cli.preprocess`` then ``axolotl.cli.train`` as subprocesses, as the
notebook runs them). The base model has the smoke profile's shape (hidden 128, 4 layers, 4 heads,
2 kv heads, 256 positions, BPE vocab 8192) with random weights, as the conversion stage would hand
it over; the data is the generated bilingual SFT set (400 conversations).

    .venv/bin/python benchmarks/bench_sft.py [--language ita] [--repeat 3] [--entry kit|axolotl] [--max-steps N]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

TARGET_S = 90.0


def _cpu() -> float:
    """User + system CPU seconds of this process and its finished children."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--language", default="ita")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--entry", choices=("kit", "axolotl"), default="kit",
                    help="kit: python -m zagreus_utils.stages.sft <step> (default); axolotl: python -m axolotl.cli.<step>")
    ap.add_argument("--max-steps", type=int, default=None, help="default: the smoke config's max_steps")
    ap.add_argument("--keep", type=Path, default=None, help="keep the run folder here")
    args = ap.parse_args(argv)

    import sft_helpers
    from zagreus_utils.stages import sft
    from zagreus_utils.pipeline.spec import load_spec

    sft.apply_offline_env()
    spec = load_spec(args.language, "smoke")
    m = spec.profile.model
    root = Path(tempfile.mkdtemp(prefix="bench-sft-")) if args.keep is None else args.keep
    run = root / "runs" / "smoke" / args.language
    t0 = time.perf_counter()
    raw = sft_helpers.make_corpus(run / "01_data" / "raw", args.language, spec.profile.training.seed)
    sft_helpers.build_tiny_base(sft.base_model_path(spec, run), raw, vocab_size=spec.profile.tokenizer.vocab_size,
                                hidden=m.hidden_size, layers=m.num_hidden_layers, heads=m.num_attention_heads,
                                kv_heads=m.num_key_value_heads, max_positions=m.max_position_embeddings)
    print(f"inputs (corpus + smoke-shaped base model) built in {time.perf_counter() - t0:.1f} s under {run}")
    print(f"cores: {os.cpu_count()}; load average before: {os.getloadavg()[0]:.2f}; entry: {args.entry}")

    rows = []
    for i in range(args.repeat):
        out = run / f"05_sft_bench{i}"
        shutil.rmtree(out, ignore_errors=True)
        load = os.getloadavg()[0]
        cpu0 = _cpu()
        t = time.perf_counter()
        plan = sft.prepare(spec, run, out, max_steps=args.max_steps)
        t_prepare = time.perf_counter() - t
        res = sft.run_local(plan, entry=args.entry)
        total = time.perf_counter() - t
        cpu = _cpu() - cpu0
        curves = sft.loss_curves(res.model_dir, res.logs["train"])
        train = curves[curves["split"] == "train"]
        rows.append({"run": i + 1, "prepare": t_prepare, "preprocess": res.seconds["preprocess"],
                     "train": res.seconds["train"], "total": total, "cpu": cpu, "steps": int(train["step"].max()),
                     "loss": f"{train['loss'].iloc[0]:.2f} -> {train['loss'].iloc[-1]:.2f}", "load": load})
        r = rows[-1]
        print(f"run {i + 1}: prepare {r['prepare']:.1f} s, preprocess {r['preprocess']:.1f} s, "
              f"train {r['train']:.1f} s, total {r['total']:.1f} s, CPU {r['cpu']:.1f} s ({r['steps']} steps, "
              f"loss {r['loss']})", flush=True)

    print()
    print(f"{'run':>4} {'prepare s':>10} {'preprocess s':>13} {'train s':>8} {'total s':>8} {'CPU s':>6} "
          f"{'steps':>6} {'load':>5}  loss")
    for r in rows:
        print(f"{r['run']:>4} {r['prepare']:>10.1f} {r['preprocess']:>13.1f} {r['train']:>8.1f} {r['total']:>8.1f} "
              f"{r['cpu']:>6.1f} {r['steps']:>6} {r['load']:>5.2f}  {r['loss']}")
    med = {k: statistics.median(r[k] for r in rows) for k in ("prepare", "preprocess", "train", "total", "cpu")}
    print(f"{'med':>4} {med['prepare']:>10.1f} {med['preprocess']:>13.1f} {med['train']:>8.1f} {med['total']:>8.1f} "
          f"{med['cpu']:>6.1f}")
    print("(CPU s: user + system seconds of this process and the axolotl subprocesses; 'load': the 1-minute "
          "load average at the start of the run, other work on the machine included)")
    verdict = "meets" if med["total"] <= TARGET_S else "MISSES"
    print(f"\nmedian smoke SFT ({args.language}): {med['total']:.1f} s, {verdict} the {TARGET_S:.0f} s target")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if med["total"] <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
