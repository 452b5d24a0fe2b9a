"""The report's tables, styled for notebooks and the HTML report.

``styled`` shows a wide table (index = row labels, columns = printed headers) the way the report
prints it: four decimals, "—" for values the report leaves out (greyed), the best value per column
highlighted, and a caption that says where in the report the numbers come from. ``with_run_results``
puts this run's own results (the same tidy format, ``source == "this run"``) under the published
rows so one layout shows both.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Mapping

import pandas as pd

from ..pipeline.errors import ZagreusError
from .benchmarks import chance_level

MISSING = "—"
RUN_PREFIX = "this run · "
RUN_SOURCE = "this run"

_MISSING_CSS = "color: #8a8a8a; background-color: #f2f2f2; font-style: italic;"
_BEST_CSS = "font-weight: bold; background-color: #d9f0d3;"
_BELOW_CHANCE_CSS = "color: #b35806;"
_RUN_ROW_CSS = "background-color: #e8f1fb;"
_TABLE_CSS = [
    {"selector": "", "props": "border-collapse: collapse; font-size: 0.9em;"},
    {"selector": "caption", "props": "caption-side: top; text-align: left; font-size: 0.9em; "
                                     "color: #444; padding-bottom: 0.4em;"},
    {"selector": "th, td", "props": "padding: 0.2em 0.6em; border-bottom: 1px solid #ddd;"},
    {"selector": "td", "props": "text-align: right; font-variant-numeric: tabular-nums;"},
    {"selector": "th.row_heading", "props": "text-align: left;"},
]


def _numeric_columns(df: pd.DataFrame) -> list:
    return [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c])]


def _chance_for(chance, column) -> float | None:
    if chance is None:
        return None
    if isinstance(chance, Mapping):
        value = chance.get(column)
        return None if value is None else float(value)
    return float(chance)


def clean_label(text) -> str:
    """Drop the report's markdown bold (``**zagreus 483k**``) from a label."""
    return str(text).replace("**", "").strip()


def styled(df_wide: pd.DataFrame, caption: str, chance=None, highlight_max=True, integer_columns=()):
    """A pandas Styler for one wide table in the report's layout.

    ``chance`` (a number, or a mapping column -> number) marks values at or below the chance
    level. ``highlight_max``: True (every numeric column), False, or the columns to highlight;
    the best value of a highlighted column is bold on green when there are two values to compare.
    ``integer_columns`` (e.g. a rank) are printed without decimals. Rows from this run (labels
    starting with ``"this run · "``) get a tinted background.
    """
    df = df_wide.copy()
    df.index = pd.Index([str(i) for i in df.index], name=df_wide.index.name)
    df.columns = [str(c) for c in df.columns]
    numeric = _numeric_columns(df)
    integers = [c for c in numeric if c in set(map(str, integer_columns))]
    decimals = [c for c in numeric if c not in integers]
    if highlight_max is True:
        highlight = set(decimals)
    elif highlight_max is False or highlight_max is None:
        highlight = set()
    else:
        highlight = set(map(str, highlight_max)) & set(numeric)

    styler = df.style.format(na_rep=MISSING, escape="html")  # text columns, if any
    if decimals:
        styler = styler.format(precision=4, na_rep=MISSING, escape="html", subset=decimals)
    if integers:
        styler = styler.format(precision=0, na_rep=MISSING, escape="html", subset=integers)
    styler = styler.format_index(clean_label, escape="html", axis=0)
    styler = styler.format_index(clean_label, escape="html", axis=1)

    def cell_css(column: pd.Series) -> list[str]:
        is_num = column.name in numeric
        values = pd.to_numeric(column, errors="coerce") if is_num else column
        best = values.max() if column.name in highlight and values.notna().sum() >= 2 else None
        limit = _chance_for(chance, column.name) if is_num else None
        css = []
        for v in values:
            if pd.isna(v):
                css.append(_MISSING_CSS)
            elif best is not None and v == best:
                css.append(_BEST_CSS)
            elif limit is not None and v <= limit:
                css.append(_BELOW_CHANCE_CSS)
            else:
                css.append("")
        return css

    styler = styler.apply(cell_css, axis=0)
    run_rows = [i for i in df.index if i.startswith(RUN_PREFIX)]
    if run_rows:
        styler = styler.apply(lambda row: [_RUN_ROW_CSS] * len(row), axis=1, subset=pd.IndexSlice[run_rows, :])
        styler = styler.map_index(lambda v: _RUN_ROW_CSS if str(v).startswith(RUN_PREFIX) else "", axis=0)
    note = [f"{MISSING} = not reported"]
    if highlight:
        note.append("bold on green = best in column")
    if chance is not None:
        note.append("orange = at or below chance")
    if run_rows:
        note.append("blue rows = this run")
    full = f"{caption} ({'; '.join(note)})"
    # a uuid from the content (not random) keeps the HTML identical from one build to the next
    uuid = hashlib.sha1((full + df.to_json()).encode("utf-8")).hexdigest()[:10]
    return styler.set_caption(html.escape(full)).set_table_styles(_TABLE_CSS, overwrite=False).set_uuid(uuid)


def render_html(styler) -> str:
    """The styled table as an HTML fragment (a ``<style>`` block and a ``<table>``)."""
    return styler.to_html()


def to_csv(df_wide: pd.DataFrame, path, integer_columns=()) -> None:
    """Write a wide table as CSV: labels without markdown, four decimals (integers for a rank),
    empty cells where the report prints "—"."""
    out = pd.DataFrame(index=[clean_label(i) for i in df_wide.index])
    out.index.name = df_wide.index.name or "row"
    integers = set(map(str, integer_columns))
    for column in df_wide.columns:
        values = df_wide[column].to_numpy()
        digits = 0 if str(column) in integers else 4
        out[clean_label(column)] = ["" if pd.isna(v) else f"{float(v):.{digits}f}" for v in values]
    out.to_csv(path, encoding="utf-8")


def _present(value) -> bool:
    return not pd.isna(value) and str(value).strip() != ""


def _first_text(column: pd.Series) -> str:
    texts = [str(v) for v in column if _present(v)]
    return texts[0] if texts else ""


def provenance(published_df: pd.DataFrame, table_id: str) -> dict:
    """Where a published table comes from: id, title, section, first report line, caption text."""
    rows = published_df[published_df["table_id"] == table_id]
    if rows.empty:
        known = sorted(published_df["table_id"].dropna().unique())
        raise ZagreusError(f"table {table_id!r} is not in the published results (known: {known})")
    title = _first_text(rows["table_title"]) or table_id
    section = _first_text(rows["section"])
    lines = pd.to_numeric(rows["line"], errors="coerce").dropna()
    first, last = (int(lines.min()), int(lines.max())) if len(lines) else (None, None)
    where = ""
    if first is not None:
        where = f", lines {first}–{last}" if last != first else f", line {first}"
    numbered = re.match(r"^(\d+)\.?\s+(.*)$", section)
    section_text = f"§{numbered.group(1)} “{numbered.group(2)}”" if numbered else section
    if section and section != title:
        caption = f"“{title}”, tech report {section_text}{where}"
    elif section:
        caption = f"tech report {section_text}{where}"
    else:
        caption = f"“{title}”{where}"
    return {"id": table_id, "title": title, "section": section, "line": first, "caption": caption}


def pivot_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Tidy rows of one table -> wide (row label x printed column), in the printed order."""
    if rows.empty:
        return pd.DataFrame()
    rows = rows.copy()
    rows["row_order"] = pd.to_numeric(rows.get("row_order"), errors="coerce")
    rows["col_order"] = pd.to_numeric(rows.get("col_order"), errors="coerce")
    row_order = rows.groupby("row_label", sort=False)["row_order"].min().sort_values(kind="stable").index
    col_order = rows.groupby("column", sort=False)["col_order"].min().sort_values(kind="stable").index
    wide = rows.pivot_table(index="row_label", columns="column", values="value", aggfunc="first", dropna=False)
    wide = wide.reindex(index=list(row_order), columns=list(col_order))
    wide.index.name, wide.columns.name = None, None
    return wide.astype(float)


def _run_rows_for(run_df: pd.DataFrame | None, table_id: str, published_rows: pd.DataFrame) -> pd.DataFrame:
    if run_df is None or len(run_df) == 0:
        return pd.DataFrame()
    run = run_df
    if "source" in run.columns:
        run = run[run["source"].fillna(RUN_SOURCE) != "published"]
    by_id = run[run["table_id"] == table_id] if "table_id" in run.columns else run.iloc[0:0]
    if by_id.empty and "language" in run.columns and len(published_rows):
        # Rows without a table id: match on the table's language(s) and its tasks.
        languages = {v for v in published_rows["language"] if _present(v)}
        tasks = {v for v in published_rows["task"] if _present(v)}
        by_id = run[run["language"].isin(languages) & (run["task"].isin(tasks) | run["is_average"].astype(bool))]
    return by_id


def _align_columns(run: pd.DataFrame, published_rows: pd.DataFrame) -> pd.DataFrame:
    """Give run rows the published printed header of the same task/metric (or the average)."""
    run = run.copy()
    lookup_task = {}
    avg_column = None
    for _, r in published_rows.drop_duplicates("column").iterrows():
        if bool(r.get("is_average")):
            avg_column = avg_column or r["column"]
        elif _present(r.get("task")):
            lookup_task[(r["task"], r.get("metric"))] = (r["column"], r["col_order"])
            lookup_task.setdefault((r["task"], None), (r["column"], r["col_order"]))
    published_columns = set(published_rows["column"])
    columns, orders = [], []
    for _, r in run.iterrows():
        if r["column"] in published_columns:
            columns.append(r["column"])
            orders.append(published_rows.loc[published_rows["column"] == r["column"], "col_order"].min())
            continue
        hit = lookup_task.get((r.get("task"), r.get("metric"))) or lookup_task.get((r.get("task"), None))
        if hit is None and bool(r.get("is_average")) and avg_column is not None:
            hit = (avg_column, published_rows.loc[published_rows["column"] == avg_column, "col_order"].min())
        if hit is None:
            hit = (r["column"], 10_000 + (r.get("col_order") if _present(r.get("col_order")) else 0))
        columns.append(hit[0])
        orders.append(hit[1])
    run["column"] = columns
    run["col_order"] = orders
    return run


def with_run_results(published_df: pd.DataFrame, run_df: pd.DataFrame | None, table_id: str) -> pd.DataFrame:
    """The published wide table with this run's rows appended, labelled ``"this run · <label>"``.

    Run rows are matched to the published headers by printed column, else by task and metric,
    else by being the average; columns the report does not have are appended at the right.
    Without run results this is exactly ``published.wide(published_df, table_id)``.
    """
    from . import published

    base = published.wide(published_df[published_df["source"] == "published"]
                          if "source" in published_df.columns else published_df, table_id)
    published_rows = published_df[published_df["table_id"] == table_id]
    run = _run_rows_for(run_df, table_id, published_rows)
    if run.empty:
        return base
    run = _align_columns(run, published_rows)
    run_wide = pivot_rows(run)
    run_wide.index = [f"{RUN_PREFIX}{label}" for label in run_wide.index]
    extra = [c for c in run_wide.columns if c not in base.columns]
    combined = pd.concat([base, run_wide.reindex(columns=list(base.columns) + extra)], axis=0)
    combined = combined.reindex(columns=list(base.columns) + extra)
    combined.index.name = base.index.name
    return combined


def chance_by_column(published_df: pd.DataFrame, table_id: str) -> dict[str, float] | None:
    """Chance level per printed column for the tasks that have one (see ``benchmarks.chance_level``)."""
    rows = published_df[(published_df["table_id"] == table_id)].drop_duplicates("column")
    out = {}
    for _, r in rows.iterrows():
        if bool(r.get("is_average")) or not _present(r.get("task")):
            continue
        try:
            out[str(r["column"])] = chance_level(str(r["task"]))
        except ZagreusError:
            continue
    return out or None


def is_rank(row) -> bool:
    """The leaderboard's ``Rank`` cells (printed as medals): ``metric`` (or ``task``) is ``rank``."""
    return any(str(row.get(k, "")).strip().lower() == "rank" for k in ("metric", "task"))


def style_options(published_df: pd.DataFrame, table_id: str) -> dict:
    """``styled`` keyword arguments for a published table: chance per column, and a rank column
    (the leaderboard's ``Rank``) printed as an integer and never highlighted."""
    rows = published_df[published_df["table_id"] == table_id].drop_duplicates("column")
    rank = [str(r["column"]) for _, r in rows.iterrows() if is_rank(r)]
    scored = [str(c) for c in rows["column"] if str(c) not in rank]
    return {"chance": chance_by_column(published_df, table_id), "integer_columns": rank,
            "highlight_max": scored}


def styled_table(published_df: pd.DataFrame, table_id: str, run_df: pd.DataFrame | None = None):
    """The ready-made Styler for one published table (plus this run's rows, if any)."""
    info = provenance(published_df, table_id)
    wide = with_run_results(published_df, run_df, table_id)
    options = style_options(published_df, table_id)
    extra = [str(c) for c in wide.columns if str(c) not in options["highlight_max"] + options["integer_columns"]]
    options["highlight_max"] = options["highlight_max"] + extra
    return styled(wide, info["caption"], **options)


def averages_check(published_df: pd.DataFrame, table_ids=None) -> pd.DataFrame:
    """``published.averages`` plus whether each printed average is its recomputed mean rounded to
    the printed digits (``tolerance`` = half a unit of the last printed digit)."""
    from . import published

    checks = published.averages(published_df)
    if table_ids is not None:
        checks = checks[checks["table_id"].isin(list(table_ids))]
    printed = published_df.set_index(["table_id", "row_label", "column"])["printed"]
    tolerances, ok = [], []
    for _, r in checks.iterrows():
        text = str(printed.get((r["table_id"], r["row_label"], r["column"]), "")).strip("* ")
        digits = len(text.split(".")[1]) if "." in text else 4
        tolerance = 0.5 * 10 ** -digits
        tolerances.append(tolerance)
        ok.append(bool(abs(r["difference"]) <= tolerance + 1e-9))
    checks = checks.assign(tolerance=tolerances, matches=ok)
    return checks.reset_index(drop=True)


def averages_styled(published_df: pd.DataFrame, table_ids=None):
    """The averages check as a small Styler: rows whose printed average is not the rounded mean
    of its cells are highlighted."""
    checks = averages_check(published_df, table_ids)
    shown = checks.assign(row_label=checks["row_label"].map(clean_label), column=checks["column"].map(clean_label))
    n_bad = int((~checks["matches"]).sum())
    styler = (shown.style.hide(axis="index")
              .format({"printed": "{:.4f}", "recomputed": "{:.6f}", "difference": "{:+.6f}", "tolerance": "{:g}"},
                      escape="html")
              .format(lambda v: "yes" if v else "NO", subset=["matches"])
              .apply(lambda row: [_BELOW_CHANCE_CSS + " font-weight: bold;" if not row["matches"] else ""] * len(row),
                     axis=1))
    caption = (f"Printed averages against the mean of the cells they cover (published.averages): "
               f"{len(checks)} checked, {n_bad} not equal to the rounded mean")
    uuid = hashlib.sha1((caption + checks.to_json()).encode("utf-8")).hexdigest()[:10]
    return styler.set_caption(html.escape(caption)).set_table_styles(_TABLE_CSS, overwrite=False).set_uuid(uuid)
