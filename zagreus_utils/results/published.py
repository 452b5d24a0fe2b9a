"""The report's published results (sections 6-7) as tidy data: load, reshape, check averages.

The data is ``report/published/results.csv``, a committed hand transcription of the report's
seven results tables, one row per printed cell (see ``report/published/README.md``). The row
label column of each table (``Checkpoint``, ``Steps``, ``Model``...) is not a cell row: its text
is the ``row_label`` of the table's other cells.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..pipeline.errors import ZagreusError
from ..pipeline.paths import PUBLISHED

RESULTS_CSV = PUBLISHED / "results.csv"

COLUMNS = [
    "source", "table_id", "section", "table_title", "language", "row_label", "model",
    "checkpoint_step", "column", "task", "metric", "n_shot", "is_average", "value", "printed",
    "row_order", "col_order", "line", "note",
]

_S6 = "6. Pre-trained Foundational Models Evaluations"
_S7 = "7. Post-Trained Nesso Models Evaluations"


DEFAULT_AVERAGES = (("Average", None),)  # a table with one average over the run language's columns


@dataclass(frozen=True)
class TableInfo:
    table_id: str
    title: str  # nearest heading naming the table (section 7's comparison has only the section)
    section: str
    kind: str  # "progression" | "leaderboard" | "comparison"
    languages: tuple[str, ...]
    # which of this run's evaluated models get a row in it: "base" (the checkpoints, the language's
    # own tasks), "base_extra" (the checkpoints, the language's `evaluation.extra` tasks), "instruct"
    # (the SFT model) or "" (published rows only)
    holds: str = ""
    # the printed average columns: (header, the language it averages: None = the run's own
    # language, "" = every scored column)
    averages: tuple[tuple[str, str | None], ...] = DEFAULT_AVERAGES


TABLES: dict[str, TableInfo] = {t.table_id: t for t in [
    TableInfo("ita_progression", "Zagreus-0.4B-ita-base", _S6, "progression", ("ita",), "base"),
    TableInfo("spa_progression", "Zagreus-0.4B-spa-base (Spanish)", _S6, "progression", ("spa",), "base"),
    TableInfo("fra_progression", "Zagreus-0.4B-fra (French)", _S6, "progression", ("fra",), "base"),
    TableInfo("por_progression", "Zagreus-0.4B-por (Portuguese)", _S6, "progression", ("por",), "base"),
    TableInfo("por_leaderboard", "lm-evaluation-harness-pt", _S6, "leaderboard", ("por",), "base_extra"),
    TableInfo("nesso_comparison", _S7, _S7, "comparison", ("eng", "ita"), "instruct",
              (("Media EN", "eng"), ("Media IT", "ita"), ("Media Totale", ""))),
    TableInfo("open_nesso", "Open-Nesso-0.4B Evaluation", _S7, "comparison", ("ita",)),
]}


def table_for(table_ids: list[str], holds: str, language: str) -> str:
    """The first of ``table_ids`` (a language's ``published_tables``) that holds this run's
    ``holds`` rows in ``language``; "" when none does."""
    return next((t for t in table_ids if t in TABLES and TABLES[t].holds == holds
                 and language in TABLES[t].languages), "")


# The languages the report's tables are in (ita, spa, fra, por, eng), in the report's order.
LANGUAGES = tuple(dict.fromkeys(lang for t in TABLES.values() for lang in t.languages))
# The run languages that have a published checkpoint progression (the report's figures).
PROGRESSION_LANGUAGES = tuple(lang for t in TABLES.values() if t.kind == "progression" for lang in t.languages)

# Header of each table's row-label column (it has no cell rows, so it is kept here).
_ROW_HEADER = {
    "ita_progression": "Checkpoint", "spa_progression": "Steps", "fra_progression": "Steps",
    "por_progression": "Checkpoint", "por_leaderboard": "Model / Checkpoint",
    "nesso_comparison": "Model", "open_nesso": "Model",
}


def load(path: str | Path | None = None) -> pd.DataFrame:
    """Read and validate the tidy published results (default ``report/published/results.csv``).

    Text columns are ``str`` ("" when blank); ``checkpoint_step`` and ``n_shot`` are nullable
    ``Int64``, ``value`` is float (NaN for cells printed as "—"), ``is_average`` is bool.
    """
    path = Path(path) if path is not None else RESULTS_CSV
    if not path.is_file():
        raise ZagreusError(f"{path}: published results file not found; restore it from git "
                           "(report/published/results.csv) or pass the right path")
    df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ZagreusError(f"{path}: missing column(s) {', '.join(missing)}; "
                           f"expected columns: {', '.join(COLUMNS)}")
    bad = sorted(set(df["table_id"]) - set(TABLES))
    if bad:
        raise ZagreusError(f"{path}: column table_id has unknown value(s) {bad}; "
                           f"use one of {list(TABLES)}")
    bad = sorted(set(df["language"]) - set(LANGUAGES) - {""})
    if bad:
        raise ZagreusError(f"{path}: column language has unknown value(s) {bad}; "
                           f"use one of {list(LANGUAGES)} or leave it empty")
    bad = sorted(set(df["is_average"]) - {"true", "false"})
    if bad:
        raise ZagreusError(f"{path}: column is_average has value(s) {bad}; use true or false")
    df = df[COLUMNS].copy()
    for col, kind in [("checkpoint_step", "Int64"), ("n_shot", "Int64"), ("value", "float"),
                      ("row_order", "int"), ("col_order", "int"), ("line", "int")]:
        try:
            df[col] = pd.to_numeric(df[col].mask(df[col] == "")).astype(kind)
        except (ValueError, TypeError) as exc:
            raise ZagreusError(f"{path}: column {col} has a value that is not a number "
                               f"({exc}); fix that cell") from None
    df["is_average"] = df["is_average"] == "true"
    dup = df.duplicated(["table_id", "row_order", "col_order"])
    if dup.any():
        row = df[dup].iloc[0]
        raise ZagreusError(f"{path}: two rows for table {row.table_id} cell "
                           f"(row_order={row.row_order}, col_order={row.col_order}); keep one")
    return df.reset_index(drop=True)


def _table(df: pd.DataFrame, table_id: str) -> pd.DataFrame:
    if table_id not in TABLES:
        raise ZagreusError(f"unknown table_id {table_id!r}; use one of {list(TABLES)}")
    return df[df["table_id"] == table_id]


def wide(df: pd.DataFrame, table_id: str) -> pd.DataFrame:
    """The table in the report's layout: rows in printed order, printed headers as columns.

    The index is the row labels (named after the table's row-label header). Every other printed
    column is a column, including ``Rank`` in ``por_leaderboard`` (1, 2, 3 for the medals).
    """
    t = _table(df, table_id)
    out = t.pivot(index="row_order", columns="col_order", values="value")
    labels = t.drop_duplicates("row_order").set_index("row_order")["row_label"]
    headers = t.drop_duplicates("col_order").set_index("col_order")["column"]
    out.index = pd.Index(labels[out.index].tolist(), name=_ROW_HEADER[table_id])
    out.columns = pd.Index(headers[out.columns].tolist())
    return out


def _scored(t: pd.DataFrame) -> pd.DataFrame:
    """Cells that hold a benchmark score (not averages, not the leaderboard's rank)."""
    return t[(t["task"] != "") & ~t["is_average"]]


def averages(df: pd.DataFrame) -> pd.DataFrame:
    """Every printed average next to the mean of the scored cells it covers.

    An average covers the non-missing scored cells of its row that share its ``language``; an
    average with no language (``Media Totale``) covers all of them. So in ``nesso_comparison``
    ``Media EN`` / ``Media IT`` are the means of the 4 EN / IT columns and ``Media Totale`` is
    recomputed as the mean of all 8 scores; everywhere else an average is the mean of the row's
    score columns (cells printed as "—" are skipped, as the report does).

    Which definition the printed numbers match: ``Media Totale`` is printed as the mean of the
    *printed, rounded* ``Media EN`` and ``Media IT`` rounded half up (e.g. (0.3736 + 0.3353) / 2
    = 0.35445 -> 0.3545), not the correctly rounded mean of the 8 scores (0.354413 -> 0.3544),
    so three of its four cells are off by one in the last printed digit.

    Columns: ``table_id, row_label, column, printed, recomputed, difference`` where ``printed`` is
    the printed average as a float and ``difference = printed - recomputed`` rounded to 6 decimals.
    """
    rows = []
    for _, avg in df[df["is_average"]].iterrows():
        row = _scored(df[(df["table_id"] == avg["table_id"]) & (df["row_order"] == avg["row_order"])])
        if avg["language"]:
            row = row[row["language"] == avg["language"]]
        recomputed = row["value"].mean()  # skips NaN
        rows.append({"table_id": avg["table_id"], "row_label": avg["row_label"],
                     "column": avg["column"], "printed": avg["value"], "recomputed": recomputed,
                     "difference": round(avg["value"] - recomputed, 6) + 0.0})
    return pd.DataFrame(rows, columns=["table_id", "row_label", "column", "printed",
                                       "recomputed", "difference"])


def progression(df: pd.DataFrame, language: str) -> pd.DataFrame:
    """Long frame of a language's checkpoint progression, sorted by step, for plotting.

    Columns ``checkpoint_step, task, metric, column, value``; only scored cells (no averages),
    and cells printed as "—" are left out.
    """
    ids = [t.table_id for t in TABLES.values() if t.kind == "progression" and language in t.languages]
    if not ids:
        have = [t.languages[0] for t in TABLES.values() if t.kind == "progression"]
        raise ZagreusError(f"no published checkpoint progression for language {language!r}; "
                           f"use one of {have}")
    t = _scored(df[df["table_id"].isin(ids)]).dropna(subset=["value"])
    t = t.sort_values(["checkpoint_step", "col_order"], kind="stable")
    return t[["checkpoint_step", "task", "metric", "column", "value"]].reset_index(drop=True)
