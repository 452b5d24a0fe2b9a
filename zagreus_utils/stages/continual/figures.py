"""The continual demonstration's table and figures: held-out scores along the steps of both runs,
the gain on the new language and the forgetting of the old (paired standard errors)."""

from __future__ import annotations

import pandas as pd

from ...results.figures import new_figure, step_axis
from .heldout import paired_se

COLORS = {"continued": "#1f77b4", "scratch": "#ff7f0e"}
METRICS = {"bpb": "bits per byte (lower is better)", "acc": "next-token top-1 accuracy"}


def _score(value: float, se: float, digits: int) -> str:
    return f"{value:.{digits}f} ± {se:.{digits}f}"


def table(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per run and step; bits per byte and accuracy of each language, ± one standard error."""
    rows = []
    for (run, step), g in scores.groupby(["run", "step"], sort=False):
        row = {"run": run, "step": int(step)}
        for _, r in g.iterrows():
            row[f"{r['language']} ({r['role']}) bits/byte"] = _score(r["bpb"], r["bpb_se"], 3)
            row[f"{r['language']} ({r['role']}) top-1 acc"] = _score(r["acc"], r["acc_se"], 3)
        rows.append(row)
    return pd.DataFrame(rows)


def _at(scores: pd.DataFrame, run: str, role: str) -> pd.DataFrame:
    return scores[(scores["run"] == run) & (scores["role"] == role)].set_index("step").sort_index()


def deltas(scores: pd.DataFrame) -> pd.DataFrame:
    """Per step: ``gain`` (continued minus scratch, new language) and ``forgetting`` (continued minus
    its own step 0, old language), for bits per byte and accuracy, with paired standard errors."""
    rows = []
    cont_new, scratch_new = _at(scores, "continued", "new"), _at(scores, "scratch", "new")
    cont_old = _at(scores, "continued", "old")
    start = cont_old.iloc[0]
    for step in cont_new.index.intersection(scratch_new.index):
        for m in ("bpb", "acc"):
            a, b = cont_new.loc[step], scratch_new.loc[step]
            rows.append({"step": int(step), "measure": "gain", "metric": m, "value": a[m] - b[m],
                         "se": paired_se(a[f"{m}_groups"], b[f"{m}_groups"])})
    for step in cont_old.index:
        for m in ("bpb", "acc"):
            a = cont_old.loc[step]
            rows.append({"step": int(step), "measure": "forgetting", "metric": m, "value": a[m] - start[m],
                         "se": paired_se(a[f"{m}_groups"], start[f"{m}_groups"])})
    return pd.DataFrame(rows)


def curves(scores: pd.DataFrame, old: str, new: str):
    """2 x 2: bits per byte and accuracy (rows) on the old and the new language (columns)."""
    fig = new_figure((11, 7))
    axes = fig.subplots(2, 2)
    for col, (lang, role) in enumerate(((old, "old"), (new, "new"))):
        for row, (metric, label) in enumerate(METRICS.items()):
            ax = axes[row][col]
            for run, color in COLORS.items():
                d = _at(scores, run, role)
                ax.plot(d.index, d[metric], marker="o", ms=3, color=color, label=run)
                ax.fill_between(d.index, d[metric] - d[f"{metric}_se"], d[metric] + d[f"{metric}_se"],
                                color=color, alpha=0.2, lw=0)
            step_axis(ax, list(scores["step"]))
            ax.set_ylabel(label)
            ax.set_title(f"{lang} ({role} language)")
            ax.grid(alpha=0.3)
            ax.spines[["top", "right"]].set_visible(False)
    axes[0][0].legend(fontsize=8)
    return fig


def gain_forgetting(d: pd.DataFrame, old: str, new: str):
    """Left: gain on the new language (continued - scratch); right: forgetting of the old one."""
    fig = new_figure((11, 3.8))
    axes = fig.subplots(1, 2)
    titles = {"gain": f"gain on {new}: continued − scratch", "forgetting": f"forgetting of {old}: change since step 0"}
    for ax, measure in zip(axes, ("gain", "forgetting")):
        for metric, color in (("bpb", "#1f77b4"), ("acc", "#2ca02c")):
            g = d[(d["measure"] == measure) & (d["metric"] == metric)].sort_values("step")
            ax.errorbar(g["step"], g["value"], yerr=g["se"], marker="o", ms=3, capsize=3, color=color,
                        label={"bpb": "bits per byte", "acc": "top-1 accuracy"}[metric])
        ax.axhline(0, color="#777777", lw=0.8)
        step_axis(ax, list(d["step"]))
        ax.set_title(titles[measure])
        ax.set_ylabel("difference")
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(fontsize=8)
    return fig


def findings(d: pd.DataFrame, old: str, new: str) -> list[str]:
    """The last step's gain and forgetting, in words, with their standard errors."""
    last = d["step"].max()
    at = d[d["step"] == last].set_index(["measure", "metric"])
    g, f = at.loc[("gain", "bpb")], at.loc[("forgetting", "bpb")]
    ga, fa = at.loc[("gain", "acc")], at.loc[("forgetting", "acc")]
    return [f"At step {last}, on {new} the continued model scores {g['value']:+.3f} ± {g['se']:.3f} bits per byte "
            f"and {ga['value']:+.3f} ± {ga['se']:.3f} top-1 accuracy against the model trained from scratch on the "
            "same data and budget (negative bits per byte: the continued one is better).",
            f"On {old} the continued model changed by {f['value']:+.3f} ± {f['se']:.3f} bits per byte and "
            f"{fa['value']:+.3f} ± {fa['se']:.3f} top-1 accuracy since its start (the base checkpoint): "
            "positive bits per byte is forgetting."]
