"""Stage 06 eval: every base checkpoint and the SFT model with lm-evaluation-harness, as one call.

:func:`run_eval` evaluates (``local``: here, one model after the other; ``slurm``: an array job,
one task per model), ingests, writes ``results.csv``/``metrics.csv``/``learning_check.json`` and
``outputs.json``; :func:`run` is the stage, ``run(ctx) -> StageResult``, which the notebook
``06_eval`` calls once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from ...pipeline.context import StageContext, StageResult, check_launcher
from ...pipeline.errors import ZagreusError
from ...pipeline.manifest import LaunchRecord
from .evaluate import EvalPlan, evaluate_all, lm_eval_version, prepare
from .figures import build_outputs
from .models import ModelEntry
from .results import LEARNING_JSON, METRICS_CSV, RESULTS_CSV, ingest, learning_check, tidy, write_csv
from .slurm_job import run_array, sbatch_command, write_slurm
from .tasks import suite, suite_source

def finish(plan: EvalPlan, spec, *, outcome: dict | None = None, log: Callable[[str], None] = print) -> dict:
    """Ingest whatever finished, write results.csv / metrics.csv / outputs.json, check learning."""
    out_dir = Path(plan.out_dir)
    metrics_long = ingest(plan)
    results, metrics = tidy(metrics_long, spec, plan)
    write_csv(results, out_dir / RESULTS_CSV)
    write_csv(metrics, out_dir / METRICS_CSV)
    check = learning_check(metrics)
    (out_dir / LEARNING_JSON).write_text(json.dumps(check, indent=2) + "\n", encoding="utf-8")
    notes = list(plan.notes) + [
        f"lm-eval {lm_eval_version()}, batch size {plan.batch_size}, device {plan.device}, dtype {plan.dtype}"
        + (f", limit {plan.limit}" if plan.limit else "")]
    index = build_outputs(out_dir, spec, results, metrics, check, notes)
    summary = {"plan": plan.to_json(), "learning": check, "outputs": index,
               "finished": (outcome or {}).get("finished"), "failed": (outcome or {}).get("failed", {})}
    (out_dir / "eval_summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    for line in check["summary"]:
        log(line)
    return summary


def run_eval(spec, run_dir, out_dir, *, launcher: str = "local", models: list[ModelEntry] | None = None,
        steps=None, limit=None, force: bool = False, overrides: dict | None = None, dry_run: bool = False,
        poll_s: float = 15, timeout_s: float | None = None, log: Callable[[str], None] = print,
        progress: bool = True) -> dict:
    """Evaluate every base checkpoint and the SFT model, ingest, write the stage outputs.

    ``launcher``: ``local`` (here, one model after the other) or ``slurm`` (an array job, one task
    per model; ``dry_run`` returns the rendered script without submitting). A model that fails does
    not stop the others; its error is raised at the end, after the finished results are written.
    """
    check_launcher(launcher)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plan, tm = prepare(spec, run_dir, out_dir, models=models, limit=limit, steps=steps, overrides=overrides)
    if launcher == "slurm" and dry_run:
        script = write_slurm(plan)
        return {"plan": plan.to_json(), "script": script.read_text(), "script_path": str(script),
                "command": sbatch_command(plan, script)}
    if launcher == "slurm":
        outcome = run_array(plan, spec, poll_s=poll_s, timeout_s=timeout_s, log=log, progress=progress)
    else:
        LaunchRecord(out_dir, "local")
        outcome = evaluate_all(plan, tm, log=log, force=force)
    summary = finish(plan, spec, outcome=outcome, log=log)
    if outcome["failed"]:
        kept = ", ".join(outcome["finished"]) or "none"
        raise ZagreusError(
            f"evaluation failed for {', '.join(outcome['failed'])} ("
            + "; ".join(f"{k}: {v}" for k, v in outcome["failed"].items())
            + f"). Finished results kept ({kept}) in {out_dir / 'lm_eval'}; a rerun skips them"
            + (f"\n{outcome['error']}" if outcome.get("error") else ""))
    return summary


def describe_suites(spec) -> list[str]:
    """One line per model kind: its tasks with metric, n-shot and chat template."""
    return [f"{kind}: " + ", ".join(f"{t.task} ({t.metric}, {'task default' if t.num_fewshot is None else t.num_fewshot}"
                                     f"-shot{', chat template' if t.chat_template else ''})" for t in suite(spec, kind))
            for kind in ("base", "instruct")]


def run(ctx: StageContext) -> StageResult:
    """The stage: the data (held-out items), conversion (checkpoints) and SFT (model) stages must
    have finished; evaluates with ``ctx.launcher``, and hands the notebook the learning check, the
    tables and the figures."""
    for key in ("data", "conversion", "sft"):
        ctx.upstream(key)
    spec = ctx.spec
    summary = run_eval(spec, ctx.run_dir, ctx.out_dir, launcher=ctx.launcher, overrides=ctx.overrides, force=ctx.force)
    result = StageResult(ctx.out_dir, ctx.launcher, summary=summary)
    result.notes += [f"suite: {suite_source(spec)}; launcher: {ctx.launcher}; batch size {spec.profile.eval.batch_size}, "
                     f"device {spec.profile.eval.device}", *describe_suites(spec)]
    result.extra["learning"] = summary["learning"]["summary"]
    # the written tables (HTML) and figures (PNG) of outputs.json, titled, in its order
    result.extra["tables"] = [(t["title"], (ctx.out_dir / t["html"]).read_text(encoding="utf-8"))
                              for t in summary["outputs"]["tables"]]
    result.extra["figures"] = [(f"{f['title']}\n\n{f['caption']}", ctx.out_dir / f["png"])
                               for f in summary["outputs"]["figures"]]
    slurm_script = ctx.out_dir / "slurm" / "eval_array.sbatch"
    if ctx.launcher == "slurm" and slurm_script.is_file():
        result.slurm_scripts["eval array"] = slurm_script.read_text()
    return result
