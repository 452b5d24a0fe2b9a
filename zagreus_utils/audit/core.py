"""``zagreus audit REPORT.md [--json]``: check a technical report in markdown for its own consistency.

The report's tables, YAML configs, launch scripts, eval commands and training logs are read back
and compared with each other (see ``checks`` for the individual checks). The audit never
runs anything: it only says where the report disagrees with itself, and by how much.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import sys
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from .checks import CHECKS, SEVERITIES, Finding
from ..pipeline.errors import ZagreusError
from .markdown import parse

__all__ = ["CHECKS", "Finding", "audit", "audit_text", "findings_frame", "format_text", "main"]

COLUMNS = ["check", "line", "heading", "says", "found", "severity"]
_MARKDOWN_SUFFIXES = {".md", ".markdown", ".mdown", ".mkd"}


def audit_text(text: str) -> list[Finding]:
    """All findings for a markdown document, ordered by line."""
    with _no_cycle_collection():
        doc = parse(text)
        findings: list[Finding] = []
        for check in CHECKS:
            name = check.__name__.removeprefix("check_")
            try:
                findings += check(doc)
            except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others
                findings.append(Finding(name, 0, "", "", f"the check failed: {type(exc).__name__}: {exc}", "info"))
    return sorted(findings, key=lambda f: (f.line, SEVERITIES.index(f.severity), f.check))


@contextlib.contextmanager
def _no_cycle_collection():
    """Python's cycle collector paused while a document is audited: its full passes walk every
    object alive (a large report's lines, tables, parsed YAML) again and again, which makes the
    audit of a 50 MB report grow faster than its size. The audit makes almost no cycles."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def audit(path: str | Path) -> list[Finding]:
    """Audit the markdown report at ``path``."""
    path = Path(path)
    if not path.exists():
        raise ZagreusError(f"{path}: no such file; pass the path of a markdown report (.md)")
    if not path.is_file():
        raise ZagreusError(f"{path}: not a file; pass the path of a markdown report (.md)")
    if path.suffix.lower() not in _MARKDOWN_SUFFIXES:
        raise ZagreusError(f"{path}: not a markdown file (expected a .md suffix); pass the report's markdown source")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ZagreusError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start});"
                           " save the report as UTF-8") from exc
    except OSError as exc:
        raise ZagreusError(f"{path}: cannot be read ({exc.strerror}); check its permissions") from exc
    return audit_text(text)


def findings_frame(findings: list[Finding]):
    """The findings as a pandas DataFrame with columns check, line, heading, says, found, severity."""
    return pd.DataFrame([asdict(f) for f in findings], columns=COLUMNS)


def count_line(findings: list[Finding]) -> str:
    def plural(n: int, word: str) -> str:
        return f"{n} {word}{'' if n == 1 or word == 'info' else 's'}"

    counts = [plural(sum(f.severity == s for f in findings), s) for s in SEVERITIES]
    return f"{plural(len(findings), 'finding')}: {', '.join(counts)}"


def format_text(findings: list[Finding]) -> str:
    """A terminal table of the findings, grouped by severity, ending with a count line."""
    out = []
    for severity in SEVERITIES:
        group = [f for f in findings if f.severity == severity]
        if not group:
            continue
        out.append(f"{severity.upper()} ({len(group)})")
        width = max(len(f.check) for f in group)
        out.append(f"  {'line':>5}  {'check':<{width}}  heading")
        for f in group:
            out.append(f"  {f.line:>5}  {f.check:<{width}}  {f.heading}")
            pad = " " * (9 + width)
            if f.says:
                out.append(f"{pad}says:  {f.says}")
            out.append(f"{pad}found: {f.found}")
        out.append("")
    out.append(count_line(findings))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="zagreus audit",
        description="Check a technical report in markdown for its own consistency: averages, duplicated "
                    "rows and sections, configs against nanotron/axolotl, launch scripts, eval commands, "
                    "training logs, parameter counts and token budgets.")
    parser.add_argument("report", help="path of the report's markdown source")
    parser.add_argument("--json", action="store_true", help="print the findings as a JSON list")
    args = parser.parse_args(argv)
    try:
        findings = audit(args.report)
    except ZagreusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([asdict(f) for f in findings], indent=2, ensure_ascii=False))
    else:
        print(format_text(findings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
