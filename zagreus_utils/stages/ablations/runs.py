"""Training and measuring every (variant, seed) run of the plan with the local trainer.

Each run is a nanotron config rendered from the spec with the run's overrides (the same renderer
and trainer as stage 03), its data the training copies of :mod:`.heldout`, in
``runs/<variant>/seed<seed>/``: ``nanotron_config.yaml``, ``checkpoints/`` (one, at the end),
``metrics.jsonl``, ``embed_norms.jsonl`` (:func:`~zagreus_utils.model.callbacks.embedding_norm_callback_class`)
and ``result.json`` (the row of :func:`measure`). A run already complete on the same settings and
inputs is measured again, not retrained (the trainer's own reuse rule).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ...model import trainer
from ...model.callbacks import embedding_norm_callback_class, read_jsonl
from ...nanotron import config as ncfg
from ...pipeline import paths, progress
from ...pipeline.spec import load_spec
from . import probe
from .plan import Plan, run_overrides

EMBED_NORMS = "embed_norms.jsonl"
RESULT = "result.json"


def say(line: str, *, report: bool = False) -> None:
    """A line in the notebook; ``report``: also ``zagreus run``'s progress line (beside the trainer's step)."""
    print(line, flush=True)
    if report:
        progress.report("ablations", line.removeprefix("[ablations] ").strip())


def run_folder(out: Path, variant: str, seed: int) -> Path:
    return out / "runs" / variant / f"seed{seed}"


def render(ctx, plan: Plan, variant: str, seed: int, train_folders: list[Path], tokenizer: str, folder: Path) -> dict:
    """The nanotron config of one run, written to ``<folder>/nanotron_config.yaml``."""
    overrides = run_overrides(plan, ctx.spec.profile.training, variant, seed, ctx.overrides)
    spec = load_spec(ctx.language, ctx.profile, overrides)
    config = ncfg.render(spec, run_dir=ctx.run_dir, checkpoints_path=folder / "checkpoints",
                         tokenizer_name_or_path=tokenizer)
    config["data_stages"][0]["data"]["dataset"]["dataset_folder"] = [str(f) for f in train_folders]
    ncfg.weigh_by_size(config)
    header = (f"# ablation run {variant}, seed {seed} of {ctx.profile}/{ctx.language}, rendered by "
              f"zagreus_utils.stages.ablations (overrides: {json.dumps(overrides, sort_keys=True)})\n")
    ncfg.write(config, folder / "nanotron_config.yaml", header)
    return config


def drift(curve: list[dict]) -> float:
    """|norm(end) - norm(at 3/4 of the steps)| / norm(end): how far the embedding norm still moves late."""
    if len(curve) < 2:
        return float("nan")
    last = curve[-1]
    mark = min(curve, key=lambda r: abs(r["step"] - 0.75 * last["step"]))
    return abs(last["embed_norm"] - mark["embed_norm"]) / last["embed_norm"] if last["embed_norm"] else float("nan")


def measure(result, folder: Path, heldout, table, seq_len: int, plan: Plan) -> dict:
    """The run's row: its training result and the probe of its final checkpoint."""
    from transformers import AutoModelForCausalLM

    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(result.checkpoints[-1])
    metrics = probe.evaluate(model, heldout.documents, table, seq_len, plan.probe_lengths, plan.probe_windows,
                             plan.heldout_tokens)
    curve = read_jsonl(folder / EMBED_NORMS)
    steps = read_jsonl(Path(result.metrics_path))
    cpu = sorted(r["step_cpu_s"] for r in steps[1:] if r.get("step_cpu_s"))
    wall = sorted(r["step_time_s"] for r in steps[1:] if r.get("step_time_s"))
    return {"final_loss": result.final_loss, **metrics,
            "embed_norm_initial": curve[0]["embed_norm"] if curve else None,
            "embed_norm_final": curve[-1]["embed_norm"] if curve else None, "embed_norm_drift": drift(curve),
            "tokens_per_sec": result.tokens_per_sec_median, "cpu_s_per_step": cpu[len(cpu) // 2] if cpu else None,
            "s_per_step": wall[len(wall) // 2] if wall else None,
            "steps": result.steps, "tokens": steps[-1]["tokens_seen"] if steps else None,
            "train_wall_s": result.wall_s, "eval_wall_s": time.perf_counter() - t0, "status": result.status,
            "model_class": type(model).__name__, "parameters": result.parameters}


def train_all(ctx, plan: Plan, heldout, tokenizer: str, table, *, progress: bool = True) -> tuple[list[dict], list[str]]:
    """Train and measure every run; returns (rows, notes)."""
    out = ctx.out_dir
    seq_len = ctx.spec.profile.training.sequence_length
    variants = list(plan.variants)
    rows, notes = [], []
    total = len(plan.runs())
    for n, (variant, seed) in enumerate(plan.runs(), 1):
        t0 = time.perf_counter()
        folder = run_folder(out, variant, seed)
        folder.mkdir(parents=True, exist_ok=True)
        say(f"[ablations] run {n}/{total}: variant {variants.index(variant) + 1}/{len(variants)} {variant!r}, "
            f"seed {seed} ({plan.seeds.index(seed) + 1}/{len(plan.seeds)}), {plan.steps} steps", report=True)
        config = render(ctx, plan, variant, seed, heldout.train_folders, tokenizer, folder)
        every = max(1, plan.steps // plan.embed_norm_points)
        callback = embedding_norm_callback_class()(folder / EMBED_NORMS, every)
        result = trainer.train(config, base=paths.REPO_ROOT, resume="auto", on_mismatch="move_aside",
                               force=ctx.force, progress=progress, callbacks=[callback])
        notes += [f"{variant}/seed{seed}: {note}" for note in result.notes if "moved" in note]
        row = {"variant": variant, "seed": seed, **measure(result, folder, heldout, table, seq_len, plan)}
        row["run_wall_s"] = time.perf_counter() - t0  # rendering, training, saving and measuring
        (folder / RESULT).write_text(json.dumps(row, indent=2), encoding="utf-8")
        say(f"[ablations]   {result.status} in {result.wall_s:.1f} s: final loss {row['final_loss']:.4f}, "
            f"held-out {row['heldout_bpb']:.4f} bits/byte, {row['tokens_per_sec'] or 0:.0f} tokens/s")
        rows.append(row)
    return rows, notes


def curves(out: Path, plan: Plan) -> dict[str, dict[int, list[dict]]]:
    """variant -> seed -> embedding-norm rows."""
    return {v: {s: read_jsonl(run_folder(out, v, s) / EMBED_NORMS) for s in plan.seeds} for v in plan.variants}
