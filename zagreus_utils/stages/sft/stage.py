"""Stage 05 SFT as one call: ``run(ctx)`` checks, renders, validates, trains and reads the SFT run.

The notebook ``05_sft`` is its parameters, ``ctx = StageContext.create("sft", ...)``,
``result = sft.run(ctx)`` and the display of ``result``.
"""

from __future__ import annotations

from ...pipeline.context import StageContext, StageResult, check_launcher
from ...pipeline.manifest import LaunchRecord
from .axolotl import SftPlan, SftRun, prepare, run_local
from .config import differences, report_config, to_yaml
from .inspect import compare_chats, label_mask_example, label_mask_html, loss_curves, plot_loss, sample_prompts, \
    trained_spans, write_outputs
from .slurm_job import run_slurm
from .validate import validate_report


def launch(plan: SftPlan, spec, launcher: str = "local", *, progress: bool = True) -> SftRun:
    """The SFT training: :func:`run_local` (``local``) or :func:`run_slurm` (``slurm``: the job is
    submitted and followed); ``<out>/launch.json`` records which ran it and the Slurm job."""
    check_launcher(launcher)
    record = LaunchRecord(plan.out_dir, launcher)
    if launcher == "slurm":
        return run_slurm(plan, spec, progress=progress, launch=record)
    return run_local(plan)


def describe_run(run: SftRun) -> str:
    """Two lines for the notebook: times and logs, then the model folder."""
    times = ", ".join(f"{k} {v:.1f} s" for k, v in run.seconds.items())
    return (f"{times}; logs: " + ", ".join(str(p) for p in run.logs.values())
            + f"\nmodel: {run.model_dir} (chat template: {len(run.chat_template)} characters)")


def _left(df, column: str):
    return (df.style.hide(axis="index").set_properties(subset=[column], **{"text-align": "left", "white-space": "normal"})
            .set_table_styles([{"selector": "td", "props": "vertical-align: top"}]))


def run(ctx: StageContext) -> StageResult:
    """The stage: inputs checked (the conversion stage must have finished), the config rendered,
    compared with the report's and validated by axolotl, one example's label mask, the training
    (``ctx.launcher``), its loss curves, base vs SFT chats, and ``outputs.json``."""
    ctx.upstream("conversion")  # the base model
    spec = ctx.spec
    plan = prepare(spec, ctx.run_dir, ctx.out_dir)
    ds = plan.dataset
    diff = differences(report_config(), plan.config)
    report_check = validate_report(ctx.language)
    mask = label_mask_example(plan.config)
    trained = launch(plan, spec, ctx.launcher)
    curves = loss_curves(trained.model_dir, trained.logs["train"])
    figure = plot_loss(curves, f"SFT loss, {ctx.profile}/{ctx.language} (trained tokens only)")
    prompts = sample_prompts(plan.config["datasets"][0]["path"], ctx.language, per_language=2)
    chats = compare_chats(plan.base_model, trained.model_dir, prompts, max_new_tokens=40)
    notes = [f"launcher {ctx.launcher}" + (" (sft.sbatch submitted and followed)" if ctx.launcher == "slurm" else "")]
    write_outputs(plan, differences_df=diff, findings_df=report_check.table(), curves=curves, figure=figure,
                  chats=chats, notes=notes)
    result = StageResult(ctx.out_dir, ctx.launcher)
    result.notes += [f"{spec.run_id}: {spec.language.name}; launcher {ctx.launcher}; stage folder {ctx.out_dir}",
                     f"data: {ds.path}\n  {ds.rows} conversations {ds.by_language}, {ds.messages} messages, "
                     f"{ds.assistant_turns} assistant turns; roles {ds.roles}",
                     f"base model: {plan.base_model}\nconfig: {plan.config_path}", describe_run(trained), *notes]
    result.tables.update({"differences": _left(diff, "reason"), "report_findings": _left(report_check.table(), "finding"),
                          "findings": _left(plan.validation.table(), "finding"),
                          "chats": chats.style.hide(axis="index").set_properties(
                              **{"text-align": "left", "white-space": "pre-wrap"})})
    result.frames.update({"differences": diff, "loss": curves, "chats": chats, "label_mask": mask})
    result.figures["sft_loss"] = figure
    if ctx.launcher == "slurm":
        result.slurm_scripts["sft"] = (ctx.out_dir / "sft.sbatch").read_text()
    result.summary = {"rows": ds.rows, "by_language": ds.by_language, "config": str(plan.config_path),
                      "model": str(trained.model_dir), "seconds": trained.seconds}
    result.seconds.update(trained.seconds)
    result.extra.update(plan=plan, run=trained, config_yaml=to_yaml(plan.config), label_mask_html=label_mask_html(mask),
                        trained_spans=trained_spans(mask))
    return result
