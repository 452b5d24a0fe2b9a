"""Drawing helpers shared by the report's figures: tidy-row selection, axes, bars, the figure itself.

Generic pieces of the figures of ``zagreus_utils.stages.plots`` (checkpoint progression, leaderboard,
Nesso comparison) and of the eval stage: they know the tidy frame of ``published.load()`` and
matplotlib, not the benchmarks. Figures are built without pyplot, so nothing here picks a backend.
"""

from __future__ import annotations

import math
import re

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from ..pipeline.errors import ZagreusError
from .tables import is_rank, pivot_rows

def present(value) -> bool:
    """Not blank: the tidy frame writes missing text as "" (published.load) or NaN (others)."""
    return value is not None and value is not pd.NA and not (isinstance(value, float) and math.isnan(value)) \
        and str(value).strip() != ""


def table_rows(df: pd.DataFrame, table_id: str) -> pd.DataFrame:
    rows = df[df["table_id"] == table_id]
    if rows.empty:
        known = sorted(df["table_id"].dropna().unique()) if "table_id" in df.columns else []
        raise ZagreusError(f"table {table_id!r} is not in the results frame (tables there: {known})")
    return rows


def published_rows(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["source"] == "published"] if "source" in df.columns else df


def run_only(df: pd.DataFrame | None) -> pd.DataFrame | None:
    if df is None or len(df) == 0:
        return None
    if "source" in df.columns:
        df = df[df["source"] != "published"]
    return df if len(df) else None


def wide_table(rows: pd.DataFrame) -> pd.DataFrame:
    return pivot_rows(rows)


def value_limits(values: list[float], chance: list[float], bottom_room: float = 0.0) -> tuple[float, float]:
    """y-limits holding every value and chance level with a margin; ``bottom_room`` (a fraction of
    the axes height) is kept free of data at the bottom for the not-reported markers."""
    finite = [float(v) for v in list(values) + list(chance) if v is not None and not pd.isna(v)]
    if not finite:
        return 0.0, 1.0
    lo, hi = min(finite), max(finite)
    pad = max(0.015, 0.08 * (hi - lo))
    top = hi + pad
    bottom = lo - pad
    if bottom_room > 0:
        # the lowest value sits at ``bottom_room`` (+ a little) of the axes height
        f = bottom_room + 0.04
        bottom = min(bottom, (lo - f * top) / (1 - f))
    return bottom, top


def step_axis(ax, steps) -> float:
    """Format the x axis for training steps; returns the divisor applied to the steps."""
    steps = [s for s in steps if s is not None and not math.isnan(s)]
    thousands = bool(steps) and max(steps) >= 1000
    scale = 1000.0 if thousands else 1.0
    if thousands:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}k"))
        ax.set_xlabel("training step (k = thousand steps)")
    else:
        ax.set_xlabel("training step")
    ax.xaxis.set_major_locator(MaxNLocator(nbins=8, steps=[1, 2, 2.5, 5, 10], integer=not thousands,
                                           min_n_ticks=3))
    return scale


MISSING_Y0, MISSING_DY = 0.035, 0.04  # axes fractions of the not-reported crosses


def missing_room(series: list[dict]) -> float:
    if not any(pd.isna(s["values"]).any() for s in series):
        return 0.0
    return MISSING_Y0 + MISSING_DY * (len(series) - 1) + 0.03


def missing_label(notes: list[tuple[str, str]]) -> str:
    """"HellaSwag, ARC at 205k" from [("HellaSwag", "205k"), ("ARC", "205k")]."""
    by_steps: dict[str, list[str]] = {}
    for name, steps in notes:
        by_steps.setdefault(steps, []).append(name)
    return "; ".join(f"{', '.join(names)} at {steps}" for steps, names in by_steps.items())


def new_figure(size: tuple[float, float]) -> Figure:
    """A figure whose layout engine keeps titles, legends and labels inside it and apart."""
    fig = Figure(figsize=size, layout="constrained")
    fig.get_layout_engine().set(w_pad=0.1, h_pad=0.1)
    return fig


def value_label_axis(ax, max_value: float):
    ax.set_xlim(0, max_value * 1.18 if max_value > 0 else 1)
    ax.grid(True, axis="x", color="#e5e5e5", lw=0.8)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)


def grouped_barh(ax, wide: pd.DataFrame, colors: list[str], average_columns: set[str], hatch_rows=()) -> None:
    """Horizontal grouped bars: one group per column (top to bottom), one bar per row of ``wide``."""
    n_rows = len(wide.index)
    height = 0.8 / max(n_rows, 1)
    positions = {}
    for g, column in enumerate(wide.columns):
        for r, label in enumerate(wide.index):
            positions[(column, label)] = g + (r - (n_rows - 1) / 2) * height
    for r, label in enumerate(wide.index):
        ys, xs, missing = [], [], []
        for column in wide.columns:
            value = wide.loc[label, column]
            (missing if pd.isna(value) else ys).append(positions[(column, label)])
            if not pd.isna(value):
                xs.append(float(value))
        container = ax.barh(ys, xs, height=height * 0.92, color=colors[r % len(colors)],
                            label=str(label), edgecolor="white", linewidth=0.5,
                            hatch="//" if label in hatch_rows else None)
        for text in ax.bar_label(container, fmt="%.4f", padding=2, fontsize=8, zorder=5):
            # a white backing keeps the number readable where a chance line crosses it
            text.set_bbox({"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 0.6})
        for y in missing:
            ax.text(0.002, y, "not reported", va="center", ha="left", fontsize=7.5, color="#777777",
                    style="italic", gid="missing")
    ax.set_yticks(range(len(wide.columns)))
    ax.set_yticklabels([str(c) for c in wide.columns])
    for tick, column in zip(ax.get_yticklabels(), wide.columns):
        if column in average_columns:
            tick.set_fontweight("bold")
    for g, column in enumerate(wide.columns):
        if column in average_columns:
            ax.axhspan(g - 0.45, g + 0.45, color="#f4f4f4", zorder=0)
    ax.set_ylim(len(wide.columns) - 0.5, -0.5)


def clean(text) -> str:
    return str(text).replace("**", "").strip()


def average_columns(rows: pd.DataFrame) -> set[str]:
    return set(rows.loc[rows["is_average"].astype(bool), "column"].astype(str))


def score_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Cells holding a score or a printed average (not the leaderboard's ``Rank``)."""
    rank = rows.apply(is_rank, axis=1) if len(rows) else pd.Series(dtype=bool)
    keep = rows["is_average"].astype(bool) | (rows["task"].map(present) & ~rank)
    return rows[keep]


def section_number(section) -> str:
    text = str(section).strip()
    m = re.match(r"^(\d+)\.", text)
    return m.group(1) if m else text


