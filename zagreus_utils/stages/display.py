"""How the stage notebooks show numbers and tables: one palette, dash for a missing value,
every table styled the same way (index hidden, text HTML-escaped)."""

from __future__ import annotations

import math

import pandas as pd

PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9"]  # Okabe-Ito


def fmt_int(v) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{int(v):,}"


def fmt_pct(v) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1%}"


def fmt_tokens(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    v = float(v)
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= size:
            return f"{v / size:.3g}{unit}"
    return f"{v:.0f}"


def styled(df: pd.DataFrame):
    """Index hidden, every text cell HTML-escaped (rules say ">=", excerpts hold code)."""
    return df.style.hide(axis="index").format(escape="html", precision=4)



def fmt_bytes(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    v = float(v)
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if v >= size:
            return f"{v / size:.3g} {unit}"
    return f"{v:.0f} B"


def finish_figure(fig, *axes):
    """The stage figures' finish: no top/right spines, a tight layout; returns the figure."""
    for ax in axes:
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig
