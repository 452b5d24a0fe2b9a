"""Stage 03, pretraining: what ``notebooks/03_pretraining.ipynb`` calls.

``prepare`` renders this run's nanotron config from the spec (and compares the committed
``full`` config of the language with the report's, listing the corrections), renders the sbatch
script, and runs the pre-flight checks (a failure stops here, with the fix named). ``execute``
then trains with the local trainer (launcher ``local``) or dry-runs the sbatch script (launcher
``slurm``; submitting for real is a later stage's job). ``metrics``, ``curves`` and ``planner``
give the log table, the training curves and the compute plan; ``write_outputs`` writes the
figures and tables the HTML report embeds (``outputs.json``).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from . import manifest, nanotron_config as ncfg, nanotron_logs, paths, planning, preflight, sbatch
from .errors import ZagreusError
from .spec import load_spec

STAGE = "03_pretraining"
UPSTREAM = "02_tokenization"
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
    report: ncfg.ReportConfig | None
    corrections: list[dict]
    checks: list[preflight.Check]
    sbatch_path: Path
    sbatch_text: str
    entry: str
    notes: list[str] = field(default_factory=list)


def resolve_dirs(profile: str, language: str, run_dir: str | Path = "", out_dir: str | Path = "") -> tuple[Path, Path]:
    rd = Path(run_dir) if str(run_dir) else paths.run_dir(profile, language)
    od = Path(out_dir) if str(out_dir) else rd / STAGE
    return rd.resolve(), od.resolve()


def _tokenizer_string(spec, run_dir: Path) -> str:
    """The tokenizer string the config must carry: the one stage 02 recorded in the token files."""
    if spec.profile.tokenizer.kind == "pretrained":
        return spec.profile.tokenizer.name_or_path  # nanotron asserts the metadata says exactly this
    summary = run_dir / UPSTREAM / "tokenized" / "summary.json"
    if summary.is_file():
        try:
            data = json.loads(summary.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            data = {}
        for key in ("tokenizer", "tokenizer_name_or_path", "tokenizer_string"):
            if isinstance(data.get(key), str):
                return data[key]
    return str(run_dir / UPSTREAM / "tokenizer")


def prepare(profile: str = "smoke", language: str = "ita", run_dir: str | Path = "", out_dir: str | Path = "",
            launcher: str = "local", overrides: dict | None = None, *, require_upstream: bool = True,
            raise_on_failure: bool = True, report_source: str | Path | None = None) -> Prepared:
    """Render the config and the sbatch script, and run the pre-flight checks."""
    if isinstance(overrides, str):  # papermill -p passes text
        import yaml

        overrides = yaml.safe_load(overrides) or {}
    if launcher not in ("local", "slurm"):
        raise ZagreusError(f"unknown launcher {launcher!r}: use 'local' or 'slurm'")
    spec = load_spec(language, profile, overrides or {})
    rd, od = resolve_dirs(profile, language, run_dir, out_dir)
    if require_upstream:
        manifest.require(rd / UPSTREAM, UPSTREAM, profile, language)
    od.mkdir(parents=True, exist_ok=True)

    config = ncfg.render(spec, run_dir=rd, checkpoints_path=od / "checkpoints",
                         tokenizer_name_or_path=_tokenizer_string(spec, rd))
    header = (f"# nanotron config of run {profile}/{language}, rendered by zagreus_utils.nanotron_config "
              f"(overrides: {json.dumps(overrides or {}, sort_keys=True)})\n")
    config_path = ncfg.write(config, od / CONFIG_FILE, header)
    validation = ncfg.validate_with_nanotron(config_path) if launcher == "slurm" else \
        "checked against the strict schema of nanotron main (zagreus_utils.nanotron_schema)"

    committed = ncfg.committed_path(language)
    up_to_date = committed.read_text(encoding="utf-8") == ncfg.render_committed(language) if committed.is_file() else None
    try:
        report = ncfg.report_config(report_source)
    except ZagreusError:
        report = None
    full_cfg = ncfg.render(load_spec(language, "full"))
    corrections = ncfg.corrections_table(full_cfg, report)

    entry = "nanotron" if spec.profile.hardware.gpus_per_node else "local"
    # the local entry runs this kit's own environment (no site modules); nanotron the cluster's
    site = {"venv": sys.prefix, "modules": ()} if entry == "local" and sys.prefix != sys.base_prefix else {}
    rendered = sbatch.render(spec, config_path, entry=entry, **site)
    sbatch_path = sbatch.write(rendered, od / SBATCH_FILE)

    checks = preflight.run(spec, config, base=paths.REPO_ROOT, raise_on_failure=False)
    notes = []
    if entry == "nanotron":
        notes.append("Pin nanotron (environment.yml) to a main-branch commit whose NanosetDatasetsArgs counts the "
                     "tokenizer as len(AutoTokenizer(...).get_vocab()): earlier commits used tokenizer.vocab_size "
                     "(128,000 for Llama-3.2, without its 256 special tokens) and refuse vocab_size 128256.")
    if entry == "local":
        notes.append("This profile declares no GPUs: the sbatch script runs the local trainer "
                     "(python -m zagreus_utils.trainer) under torchrun instead of nanotron's run_train.py.")
    prepared = Prepared(spec, profile, language, launcher, rd, od, config, config_path,
                        config_path.read_text(encoding="utf-8"), validation, committed, up_to_date, report,
                        corrections, checks, sbatch_path, rendered.text, entry, notes)
    (od / "preflight.json").write_text(json.dumps(preflight.as_records(checks), indent=2), encoding="utf-8")
    if raise_on_failure:
        preflight.raise_if_failed(checks)
    return prepared


def execute(prep: Prepared, *, progress: bool = True, log_samples: bool = False):
    """Train locally (``local``) or dry-run the sbatch script (``slurm``)."""
    preflight.raise_if_failed(prep.checks)
    if prep.launcher == "slurm":
        dr = sbatch.dry_run(prep.sbatch_path)
        (prep.out_dir / "dry_run.json").write_text(json.dumps(dr.as_dict(), indent=2), encoding="utf-8")
        if not dr.syntax_ok:
            raise ZagreusError(f"the rendered sbatch script {prep.sbatch_path} has a syntax error: {dr.syntax_error}")
        if dr.test_only_ok is False:
            raise ZagreusError(f"sbatch --test-only refused {prep.sbatch_path}: {dr.test_only_output}")
        return dr
    from . import trainer

    result = trainer.train(prep.config, base=paths.REPO_ROOT, resume="auto", on_mismatch="restart",
                           progress=progress, log_samples=log_samples)
    summary = {"profile": prep.profile, "language": prep.language, "launcher": prep.launcher,
               "config": prep.config_path.name, **result.as_dict()}
    for key in ("output_dir", "metrics_path", "samples_path"):
        if summary.get(key):
            summary[key] = relative(summary[key], prep.out_dir)
    summary["checkpoints"] = [relative(c, prep.out_dir) for c in result.checkpoints]
    path = prep.out_dir / SUMMARY_FILE
    if result.status != "already complete" or not path.is_file():  # keep the record of the run that trained
        path.write_text(json.dumps(summary, indent=2), encoding="utf-8")
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
    full_arch = planning.Architecture.from_spec(full)
    run_arch = planning.Architecture.from_spec(prep.spec)
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
                  tables: dict[str, pd.DataFrame] | None = None) -> Path:
    """Figures and tables for the HTML report, indexed in ``outputs.json``."""
    import matplotlib.pyplot as plt

    from .outputs import StageOutputs

    out = StageOutputs(prep.out_dir)
    df = metrics(prep, result) if df is None else df
    tables = planner(prep, result) if tables is None else tables
    fig = curves(df, f"Pretraining {prep.profile}/{prep.language}")
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
    for note in list(ncfg.OBSERVATIONS) + prep.notes + list(getattr(result, "notes", []) or []):
        out.note(note)
    return out.write()
