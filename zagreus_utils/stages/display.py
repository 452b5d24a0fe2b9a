"""How the stage notebooks show tables: one palette (numbers: results/formatting.py),
every table styled the same way (index hidden, text HTML-escaped)."""

from __future__ import annotations

import pandas as pd

PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9"]  # Okabe-Ito


def styled(df: pd.DataFrame):
    """Index hidden, every text cell HTML-escaped (rules say ">=", excerpts hold code)."""
    return df.style.hide(axis="index").format(escape="html", precision=4)


def finish_figure(fig, *axes):
    """The stage figures' finish: no top/right spines, a tight layout; returns the figure."""
    for ax in axes:
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig
