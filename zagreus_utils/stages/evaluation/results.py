"""The eval stage's results: lm-eval's JSON ingested into the report's tidy format, and the learning check.

:func:`ingest` turns the results JSON into the tidy format of ``report/published/results.csv``
(``source == "this run"``) plus provenance columns (stderr, chance level, n-shot, chat-template
flag, batch size, lm-eval version, model path, checkpoint step): ``results.csv`` holds the numbers
that go into the report's tables (``<lang>_progression``; ``nesso_comparison`` for the Italian SFT
model) and loads with ``published.load``; ``metrics.csv`` holds every number lm-eval reported.
:func:`learning_check` says whether the run learned.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd

from ...pipeline.errors import ZagreusError
from ...results.published import COLUMNS, DEFAULT_AVERAGES, TABLES, load, table_for
from ...results.benchmarks import STYLE_METRIC, benchmark_family, chance_level
from .evaluate import MARKER, EvalPlan, _call_dir, lm_eval_version
from .models import ModelEntry
from .tasks import ACCURACY_METRICS, BPB_METRIC, SuiteTask, calls

RESULTS_CSV = "results.csv"
METRICS_CSV = "metrics.csv"
LEARNING_JSON = "learning_check.json"
EXTRA_COLUMNS = [
    "stderr", "chance", "chat_template", "batch_size", "lm_eval_version", "model_path", "model_kind",
    "lm_eval_task", "filter", "limit", "n_samples", "profile", "run_language", "device", "dtype",
    "results_file", "evaluated_at", "headline",
]


def read_results_json(path: Path) -> dict:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ZagreusError(f"{path}: cannot read an lm-eval results JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict) or "configs" not in data:
        raise ZagreusError(f"{path}: not an lm-eval results JSON (no `results`/`configs`); "
                           "pass the results_<date>.json that lm-eval wrote")
    return data


def _float(value) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return out


def _samples(results_path: Path, task: str) -> list[dict]:
    date = results_path.stem[len("results_"):] if results_path.stem.startswith("results_") else ""
    path = results_path.parent / f"samples_{task}_{date}.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _bpb_stderr(samples: list[dict]) -> float:
    """Standard error of bits per byte (a ratio of sums) from lm-eval's per-document samples."""
    pairs = []
    for s in samples:
        v = s.get(BPB_METRIC)
        if isinstance(v, (list, tuple)) and len(v) == 2:
            pairs.append((float(v[0]), float(v[1])))
    n = len(pairs)
    if n < 2:
        return float("nan")
    total_ll, total_bytes = sum(p[0] for p in pairs), sum(p[1] for p in pairs)
    r = total_ll / total_bytes
    var = n / (n - 1) * sum((ll - r * b) ** 2 for ll, b in pairs) / total_bytes ** 2
    return math.sqrt(var) / math.log(2)


def _chance(task: SuiteTask, metric: str, samples: list[dict]) -> float:
    if metric not in ACCURACY_METRICS:
        return float("nan")
    try:
        return chance_level(task.name)
    except ZagreusError:
        pass
    counts = [len(s.get("filtered_resps") or s.get("resps") or []) for s in samples]
    counts = [c for c in counts if c > 0]
    return float(sum(1 / c for c in counts) / len(counts)) if counts else float("nan")


def _model_path_of(data: dict) -> str:
    args = (data.get("config") or {}).get("model_args")
    if isinstance(args, dict):
        return str(args.get("pretrained", ""))
    m = re.search(r"pretrained=([^,]+)", str(args or ""))
    return m.group(1) if m else ""


def ingest_file(path: Path, tasks: list[SuiteTask], model: ModelEntry | None = None) -> list[dict]:
    """One lm-eval results JSON -> one row per (task, metric) it reports, with provenance.

    ``tasks``: the suite tasks this file must hold; a file from another task set (or, with
    ``model``, of another model) is a clear error.
    """
    path = Path(path)
    data = read_results_json(path)
    results = data["results"]
    subtasks = {s for subs in (data.get("group_subtasks") or {}).values() for s in subs}
    expected = [t.task for t in tasks]
    missing = [t for t in expected if t not in results]
    foreign = sorted(set(results) - set(expected) - subtasks)
    if missing or foreign:
        raise ZagreusError(
            f"{path} holds lm-eval results for tasks {sorted(results)}, not this suite's {expected} "
            f"({'missing ' + ', '.join(missing) if missing else ''}{'; ' if missing and foreign else ''}"
            f"{'unexpected ' + ', '.join(foreign) if foreign else ''}): it comes from another task set. "
            "Move it out of the stage folder, or rerun the eval stage with --force")
    found_path = _model_path_of(data)
    if model is not None and found_path and Path(found_path).resolve() != Path(model.path).resolve() \
            and Path(found_path).name != Path(model.path).name:  # same folder name: a moved run folder
        raise ZagreusError(f"{path} holds results of model {found_path}, not of {model.path}; "
                           "rerun the eval stage with --force")
    config = data.get("config") or {}
    common = {
        "chat_template": bool(data.get("chat_template")),
        "batch_size": str(config.get("batch_size")),
        "lm_eval_version": str(data.get("lm_eval_version") or lm_eval_version()),
        "model_path": found_path or (model.path if model else ""),
        "limit": config.get("limit"),
        "device": str(config.get("device")),
        "results_file": str(path),
        "evaluated_at": str(data.get("date", "")),
    }
    rows = []
    for t in tasks:
        r = results[t.task]
        samples = _samples(path, t.task)
        keys = [k for k in r if "," in k and "_stderr," not in k]
        if not any(k.split(",")[0] == t.metric for k in keys):
            raise ZagreusError(f"{path}: task {t.task} has no metric {t.metric!r} "
                               f"(it has {sorted({k.split(',')[0] for k in keys})}); fix the suite's metric")
        n_samples = (data.get("n-samples") or {}).get(t.task, {})
        for metric_order, key in enumerate(keys):
            metric, _, filt = key.partition(",")
            value = _float(r[key])
            stderr = _float(r.get(f"{metric}_stderr,{filt}"))
            note = ""
            if metric == BPB_METRIC and math.isnan(stderr):
                stderr, note = _bpb_stderr(samples), "stderr from lm-eval's per-document samples (ratio estimator)"
            rows.append({
                **common, "lm_eval_task": t.task, "task": t.name, "metric": metric, "filter": filt,
                "headline": metric == t.metric, "value": value, "stderr": stderr,
                "chance": _chance(t, metric, samples), "n_shot": (data.get("n-shot") or {}).get(t.task, t.num_fewshot),
                "n_samples": n_samples.get("effective") if isinstance(n_samples, dict) else None,
                "language": t.language, "local": t.local, "note": note, "metric_order": metric_order,
            })
    return rows


def ingest(plan: EvalPlan, *, strict: bool = False) -> pd.DataFrame:
    """Every finished model's results as one long frame (all metrics); unfinished models are left
    out (``strict``: an error instead)."""
    rows = []
    for order, model in enumerate(plan.models):
        for call_id, _, _, tasks in calls(plan.tasks_for(model)):
            folder = _call_dir(plan, model, call_id)
            path = None
            if (folder / MARKER).is_file():
                name = json.loads((folder / MARKER).read_text()).get("results_file")
                path = folder / name if name else None
            if path is None or not path.is_file():
                if strict:
                    raise ZagreusError(f"no lm-eval results for {model.name} ({call_id}) in {folder}; "
                                       "run the eval stage")
                continue
            for row in ingest_file(path, tasks, model):
                row.update(model_name=model.name, model_kind=model.kind, checkpoint_step=model.step,
                           model_order=order, results_file=os.path.relpath(path, plan.out_dir))
                rows.append(row)
    return pd.DataFrame(rows)


def _placement(spec, kind: str, task: SuiteTask | None, row) -> str:
    """Which report table a headline number goes into ("" for none).

    The language's ``published_tables`` (configs/languages/<code>.yaml) say which tables it has;
    each table says which of this run's models it holds (:data:`TABLES`). Base checkpoints go to
    the table holding the language's own tasks (the ``evaluation.extra`` tasks to one holding
    those, e.g. Portugal's leaderboard); the SFT model to the table holding instruct models in the
    row's language (section 7's comparison, English and Italian), else to the base table as a
    row without a step. Bits per byte and English tasks of base checkpoints are in ``metrics.csv`` only.
    """
    if not row["headline"] or row["metric"] == BPB_METRIC:
        return ""
    own = spec.language.published_tables
    extra = task is not None and task.task in {t.task for t in spec.language.evaluation.extra}
    wanted = "instruct" if kind == "instruct" else "base_extra" if extra else "base"
    found = table_for(own, wanted, row["language"])
    if found or row["language"] != spec.language.code:
        return found
    return table_for(own, "base", row["language"]) or f"{spec.language.code}_progression"


def tidy(metrics: pd.DataFrame, spec, plan: EvalPlan) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(results, metrics)`` in the published tidy format (+ provenance columns).

    ``results``: the headline numbers placed in the report's tables, plus their averages (the
    report's ``Media``/``Average``; ``Media EN``/``Media IT``/``Media Totale`` for the comparison);
    ``metrics``: every number, ``table_id`` empty where it is not placed.
    """
    if metrics.empty:
        empty = pd.DataFrame(columns=COLUMNS + EXTRA_COLUMNS)
        return empty, empty
    tasks_by_kind = {k: {t.task: t for t in v} for k, v in plan.suites.items()}
    lang = spec.language.code
    out = []
    for _, r in metrics.iterrows():
        task = tasks_by_kind.get(r["model_kind"], {}).get(r["lm_eval_task"])
        names = list(tasks_by_kind.get(r["model_kind"], {}))
        col_order = (names.index(r["lm_eval_task"]) + 1 if task is not None else 0) * 100 + int(r["metric_order"])
        table = _placement(spec, r["model_kind"], task, r)
        sft = r["model_kind"] == "instruct"
        model_name = f"{spec.language.model_name}-sft" if sft else spec.language.model_name
        info = TABLES.get(table)
        out.append({
            "source": "this run", "table_id": table, "section": info.section if info else "",
            "table_title": f"{info.title}: this run ({spec.profile.name})" if info else f"this run ({spec.profile.name})",
            "language": r["language"], "row_label": r["model_name"], "model": model_name,
            "checkpoint_step": r["checkpoint_step"], "column": f"{r['task']} ({r['metric']})",
            "task": r["task"], "metric": r["metric"], "n_shot": r["n_shot"], "is_average": False,
            "value": r["value"], "printed": "" if pd.isna(r["value"]) else f"{r['value']:.4f}",
            "row_order": 1000 + int(r["model_order"]), "col_order": col_order,
            "line": 0, "note": r["note"] or ("held-out smoke task, configs/lm_eval/" + r["lm_eval_task"] + ".yaml"
                                              if r["local"] else f"lm-eval task {r['lm_eval_task']}"),
            "stderr": r["stderr"], "chance": r["chance"], "chat_template": r["chat_template"],
            "batch_size": r["batch_size"], "lm_eval_version": r["lm_eval_version"], "model_path": r["model_path"],
            "model_kind": r["model_kind"], "lm_eval_task": r["lm_eval_task"], "filter": r["filter"],
            "limit": r["limit"], "n_samples": r["n_samples"], "profile": spec.profile.name, "run_language": lang,
            "device": r["device"], "dtype": plan.dtype, "results_file": r["results_file"],
            "evaluated_at": r["evaluated_at"], "headline": bool(r["headline"]),
        })
    every = pd.DataFrame(out)
    placed = every[every["table_id"] != ""]
    averages = []
    for (table, row_order), rows in placed.groupby(["table_id", "row_order"], sort=False):
        groups = TABLES[table].averages if table in TABLES else DEFAULT_AVERAGES
        for k, (column, language) in enumerate(groups):
            language = lang if language is None else language
            sel = rows if not language else rows[rows["language"] == language]
            if sel.empty:
                continue
            first = sel.iloc[0]
            value = float(sel["value"].mean())
            se = math.sqrt(float((sel["stderr"].fillna(0) ** 2).sum())) / len(sel)
            chance = sel["chance"].mean() if sel["chance"].notna().all() else float("nan")
            averages.append({
                **first.to_dict(), "language": language, "column": column, "task": "", "metric": "",
                "lm_eval_task": "", "filter": "", "n_shot": pd.NA, "is_average": True, "value": value,
                "printed": f"{value:.4f}", "col_order": 10_000 + k, "stderr": se, "chance": chance,
                "n_samples": None, "note": f"mean of {len(sel)} cells: {', '.join(sel['task'])}",
            })
    results = pd.concat([placed, pd.DataFrame(averages)], ignore_index=True) if averages else placed.copy()
    every = pd.concat([every, pd.DataFrame(averages)], ignore_index=True) if averages else every
    for frame in (results, every):
        frame["checkpoint_step"] = pd.array(frame["checkpoint_step"], dtype="Int64")
        frame["n_shot"] = pd.array(pd.to_numeric(frame["n_shot"], errors="coerce"), dtype="Int64")
    order = COLUMNS + EXTRA_COLUMNS
    return results[order].reset_index(drop=True), every[order].reset_index(drop=True)


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    out = df.copy()
    out["is_average"] = out["is_average"].map(lambda v: "true" if bool(v) else "false")
    for col in ("chat_template", "headline"):
        out[col] = out[col].map(lambda v: "true" if bool(v) else "false")
    out.to_csv(path, index=False, encoding="utf-8", float_format="%.10g")
    return Path(path)


def load_results(path) -> pd.DataFrame:
    """This run's ``results.csv``/``metrics.csv`` with its provenance columns (types restored).

    ``results.csv`` is validated by ``published.load`` (the same checks as the published data).
    """
    path = Path(path)
    if not path.is_file():
        raise ZagreusError(f"{path}: no eval results; run the eval stage (zagreus run --stages eval)")
    raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    missing = [c for c in COLUMNS + EXTRA_COLUMNS if c not in raw.columns]
    if missing:
        raise ZagreusError(f"{path}: missing column(s) {', '.join(missing)}; rerun the eval stage")
    if (raw["table_id"] == "").any():  # metrics.csv: numbers outside the report's tables
        df = raw[COLUMNS].copy()
        for col, kind in [("checkpoint_step", "Int64"), ("n_shot", "Int64"), ("value", "float"),
                          ("row_order", "int"), ("col_order", "int"), ("line", "int")]:
            df[col] = pd.to_numeric(df[col].mask(df[col] == "")).astype(kind)
        df["is_average"] = df["is_average"] == "true"
    else:
        df = load(path)
    for col in EXTRA_COLUMNS:
        df[col] = raw[col].values
    for col in ("stderr", "chance"):
        df[col] = pd.to_numeric(df[col].mask(df[col] == ""), errors="coerce").astype(float)
    for col in ("chat_template", "headline"):
        df[col] = df[col] == "true"
    df["n_samples"] = pd.array(pd.to_numeric(df["n_samples"].mask(df["n_samples"] == ""), errors="coerce"),
                               dtype="Int64")
    return df


def learning_check(results: pd.DataFrame) -> dict:
    """Whether the run learned, from this run's metrics (``metrics.csv`` frame or ``tidy``'s).

    * accuracy: at the last base checkpoint, the mean held-out accuracy (headline metric of every
      multiple-choice task with a chance level) is above the mean chance level by more than its
      standard error (sqrt(sum se^2) / n); each task is reported too.
    * bits per byte: falls from the first to the last base checkpoint by more than the last value's
      standard error, on every bits-per-byte task (and whether it falls at every checkpoint).

    Random weights already score a little above chance on the held-out items (item bias: ~0.28
    pooled), so the accuracy criterion alone does not tell learning apart; the bits-per-byte one does.
    """
    df = results[(results["model_kind"] == "base") & results["checkpoint_step"].notna()
                 & ~results["is_average"].astype(bool)]
    out: dict[str, Any] = {"learning": False, "accuracy": None, "bits_per_byte": None, "summary": []}
    if df.empty:
        out["summary"].append("no base-checkpoint results: nothing to check")
        return out
    steps = sorted(int(s) for s in df["checkpoint_step"].dropna().unique())
    last = steps[-1]
    acc = df[df["metric"].isin(ACCURACY_METRICS) & df["chance"].notna() & (df["checkpoint_step"] == last)]
    acc = acc[acc.apply(_is_headline, axis=1)] if len(acc) else acc  # one metric per task
    per_task = []
    for _, r in acc.iterrows():
        per_task.append({"task": r["task"], "metric": r["metric"], "value": float(r["value"]),
                         "stderr": float(r["stderr"]), "chance": float(r["chance"]),
                         "above": bool(r["value"] - r["chance"] > r["stderr"])})
    acc_ok = False
    if per_task:
        n = len(per_task)
        mean = sum(t["value"] for t in per_task) / n
        chance = sum(t["chance"] for t in per_task) / n
        se = math.sqrt(sum(t["stderr"] ** 2 for t in per_task)) / n
        acc_ok = mean - chance > se
        out["accuracy"] = {"step": last, "mean": mean, "chance": chance, "stderr": se, "above_chance": acc_ok,
                           "margin_in_stderr": (mean - chance) / se if se > 0 else float("inf"),
                           "tasks": per_task}
        out["summary"].append(
            f"held-out accuracy at the last checkpoint (step {last}): mean {mean:.4f} over {n} tasks vs chance "
            f"{chance:.4f}, stderr {se:.4f}: {'above chance beyond its stderr' if acc_ok else 'NOT above chance beyond its stderr'}"
            f" ({sum(t['above'] for t in per_task)}/{n} tasks above on their own)")
    else:
        out["summary"].append("no multiple-choice accuracy with a chance level at the last checkpoint")
    bpb = df[df["metric"] == BPB_METRIC]
    bpb_ok = False
    if not bpb.empty:
        series = {}
        for task, rows in bpb.groupby("task"):
            rows = rows.sort_values("checkpoint_step")
            values = [float(v) for v in rows["value"]]
            se = float(rows["stderr"].iloc[-1]) if pd.notna(rows["stderr"].iloc[-1]) else 0.0
            series[task] = {"steps": [int(s) for s in rows["checkpoint_step"]], "values": values,
                            "stderr_last": se,
                            "falls": len(values) >= 2 and values[0] - values[-1] > se,
                            "monotone": len(values) >= 2 and all(b < a for a, b in zip(values, values[1:]))}
        bpb_ok = all(s["falls"] for s in series.values())
        out["bits_per_byte"] = {"falls": bpb_ok, "tasks": series}
        for task, s in series.items():
            trail = " → ".join(f"{v:.3f}" for v in s["values"])
            out["summary"].append(f"{task} bits per byte over steps {s['steps']}: {trail}: "
                                  + ("falls by more than its stderr" if s["falls"] else
                                     f"does NOT fall by more than its stderr ({s['stderr_last']:.3f})")
                                  + (", at every checkpoint" if s["monotone"] else ""))
        checked = bpb_ok
    else:
        out["summary"].append("no bits-per-byte results (the lm-eval suite of this profile has none)")
        checked = True
    out["learning"] = bool(acc_ok and checked)
    out["summary"].insert(0, "the run shows learning" if out["learning"] else "the run does NOT show learning")
    return out


def _is_headline(row) -> bool:
    """The suite's headline metric (``headline`` column); without it, acc for MMLU-style and
    acc_norm for ARC/HellaSwag-style (the report's choice)."""
    if "headline" in row.index and str(row["headline"]) not in ("", "nan", "None"):
        return str(row["headline"]).lower() == "true"

    family = benchmark_family(str(row["task"]))
    wanted = STYLE_METRIC.get(family)
    return wanted is None or row["metric"] == wanted

