"""Checks of the report's score tables: averages and duplicated rows."""

from __future__ import annotations

import re

from ..markdown import Document, Table
from .common import Finding, cell_number, finding

_AVERAGE = re.compile(r"(?i)\b(media|average|avg|mean|totale?|overall)\b")
_LABEL_COLUMNS = re.compile(r"(?i)^(rank|#|n|step|steps|checkpoint|iteration|iter|tokens?)$")


def _clean(text: str) -> str:
    return text.replace("*", "").strip()


def score_columns(table: Table) -> tuple[list[int], list[int]]:
    """(score columns, average columns) of a results table (worked out once per table)."""
    if table.columns is None:
        table.columns = _score_columns(table)
    return table.columns


def _score_columns(table: Table) -> tuple[list[int], list[int]]:
    scores, averages = [], []
    for j, head in enumerate(table.header):
        cells = [cell_number(r[j]) if j < len(r) else None for r in table.rows]
        numeric = [c for c in cells if c is not None and c[0] is not None]
        if not table.rows or len(numeric) * 2 < len(table.rows):
            continue
        if any(c is None for c in cells) or _LABEL_COLUMNS.match(_clean(head)):
            continue
        (averages if _AVERAGE.search(_clean(head)) else scores).append(j)
    return scores, averages


def row_label(table: Table, row: list[str]) -> str:
    scores, averages = score_columns(table)
    parts = [_clean(c) for j, c in enumerate(row) if j not in scores + averages and _clean(c)]
    return " ".join(parts) or "(unlabelled)"


def _group(header: str) -> str:
    """The group suffix of an average column: ``Media EN`` -> ``en``; plain averages -> ``''``."""
    words = [w for w in re.split(r"[\s_]+", _clean(header).lower()) if w]
    rest = [w for w in words if not _AVERAGE.fullmatch(w)]
    return rest[-1] if rest else ""


def _in_group(header: str, group: str) -> bool:
    words = [w for w in re.split(r"[\s_\-]+", _clean(header).lower()) if w]
    return bool(words) and words[-1] == group


# ----------------------------------------------------------------------------- checks


def check_averages(doc: Document) -> list[Finding]:
    """An average column equals the mean of the row's (non-missing) scores it averages."""
    out = []
    for table in doc.tables:
        scores, averages = score_columns(table)
        if not scores or not averages:
            continue
        group_avgs = [j for j in averages if _group(table.header[j])]
        for row, line in zip(table.rows, table.row_lines):
            label = row_label(table, row)
            for j in averages:
                stated = cell_number(row[j])
                if not stated or stated[0] is None:
                    continue
                group = _group(table.header[j])
                cols = [k for k in scores if _in_group(table.header[k], group)] if group else scores
                if not cols:
                    continue
                cells = [cell_number(row[k]) for k in cols]
                present = [c for c in cells if c and c[0] is not None]
                if not present:
                    continue
                mean = sum(v for v, _ in present) / len(present)
                candidates = [mean]
                if not group and group_avgs:  # a total may be the mean of the group averages
                    subs = [cell_number(row[k]) for k in group_avgs]
                    if all(s and s[0] is not None for s in subs):
                        candidates.append(sum(s[0] for s in subs) / len(subs))
                tol = 0.5 * 10 ** -stated[1] + 0.5 * 10 ** -max(d for _, d in present) + 1e-9
                name = _clean(table.header[j])
                names = ", ".join(_clean(table.header[k]) for k in cols)
                if not any(abs(c - stated[0]) <= tol for c in candidates):
                    out.append(finding(doc, "averages", line, f"{label}: {name} = {row[j].strip('* ')}",
                                       f"mean of {len(present)} scores ({names}) = {mean:.4f}", "error"))
                elif len(present) < len(cols):
                    out.append(finding(doc, "averages", line, f"{label}: {name} = {row[j].strip('* ')}",
                                       f"averaged over {len(present)} of {len(cols)} scores (others missing);"
                                       " not comparable with the complete rows", "info"))
    return out


def check_duplicate_rows(doc: Document) -> list[Finding]:
    """Two rows of one table with identical scores under different labels."""
    out = []
    for table in doc.tables:
        scores, averages = score_columns(table)
        cols = scores + averages
        seen: dict[tuple, tuple[str, int]] = {}
        for row, line in zip(table.rows, table.row_lines):
            values = tuple(cell_number(row[j]) for j in cols)
            if sum(1 for v in values if v and v[0] is not None) < 2:
                continue
            key = tuple(v[0] if v else None for v in values)
            label = row_label(table, row)
            if key in seen and seen[key][0] != label:
                first, first_line = seen[key]
                out.append(finding(doc, "duplicate_rows", line,
                                   f"row '{label}' scores {', '.join(_clean(row[j]) for j in cols)}",
                                   f"identical to row '{first}' (line {first_line}); one of them is"
                                   " probably a copy-paste error", "warning"))
            else:
                seen.setdefault(key, (label, line))
    return out
