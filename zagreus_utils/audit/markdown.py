"""Read a markdown document into its tables and fenced code blocks, with line numbers.

Used by the audit (the report's own consistency) and by the test that checks the transcribed
published tables cell by cell against the report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_FENCE = re.compile(r"^\s*(```|~~~)\s*([\w+-]*)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")


@dataclass
class Table:
    line: int  # 1-based line of the header row
    heading: str  # nearest heading above the table
    headings: list[str]  # all enclosing headings, outermost first
    header: list[str]
    rows: list[list[str]]
    row_lines: list[int] = field(default_factory=list)
    columns: tuple | None = field(default=None, repr=False, compare=False)  # audit: (scores, averages)

    def records(self) -> list[dict[str, str]]:
        return [dict(zip(self.header, row)) for row in self.rows]


@dataclass
class CodeBlock:
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    heading: str
    headings: list[str]


@dataclass
class Document:
    tables: list[Table]
    code_blocks: list[CodeBlock]
    lines: list[str]
    # what readers derive from the whole document once (headings, parsed YAML, indexes), by name
    cache: dict = field(default_factory=dict, repr=False, compare=False)

    def memo(self, key: str, compute):
        """``compute()`` the first time ``key`` is asked for, the stored value afterwards."""
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]


def split_row(line: str) -> list[str]:
    """Cells of a pipe-table row, stripped (leading/trailing pipes optional)."""
    s = line.strip()
    if s.startswith("|"):
        s = s[1:]
    if s.endswith("|"):
        s = s[:-1]
    return [c.strip() for c in s.split("|")]


def parse(text: str) -> Document:
    lines = text.splitlines()
    tables: list[Table] = []
    blocks: list[CodeBlock] = []
    stack: list[tuple[int, str]] = []  # (level, title)
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            marker, lang = fence.group(1), fence.group(2)
            start = i
            i += 1
            body = []
            while i < len(lines) and not lines[i].strip().startswith(marker):
                body.append(lines[i])
                i += 1
            titles = [t for _, t in stack]
            blocks.append(CodeBlock(start + 1, lang.lower(), "\n".join(body),
                                    titles[-1] if titles else "", titles))
            i += 1
            continue
        head = _HEADING.match(line)
        if head:
            level = len(head.group(1))
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, head.group(2).strip()))
            i += 1
            continue
        if "|" in line and i + 1 < len(lines) and _RULE.match(lines[i + 1]) and "-" in lines[i + 1]:
            header = split_row(line)
            start = i
            i += 2
            rows, row_lines = [], []
            while i < len(lines) and lines[i].strip() and "|" in lines[i]:
                rows.append(split_row(lines[i]))
                row_lines.append(i + 1)
                i += 1
            titles = [t for _, t in stack]
            tables.append(Table(start + 1, titles[-1] if titles else "", titles, header, rows, row_lines))
            continue
        i += 1
    return Document(tables, blocks, lines)
