"""The ablation's numbers: each metric's meaning and better direction, mean and standard error over
seeds, the difference to the baseline with its standard error, and the verdict rule."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ...results.estimates import finite, mean_se  # noqa: F401 (stats.mean_se, stats.finite)

K_SE = 2.0  # a difference within K_SE standard errors of zero is "cannot tell"
AGREES, DISAGREES, CANNOT_TELL = "agrees", "disagrees", "cannot tell"


@dataclass(frozen=True)
class Metric:
    label: str
    lower_is_better: bool | None  # None: no better direction (reported, never judged)
    multiple: int | None = None   # the long-context probe's length, in sequence lengths


METRICS = {
    "final_loss": Metric("final training loss", True),
    "heldout_bpb": Metric("held-out bits per byte", True),
    "heldout_accuracy": Metric("held-out next-token accuracy", False),
    "embed_norm_final": Metric("final mean embedding-row norm", None),
    "embed_norm_drift": Metric("embedding-norm drift over the last quarter (relative)", True),
    "tokens_per_sec": Metric("training tokens/s (median step)", False),
}
_PROBE = re.compile(r"^probe_bpb_(\d+)x$")


def probe_name(multiple: int) -> str:
    return f"probe_bpb_{multiple}x"


def metric(name: str) -> Metric | None:
    """The metric called ``name`` (``probe_bpb_<k>x``: the long-context probe at k x the sequence length)."""
    m = _PROBE.match(name)
    if m:
        k = int(m.group(1))
        return Metric(f"bits per byte at {k}x the sequence length", True, k)
    return METRICS.get(name)


def difference(variant: dict[int, float], baseline: dict[int, float]) -> tuple[float, float, bool]:
    """(variant - baseline, its standard error, paired). Paired when both ran the same seeds (at
    least two): the same seed gives both the same initial weights and data order, so the standard
    error is that of the per-seed differences; otherwise unpaired, sqrt(se_v^2 + se_b^2)."""
    v = {s: x for s, x in variant.items() if finite([x])}
    b = {s: x for s, x in baseline.items() if finite([x])}
    if len(v) >= 2 and set(v) == set(b):
        d, se = mean_se([v[s] - b[s] for s in sorted(v)])
        return d, se, True
    mv, sv = mean_se(v.values())
    mb, sb = mean_se(b.values())
    return mv - mb, math.sqrt(sv ** 2 + sb ** 2), False


def improvement(diff: float, lower_is_better: bool) -> float:
    """The difference signed so that positive is better."""
    return -diff if lower_is_better else diff


def verdict(diff: float, se: float, lower_is_better: bool) -> str:
    """``agrees`` when the variant is better than the baseline by more than K_SE standard errors,
    ``disagrees`` when it is worse by more than that, else ``cannot tell`` (also without an error)."""
    if not finite([diff]) or not finite([se]):
        return CANNOT_TELL
    gain = improvement(diff, lower_is_better)
    if gain > K_SE * se:
        return AGREES
    if gain < -K_SE * se:
        return DISAGREES
    return CANNOT_TELL


def explain(result: str, expect: str, name: str) -> str:
    """One plain sentence for a verdict of a check expecting ``better`` or ``not_worse``."""
    label = metric(name).label
    if result == AGREES:
        return f"better {label} than the baseline, beyond {K_SE:g} standard errors"
    if result == DISAGREES:
        return f"worse {label} than the baseline, beyond {K_SE:g} standard errors"
    if expect == "not_worse":
        return (f"no difference in {label} beyond {K_SE:g} standard errors: consistent with 'no harm', "
                "but too few seeds to show it")
    return f"no difference in {label} beyond {K_SE:g} standard errors: within noise"
