"""Stage 07 plots: the report's figures, regenerated from the transcribed tables (and this run's results).

Every figure function takes the tidy frame of ``published.load()`` (this run's results come in the
same format with ``source == "this run"``) and returns a matplotlib ``Figure`` built without pyplot,
so nothing here picks a backend (the shared drawing helpers are in ``zagreus_utils.results.figures``).
``build_all`` writes every figure and styled table of a set of languages plus an ``outputs.json``
index that the HTML report embeds from; ``run(ctx)`` is the stage the notebook ``07_plots`` calls.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import blended_transform_factory

from ..pipeline.context import StageContext, StageResult
from ..pipeline.errors import ZagreusError
from ..pipeline.outputs import StageOutputs
from ..pipeline.spec import ENGLISH, language_names
from ..results import published, tables
from ..results.benchmarks import (CHANCE, CHOICES, DISPLAY, FAMILY_COLORS, FAMILY_MARKERS,  # noqa: F401 (re-exported)
                                  SERIES_COLORS, benchmark_family, chance_label, chance_level)
from ..results.figures import (MISSING_DY, MISSING_Y0, average_columns, clean, grouped_barh, missing_label,
                               missing_room, new_figure, present, published_rows, run_only, score_rows,
                               section_number, step_axis, table_rows, value_label_axis, value_limits, wide_table)



def _chance_or_none(task) -> float | None:
    try:
        return chance_level(task)
    except ZagreusError:
        return None


# ---------------------------------------------------------------------------------------------
# Selecting tidy rows


def _series(rows: pd.DataFrame) -> list[dict]:
    """One entry per (non-average) task of a progression table, in printed column order."""
    rows = rows[~rows["is_average"].astype(bool)]
    rows = rows[rows["task"].map(present)]
    out = []
    order = rows.groupby(["task", "metric"], dropna=False, sort=False)["col_order"].min().sort_values(kind="stable")
    for (task, metric) in order.index:
        sel = rows[(rows["task"] == task) & ((rows["metric"] == metric) if present(metric) else ~rows["metric"].map(present))]
        sel = sel[sel["checkpoint_step"].notna()]
        sel = sel.assign(step=sel["checkpoint_step"].astype("float64")).sort_values("step")
        sel = sel.groupby("step", as_index=False).first()
        family = benchmark_family(task)
        shots = sel["n_shot"].dropna() if "n_shot" in sel else pd.Series(dtype="float64")
        out.append({
            "task": str(task),
            "metric": str(metric) if present(metric) else None,
            "family": family,
            "n_shot": int(shots.iloc[0]) if len(shots) else None,
            "column": str(sel["column"].iloc[0]) if len(sel) else str(task),
            "steps": sel["step"].to_numpy(),
            "values": sel["value"].astype("float64").to_numpy(),
        })
    return out


def _series_label(s: dict) -> str:
    name = DISPLAY.get(s["family"], s["task"])
    detail = [s["task"]]
    if s["metric"]:
        detail.append(s["metric"])
    if s["n_shot"] is not None:
        detail.append(f"{s['n_shot']}-shot")
    return f"{name} ({', '.join(detail)})"


def _model_name(rows: pd.DataFrame, language: str) -> str:
    """The report's name for the model: its table heading (``Zagreus-0.4B-ita-base``), else the
    model column, else ``Zagreus-0.4B-<lang>``."""
    titles = [str(t) for t in rows.get("table_title", []) if present(t)]
    if titles and titles[0].lower().startswith("zagreus"):
        return re.sub(r"\s*\(.*\)\s*$", "", titles[0])
    models = [str(m) for m in rows.get("model", []) if present(m)]
    if len(set(models)) == 1:
        return models[0]
    return f"Zagreus-0.4B-{language}"


def _draw_progression(ax, series: list[dict], scale: float, ylim: tuple[float, float]) -> list:
    """Lines + markers per benchmark, missing values as crosses on the bottom edge; returns notes."""
    bottom_edge = blended_transform_factory(ax.transData, ax.transAxes)
    notes = []
    for i, s in enumerate(series):
        color = FAMILY_COLORS.get(s["family"], SERIES_COLORS[i % len(SERIES_COLORS)])
        marker = FAMILY_MARKERS.get(s["family"], "D")
        x = s["steps"] / scale
        y = s["values"]
        ok = ~pd.isna(y)
        # NaN breaks the line: a value the report does not give is not interpolated.
        line, = ax.plot(x, y, marker=marker, color=color, lw=1.8, ms=6, label=_series_label(s))
        line.set_gid(f"series:{s['task']}")
        missing = x[~ok]
        if len(missing):
            # Stacked per series so crosses of different benchmarks stay distinguishable.
            ys = [MISSING_Y0 + MISSING_DY * i] * len(missing)
            mk, = ax.plot(missing, ys, linestyle="none", marker="x", ms=8, mew=2, color=color,
                          transform=bottom_edge, clip_on=False, label="_nolegend_")
            mk.set_gid(f"missing:{s['task']}")
            steps = ", ".join(f"{v:g}k" if scale == 1000 else f"{v:g}" for v in missing)
            notes.append((DISPLAY.get(s["family"], s["task"]), steps))
    missing_x: dict[float, int] = {}
    for i, s in enumerate(series):
        for x in s["steps"][pd.isna(s["values"])] / scale:
            missing_x[float(x)] = max(missing_x.get(float(x), 0), i)
    for x, top in missing_x.items():
        ax.axvline(x, color="#bbbbbb", lw=0.8, ls=":", zorder=0)
        ax.annotate("not reported", (x, MISSING_Y0 + MISSING_DY * top), xycoords=bottom_edge,
                    xytext=(7, 0), textcoords="offset points", va="center", ha="left", fontsize=8,
                    color="#555555", gid="missing-label")
    ax.set_ylim(*ylim)
    ax.grid(True, axis="y", color="#e5e5e5", lw=0.8)
    ax.set_axisbelow(True)
    ax.set_ylabel("accuracy")
    return notes


def _draw_chance(ax, series: list[dict]) -> list[tuple[Line2D, str]]:
    by_level: dict[float, list[str]] = {}
    for s in series:
        level = _chance_or_none(s["task"])
        if level is not None:
            name = DISPLAY.get(s["family"], s["task"])
            names = by_level.setdefault(level, [])
            if name not in names:
                names.append(name)
    handles = []
    right_edge = blended_transform_factory(ax.transAxes, ax.transData)
    for level, names in sorted(by_level.items()):
        line = ax.axhline(level, ls="--", lw=1.2, color="#555555", zorder=1)
        line.set_gid(f"chance:{level}")
        ways = {CHOICES.get(benchmark_family(n.lower()), None) for n in names}
        way = f"{ways.pop()}-way " if len(ways) == 1 and None not in ways else ""
        label = f"chance {level:g} ({', '.join(names)}: {way}multiple choice)"
        ax.text(1.01, level, f"chance\n{level:g}", transform=right_edge, ha="left", va="center",
                fontsize=8, color="#555555", clip_on=False)
        handles.append((line, label))
    return handles


def progression_figure(df: pd.DataFrame, language: str, run_df: pd.DataFrame | None = None) -> Figure:
    """Checkpoint progression of one language: accuracy per benchmark against training step.

    With ``run_df`` (this run's results, same tidy format) a second panel beside the published one
    shows this run's checkpoints on their own step scale, with the same y range.
    """
    table_id = f"{language}_progression"
    rows = table_rows(published_rows(df), table_id)
    series = _series(rows)
    run_series: list[dict] = []
    run = run_only(run_df)
    if run is not None:
        sel = run[run["table_id"] == table_id] if "table_id" in run.columns else run.iloc[0:0]
        if sel.empty and "language" in run.columns:
            sel = run[run["language"] == language]
        run_series = _series(sel) if len(sel) else []

    all_values = [v for s in series + run_series for v in s["values"]]
    chances = [c for c in (_chance_or_none(s["task"]) for s in series + run_series) if c is not None]
    room = max(missing_room(series), missing_room(run_series))
    ylim = value_limits(all_values, chances, bottom_room=room)

    two = bool(run_series)
    fig = new_figure((13.5 if two else 10, 5.2))
    axes = fig.subplots(1, 2, sharey=True) if two else [fig.subplots()]
    ax = axes[0]
    scale = step_axis(ax, [v for s in series for v in s["steps"]])
    notes = _draw_progression(ax, series, scale, ylim)
    chance_handles = _draw_chance(ax, series)
    ax.set_title("published (tech report, section 6)", fontsize=10)

    handles = [ln for ln in ax.get_lines() if (ln.get_gid() or "").startswith("series:")]
    labels = [h.get_label() for h in handles]
    for line, label in chance_handles:
        handles.append(line)
        labels.append(label)

    if two:
        rax = axes[1]
        rscale = step_axis(rax, [v for s in run_series for v in s["steps"]])
        run_notes = _draw_progression(rax, run_series, rscale, ylim)
        run_chance = _draw_chance(rax, run_series)
        rax.set_title("this run", fontsize=10)
        rax.tick_params(labelleft=True)
        for line in rax.get_lines():
            if (line.get_gid() or "").startswith("series:"):
                label = f"this run: {line.get_label()}"
                if label not in labels:
                    handles.append(line)
                    labels.append(label)
        for line, label in run_chance:
            if label not in labels:
                handles.append(line)
                labels.append(label)
    else:
        run_notes = []
    if notes or run_notes:
        text = []
        if notes:
            text.append(missing_label(notes))
        if run_notes:
            text.append("this run: " + missing_label(run_notes))
        handles.append(Line2D([], [], ls="none", marker="x", ms=8, mew=2, color="#555555"))
        labels.append("not reported (“—”, crosses on the bottom edge): " + "; ".join(text))

    model = _model_name(rows, language)
    lang_name = language_names().get(language, language)
    fig.suptitle(f"{model}: {lang_name} checkpoint progression", fontsize=13)
    legend = fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=9, frameon=False)
    legend.set_gid("legend")
    return fig


def leaderboard_figure(df: pd.DataFrame) -> Figure:
    """The Portuguese leaderboard (lm-evaluation-harness-pt): models side by side on every task."""
    rows = score_rows(table_rows(published_rows(df), "por_leaderboard"))
    n_tasks = rows.loc[~rows["is_average"].astype(bool), "column"].nunique()
    names = {}
    for column, sel in rows.groupby("column", sort=False):
        first = sel.iloc[0]
        if bool(first["is_average"]):
            names[column] = f"{clean(column)}\n(average of {n_tasks})"
        else:
            detail = " · ".join(str(v) for v in (first["task"], first["metric"]) if present(v))
            names[column] = f"{clean(column)}\n{detail}" if detail else clean(column)
    averages = {names[c] for c in average_columns(rows)}
    wide = wide_table(rows)
    wide.index = [clean(i) for i in wide.index]
    wide.columns = [names[c] for c in wide.columns]
    fig = new_figure((10, 10.5))
    ax = fig.subplots()
    grouped_barh(ax, wide, ["#0072B2", "#56B4E9", "#E69F00"], averages)
    value_label_axis(ax, float(wide.max().max()))
    ax.set_xlabel("score (each task's leaderboard metric: accuracy, F1-macro or Pearson; higher is better)")
    info = rows.iloc[0]
    fig.suptitle(f"Portuguese leaderboard (lm-evaluation-harness-pt): {' vs '.join(wide.index)}", fontsize=12)
    ax.set_title(f"{clean(info['table_title'])} table, tech report section {section_number(info['section'])}; "
                 f"shaded group = the printed average over the {n_tasks} tasks", fontsize=9.5)
    fig.legend(loc="outside lower center", ncols=len(wide.index), fontsize=10, frameon=False)
    return fig


def nesso_figure(df: pd.DataFrame) -> Figure:
    """Post-trained comparison (section 7): English and Italian panels, Open-Nesso in the Italian one."""
    pub = published_rows(df)
    rows = score_rows(table_rows(pub, "nesso_comparison"))
    wide = wide_table(rows)
    open_rows = score_rows(pub[pub["table_id"] == "open_nesso"])
    column_info = rows.drop_duplicates("column").set_index("column")
    overall = [c for c in wide.columns
               if bool(column_info.loc[c, "is_average"]) and not present(column_info.loc[c, "language"])]

    def family_of(column: str, table_rows: pd.DataFrame) -> str:
        sel = table_rows[table_rows["column"] == column]
        if len(sel) and bool(sel["is_average"].iloc[0]):
            return "average"
        task = [t for t in sel["task"] if present(t)]
        fam = benchmark_family(task[0]) if task else benchmark_family(column)
        return fam if fam in DISPLAY else benchmark_family(column)

    models = [clean(m) for m in wide.index]
    fig = new_figure((15, 8.5))
    axes = fig.subplots(1, 2)
    colors = ["#E69F00", "#0072B2", "#56B4E9", "#999999", "#009E73"]
    max_value = float(wide.max().max())
    comparison = published.TABLES["nesso_comparison"]
    names = language_names()
    for ax, lang in zip(axes, comparison.languages):
        title = f"{names.get(lang, lang)} benchmarks"
        columns = [c for c in wide.columns if column_info.loc[c, "language"] == lang]
        families = [family_of(c, rows) for c in columns]
        panel = wide[columns].copy()
        panel.index = models
        panel.columns = [f"{DISPLAY['average']}\n({clean(c)})" if f == "average" else DISPLAY.get(f, clean(c))
                         for f, c in zip(families, columns)]
        hatch = ()
        if lang in published.TABLES["open_nesso"].languages and len(open_rows):
            open_wide = wide_table(open_rows)
            for label in open_wide.index:
                entry = {}
                for column in open_wide.columns:
                    fam = family_of(column, open_rows)
                    key = next((c for c in panel.columns if c.split("\n")[0] == DISPLAY.get(fam, clean(column))),
                               clean(column))
                    entry[key] = open_wide.loc[label, column]
                name = f"{clean(label)} (Open-Nesso)"
                panel.loc[name] = pd.Series(entry).reindex(panel.columns)
                hatch = (name,)
                max_value = max(max_value, float(open_wide.max().max()))
        grouped_barh(ax, panel, colors, {c for c in panel.columns if c.startswith(DISPLAY["average"])},
                      hatch_rows=hatch)
        # Chance level per benchmark group: a dashed segment spanning that group's bars.
        for g, column in enumerate(panel.columns):
            level = CHANCE.get(benchmark_family(column.split("\n")[0]))
            if level is not None:
                ax.vlines(level, g - 0.42, g + 0.42, colors="#555555", linestyles="--", lw=1.1, zorder=2.5,
                          gid=f"chance:{column}")
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("score (IFEval: prompt-level strict accuracy; others: accuracy)")
    for ax in axes:
        value_label_axis(ax, max_value)

    handles, labels = axes[1].get_legend_handles_labels()
    handles.append(Line2D([], [], ls="--", color="#555555"))
    labels.append(chance_label())
    handles.append(Patch(facecolor="#f4f4f4", edgecolor="#cccccc"))
    labels.append("shaded group: the printed average of the panel's four tasks")
    note = []
    if overall:
        totals = " · ".join(f"{m} {wide.iloc[i][overall[0]]:.4f}" for i, m in enumerate(models))
        note.append(f"{clean(overall[0])} (printed overall average, EN+IT): {totals}")
    if len(open_rows):
        note.append("Open-Nesso (hatched; its own table) has no IFEval result: "
                    "its average is over the three other Italian tasks")
    # The notes go in the legend's title so the layout engine keeps them clear of everything else.
    legend = fig.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=10, frameon=False,
                        title="\n".join(note) or None, title_fontsize=9.5)
    legend.set_gid("legend")
    fig.suptitle("Post-trained models (tech report, section 7): Nesso vs comparable small models", fontsize=13)
    return fig


# ---------------------------------------------------------------------------------------------
# Writing


def run_frame(run_results) -> pd.DataFrame | None:
    """This run's results as one tidy frame: from a frame, a mapping language -> frame, or a list."""
    if run_results is None:
        return None
    if isinstance(run_results, pd.DataFrame):
        return run_results if len(run_results) else None
    if isinstance(run_results, Mapping):
        frames = [f for f in run_results.values() if f is not None and len(f)]
        return pd.concat(frames, ignore_index=True) if frames else None
    frames = [f for f in run_results if f is not None and len(f)]
    return pd.concat(frames, ignore_index=True) if frames else None


PLOT_LANGUAGES = published.PROGRESSION_LANGUAGES  # ita, spa, fra, por: the report's order


def language_list(value) -> list[str]:
    """Languages from a list or from text as papermill's ``-p`` passes it (``'["por"]'``,
    ``"ita,por"``, ``"ita por"``)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                raise ZagreusError(f"languages {value!r} is not a JSON list; write e.g. '[\"ita\", \"por\"]'") from None
        else:
            value = [v for v in re.split(r"[,\s]+", text) if v]
    return [str(v).strip() for v in value]


def parse_languages(value) -> list[str]:
    """:func:`language_list`, checked against the report's four languages and put in the
    report's order (ita, spa, fra, por), so tables and figures follow the report whatever the input."""
    languages = language_list(value)
    unknown = [lang for lang in languages if lang not in PLOT_LANGUAGES]
    if unknown or not languages:
        raise ZagreusError(f"languages {unknown or languages} not in the report; choose from {', '.join(PLOT_LANGUAGES)}")
    return [lang for lang in PLOT_LANGUAGES if lang in languages]


def _table_ids(languages) -> list[str]:
    """The published tables of these languages (a table comparing with English goes with its other
    language), in the report's order."""
    return [t.table_id for t in published.TABLES.values()
            if set(t.languages) - {ENGLISH[0]} <= set(languages)]


def build_all(out_dir, languages, run_results=None, published_df: pd.DataFrame | None = None) -> dict:
    """Write every figure and styled table for ``languages`` into ``out_dir`` plus ``outputs.json``.

    ``run_results``: this run's results in the tidy format (one frame, or a mapping language ->
    frame). ``published_df`` defaults to ``published.load()``. Paths in the index are relative to
    ``out_dir``; a table's ``line`` is the report line of its first row.
    """
    languages = parse_languages(languages)
    df = published.load() if published_df is None else published_df
    run = run_frame(run_results)
    out = StageOutputs(out_dir)

    table_ids = _table_ids(languages)
    for table_id in table_ids:
        info = tables.provenance(df, table_id)
        wide = tables.with_run_results(df, run, table_id)
        integers = tables.style_options(df, table_id)["integer_columns"]
        out.table(table_id, wide, info["title"], tables.styled_table(df, table_id, run),
                  csv=lambda path, wide=wide, integers=integers: tables.to_csv(wide, path, integer_columns=integers),
                  section=info["section"], line=info["line"])

    def add(fig_id: str, fig: Figure, title: str, caption: str, table_ids: list[str]):
        out.figure(fig_id, fig, title, caption, tables=table_ids)

    for lang in languages:
        table_id = f"{lang}_progression"
        fig = progression_figure(df, lang, run)
        with_run = len(fig.axes) > 1
        info = tables.provenance(df, table_id)
        caption = (f"Accuracy per benchmark against training step, from {info['caption']}. "
                   "Dashed: chance level; crosses on the bottom edge: not reported."
                   + (" Right panel: this run's checkpoints, on their own step scale." if with_run else ""))
        title = f"{_model_name(table_rows(df, table_id), lang)}: {language_names()[lang]} checkpoint progression"
        add(f"zagreus-{lang}", fig, title, caption, [table_id])
    if "por_leaderboard" in table_ids:
        info = tables.provenance(df, "por_leaderboard")
        models = ", ".join(clean(m) for m in wide_table(score_rows(table_rows(df, "por_leaderboard"))).index)
        add("por-garcia", leaderboard_figure(df), "Portuguese leaderboard (lm-evaluation-harness-pt)",
            f"{models} on the leaderboard's tasks and their average, from {info['caption']}.",
            ["por_leaderboard"])
    if "nesso_comparison" in table_ids:
        a, b = tables.provenance(df, "nesso_comparison"), tables.provenance(df, "open_nesso")
        add("nesso-comparison", nesso_figure(df), "Post-trained Nesso models against comparable models",
            f"English and Italian benchmarks per model, from {a['caption']}; Open-Nesso from {b['caption']}.",
            ["nesso_comparison", "open_nesso"])

    out.write(prune=True)  # files of an earlier build (other languages) do not linger
    return out.index


def _run_results(ctx: StageContext) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """This run's eval results per report language, where its eval stage finished (else a note)."""
    found, notes = {}, []
    for lang in ctx.languages:
        if lang not in PLOT_LANGUAGES:
            notes.append(f"{lang}: not in the report's tables")
            continue
        try:
            folder = ctx.upstream("eval", lang)
        except ZagreusError as exc:
            notes.append(f"{lang}: this run's results not shown ({exc})")
            continue
        found[lang] = published.load(folder / "results.csv")
    return found, notes


def run(ctx: StageContext) -> StageResult:
    """The stage: every table and figure of the report's four languages, with this run's results
    (the languages whose eval stage finished) beside the published ones, and the averages check."""
    df = published.load()
    run_results, notes = _run_results(ctx)
    index = build_all(ctx.out_dir, PLOT_LANGUAGES, run_results=run_results or None, published_df=df)
    run = run_frame(run_results)
    result = StageResult(ctx.out_dir, ctx.launcher, summary=index)
    result.notes += [f"published cells: {len(df)}; this run's results: {sorted(run_results) or 'none yet'}", *notes,
                     f"wrote {len(index['figures'])} figures and {len(index['tables'])} tables to {ctx.out_dir}"]
    for table in index["tables"]:
        result.tables[table["id"]] = tables.styled_table(df, table["id"], run)
    result.tables["averages"] = tables.averages_styled(df, [t["id"] for t in index["tables"]])
    result.extra["titles"] = {t["id"]: t["title"] for t in index["tables"]}
    result.extra["figures"] = [(f"{f['title']}\n\n{f['caption']}", ctx.out_dir / f["png"]) for f in index["figures"]]
    return result
