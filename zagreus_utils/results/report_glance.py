"""The report's first screen: what was run, did each stage work, did the model learn, what the audit found.

:func:`glance` gathers it from the stage manifests, the eval stage's ``learning_check.json`` (the
headline check against chance) and the report's published checkpoint progression (the same
benchmarks at the report's last checkpoint), with the anchors of the sections below it.
"""

from __future__ import annotations

import json
import re

import pandas as pd

from ..audit.checks import SEVERITIES
from ..pipeline import manifest
from ..pipeline.errors import ZagreusError
from ..pipeline.spec import load_language
from ..pipeline.stages import folder_name
from ..stages.evaluation.results import LEARNING_JSON
from . import published
from .benchmarks import DISPLAY, benchmark_family
from .report_page import anchor
from .report_sections import ReportContext


def _published_last(language: str) -> tuple[str, dict[str, float]]:
    """The report's model of ``language`` at its last published checkpoint: ``(label, {family: value})``."""
    info = next((t for t in published.TABLES.values() if t.kind == "progression" and language in t.languages), None)
    if info is None:
        return "", {}
    try:
        rows = published.progression(published.load(), language)
    except ZagreusError:
        return "", {}
    if rows.empty:
        return "", {}
    last = int(rows["checkpoint_step"].max())
    at = rows[rows["checkpoint_step"] == last]
    return (f"{info.title}, step {last:,}",
            {benchmark_family(r.task): float(r.value) for r in at.itertuples()})


def learned(ctx: ReportContext, language: str) -> dict | None:
    """The headline learning check of ``language`` (None when its eval stage has not written one)."""
    found = ctx.stage("eval", language)
    if not found:
        return None
    path = found[0]["folder"] / LEARNING_JSON
    if not path.is_file():
        return None
    try:
        check = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {"language": language, "verdict": f"{path.name} is not valid JSON", "learning": False,
                "lines": [], "rows": [], "published": "", "href": "#" + anchor("stage", language, found[0]["stage"])}
    label, reference = _published_last(language)
    own = {language, load_language(language).iso639_1}  # the published model was evaluated in its language only
    acc = check.get("accuracy") or {}
    rows = []
    for t in acc.get("tasks", []):
        family = benchmark_family(t["task"])
        same_language = re.split(r"[_\- ]", str(t["task"]))[-1].lower() in own
        rows.append({"benchmark": DISPLAY.get(family, t["task"]), "task": t["task"], "metric": t["metric"],
                     "value": t["value"], "stderr": t["stderr"], "chance": t["chance"], "above": t["above"],
                     "published": reference.get(family) if same_language else None})
    lines = [line for line in check.get("summary", [])[1:]]
    return {"language": language, "learning": bool(check.get("learning")), "verdict": check["summary"][0],
            "step": acc.get("step"), "lines": lines, "rows": rows, "published": label,
            "href": "#" + anchor("stage", language, found[0]["stage"])}


def glance(ctx: ReportContext) -> dict:
    """Everything the first screen shows."""
    grid = []
    for language in ctx.languages + ([None] if any(s["language"] is None for s in ctx.stages) else []):
        cells = [{"stage": s["stage"], "status": s["manifest"].get("status") or "unknown",
                  "seconds": s["manifest"].get("seconds"),
                  "href": "#" + ("published" if s["stage"] == folder_name("plots")
                                 else anchor("stage", language or "all", s["stage"]))}
                 for s in ctx.stages if s["language"] == language]
        grid.append({"language": language or "(all)", "cells": cells})
    statuses = pd.Series([s["manifest"].get("status") or "unknown" for s in ctx.stages], dtype="object")
    commits = sorted({s["manifest"].get("git_commit") for s in ctx.stages if s["manifest"].get("git_commit")})
    launchers = sorted({str(s["manifest"].get("launcher")) for s in ctx.stages if s["manifest"].get("launcher")})
    seconds = sum(s["manifest"].get("seconds") or 0 for s in ctx.stages)
    audit = None
    if ctx.audit_findings is not None:
        audit = {"n": len(ctx.audit_findings),
                 "counts": {sev: sum(f.severity == sev for f in ctx.audit_findings) for sev in SEVERITIES}}
    return {
        "languages": ctx.languages,
        "commit": manifest.git_commit(),
        "stage_commits": commits,
        "launchers": launchers,
        "stage_seconds": round(seconds, 1),
        "status_counts": statuses.value_counts().to_dict(),
        "grid": grid,
        "learned": [x for x in (learned(ctx, lang) for lang in ctx.languages) if x],
        "audit": audit,
    }
