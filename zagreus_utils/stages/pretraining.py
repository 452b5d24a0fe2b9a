"""Stage 03, pretraining: what ``notebooks/03_pretraining.ipynb`` calls.

``prepare`` renders this run's nanotron config from the spec (and compares the committed
``full`` config of the language with the report's, listing the corrections), renders the sbatch
script, and runs the pre-flight checks (a failure stops here, with the fix named). ``execute``
then trains with the local trainer (launcher ``local``) or submits the sbatch script and follows
the job until it ends (launcher ``slurm``: :func:`run_slurm`; ``dry_run`` only checks the script
with ``bash -n`` and ``sbatch --test-only``). On a CPU profile the job runs the same local trainer
under ``srun torchrun --nproc_per_node <slurm.pretraining.procs_per_node>`` (DDP over gloo) and
writes the same files as the local launcher (``checkpoints/``, ``metrics.jsonl``,
``pretraining.json``); cancelled or failed, a rerun resumes from the last complete checkpoint.
``metrics``, ``curves`` and ``planner``
give the log table, the training curves and the compute plan; ``write_outputs`` writes the
figures and tables the HTML report embeds (``outputs.json``). :func:`run` is the stage: all of it
in that order, handing the notebook one :class:`StageResult`.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..cluster import sbatch, slurm
from ..model import planning, preflight
from ..model.arch import LlamaArch
from ..nanotron import config as ncfg, logs as nanotron_logs, report_config
from ..pipeline import manifest, paths
from ..pipeline.context import StageContext, StageResult
from ..pipeline.errors import ZagreusError
from ..pipeline.outputs import StageOutputs
from ..pipeline.spec import load_spec
from . import continual_start

CONFIG_FILE = "nanotron_config.yaml"
SBATCH_FILE = "pretraining.sbatch"
SUMMARY_FILE = "pretraining.json"


@dataclass
class Prepared:
    spec: Any
    profile: str
    language: str
    launcher: str
    run_dir: Path
    out_dir: Path
    config: dict
    config_path: Path
    config_yaml: str
    validation: str
    committed_path: Path
    committed_up_to_date: bool | None
    report: report_config.ReportConfig | None
    corrections: list[dict]
    checks: list[preflight.Check]
    sbatch_path: Path
    sbatch_text: str
    entry: str
    notes: list[str] = field(default_factory=list)


def _tokenizer_string(spec, tokenization_dir: Path) -> str:
    """The tokenizer string the config must carry: the one stage 02 recorded in the token files."""
    if spec.profile.tokenizer.kind == "pretrained":
        return spec.profile.tokenizer.name_or_path  # nanotron asserts the metadata says exactly this
    summary = tokenization_dir / "tokenized" / "summary.json"
    if summary.is_file():
        try:
            data = json.loads(summary.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            data = {}
        for key in ("tokenizer", "tokenizer_name_or_path", "tokenizer_string"):
            if isinstance(data.get(key), str):
                return data[key]
    return str(tokenization_dir / "tokenizer")


def prepare(ctx: StageContext, *, require_upstream: bool = True, raise_on_failure: bool = True,
            report_source: str | Path | None = None) -> Prepared:
    """Render the config and the sbatch script, and run the pre-flight checks."""
    profile, language, launcher, overrides = ctx.profile, ctx.language, ctx.launcher, ctx.overrides
    spec = ctx.spec
    entry = "nanotron" if spec.profile.hardware.gpus_per_node else "local"
    notes = []
    par = spec.profile.parallelism
    if launcher == "slurm" and entry == "local" and par.tp == par.pp == 1 and par.dp != sbatch.world_size(spec):
        # a CPU profile's Slurm job runs slurm.pretraining.procs_per_node DDP ranks per node: say so in the config
        ranks = sbatch.world_size(spec)
        spec = load_spec(language, profile, {**overrides, "parallelism.dp": ranks})
        notes.append(f"Slurm launcher on a CPU profile: {ranks} DDP ranks (slurm.pretraining nodes x procs_per_node), "
                     f"so the config says dp {ranks} and each step sees {ranks} x micro_batch_size x accumulation "
                     f"sequences (the local launcher runs one process: dp {par.dp}).")
    rd, od = ctx.run_dir, ctx.out_dir
    tokenization_dir = ctx.upstream("tokenization", check=require_upstream)
    od.mkdir(parents=True, exist_ok=True)

    # training.init_from: nanotron loads the start checkpoint, or its own after a stop (continual_start)
    resume = continual_start.own_checkpoints(od / "checkpoints") if spec.profile.training.init_from \
        and entry == "nanotron" else None
    config = ncfg.render(spec, run_dir=rd, checkpoints_path=od / "checkpoints",
                         tokenizer_name_or_path=_tokenizer_string(spec, tokenization_dir), resume_checkpoint_path=resume,
                         start_checkpoint_path=continual_start.start_folder(spec, paths.REPO_ROOT, od))
    if ncfg.weigh_by_size(config) is None:
        notes.append("dataset_weights: none yet (stage 02's token folders are not all there); nanotron main "
                     "would blend the folders equally, not by size")
    header = (f"# nanotron config of run {profile}/{language}, rendered by zagreus_utils.nanotron.config "
              f"(overrides: {json.dumps(overrides, sort_keys=True)})\n")
    config_path = ncfg.write(config, od / CONFIG_FILE, header)
    validation = ncfg.validate_with_nanotron(config_path) if launcher == "slurm" else \
        "checked against the strict schema of nanotron main (zagreus_utils.nanotron.schema)"

    committed = ncfg.committed_path(language)
    up_to_date = committed.read_text(encoding="utf-8") == ncfg.render_committed(language) if committed.is_file() else None
    try:
        report = report_config.report_config(report_source)
    except ZagreusError:
        report = None
    full_cfg = ncfg.render(load_spec(language, "full"))
    corrections = report_config.corrections_table(full_cfg, report)

    # the local entry runs this kit's own environment (no site modules); nanotron the cluster's
    site = {"venv": sys.prefix, "modules": ()} if entry == "local" and sys.prefix != sys.base_prefix else {}
    if entry == "local":  # no NCCL on CPU; the job's progress is metrics.jsonl (shown while following)
        site.update(nccl=(), extra_args=("--no-progress",))
    rendered = sbatch.render(spec, config_path, entry=entry, output=str(od / "slurm-%j.out"), **site)
    sbatch_path = sbatch.write(rendered, od / SBATCH_FILE)

    checks = preflight.check_all(spec, config, base=paths.REPO_ROOT, raise_on_failure=False, launcher=launcher,
                                 overrides=overrides)
    if entry == "nanotron":
        notes.append("The script activates the training env (slurm.train_env or $ZAGREUS_TRAIN_ENV; build it with "
                     "`make train-env TRAIN_ENV=<dir>`): nanotron main 2411b022, whose NanosetDatasetsArgs counts "
                     "the tokenizer as len(AutoTokenizer(...).get_vocab()) (earlier commits used "
                     "tokenizer.vocab_size, 128,000 for Llama-3.2, and refuse vocab_size 128256), with the "
                     "datatrove its data loader needs.")
    if entry == "local":
        notes.append("This profile declares no GPUs: the sbatch script runs the local trainer "
                     "(python -m zagreus_utils.model.trainer) under torchrun instead of nanotron's run_train.py.")
    prepared = Prepared(spec, profile, language, launcher, rd, od, config, config_path,
                        config_path.read_text(encoding="utf-8"), validation, committed, up_to_date, report,
                        corrections, checks, sbatch_path, rendered.text, entry, notes)
    (od / "preflight.json").write_text(json.dumps(preflight.as_records(checks), indent=2), encoding="utf-8")
    if raise_on_failure:
        preflight.raise_if_failed(checks)
    return prepared


def execute(prep: Prepared, *, progress: bool = True, log_samples: bool = False, dry_run: bool = False,
            pending_timeout: float | None = 600, force: bool = False):
    """Train locally (``local``), or submit the sbatch script and follow the job (``slurm``;
    ``dry_run``: check it with ``bash -n`` and ``sbatch --test-only`` only).

    An earlier run in the stage folder is reused only when trained on the same settings, tokenizer
    and token files; otherwise (or with ``force``) it is moved to ``previous/`` (named in the notes
    and in ``pretraining.json``'s ``moved_aside``) and training starts over."""
    preflight.raise_if_failed(prep.checks)
    launch = manifest.LaunchRecord(prep.out_dir, "none (Slurm dry run)" if prep.launcher == "slurm" and dry_run
                                   else prep.launcher, prep.launcher)
    if prep.launcher == "slurm":
        if not dry_run:
            slurm.require("sbatch")
            slurm.check_nodes(prep.spec.profile.slurm.partition)  # a drained partition: a clear error, no wait
        dr = sbatch.dry_run(prep.sbatch_path)
        (prep.out_dir / "dry_run.json").write_text(json.dumps(dr.as_dict(), indent=2), encoding="utf-8")
        if not dr.syntax_ok:
            raise ZagreusError(f"the rendered sbatch script {prep.sbatch_path} has a syntax error: {dr.syntax_error}")
        if dr.test_only_ok is False:
            raise ZagreusError(f"sbatch --test-only refused {prep.sbatch_path}: {dr.test_only_output}")
        if dry_run:
            return dr
        if prep.entry == "nanotron":  # a Hugging Face start model, converted to nanotron's layout
            note = continual_start.convert_start(prep.spec, prep.config, paths.REPO_ROOT)
            if note:
                prep.notes.append(note)
        return run_slurm(prep, launch, progress=progress, pending_timeout=pending_timeout, force=force)
    from ..model import trainer  # imports torch

    result = trainer.train(prep.config, base=paths.REPO_ROOT, resume="auto", on_mismatch="move_aside",
                           force=force, progress=progress, log_samples=log_samples)
    write_summary(prep, result)
    return result


def write_summary(prep: Prepared, result, **extra) -> Path:
    """``pretraining.json``: the training result, paths relative to the stage folder."""
    summary = {"profile": prep.profile, "language": prep.language, "launcher": prep.launcher,
               "config": prep.config_path.name, **result.as_dict(), **extra}
    for key in ("output_dir", "metrics_path", "samples_path"):
        if summary.get(key):
            summary[key] = relative(summary[key], prep.out_dir)
    summary["checkpoints"] = [relative(c, prep.out_dir) for c in result.checkpoints]
    if getattr(result, "moved_aside", None):
        summary["moved_aside"] = [relative(m, prep.out_dir) for m in result.moved_aside]
    path = prep.out_dir / SUMMARY_FILE
    if result.status != "already complete" or not path.is_file():  # keep the record of the run that trained
        path.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return path


@dataclass
class SlurmRun:
    """A finished pretraining job whose trainer is nanotron (its results are in its log)."""

    job_id: str
    state: str
    log: str
    wall_s: float
    checkpoints: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"job_id": self.job_id, "state": self.state, "log": self.log, "wall_s": self.wall_s}


def _step_text(metrics_path: Path, train_steps: int) -> str:
    line = slurm.tail(metrics_path, 1)
    try:
        return f"step {json.loads(line)['step']}/{train_steps}" if line else ""
    except (ValueError, KeyError, TypeError):
        return ""


def run_slurm(prep: Prepared, launch: manifest.LaunchRecord | None = None, *, progress: bool = True,
              pending_timeout: float | None = 600, poll: float = 2.0, force: bool = False):
    """Submit ``pretraining.sbatch`` (``sbatch --parsable``) and follow the job until it ends.

    The progress line shows the job's state and the last step in ``metrics.jsonl``. A job that
    ends other than COMPLETED (``scancel``, a crash, the time limit) raises
    :class:`zagreus_utils.cluster.slurm.JobFailed` with its id, state and the tail of ``slurm-<id>.out``;
    the checkpoints it wrote stay, and a rerun resumes from the last complete one (the trainer's
    ``resume="auto"``). Returns the trainer's result (read back from ``checkpoints/run.json``), or
    a :class:`SlurmRun` for a nanotron job.
    """
    from ..model import trainer  # imports torch

    t0 = time.perf_counter()
    moved = None
    if prep.entry == "local":  # once, before the ranks start
        moved = trainer.set_aside_other_run(prep.config, base=paths.REPO_ROOT, force=force)
    job_id = slurm.submit(prep.sbatch_path)
    log = prep.out_dir / f"slurm-{job_id}.out"
    (prep.out_dir / "slurm_job.json").write_text(json.dumps({"job_id": job_id, "script": SBATCH_FILE,
                                                             "log": log.name}, indent=2), encoding="utf-8")
    if launch is not None:
        launch.job("pretraining", job_id, "SUBMITTED", log=log.name)
    steps = prep.spec.profile.training.train_steps
    try:
        final = slurm.follow(job_id, poll=poll, pending_timeout=pending_timeout, progress=progress, log_path=log,
                             label="pretraining: Slurm job",
                             detail=lambda: _step_text(prep.out_dir / trainer.METRICS, steps))
    except slurm.JobFailed as exc:
        if launch is not None:
            launch.job("pretraining", job_id, exc.state, log=log.name, seconds=round(time.perf_counter() - t0, 1))
        raise
    seconds = round(time.perf_counter() - t0, 1)
    if launch is not None:
        launch.job("pretraining", job_id, final.state, log=log.name, seconds=seconds)
    if prep.entry != "local":
        return SlurmRun(job_id, final.state, log.name, seconds)
    settings = trainer.Settings.from_nanotron(prep.config, paths.REPO_ROOT)
    result = trainer.stored_result(settings.checkpoints_path)
    if result is None:
        raise ZagreusError(f"Slurm job {job_id} COMPLETED but the trainer recorded no result in "
                           f"{settings.checkpoints_path}/{trainer.RUN_FILE}; see {log}:\n{slurm.tail(log, 30)}")
    result.notes = list(result.notes) + [f"trained by Slurm job {job_id} ({seconds:.0f} s from submission to end; "
                                         f"log {log.name})"]
    if moved is not None:
        result.moved_aside = [str(moved), *result.moved_aside]
        result.notes.append(f"the earlier run in {settings.checkpoints_path} was moved to {moved} "
                            "(trained on other settings or inputs, or --force); delete it when no longer needed")
    write_summary(prep, result, slurm_job_id=job_id)
    return result


def relative(path: str | Path, base: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(base))
    except ValueError:
        return str(path)


# --- tables and figures ---------------------------------------------------------------------

def corrections_frame(prep: Prepared) -> pd.DataFrame:
    return pd.DataFrame(prep.corrections, columns=["key", "kind", "report", "rendered", "reason"])


def preflight_frame(prep: Prepared) -> pd.DataFrame:
    return preflight.frame(prep.checks)


def report_log(source: str | Path | None = None, sequence_length: int | None = None) -> pd.DataFrame:
    """The iteration lines printed in the report (section 4), parsed."""
    src = Path(source or paths.DEFAULT_REPORT_SOURCE)
    if not src.is_file():
        return pd.DataFrame(columns=nanotron_logs.COLUMNS)
    lines = nanotron_logs.report_log_lines(src.read_text(encoding="utf-8"))
    return nanotron_logs.parse_nanotron_log(lines, sequence_length, name="report (section 4)")


def metrics(prep: Prepared, result=None) -> pd.DataFrame:
    """One table: the report's log lines, any nanotron log in the stage folder, the local metrics."""
    frames = [report_log(sequence_length=4096)]
    for log in sorted(prep.out_dir.glob("slurm-*.out")):
        frames.append(nanotron_logs.parse_nanotron_log(log, prep.spec.profile.training.sequence_length, name=log.name))
    local = prep.out_dir / "metrics.jsonl"
    if local.is_file():
        frames.append(nanotron_logs.read_local_metrics(local, name=f"local ({prep.profile}/{prep.language})"))
    return nanotron_logs.metrics_table(*frames)


def curves(df: pd.DataFrame, title: str = ""):
    """Loss vs tokens, learning rate and throughput of every training run in the table."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    runs = [(name, g.sort_values("step")) for name, g in df.groupby("source", sort=False) if len(g) > 2]
    for name, g in runs:
        axes[0].plot(g["consumed_tokens"], g["loss"], lw=1, label=name)
        axes[1].plot(g["step"], g["lr"], lw=1, label=name)
        axes[2].plot(g["step"], g["tokens_per_sec"], lw=0.6, alpha=0.4)
        window = max(1, min(25, len(g) // 10))
        axes[2].plot(g["step"], g["tokens_per_sec"].rolling(window, min_periods=1).median(), lw=1.2,
                     label=f"{name} (rolling median of {window})")
    axes[0].set(xlabel="tokens seen", ylabel="training loss", title="loss vs tokens")
    axes[1].set(xlabel="step", ylabel="learning rate", title="learning rate (warmup-stable-decay)")
    axes[2].set(xlabel="step", ylabel="tokens / s", title="throughput")
    for ax in axes:
        ax.grid(alpha=0.3)
        if runs:
            ax.legend(fontsize=8)
    if not runs:
        axes[0].text(0.5, 0.5, "no training run in this stage folder yet", ha="center", transform=axes[0].transAxes)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def planner(prep: Prepared, result=None) -> dict[str, pd.DataFrame]:
    """Parameters, FLOPs, memory, MFU and the plan, for the report's config and for this run."""
    full = load_spec(prep.language, "full")
    full_arch = LlamaArch.from_spec(full)
    run_arch = LlamaArch.from_spec(prep.spec)
    seq_full, seq_run = full.profile.training.sequence_length, prep.spec.profile.training.sequence_length

    arch_rows = []
    for label, arch, seq in (("report config (full)", full_arch, seq_full), (f"this run ({prep.profile})", run_arch, seq_run)):
        for r in planning.summary_rows(arch, seq):
            arch_rows.append({"model": label, "quantity": r["quantity"], "value": r["value"]})
    mem_rows = []
    for label, sp, cfg in (("report config (full), per GPU", full, ncfg.render(full)),
                           (f"this run ({prep.profile}), per process", prep.spec, prep.config)):
        est = preflight.memory_estimate(sp, cfg)
        for k, v in est.items():
            mem_rows.append({"model": label, "component": k, "bytes": planning.fmt_bytes(v)})

    hw = full.profile.hardware
    peak = hw.peak_tflops or planning.PEAK_TFLOPS.get(hw.gpu)
    budget = float(full.language.budget.total)
    fpt_full = planning.flops_per_token(full_arch, seq_full)["total"]
    log = report_log(sequence_length=seq_full)
    check_rows: list[dict] = []
    plan_rows: list[dict] = []
    if len(log):
        row = log.iloc[0].to_dict()
        check_rows = planning.log_line_check(row, full_arch, seq_full, declared_gpus=full.profile.parallelism.world_size,
                                             peak_tflops=peak, micro_batch_size=full.profile.training.micro_batch_size,
                                             dp=full.profile.parallelism.dp, config=ncfg.render(full))
        if row.get("tokens_per_sec"):
            for label, gpus in (("the report's log line, GPUs of the config", full.profile.parallelism.world_size),
                                ("the report's log line, GPUs the line implies",
                                 round(row["tokens_per_sec"] / row["tokens_per_sec_per_gpu"]) if row.get("tokens_per_sec_per_gpu") else None)):
                if gpus:
                    p = planning.plan(budget, gpus=gpus, tokens_per_sec=row["tokens_per_sec"], hardware=hw.gpu,
                                      flops_token=fpt_full, peak_tflops=peak)
                    plan_rows.append(_plan_row(label, p))
    world = full.profile.parallelism.world_size
    for target in (0.35, 0.50):
        tpg = planning.tokens_per_sec_for_mfu(target, fpt_full, peak)
        p = planning.plan(budget, gpus=world, tokens_per_sec_per_gpu=tpg, hardware=hw.gpu, flops_token=fpt_full,
                          peak_tflops=peak)
        plan_rows.append(_plan_row(f"{world} x {hw.gpu} at {target:.0%} MFU", p))
    local_tps = getattr(result, "tokens_per_sec_median", None) if result is not None else None
    if local_tps is None:
        summary = prep.out_dir / SUMMARY_FILE
        if summary.is_file():
            local_tps = json.loads(summary.read_text()).get("tokens_per_sec_median")
    if local_tps:
        t = prep.spec.profile.training
        run_tokens = t.train_steps * t.micro_batch_size * t.batch_accumulation_per_replica * t.sequence_length
        fpt_run = planning.flops_per_token(run_arch, seq_run)["total"]
        p = planning.plan(run_tokens, gpus=1, tokens_per_sec=local_tps, hardware="this machine")
        plan_rows.append(_plan_row(f"this run: {planning.fmt_count(run_tokens)} tokens, measured", p,
                                   achieved_tflops=local_tps * fpt_run / 1e12))
        p = planning.plan(budget, gpus=1, tokens_per_sec=local_tps * fpt_run / fpt_full, hardware="this machine")
        plan_rows.append(_plan_row("the report's model and budget on this machine (same FLOP/s)", p))
    return {
        "architecture": pd.DataFrame(arch_rows),
        "memory": pd.DataFrame(mem_rows),
        "log_check": pd.DataFrame(check_rows),
        "plans": pd.DataFrame(plan_rows),
    }


def _plan_row(label: str, p: planning.Plan, achieved_tflops: float | None = None) -> dict:
    return {"scenario": label, "tokens": planning.fmt_count(p.tokens), "GPUs": p.gpus, "hardware": p.hardware,
            "tokens/s": planning.fmt_count(p.tokens_per_sec), "days": planning.days_text(p.days),
            "GPU-hours": f"{p.gpu_hours:,.0f}" if p.gpu_hours >= 10 else f"{p.gpu_hours:.2f}",
            "MFU": f"{p.mfu:.1%}" if p.mfu is not None else "n/a",
            "achieved TFLOP/s": f"{achieved_tflops:.4f}" if achieved_tflops is not None else ""}


# --- outputs.json ---------------------------------------------------------------------------

def write_outputs(prep: Prepared, result=None, df: pd.DataFrame | None = None,
                  tables: dict[str, pd.DataFrame] | None = None, fig=None) -> Path:
    """Figures and tables for the HTML report, indexed in ``outputs.json`` (``fig``: the curves, if drawn)."""
    import matplotlib.pyplot as plt

    out = StageOutputs(prep.out_dir)
    df = metrics(prep, result) if df is None else df
    tables = planner(prep, result) if tables is None else tables
    fig = curves(df, f"Pretraining {prep.profile}/{prep.language}") if fig is None else fig
    out.figure(f"pretraining-curves-{prep.language}", fig, f"Pretraining curves ({prep.profile}/{prep.language})",
               "Training loss vs tokens seen, learning rate and throughput per step of the local run "
               "(metrics.jsonl) and of any nanotron log in the stage folder.")
    plt.close(fig)
    entries = [
        ("corrections", "Nanotron config: corrections of the report's config", corrections_frame(prep)),
        ("preflight", "Pre-flight checks", preflight_frame(prep)),
        ("architecture", "Parameters and FLOPs per token (from the shapes)", tables["architecture"]),
        ("memory", "Training memory per rank (estimate)", tables["memory"]),
        ("log_check", "The report's log line vs its config", tables["log_check"]),
        ("plans", "Planner: days and GPU-hours", tables["plans"]),
    ]
    for key, title, frame in entries:
        if frame is not None and len(frame):
            styler = frame.style.hide(axis="index").set_caption(title).format(escape="html", precision=4)
            out.table(f"pretraining-{key}-{prep.language}", frame, title, styler)
    if result is not None and getattr(result, "final_loss", None) is not None:
        out.note(f"Local run: loss {result.initial_loss:.3f} -> {result.final_loss:.3f} over {result.steps} steps, "
                 f"{len(result.checkpoints)} checkpoints, median {result.tokens_per_sec_median or 0:,.0f} tokens/s "
                 f"({result.device}, {result.precision}).")
    for note in list(report_config.OBSERVATIONS) + prep.notes + list(getattr(result, "notes", []) or []):
        out.note(note)
    return out.write()


# --- the stage ------------------------------------------------------------------------------

PLANNER_TITLES = {"architecture": "Parameters and FLOPs per token", "memory": "Training memory per rank (estimate)",
                  "log_check": "The report's log line vs its own config", "plans": "Planner: days and GPU-hours"}


def _status_colour(v) -> str:
    return {"ok": "color: #1a7f37", "FAILED": "color: #cf222e; font-weight: bold"}.get(v, "color: #9a6700")


def run(ctx: StageContext, *, progress: bool = True, log_samples: bool = False, dry_run: bool = False) -> StageResult:
    """Stage 03: render and check (:func:`prepare`), train or submit (:func:`execute`, ``ctx.force``
    retrains), then the log table, curves, planner and ``outputs.json``. A failed pre-flight check
    stops before training, with its fix (``preflight.json`` keeps every check)."""
    prep = prepare(ctx, raise_on_failure=False)
    res = StageResult(prep.out_dir, ctx.launcher, notes=list(prep.notes))
    state = {True: "equals the renderer's output", False: "DIFFERS from the renderer's output: re-render it",
             None: "missing"}
    committed = f"`{manifest.relative_to_repo(prep.committed_path)}`: {state[prep.committed_up_to_date]}"
    res.extra.update(prep=prep, config_yaml=prep.config_yaml, validation=prep.validation, sbatch_text=prep.sbatch_text,
                     entry=prep.entry, observations=list(report_config.OBSERVATIONS), committed=committed)
    res.frames.update(corrections=corrections_frame(prep), preflight=preflight_frame(prep))
    res.tables["corrections"] = res.frames["corrections"].style.hide(axis="index").set_properties(
        **{"text-align": "left"})
    res.tables["preflight"] = res.frames["preflight"].style.hide(axis="index").map(
        _status_colour, subset=["status"]).set_properties(**{"text-align": "left"})
    t0 = time.perf_counter()
    trained = execute(prep, progress=progress, log_samples=log_samples, dry_run=dry_run, force=ctx.force)
    res.seconds["training"] = round(time.perf_counter() - t0, 2)
    res.extra["training"] = trained
    res.summary = {k: v for k, v in trained.as_dict().items()
                   if k not in ("checkpoints", "samples_per_source", "notes")}
    if hasattr(trained, "samples_per_source"):  # the local trainer ran (here, or as the Slurm job)
        res.extra["checkpoints"] = [relative(c, prep.out_dir) for c in trained.checkpoints]
        res.extra["samples_per_source"] = trained.samples_per_source
    res.notes += list(getattr(trained, "notes", []) or [])
    df = metrics(prep, trained)
    planned = planner(prep, trained)
    res.frames.update(metrics=df, **planned)
    res.tables["metrics_tail"] = df.groupby("source").tail(2)
    for key in PLANNER_TITLES:
        res.tables[key] = planned[key].style.hide(axis="index").format(precision=4)
    res.figures["curves"] = curves(df, f"Pretraining {ctx.profile}/{ctx.language}")
    write_outputs(prep, trained, df, planned, fig=res.figures["curves"])
    return res
