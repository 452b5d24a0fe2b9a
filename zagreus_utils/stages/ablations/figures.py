"""The ablation's figures: embedding-norm curves (mean ± standard error band over seeds), the
long-context probe (bits per byte against context length) and bars of held-out bits per byte and
accuracy with standard-error bars, one colour per variant."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...results.figures import new_figure, step_axis
from ..display import PALETTE
from .plan import Plan
from .stats import mean_se, metric, probe_name


def colour(plan: Plan, variant: str) -> str:
    return PALETTE[list(plan.variants).index(variant) % len(PALETTE)]


def _finish(ax) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(True, color="#e5e5e5", lw=0.8)
    ax.set_axisbelow(True)


def embed_norm_figure(curves: dict[str, dict[int, list[dict]]], plan: Plan):
    """Mean embedding-row norm against the step: per variant, the mean over seeds and a ± se band."""
    fig = new_figure((7.0, 4.2))
    ax = fig.add_subplot()
    all_steps = []
    for variant, seeds in curves.items():
        per_step: dict[int, list[float]] = {}
        for rows in seeds.values():
            for r in rows:
                per_step.setdefault(int(r["step"]), []).append(float(r["embed_norm"]))
        if not per_step:
            continue
        steps = sorted(per_step)
        stats = [mean_se(per_step[s]) for s in steps]
        mean = np.array([m for m, _ in stats])
        se = np.nan_to_num(np.array([e for _, e in stats]))
        ax.plot(steps, mean, color=colour(plan, variant), lw=1.6, label=variant)
        ax.fill_between(steps, mean - se, mean + se, color=colour(plan, variant), alpha=0.2, lw=0)
        all_steps += steps
    step_axis(ax, all_steps)
    ax.set_ylabel("mean L2 norm of embedding rows")
    ax.set_title("Embedding norms during training (mean ± s.e. over seeds)")
    ax.legend(fontsize=8, frameon=False, ncols=2)
    _finish(ax)
    return fig


def probe_figure(rows: pd.DataFrame, plan: Plan, seq_len: int):
    """Held-out bits per byte against the context length (multiples of the training length), ± se."""
    fig = new_figure((7.0, 4.2))
    ax = fig.add_subplot()
    lengths = sorted(plan.probe_lengths)
    offsets = np.linspace(-0.06, 0.06, len(plan.variants)) if len(plan.variants) > 1 else [0.0]
    for off, variant in zip(offsets, plan.variants):
        sel = rows[rows["variant"] == variant]
        stats = [mean_se(sel[probe_name(k)]) for k in lengths]
        x = np.log2(lengths) + off
        ax.errorbar(x, [m for m, _ in stats], yerr=np.nan_to_num([e for _, e in stats]), marker="o", ms=4,
                    capsize=3, lw=1.4, color=colour(plan, variant), label=variant)
    ax.set_xticks(np.log2(lengths))
    ax.set_xticklabels([f"{k}x\n({k * seq_len} tokens)" for k in lengths])
    ax.set_xlabel("context length (x the training sequence length)")
    ax.set_ylabel("held-out bits per byte")
    ax.set_title("Long-context probe: beyond the trained length")
    ax.legend(fontsize=8, frameon=False, ncols=2)
    _finish(ax)
    return fig


def bars_figure(rows: pd.DataFrame, plan: Plan):
    """Held-out bits per byte and next-token accuracy per variant, mean ± se bars, seeds as dots."""
    fig = new_figure((8.0, 3.8))
    variants = list(plan.variants)
    for i, name in enumerate(("heldout_bpb", "heldout_accuracy")):
        ax = fig.add_subplot(1, 2, i + 1)
        for j, variant in enumerate(variants):
            values = rows.loc[rows["variant"] == variant, name].astype(float)
            m, se = mean_se(values)
            ax.bar(j, m, yerr=0 if np.isnan(se) else se, capsize=4, color=colour(plan, variant), alpha=0.85)
            ax.plot([j] * len(values), values, "o", ms=3, color="#333333", zorder=3)
        finite = rows[name].astype(float).dropna()
        if len(finite):
            lo, hi = finite.min(), finite.max()
            pad = max(1e-3, 0.6 * (hi - lo))
            ax.set_ylim(lo - pad, hi + pad)
        ax.set_xticks(range(len(variants)))
        ax.set_xticklabels(variants, rotation=30, ha="right", fontsize=8)
        ax.set_title(metric(name).label + (" (lower is better)" if metric(name).lower_is_better else
                                           " (higher is better)"), fontsize=9)
        _finish(ax)
    return fig
