"""The ablation's tables: per-variant mean ± standard error, the differences to the baseline, the
throughput check, and one row per claim check with its verdict."""

from __future__ import annotations

import math

import pandas as pd

from ...results.formatting import MISSING
from .plan import BASELINE, Plan
from .stats import difference, explain, mean_se, metric, probe_name, verdict

SLOWER = 0.10  # a variant more than this much slower than the baseline (median tokens/s) is flagged


def summary_metrics(plan: Plan) -> list[str]:
    return ["final_loss", "heldout_bpb", "heldout_accuracy", *[probe_name(k) for k in plan.probe_lengths],
            "embed_norm_final", "embed_norm_drift"]


def plus_minus(mean: float, se: float, digits: int = 4) -> str:
    """``1.2345 ± 0.0012`` (``—`` when missing; no ``±`` without a standard error)."""
    if mean is None or math.isnan(mean):
        return MISSING
    return f"{mean:.{digits}f}" if se is None or math.isnan(se) else f"{mean:.{digits}f} ± {se:.{digits}f}"


def by_seed(rows: pd.DataFrame, variant: str, name: str) -> dict[int, float]:
    sel = rows[rows["variant"] == variant]
    return dict(zip(sel["seed"].astype(int), sel[name].astype(float)))


def stats_frame(rows: pd.DataFrame, plan: Plan) -> pd.DataFrame:
    """Tidy numbers: one row per (variant, metric): n, mean, se, diff, diff_se, paired."""
    out = []
    for variant in plan.variants:
        for name in [*summary_metrics(plan), "tokens_per_sec"]:
            values = by_seed(rows, variant, name)
            mean, se = mean_se(values.values())
            diff, dse, paired = difference(values, by_seed(rows, BASELINE, name))
            out.append({"variant": variant, "metric": name, "n": len(values), "mean": mean, "se": se,
                        "diff": diff, "diff_se": dse, "paired": paired})
    return pd.DataFrame(out)


def _tps(rows: pd.DataFrame, variant: str) -> float:
    values = rows.loc[rows["variant"] == variant, "tokens_per_sec"].dropna()
    return float(values.median()) if len(values) else math.nan


def summary_table(rows: pd.DataFrame, stats: pd.DataFrame, plan: Plan) -> pd.DataFrame:
    """One row per variant: each metric as mean ± se, then Δ to the baseline ± its se, and throughput."""
    base_tps = _tps(rows, BASELINE)
    table = []
    for variant in plan.variants:
        row = {"variant": variant, "seeds": int(rows["variant"].eq(variant).sum())}
        for name in summary_metrics(plan):
            s = stats[(stats["variant"] == variant) & (stats["metric"] == name)].iloc[0]
            row[metric(name).label] = plus_minus(s["mean"], s["se"])
            if variant != BASELINE:
                row[f"Δ {metric(name).label}"] = plus_minus(s["diff"], s["diff_se"])
        tps = _tps(rows, variant)
        ratio = tps / base_tps if base_tps else math.nan
        row["tokens/s (median)"] = MISSING if math.isnan(tps) else f"{tps:,.0f}"
        row["vs baseline"] = MISSING if math.isnan(ratio) else f"{ratio:.2f}x"
        row["throughput"] = (f"SLOWER by {1 - ratio:.0%} (> {SLOWER:.0%})" if ratio < 1 - SLOWER
                             else "ok") if not math.isnan(ratio) else MISSING
        table.append(row)
    return pd.DataFrame(table)


def claims_table(stats: pd.DataFrame, plan: Plan) -> pd.DataFrame:
    """One row per claim check: the quote, variant, metric, Δ ± se, the verdict and why."""
    out = []
    for claim in plan.claims:
        for check in claim.checks:
            s = stats[(stats["variant"] == claim.variant) & (stats["metric"] == check.metric)].iloc[0]
            result = verdict(s["diff"], s["diff_se"], metric(check.metric).lower_is_better)
            out.append({"claim": claim.id, "quote": claim.quote, "variant": claim.variant,
                        "metric": metric(check.metric).label, "expected": check.expect.replace("_", " "),
                        "Δ vs baseline": plus_minus(s["diff"], s["diff_se"]),
                        "seeds": int(s["n"]), "verdict": result,
                        "why": explain(result, check.expect, check.metric)})
    return pd.DataFrame(out)


def identical_to_baseline(rows: pd.DataFrame, plan: Plan) -> list[str]:
    """Variants whose every seed ended with exactly the baseline's training loss: a switch that did nothing."""
    base = by_seed(rows, BASELINE, "final_loss")
    same = []
    for variant in plan.variants:
        if variant == BASELINE or not plan.variants[variant]:
            continue
        mine = by_seed(rows, variant, "final_loss")
        if mine and all(s in base and mine[s] == base[s] for s in mine):
            same.append(variant)
    return same
