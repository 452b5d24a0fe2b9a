"""Estimates with their uncertainty, shared by the stages that compare runs (ablations, continual)."""

from __future__ import annotations

import math

import numpy as np


def finite(values) -> list[float]:
    """The values that are numbers (None and NaN left out)."""
    return [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]


def mean_se(values) -> tuple[float, float]:
    """Mean and standard error (sample standard deviation / sqrt(n)); NaN where there are too few."""
    xs = finite(values)
    if not xs:
        return math.nan, math.nan
    if len(xs) == 1:
        return xs[0], math.nan
    return float(np.mean(xs)), float(np.std(xs, ddof=1) / math.sqrt(len(xs)))


def bits_per_byte(nats: float, nbytes: int) -> float:
    """A summed negative log-likelihood (nats) per byte of text, in bits; NaN for no bytes."""
    return nats / math.log(2) / nbytes if nbytes else math.nan
