"""Figures and styled tables of the published results (zagreus_utils.stages.plots / zagreus_utils.results.tables).

Most tests run on a small synthetic frame in the tidy format of ``published.load()`` so they
do not depend on the transcription; one runs ``build_all`` over the real transcription.
"""

import json
import math
import re

import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from zagreus_utils.results import benchmarks
from zagreus_utils.stages import plots
from zagreus_utils.results import published, tables
from zagreus_utils.pipeline.errors import ZagreusError

S6, S7 = "6. Pre-trained evaluations", "7. Post-trained evaluations"


def _cells(table_id, title, section, language, header, rows, tasks, *, model=None, steps=None,
           languages=None, source="published", line=100):
    """Tidy rows for one table. ``header``: printed column headers; ``tasks``: per header a
    (task, metric, n_shot) or ``None`` for an average or "rank" for a rank column."""
    out = []
    for r, (label, values) in enumerate(rows):
        for c, (column, value) in enumerate(zip(header, values)):
            spec = tasks[c]
            task, metric, n_shot = spec if isinstance(spec, tuple) else ("", "rank" if spec == "rank" else "", None)
            out.append({
                "source": source, "table_id": table_id, "section": section, "table_title": title,
                "language": (languages[c] if languages else language), "row_label": label,
                "model": model or label, "checkpoint_step": steps[r] if steps else None,
                "column": column, "task": task, "metric": metric, "n_shot": n_shot,
                "is_average": spec is None, "value": value,
                "printed": "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}",
                "row_order": r, "col_order": c + 1, "line": line + r, "note": "",
            })
    return out


NAN = float("nan")


def _progression(lang, suffix, values, steps, line):
    header = [f"mmlu_{suffix} (acc)", f"hellaswag_{suffix}", f"arc_{suffix}", "Media"]
    tasks = [(f"m_mmlu_{suffix}", "acc", 5), (f"hellaswag_{suffix}", "acc_norm", 0),
             (f"arc_{suffix}", "acc_norm", 0), None]
    rows = [(f"{s // 1000}k", v) for s, v in zip(steps, values)]
    return _cells(f"{lang}_progression", f"Zagreus-0.4B-{lang}-base", S6, lang, header, rows, tasks,
                  model=f"zagreus-0.4B-{lang}", steps=steps, line=line)


def _frame(rows):
    df = pd.DataFrame(rows)
    for col in ("checkpoint_step", "n_shot"):
        df[col] = pd.to_numeric(df[col]).astype("Int64")
    df["value"] = df["value"].astype(float)
    df["is_average"] = df["is_average"].astype(bool)
    return df


@pytest.fixture(scope="module")
def synthetic():
    rows = []
    # Italian: HellaSwag and ARC not reported at 200k; one MMLU value well below chance.
    rows += _progression("ita", "it", [[0.25, 0.33, 0.26, 0.28], [0.20, NAN, NAN, 0.20],
                                       [0.26, 0.37, 0.27, 0.30]], [100_000, 200_000, 300_000], 10)
    rows += _progression("spa", "es", [[0.25, 0.41, 0.27, 0.31], [0.26, 0.43, 0.28, 0.32]],
                         [150_000, 500_000], 20)
    rows += _progression("fra", "fr", [[0.26, NAN, NAN, 0.26], [0.27, 0.42, 0.28, 0.32]],
                         [130_000, 700_000], 30)
    rows += _progression("por", "pt", [[0.27, 0.37, 0.27, 0.30], [0.27, 0.39, 0.28, 0.31]],
                         [150_000, 580_000], 40)
    rows += _cells("por_leaderboard", "lm-evaluation-harness-pt", S6, "por",
                   ["Rank", "RTE", "ENEM", "**Media**"],
                   [("**zagreus 483k**", [1, 0.46, 0.21, 0.335]), ("**Qwen3-0.6B-Base**", [2, 0.33, 0.01, 0.17])],
                   ["rank", ("assin2_rte", "f1_macro", None), ("enem_challenge", "acc", None), None], line=50)
    rows += _cells("nesso_comparison", S7, S7, "", ["IFEval EN", "ARC_EN", "Media EN", "IFEval IT", "MMLU_IT",
                                                     "Media IT", "Media Totale"],
                   [("Qwen/Qwen3-0.6B", [0.28, 0.34, 0.31, 0.31, 0.40, 0.355, 0.3325]),
                    ("nesso-350M-sft-v0.6", [0.35, 0.30, 0.325, 0.30, 0.29, 0.295, 0.31])],
                   [("ifeval", "prompt_level_strict_acc", 0), ("arc", "acc_norm", 0), None,
                    ("ifeval-ita", "prompt_level_strict_acc", 0), ("m_mmlu_it", "acc", 5), None, None],
                   languages=["eng", "eng", "eng", "ita", "ita", "ita", ""], line=60)
    rows += _cells("open_nesso", "Open-Nesso-0.4B Evaluation", S7, "ita", ["mmlu_it", "arc_it", "Media"],
                   [("giux78/open-zagreus-350M-sft", [0.25, 0.30, 0.275])],
                   [("m_mmlu_it", "acc", 5), ("arc_it", "acc_norm", 0), None], line=70)
    return _frame(rows)


@pytest.fixture(scope="module")
def run_ita():
    """This run's results for Italian, in the same tidy format (a small step scale)."""
    rows = _cells("ita_progression", "smoke", "", "ita", ["mmlu_it (acc)", "hellaswag_it", "arc_it", "Media"],
                  [("step 50", [0.21, 0.24, NAN, 0.225]), ("step 100", [0.23, 0.26, 0.22, 0.237])],
                  [("m_mmlu_it", "acc", 5), ("hellaswag_it", "acc_norm", 0), ("arc_it", "acc_norm", 0), None],
                  model="smoke", steps=[50, 100], source="this run", line=0)
    return _frame(rows)


def _bold_cells(html):
    """(row, col) of the cells the Styler's CSS makes bold."""
    cells = set()
    for selectors, body in re.findall(r"([^{}]+)\{([^}]*)\}", html):
        if "font-weight: bold" in body:
            cells |= {(int(r), int(c)) for r, c in re.findall(r"_row(\d+)_col(\d+)", selectors)}
    return cells


def _draw(fig):
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _data_lines(ax):
    return [ln for ln in ax.get_lines() if (ln.get_gid() or "").startswith("series:")]


# --- chance levels ---------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["mmlu", "m_mmlu_it", "m_mmlu_pt", "hellaswag", "hellaswag_es", "arc_fr",
                                  "arc_it", "ARC", "HS_EN", "MMLU_IT", "arc_challenge"])
def test_chance_level_known_tasks(task):
    assert benchmarks.chance_level(task) == 0.25


def test_benchmark_table_gives_chance_choices_and_the_legend():
    assert benchmarks.CHANCE == {"mmlu": 0.25, "arc": 0.25, "hellaswag": 0.25}
    assert benchmarks.CHOICES == {"mmlu": 4, "arc": 4, "hellaswag": 4}
    assert benchmarks.HELDOUT_STYLES == ("mmlu", "arc", "hellaswag")
    assert benchmarks.STYLE_METRIC == {"mmlu": "acc", "arc": "acc_norm", "hellaswag": "acc_norm"}
    assert benchmarks.chance_label() == "chance 0.25 (4-way multiple choice: ARC, HellaSwag, MMLU)"


@pytest.mark.parametrize("task", ["ifeval", "assin2_rte", "gsm8k", "Media"])
def test_chance_level_unknown_task_is_a_clear_error(task):
    with pytest.raises(ZagreusError, match=rf"{task!r}.*BENCHMARKS in zagreus_utils/results/benchmarks.py"):
        benchmarks.chance_level(task)


# --- progression figures ---------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["ita", "spa", "fra", "por"])
def test_progression_ylim_holds_data_and_chance(synthetic, run_ita, lang):
    fig = plots.progression_figure(synthetic, lang, run_ita if lang == "ita" else None)
    axes = fig.axes
    assert len(axes) == (2 if lang == "ita" else 1)
    values = synthetic.loc[(synthetic.table_id == f"{lang}_progression") & ~synthetic.is_average, "value"].dropna()
    for ax in axes:
        lo, hi = ax.get_ylim()
        ys = [y for ln in _data_lines(ax) for y in ln.get_ydata() if not math.isnan(y)]
        assert ys, "no data drawn"
        assert lo < min(ys) and max(ys) < hi
        assert lo < 0.25 < hi
        chance = [ln for ln in ax.get_lines() if (ln.get_gid() or "").startswith("chance:")]
        assert [float(ln.get_gid().split(":")[1]) for ln in chance] == [0.25]
    published_ys = [y for ln in _data_lines(axes[0]) for y in ln.get_ydata() if not math.isnan(y)]
    assert sorted(published_ys) == sorted(values.tolist())


def test_progression_x_axis_in_thousands(synthetic):
    fig = plots.progression_figure(synthetic, "ita")
    ax = fig.axes[0]
    xs = sorted({x for ln in _data_lines(ax) for x in ln.get_xdata()})
    assert xs == [100, 200, 300]
    assert "thousand" in ax.get_xlabel()
    assert "Italian" in fig.get_suptitle() and "Zagreus-0.4B-ita" in fig.get_suptitle()


def test_progression_marks_missing_values(synthetic):
    fig = plots.progression_figure(synthetic, "ita")
    ax = fig.axes[0]
    marks = {ln.get_gid(): list(ln.get_xdata()) for ln in ax.get_lines()
             if (ln.get_gid() or "").startswith("missing:")}
    assert marks == {"missing:hellaswag_it": [200.0], "missing:arc_it": [200.0]}
    legend_text = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("not reported" in t and "200k" in t and "HellaSwag" in t for t in legend_text)
    # the crosses sit in the free band at the bottom, below every value
    renderer = _draw(fig)
    lowest = min(y for ln in _data_lines(ax) for y in ln.get_ydata() if not math.isnan(y))
    lowest_px = ax.transData.transform((0, lowest))[1]
    for ln in ax.get_lines():
        if (ln.get_gid() or "").startswith("missing:"):
            assert ln.get_window_extent(renderer).y1 < lowest_px
    # Spanish has nothing missing: no crosses
    fig = plots.progression_figure(synthetic, "spa")
    assert not [ln for ln in fig.axes[0].get_lines() if (ln.get_gid() or "").startswith("missing:")]


def _assert_legend_clear(fig):
    renderer = _draw(fig)
    legends = fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    assert legends, "figure has no legend"
    fig_box = fig.bbox
    for legend in legends:
        box = legend.get_window_extent(renderer)
        assert fig_box.x0 - 1 <= box.x0 and box.x1 <= fig_box.x1 + 1, "legend cut off by the figure edge"
        assert fig_box.y0 - 1 <= box.y0 and box.y1 <= fig_box.y1 + 1, "legend cut off by the figure edge"
        for ax in fig.axes:
            assert not box.overlaps(ax.get_window_extent(renderer)), f"legend covers the axes {ax.get_title()!r}"


def test_legends_do_not_cover_data(synthetic, run_ita):
    _assert_legend_clear(plots.progression_figure(synthetic, "ita", run_ita))
    _assert_legend_clear(plots.progression_figure(synthetic, "fra"))
    _assert_legend_clear(plots.leaderboard_figure(synthetic))
    _assert_legend_clear(plots.nesso_figure(synthetic))


def test_legend_check_detects_an_overlap(synthetic):
    fig = plots.progression_figure(synthetic, "spa")
    fig.axes[0].legend(loc="center")  # a legend in the middle of the data must be caught
    with pytest.raises(AssertionError):
        _assert_legend_clear(fig)


def test_run_results_get_their_own_panel(synthetic, run_ita):
    fig = plots.progression_figure(synthetic, "ita", run_ita)
    run_ax = fig.axes[1]
    assert run_ax.get_title() == "this run"
    xs = sorted({x for ln in _data_lines(run_ax) for x in ln.get_xdata()})
    assert xs == [50, 100]  # its own step scale, not thousands
    assert fig.axes[0].get_ylim() == run_ax.get_ylim()


# --- bar figures -----------------------------------------------------------------------------


def test_leaderboard_bars_and_labels(synthetic):
    fig = plots.leaderboard_figure(synthetic)
    ax = fig.axes[0]
    widths = sorted(round(p.get_width(), 4) for p in ax.patches if p.get_height() < 0.5)
    assert widths == sorted([0.46, 0.21, 0.335, 0.33, 0.01, 0.17])  # no bar for the rank
    labels = {t.get_text() for t in ax.texts}
    assert {"0.4600", "0.0100", "0.3350"} <= labels
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    assert ticks[0].startswith("RTE") and ticks[-1].startswith("Media") and "**" not in "".join(ticks)


def test_nesso_figure_panels_and_open_nesso(synthetic):
    fig = plots.nesso_figure(synthetic)
    en, it = fig.axes
    assert en.get_title().startswith("English") and it.get_title().startswith("Italian")
    it_labels = it.get_legend_handles_labels()[1]
    assert any("open-zagreus" in label for label in it_labels)
    assert not any("open-zagreus" in label for label in en.get_legend_handles_labels()[1])
    assert any(t.get_text() == "not reported" for t in it.texts)  # Open-Nesso has no IFEval
    assert any("Average" in t.get_text() for t in it.get_yticklabels())


# --- tables ----------------------------------------------------------------------------------


def test_styled_table_format_missing_best_and_escape():
    wide = pd.DataFrame({"a": [0.25, float("nan"), 0.3], "b<x>": [0.5, 0.4, 0.1]},
                        index=["v1", "<script>", "v3"])
    html = tables.render_html(tables.styled(wide, "Caption & <source>", chance=0.25))
    assert "0.2500" in html and "0.3000" in html
    assert "—" in html and "#8a8a8a" in html  # missing shown and greyed
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert "b&lt;x&gt;" in html
    assert "Caption &amp; &lt;source&gt;" in html
    assert _bold_cells(tables.render_html(tables.styled(wide, "c"))) == {(2, 0), (0, 1)}
    assert _bold_cells(tables.render_html(tables.styled(wide, "c", highlight_max=False))) == set()


def test_with_run_results_appends_labelled_rows(synthetic, run_ita):
    base = tables.with_run_results(synthetic, None, "ita_progression")
    pd.testing.assert_frame_equal(base, published.wide(synthetic, "ita_progression"))
    both = tables.with_run_results(synthetic, run_ita, "ita_progression")
    assert list(both.columns) == list(base.columns)
    assert list(both.index[: len(base)]) == list(base.index)
    assert list(both.index[len(base):]) == ["this run · step 50", "this run · step 100"]
    assert both.loc["this run · step 100", "mmlu_it (acc)"] == 0.23
    assert math.isnan(both.loc["this run · step 50", "arc_it"])
    html = tables.render_html(tables.styled_table(synthetic, "ita_progression", run_ita))
    assert "this run · step 50" in html and "#e8f1fb" in html
    # run rows of another table are not appended
    assert len(tables.with_run_results(synthetic, run_ita, "spa_progression")) == 2


def test_leaderboard_rank_is_an_integer_never_highlighted(synthetic):
    styler = tables.styled_table(synthetic, "por_leaderboard")
    html = tables.render_html(styler)
    assert ">1<" in html.replace(" ", "") and "**" not in html
    bold = _bold_cells(html)
    assert bold and not any(col == 0 for _, col in bold)  # col 0 is Rank


# --- build_all -------------------------------------------------------------------------------


def _check_index(out, index):
    assert json.loads((out / "outputs.json").read_text(encoding="utf-8")) == index
    for fig in index["figures"]:
        assert set(fig) >= {"id", "title", "caption", "png", "svg", "tables"}
        png, svg = out / fig["png"], out / fig["svg"]
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
        assert b"<svg" in svg.read_bytes()[:2000]
        assert not fig["png"].startswith("/")
        assert set(fig["tables"]) <= {t["id"] for t in index["tables"]}
    for table in index["tables"]:
        html = (out / table["html"]).read_text(encoding="utf-8")
        assert "<table" in html and "<caption>" in html
        assert len(pd.read_csv(out / table["csv"])) >= 1


def test_build_all_writes_what_outputs_json_lists(tmp_path, synthetic, run_ita):
    index = plots.build_all(tmp_path, ["ita", "por"], run_results={"ita": run_ita}, published_df=synthetic)
    _check_index(tmp_path, index)
    assert [f["id"] for f in index["figures"]] == ["zagreus-ita", "zagreus-por", "por-garcia", "nesso-comparison"]
    assert [t["id"] for t in index["tables"]] == ["ita_progression", "por_progression", "por_leaderboard",
                                                  "nesso_comparison", "open_nesso"]
    ita_csv = pd.read_csv(tmp_path / "tables" / "ita_progression.csv")
    assert ita_csv.iloc[-1, 0] == "this run · step 100"


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_build_all_only_the_languages_asked_identical_again(tmp_path, synthetic):
    index = plots.build_all(tmp_path, ["por"], published_df=synthetic)
    assert [f["id"] for f in index["figures"]] == ["zagreus-por", "por-garcia"]
    assert [t["id"] for t in index["tables"]] == ["por_progression", "por_leaderboard"]
    first = _files(tmp_path)
    index = plots.build_all(tmp_path, ["spa"], published_df=synthetic)
    assert [t["id"] for t in index["tables"]] == ["spa_progression"]
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["zagreus-spa.png", "zagreus-spa.svg"]
    with pytest.raises(ZagreusError, match="deu"):
        plots.build_all(tmp_path / "x", ["deu"], published_df=synthetic)
    index = plots.build_all(tmp_path, '["por"]', published_df=synthetic)  # papermill -p passes text
    listed = {index_entry[k] for index_entry in index["figures"] for k in ("png", "svg")}
    listed |= {index_entry[k] for index_entry in index["tables"] for k in ("html", "csv")}
    assert set(_files(tmp_path)) == listed | {"outputs.json"}
    assert _files(tmp_path) == first  # same inputs, same bytes (no dates, random ids or leftovers)


@pytest.mark.parametrize("value, expected", [(["ita", "por"], ["ita", "por"]), ('["por"]', ["por"]),
                                             ("ita, spa", ["ita", "spa"]), ("fra por", ["fra", "por"])])
def test_parse_languages(value, expected):
    assert plots.parse_languages(value) == expected


@pytest.mark.parametrize("value", [[], "[por", ["eng"], "xx"])
def test_parse_languages_rejects(value):
    with pytest.raises(ZagreusError, match="languages"):
        plots.parse_languages(value)


def test_build_all_on_the_transcription(tmp_path):
    df = published.load()
    index = plots.build_all(tmp_path, ["por"])
    _check_index(tmp_path, index)
    by_id = {t["id"]: t for t in index["tables"]}
    for table_id, table in by_id.items():
        rows = df[df.table_id == table_id]
        assert table["line"] == rows["line"].min()
        assert table["section"] == rows["section"].iloc[0]
    fig = plots.progression_figure(df, "ita")
    marks = {ln.get_gid(): list(ln.get_xdata()) for ln in fig.axes[0].get_lines()
             if (ln.get_gid() or "").startswith("missing:")}
    assert marks == {"missing:hellaswag_it": [205.0], "missing:arc_it": [205.0]}
    _assert_legend_clear(fig)
    _assert_legend_clear(plots.nesso_figure(df))
