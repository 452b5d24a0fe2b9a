"""The transcribed published results (report/published/results.csv) and their loader."""

import math
import re
from decimal import ROUND_HALF_UP, Decimal

import pandas as pd
import pytest

from zagreus_utils.pipeline import paths
from zagreus_utils.results import published
from zagreus_utils.pipeline.errors import ZagreusError
from zagreus_utils.audit.markdown import parse

# Printed averages that do not recompute to their last printed digit (found in the report).
KNOWN_DISCREPANCIES = {
    ("por_progression", "345k", "Media"),  # 0.3009 printed, mean 0.300967
    ("nesso_comparison", "Qwen/Qwen3-0.6B", "Media Totale"),  # 0.3545, mean of 8 = 0.354413
    ("nesso_comparison", "nesso-350M-sft-v0.6", "Media Totale"),  # 0.3345, 0.334438
    ("nesso_comparison", "nesso-350M-sft-v0.7", "Media Totale"),  # 0.3039, 0.303813
}

SHAPES = {
    "ita_progression": (12, 4), "spa_progression": (5, 4), "fra_progression": (6, 4),
    "por_progression": (7, 4), "por_leaderboard": (3, 11), "nesso_comparison": (4, 11),
    "open_nesso": (1, 4),
}


@pytest.fixture(scope="module")
def df():
    return published.load()


def _decimals(printed: str) -> int:
    return len(printed.strip("*").partition(".")[2])


# --- loader ------------------------------------------------------------------------------------

def test_load_columns_and_dtypes(df):
    assert list(df.columns) == published.COLUMNS
    assert str(df["checkpoint_step"].dtype) == "Int64"
    assert str(df["n_shot"].dtype) == "Int64"
    assert df["value"].dtype == float
    assert df["is_average"].dtype == bool
    assert set(df["source"]) == {"published"}
    assert list(dict.fromkeys(df["table_id"])) == list(published.TABLES)
    assert len(df) == 201


def test_tables_info(df):
    assert list(published.TABLES) == list(SHAPES)
    for tid, info in published.TABLES.items():
        t = df[df["table_id"] == tid]
        assert info.table_id == tid
        assert info.kind in {"progression", "leaderboard", "comparison"}
        assert set(t["section"]) == {info.section}
        assert set(t["table_title"]) == {info.title}
        assert set(t["language"]) - {""} == set(info.languages)
    with pytest.raises(Exception):
        published.TABLES["open_nesso"].kind = "x"  # frozen


def test_values_match_printed_text(df):
    for _, r in df.iterrows():
        if r["metric"] == "rank":
            assert r["value"] == r["row_order"] + 1
        elif r["printed"] == "—":
            assert math.isnan(r["value"])
        else:
            assert r["value"] == float(r["printed"].strip("*")), r.to_dict()


def test_checkpoint_steps_follow_row_labels(df):
    for _, r in df.iterrows():
        m = re.search(r"(\d+)k\b", r["row_label"])
        expected = int(m.group(1)) * 1000 if m else None
        assert (None if pd.isna(r["checkpoint_step"]) else r["checkpoint_step"]) == expected


def test_shots_and_tasks(df):
    scored = df[(df["task"] != "") & ~df["is_average"]]
    mmlu = scored[scored["task"].str.contains("mmlu")]
    assert set(mmlu["n_shot"]) == {5}
    pt = scored[scored["table_id"] == "por_leaderboard"]
    assert pt["n_shot"].isna().all() and (pt["note"] != "").all()
    assert set(df.loc[df["is_average"], "task"]) == {""}
    assert df.loc[df["printed"] == "—", "value"].isna().sum() == 8


def test_load_missing_file(tmp_path):
    with pytest.raises(ZagreusError, match="nope.csv"):
        published.load(tmp_path / "nope.csv")


def test_load_missing_column(tmp_path, df):
    path = tmp_path / "results.csv"
    pd.read_csv(published.RESULTS_CSV, dtype=str, keep_default_na=False).drop(
        columns=["value"]).to_csv(path, index=False)
    with pytest.raises(ZagreusError, match=r"results\.csv.*value"):
        published.load(path)


@pytest.mark.parametrize("column, bad, message", [
    ("table_id", "ita_progresion", "table_id"),
    ("value", "0.25x", "value"),
    ("is_average", "yes", "is_average"),
    ("language", "it", "language"),
])
def test_load_rejects_bad_values(tmp_path, column, bad, message):
    raw = pd.read_csv(published.RESULTS_CSV, dtype=str, keep_default_na=False)
    raw.loc[3, column] = bad
    path = tmp_path / "broken.csv"
    raw.to_csv(path, index=False)
    with pytest.raises(ZagreusError, match=rf"broken\.csv.*{message}.*"):
        published.load(path)


# --- reshaping ---------------------------------------------------------------------------------

@pytest.mark.parametrize("table_id", list(SHAPES))
def test_wide_shape_and_order(df, table_id):
    w = published.wide(df, table_id)
    t = df[df["table_id"] == table_id]
    assert w.shape == SHAPES[table_id]
    assert list(w.index) == list(t.sort_values("row_order")["row_label"].drop_duplicates())
    assert list(w.columns) == list(t.sort_values("col_order")["column"].drop_duplicates())
    assert all(w.dtypes == float)


def test_wide_values(df):
    ita = published.wide(df, "ita_progression")
    assert ita.index.name == "Checkpoint"
    assert ita.loc["v2-95k", "mmlu_it (acc)"] == 0.2529
    assert math.isnan(ita.loc["v2-205k", "arc_it (acc_norm)"])
    lb = published.wide(df, "por_leaderboard")
    assert lb.index.name == "Model / Checkpoint"
    assert list(lb["Rank"]) == [1.0, 2.0, 3.0]
    assert lb.loc["**Qwen3-0.6B-Base**", "TweetSent"] == 0.5646
    with pytest.raises(ZagreusError, match="nope"):
        published.wide(df, "nope")


def test_progression(df):
    p = published.progression(df, "fra")
    assert list(p.columns) == ["checkpoint_step", "task", "metric", "column", "value"]
    assert p["checkpoint_step"].is_monotonic_increasing
    assert len(p) == 12 and p["value"].notna().all()  # the six "—" cells are left out
    assert set(published.progression(df, "por")["task"]) == {"arc_pt", "hellaswag_pt", "m_mmlu_pt"}
    assert len(published.progression(df, "ita")) == 12 * 3 - 2
    with pytest.raises(ZagreusError, match="eng"):
        published.progression(df, "eng")


# --- averages ----------------------------------------------------------------------------------

def test_averages_recompute(df):
    a = published.averages(df)
    assert len(a) == int(df["is_average"].sum()) == 46
    printed = df[df["is_average"]].set_index(["table_id", "row_label", "column"])["printed"]
    off = set()
    for _, r in a.iterrows():
        key = (r["table_id"], r["row_label"], r["column"])
        assert abs(r["difference"]) <= 0.0005 + 1e-9, key  # never more than 0.0005 away
        half_unit = 0.5 * 10 ** -_decimals(printed[key])
        if abs(r["difference"]) > half_unit + 1e-9:  # not the recomputed mean, rounded
            off.add(key)
    assert off == KNOWN_DISCREPANCIES


def test_averages_are_recomputed_not_copied(df):
    changed = df.copy()
    i = changed.index[(changed["table_id"] == "open_nesso") & (changed["column"] == "arc_it")][0]
    changed.loc[i, "value"] += 0.03
    before = published.averages(df).set_index("table_id").loc["open_nesso", "difference"]
    after = published.averages(changed).set_index("table_id").loc["open_nesso", "difference"]
    assert after == pytest.approx(before - 0.01, abs=1e-6)


def test_media_totale_is_mean_of_printed_sub_averages(df):
    t = df[df["table_id"] == "nesso_comparison"]
    printed = t.pivot(index="row_label", columns="column", values="printed")
    for model, r in printed.iterrows():
        mean = (Decimal(r["Media EN"]) + Decimal(r["Media IT"])) / 2
        assert mean.quantize(Decimal("0.0001"), ROUND_HALF_UP) == Decimal(r["Media Totale"]), model


# --- transcription, cell by cell against the report --------------------------------------------

def report_tables():
    """The seven tables of sections 6-7 of the report, in printed order (None if absent)."""
    if not paths.DEFAULT_REPORT_SOURCE.is_file():
        return None
    doc = parse(paths.DEFAULT_REPORT_SOURCE.read_text(encoding="utf-8"))
    return [t for t in doc.tables if t.headings and t.headings[0].startswith(("6.", "7."))]


def mismatches(df, tables):
    """Every difference between the CSV and the printed tables, as readable strings."""
    problems = []
    for (tid, info), table in zip(published.TABLES.items(), tables):
        t = df[df["table_id"] == tid].set_index(["row_order", "col_order"])
        if table.headings[0] != info.section or info.title not in table.headings:
            problems.append(f"{tid}: table at line {table.line} is under {table.headings}")
        label_cols = set(range(len(table.header))) - set(t.index.get_level_values(1))
        if len(label_cols) != 1:
            problems.append(f"{tid}: expected one row-label column, got {sorted(label_cols)}")
            continue
        label_col = label_cols.pop()
        if published.wide(df, tid).index.name != table.header[label_col]:
            problems.append(f"{tid}: row-label header is {table.header[label_col]!r}")
        expected = {(r, c) for r in range(len(table.rows)) for c in range(len(table.header))}
        if set(t.index) != expected - {(r, label_col) for r in range(len(table.rows))}:
            problems.append(f"{tid}: CSV cells do not cover the printed table")
        for r, (row, line) in enumerate(zip(table.rows, table.row_lines)):
            for c, cell in enumerate(row):
                if c == label_col or (r, c) not in t.index:
                    continue
                got = t.loc[(r, c)]
                for col, want in [("printed", cell), ("column", table.header[c]),
                                  ("row_label", row[label_col]), ("line", line)]:
                    if got[col] != want:
                        problems.append(f"{tid} line {line} col {c}: {col} {got[col]!r} != {want!r}")
    return problems


def test_transcription_matches_report(df):
    tables = report_tables()
    if tables is None:
        pytest.skip(f"report source {paths.DEFAULT_REPORT_SOURCE} not found: "
                    "cannot check the transcription cell by cell")
    assert len(tables) == len(published.TABLES) == 7
    assert mismatches(df, tables) == []


def test_transcription_check_catches_changes(df):
    tables = report_tables()
    if tables is None:
        pytest.skip(f"report source {paths.DEFAULT_REPORT_SOURCE} not found")
    for col, new in [("printed", "0.2530"), ("line", 999), ("column", "mmlu_it"),
                     ("row_label", "v2-96k")]:
        changed = df.copy()
        changed.loc[0, col] = new
        assert mismatches(changed, tables), col
    assert mismatches(df.drop(index=5), tables)
