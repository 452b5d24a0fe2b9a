"""Checks of the report's eval commands: each evaluates the model its section reports on."""

from __future__ import annotations

import bisect
import re

from ..markdown import Document, Table
from ...model.arch import LlamaArch
from ...model.planning import parameter_counts
from ...results.formatting import params as fmt_params
from .common import Finding, document_arch, finding, headings, size_tolerance, size_value
from .launch import _logical_lines

_MODEL_NAME = re.compile(r"(?i)\b(?:open-)?(?:zagreus|nesso)(?:[\w.-]*[\w])?")
_LANG = re.compile(r"(?i)(?<![a-z])(ita|spa|fra|por|eng|deu)(?![a-z])")


def _name_size(name: str) -> tuple[str, str] | None:
    m = re.search(r"(?<![\w.])(\d+(?:\.\d+)?)([MB])(?![a-zA-Z])", name.replace("_", "-"))
    return (m.group(1), m.group(2)) if m else None


def _subject(doc: Document, line: int) -> tuple[str, str, int]:
    """(model name, heading title, heading line) of the nearest heading above ``line`` naming a
    zagreus/nesso model: the model a block of evaluation commands is about."""
    lines, subjects = doc.memo("model_headings", lambda: _model_headings(doc))
    k = bisect.bisect_right(lines, line)
    return subjects[k - 1] if k else ("", "", 0)


def _model_headings(doc: Document) -> tuple[list[int], list[tuple[str, str, int]]]:
    lines, subjects = [], []
    for at, _, title in headings(doc):
        if m := _MODEL_NAME.search(title):
            lines.append(at)
            subjects.append((m.group(0), title, at))
    return lines, subjects


def _table_after(doc: Document, line: int) -> Table | None:
    """The first table below ``line`` and above the next code block."""
    block_lines = doc.memo("code_block_lines", lambda: [b.line for b in doc.code_blocks])
    table_lines = doc.memo("table_lines", lambda: [t.line for t in doc.tables])
    b = bisect.bisect_right(block_lines, line)
    nxt = block_lines[b] if b < len(block_lines) else 10 ** 9
    t = bisect.bisect_right(table_lines, line)
    return doc.tables[t] if t < len(doc.tables) and table_lines[t] < nxt else None


def _steps_in(table: Table) -> set[int]:
    steps = set()
    for row in table.rows:
        for m in re.finditer(r"(?i)(\d+(?:\.\d+)?)\s*k\b", " ".join(row)):
            steps.add(int(float(m.group(1)) * 1000))
    return steps


def _own_model_problems(model: str, subject: str, section: str, table: Table | None,
                        arch: LlamaArch | None) -> list[str]:
    """How a zagreus/nesso model id disagrees with the section's model: size, language, step."""
    problems = []
    size, want = _name_size(model), _name_size(subject)
    wanted = size_value(*want) if want else (parameter_counts(arch)["total"] if arch else None)
    if size and wanted and abs(size_value(*size) - wanted) > size_tolerance(*(want or size)):
        problems.append(f"a {size[0]}{size[1]} model, while the section {section} is about a"
                        f" {want[0] + want[1] if want else fmt_params(wanted)} model")
    lang, subject_lang = _LANG.search(model), _LANG.search(subject)
    if lang and subject_lang and lang.group(1).lower() != subject_lang.group(1).lower():
        problems.append(f"language '{lang.group(1)}', while the section {section} is about '{subject_lang.group(1)}'")
    step = re.search(r"[-_](\d{4,})$", model)
    if step and table and (steps := _steps_in(table)) and int(step.group(1)) not in steps:
        problems.append(f"step {step.group(1)} is not among the checkpoints in the table below"
                        f" ({', '.join(f'{s // 1000}k' for s in sorted(steps))})")
    return problems


def _is_placeholder(model: str) -> bool:
    """``checkpoint``, ``./out``, ``$MODEL``: stands for the section's own model."""
    return model.startswith((".", "/", "~", "$")) or ("/" not in model and not _name_size(model))


def check_eval_models(doc: Document) -> list[Finding]:
    """Each lm-eval command evaluates the model its section is about."""
    out = []
    arch, _ = document_arch(doc)
    for block in doc.code_blocks:
        if not re.search(r"\blm[-_]eval\b", block.text):
            continue
        subject, title, subject_line = _subject(doc, block.line)
        if not subject:
            continue
        section = f"'{title}' (line {subject_line})"
        table = _table_after(doc, block.line)
        commands = []
        for line, cmd in _logical_lines(block.text, block.line + 1):
            m = re.search(r"pretrained=([^,\s\"']+)", cmd)
            if re.search(r"\blm[-_]eval\b", cmd) and m:
                tasks = re.search(r"--tasks[=\s]+(\S+)", cmd)
                commands.append((line, m.group(1), tasks.group(1) if tasks else ""))
        own_tasks = {t for _, model, tasks in commands
                     if _MODEL_NAME.search(model) or _is_placeholder(model) for t in tasks.split(",")}
        for line, model, tasks in commands:
            says = f"pretrained={model}" + (f" on {tasks}" if tasks else "")
            if _MODEL_NAME.search(model):
                if problems := _own_model_problems(model, subject, section, table, arch):
                    out.append(finding(doc, "eval_model", line, says, "evaluates " + "; ".join(problems), "error"))
                continue
            if _is_placeholder(model):
                continue
            compared = table is not None and any(model.lower() in " ".join(r).lower() for r in table.rows)
            if compared and tasks and set(tasks.split(",")) <= own_tasks:
                continue  # a baseline run beside the same tasks on the section's own model
            if compared:
                found = (f"evaluates {model}, a comparison model in the table, not the model of the section"
                         f" {section}; no command runs these tasks on the section's own model")
                out.append(finding(doc, "eval_model", line, says, found, "warning"))
            else:
                found = f"evaluates {model}, not {subject}, the model the section {section} reports on"
                out.append(finding(doc, "eval_model", line, says, found, "error"))
    return out
