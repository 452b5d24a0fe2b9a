"""The eval stage's tables and figures (``outputs.json``): this run next to the published numbers.

:func:`build_outputs` writes the report's tables with this run's rows appended, every number with
its provenance, the checkpoint progression (published and this run) and this run's per-checkpoint
figure, indexed in ``outputs.json`` for the HTML report.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from ...pipeline.outputs import StageOutputs
from ...results import published, tables
from .. import plots
from ...pipeline.spec import ENGLISH, language_names
from ...results.benchmarks import FAMILY_COLORS, FAMILY_MARKERS, benchmark_family
from .results import _is_headline
from .tasks import ACCURACY_METRICS, BPB_METRIC

def checkpoints_figure(metrics: pd.DataFrame, language: str):
    """This run's base checkpoints: accuracy per task (with stderr and chance) and bits per byte."""
    df = metrics[(metrics["model_kind"] == "base") & metrics["checkpoint_step"].notna()
                 & ~metrics["is_average"].astype(bool)]
    acc = df[df["metric"].isin(ACCURACY_METRICS) & df.apply(_is_headline, axis=1)]
    bpb = df[df["metric"] == BPB_METRIC]
    fig = Figure(figsize=(13, 6), layout="constrained")
    axes = fig.subplots(1, 2 if not bpb.empty else 1, squeeze=False)[0]
    ax = axes[0]
    for task, rows in acc.groupby("task", sort=False):
        rows = rows.sort_values("checkpoint_step")
        family = benchmark_family(task)
        dashed = rows["language"].iloc[0] == ENGLISH[0]
        ax.errorbar(rows["checkpoint_step"].astype(float), rows["value"], yerr=rows["stderr"].fillna(0),
                    marker=FAMILY_MARKERS.get(family, "D"), color=FAMILY_COLORS.get(family, "#000000"),
                    ls="--" if dashed else "-", capsize=3,
                    label=f"{task} ({rows['metric'].iloc[0]}, {int(rows['n_shot'].iloc[0]) if pd.notna(rows['n_shot'].iloc[0]) else '?'}-shot)")
    for level in sorted(set(acc["chance"].dropna())):
        ax.axhline(level, color="#555555", ls=":", lw=1.2, label=f"chance {level:g}")
    ax.set_xlabel("training step")
    ax.set_ylabel("accuracy (error bars: stderr)")
    ax.set_title("multiple choice (solid: run language, dashed: English)", fontsize=10)
    ax.grid(True, axis="y", color="#e5e5e5")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncols=2, frameon=False)
    if not bpb.empty:
        bx = axes[1]
        for task, rows in bpb.groupby("task", sort=False):
            rows = rows.sort_values("checkpoint_step")
            bx.errorbar(rows["checkpoint_step"].astype(float), rows["value"], yerr=rows["stderr"].fillna(0),
                        marker="o", ls="--" if rows["language"].iloc[0] == ENGLISH[0] else "-", capsize=3, label=task)
        bx.set_xlabel("training step")
        bx.set_ylabel("bits per byte (lower is better)")
        bx.set_title("held-out text", fontsize=10)
        bx.grid(True, axis="y", color="#e5e5e5")
        bx.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncols=2, frameon=False)
    fig.suptitle(f"This run ({language_names().get(language, language)}): every task per base checkpoint", fontsize=12)
    return fig


def metrics_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Every number with its provenance, one row per (model, task, metric)."""
    df = metrics[~metrics["is_average"].astype(bool)]
    cols = ["row_label", "checkpoint_step", "task", "metric", "value", "stderr", "chance", "n_shot",
            "chat_template", "batch_size", "n_samples", "lm_eval_version", "model_path"]
    return df[cols].rename(columns={"row_label": "model"}).reset_index(drop=True)


def build_outputs(out_dir, spec, results: pd.DataFrame, metrics: pd.DataFrame, check: dict,
                  notes: list[str] = (), published_df: pd.DataFrame | None = None) -> dict:
    """Tables and figures of this run next to the published ones, indexed in ``outputs.json``."""
    out = StageOutputs(out_dir)
    df = published.load() if published_df is None else published_df
    lang = spec.language.code

    for table_id in [t for t in published.TABLES if t in set(results["table_id"])]:
        wide = tables.with_run_results(df, results, table_id)
        integers = tables.style_options(df, table_id)["integer_columns"]
        out.table(table_id, wide, f"{tables.provenance(df, table_id)['title']}: published and this run",
                  tables.styled_table(df, table_id, results),
                  csv=lambda path, wide=wide, integers=integers: tables.to_csv(wide, path, integer_columns=integers),
                  figure=f"progression-{lang}" if table_id == f"{lang}_progression" else None)  # folded under it
    full = metrics_table(metrics)
    out.table("eval-metrics", full, "Every number of this run, with its provenance",
              full.style.hide(axis="index").format(precision=4, na_rep="—"),
              csv=lambda path: full.to_csv(path, index=False, float_format="%.6g"), figure=f"checkpoints-{lang}")
    add = out.figure

    progression = results[(results["table_id"] == f"{lang}_progression") & results["checkpoint_step"].notna()]
    if not progression.empty and f"{lang}_progression" in set(df["table_id"]):
        add(f"progression-{lang}", plots.progression_figure(df, lang, progression),
            f"{language_names().get(lang, lang)} checkpoint progression: published and this run",
            "Left: the report's checkpoints (section 6); right: this run's base checkpoints on their own step "
            "scale. Dashed: chance level.")
    base = metrics[metrics["model_kind"] == "base"]
    if not base.empty:
        add(f"checkpoints-{lang}", checkpoints_figure(metrics, lang), "This run per checkpoint: every task",
            "Headline metric per task (the report's: acc for MMLU, acc_norm for ARC and HellaSwag) with lm-eval's "
            "stderr as error bars, English dashed; dotted: chance. Right (smoke): bits per byte on held-out "
            "documents, stderr from lm-eval's per-document samples.")
    for note in list(check.get("summary", [])) + list(notes):
        out.note(note)
    out.write(prune=True)
    return out.index

