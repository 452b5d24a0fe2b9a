"""Stage 01's statistics, tables and figures: what each step read, removed and kept per source,
and the mixture against the report's ~1T-token budget."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..pipeline.spec import ENGLISH, Spec
from .data_inputs import Layout, SourceInput, group_of
from ..results.formatting import integer as fmt_int, percent as fmt_pct, tokens as fmt_tokens
from .display import PALETTE, finish_figure, styled

BYTES_PER_TOKEN_ESTIMATE = 4  # before a tokenizer exists: the usual ~4 bytes of English per token
STEPS = ("min_chars", "quality", "repetition", "minhash")
GROUPS = ("eng", "target", "code")
GROUP_LABELS = {ENGLISH[0]: ENGLISH[1], "target": "target language", "code": "code"}
EXAMPLES_PER_STEP = 3

STEP_COLUMNS = ["source", "group", "step", "rule", "documents", "bytes", "est_tokens",
                "removed_documents", "removed_bytes", "removed_share"]
EXAMPLE_COLUMNS = ["source", "step", "reason", "id", "chars", "excerpt"]


def _parquet_stats(folder: Path) -> tuple[int, int]:
    docs = nbytes = 0
    for f in sorted(Path(folder).glob("*.parquet")):
        col = pq.read_table(f, columns=["text"]).column("text")
        docs += len(col)
        if len(col):
            nbytes += int(pc.sum(pc.binary_length(col.cast("binary"))).as_py() or 0)
    return docs, nbytes


def jsonl_stats(folder: Path, n_examples: int) -> tuple[int, int, list[dict]]:
    docs = nbytes = 0
    examples: list[dict] = []
    for f in sorted(Path(folder).glob("*.jsonl")):
        with open(f, encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                rec = json.loads(line)
                docs += 1
                nbytes += len(rec.get("text", "").encode("utf-8"))
                if len(examples) < n_examples:
                    examples.append(rec)
    return docs, nbytes, examples


def collect_stats(spec: Spec, inputs: list[SourceInput], layout: Layout,
                  rules: dict[str, dict[str, str]]) -> tuple[list[list], list[list]]:
    """Per source: what was read, what each step removed (with examples), what is left."""
    rows, examples = [], []
    for inp in inputs:
        sid, group = inp.source.id, group_of(inp.source)
        clean_docs, clean_bytes = _parquet_stats(layout.clean(sid))
        removed = {}
        for step in STEPS:
            if step in rules[sid]:
                n, b, ex = jsonl_stats(layout.removed(sid, step), EXAMPLES_PER_STEP)
                removed[step] = (n, b)
                for rec in ex:
                    text = rec.get("text", "")
                    reason = (rec.get("metadata") or {}).get("filter_reason") or (
                        "near-duplicate of a kept document" if step == "minhash" else rules[sid][step])
                    excerpt = re.sub(r"\s+", " ", text[:160]).strip() + ("…" if len(text) > 160 else "")
                    examples.append([sid, step, reason, str(rec.get("id", "")), len(text), excerpt])
        docs = clean_docs + sum(n for n, _ in removed.values())
        nbytes = clean_bytes + sum(b for _, b in removed.values())
        read_docs, read_bytes = docs, nbytes
        where = inp.folder
        if inp.local and Path(inp.folder).is_relative_to(layout.out):
            where = Path(inp.folder).relative_to(layout.out).as_posix()
        rows.append([sid, group, "read", f"{where} ({inp.glob})", docs, nbytes,
                     nbytes // BYTES_PER_TOKEN_ESTIMATE, 0, 0, 0.0])
        for step in STEPS:
            if step not in removed:
                continue
            n, b = removed[step]
            docs, nbytes = docs - n, nbytes - b
            rows.append([sid, group, step, rules[sid][step], docs, nbytes, nbytes // BYTES_PER_TOKEN_ESTIMATE,
                         n, b, round(n / read_docs, 4) if read_docs else 0.0])
        rows.append([sid, group, "clean", str(layout.clean(sid).relative_to(layout.out)), clean_docs, clean_bytes,
                     clean_bytes // BYTES_PER_TOKEN_ESTIMATE, read_docs - clean_docs, read_bytes - clean_bytes,
                     round((read_docs - clean_docs) / read_docs, 4) if read_docs else 0.0])
    return rows, examples


def mixture_table(spec: Spec, steps: pd.DataFrame) -> pd.DataFrame:
    """The report's budget per group next to its printed source sizes and this run's clean data."""
    budget = spec.language.budget
    plan = {"eng": budget.eng, "target": budget.target, "code": budget.code}
    clean = steps[steps.step == "clean"] if len(steps) else steps
    run_tokens = {g: int(clean[clean.group == g].est_tokens.sum()) if len(clean) else 0 for g in GROUPS}
    run_total = sum(run_tokens.values())
    rows = []
    for g in GROUPS:
        sources = [s for s in spec.language.mixture if group_of(s) == g]
        printed = [s.tokens for s in sources if s.tokens is not None]
        rows.append({
            "group": GROUP_LABELS[g] if g != "target" else f"{spec.language.name} (target)",
            "sources": ", ".join(s.id for s in sources),
            "budget_tokens": plan[g],
            "budget_share": round(plan[g] / budget.total, 4),
            "report_printed_tokens": sum(printed) if printed else None,
            "run_est_tokens": run_tokens[g],
            "run_share": round(run_tokens[g] / run_total, 4) if run_total else None,
        })
    rows.append({"group": "total", "sources": "", "budget_tokens": budget.total, "budget_share": 1.0,
                 "report_printed_tokens": None, "run_est_tokens": run_total,
                 "run_share": 1.0 if run_total else None})
    return pd.DataFrame(rows)


def style_steps(df: pd.DataFrame):
    return (styled(df)
            .format({c: fmt_int for c in ("documents", "bytes", "est_tokens", "removed_documents", "removed_bytes")})
            .format({"removed_share": fmt_pct})
            .set_caption(f"Per source and step; est_tokens = bytes / {BYTES_PER_TOKEN_ESTIMATE}; "
                         "removed_share = documents removed by the step / documents read."))


def style_examples(df: pd.DataFrame):
    return styled(df).set_caption("A few documents each filter removed (first 160 characters).")


def style_mixture(df: pd.DataFrame):
    return (styled(df)
            .format({"budget_tokens": fmt_tokens, "report_printed_tokens": fmt_tokens,
                     "run_est_tokens": fmt_int, "budget_share": fmt_pct, "run_share": fmt_pct})
            .set_caption("Budget: the report's ~1T-token plan; printed: the token counts the report gives for "
                         f"its sources (— where it gives none); run: this run's clean data, bytes / "
                         f"{BYTES_PER_TOKEN_ESTIMATE}."))


def removed_figure(steps: pd.DataFrame):
    """Per source, the share of the read tokens each step removed (with documents), and what is left."""
    sources = list(dict.fromkeys(steps.source))
    order = [s for s in STEPS if s in set(steps.step)]
    labels = {"min_chars": "min chars", "quality": "quality", "repetition": "repetition",
              "minhash": "MinHash dedup"}
    fig = Figure(figsize=(9, 1.2 + 1.1 * len(sources)))
    ax = fig.subplots()
    height = 0.8 / max(1, len(order))
    top = 0.0
    for k, step in enumerate(order):
        for i, sid in enumerate(sources):
            read = steps[(steps.source == sid) & (steps.step == "read")]
            sel = steps[(steps.source == sid) & (steps.step == step)]
            y = i - 0.4 + height * (k + 0.5)
            if not len(sel):
                ax.text(0, y, f" {labels.get(step, step)}: not applied to code", va="center", fontsize=7.5,
                        color="#666666")
                continue
            share = 100.0 * sel.removed_bytes.iloc[0] / max(1, read.bytes.iloc[0])
            top = max(top, share)
            ax.barh(y, share, height=height * 0.9, color=PALETTE[k % len(PALETTE)],
                    label=labels.get(step, step) if i == 0 else None)
            n = int(sel.removed_documents.iloc[0])
            pct = "0%" if n == 0 else ("<0.1%" if share < 0.1 else f"{share:.1f}%")
            ax.text(share, y, f" {labels.get(step, step)}: {pct} ({n:,} doc{'s' if n != 1 else ''})",
                    va="center", fontsize=7.5)
    ax.set_yticks(range(len(sources)))
    ax.set_yticklabels([f"{sid}\n{int(steps[(steps.source == sid) & (steps.step == 'clean')].documents.iloc[0]):,} "
                        f"of {int(steps[(steps.source == sid) & (steps.step == 'read')].documents.iloc[0]):,} kept"
                        for sid in sources], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, max(1.0, top) * 1.6)
    ax.set_xlabel("removed by the step (% of the source's bytes read)")
    ax.set_title("What each filtering step removed, per source (in pipeline order)", fontsize=11)
    return finish_figure(fig, ax)


def mixture_figure(spec: Spec, mixture: pd.DataFrame):
    rows = mixture[mixture.group != "total"].reset_index(drop=True)
    labels = [ENGLISH[1], spec.language.name, "code"]
    fig = Figure(figsize=(10, 4))
    left, right = fig.subplots(1, 2)
    x = range(len(rows))
    budget_b = [v / 1e9 for v in rows.budget_tokens]
    printed_b = [None if pd.isna(v) else v / 1e9 for v in rows.report_printed_tokens]
    left.bar([i - 0.2 for i in x], budget_b, width=0.4, color=PALETTE[0], label="plan (budget)")
    left.bar([i + 0.2 for i in x], [v or 0 for v in printed_b], width=0.4, color=PALETTE[1],
             label="printed next to the sources")
    for i, v in enumerate(printed_b):
        left.text(i + 0.2, (v or 0) + 8, f"{v:.0f}B" if v else "not\nprinted", ha="center", va="bottom", fontsize=8)
        left.text(i - 0.2, budget_b[i] + 8, f"{budget_b[i]:.0f}B", ha="center", va="bottom", fontsize=8)
    left.set_xticks(list(x))
    left.set_xticklabels(labels)
    left.set_ylabel("billions of tokens")
    left.set_ylim(0, max(budget_b + [v or 0 for v in printed_b]) * 1.3)
    left.set_title("The report's ~1T-token plan", fontsize=11)
    left.legend(fontsize=8, frameon=False, loc="upper right")

    plan_share = [100 * v for v in rows.budget_share]
    run_share = [0 if pd.isna(v) else 100 * v for v in rows.run_share]
    right.bar([i - 0.2 for i in x], plan_share, width=0.4, color=PALETTE[0], label="plan")
    right.bar([i + 0.2 for i in x], run_share, width=0.4, color=PALETTE[2], label="this run (clean, est.)")
    for i in x:
        right.text(i - 0.2, plan_share[i] + 1, f"{plan_share[i]:.0f}%", ha="center", va="bottom", fontsize=8)
        right.text(i + 0.2, run_share[i] + 1, f"{run_share[i]:.0f}%" if run_share[i] else "—", ha="center",
                   va="bottom", fontsize=8)
    right.set_xticks(list(x))
    right.set_xticklabels(labels)
    right.set_ylabel("share of tokens (%)")
    right.set_ylim(0, max(plan_share + run_share) * 1.3)
    right.set_title("Shares: plan vs this run", fontsize=11)
    right.legend(fontsize=8, frameon=False, loc="upper right")
    return finish_figure(fig, left, right)
