"""The parts a report page is made of: sections of blocks (figures, tables, notes, markup).

A :class:`Section` is one entry of the table of contents: a heading, a one-line summary (the
``<summary>`` of its ``<details>`` when folded) and its blocks, possibly sub-sections. The template
renders every block the same way: a figure scales to the page width; a table sits in its own
horizontally scrolling box and is folded under a one-line summary when it is longer than
:data:`FOLD_ROWS` rows or repeats the numbers of a figure (it is then shown right under that
figure). :func:`stage_blocks` turns a stage's ``outputs.json`` into blocks.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from markupsafe import Markup

from ..pipeline.errors import ZagreusError
from ..pipeline.outputs import INDEX

FOLD_ROWS = 15  # a table with more body rows than this is folded by default


@dataclass
class Figure:
    title: str
    caption: str
    src: str  # a data: URI
    kind: str = "figure"


@dataclass
class Table:
    title: str
    body: Markup  # the table's HTML (escaped by whoever rendered it)
    rows: int
    folded: bool = False
    summary: str = ""  # the <summary> line when folded
    kind: str = "table"


@dataclass
class Note:
    text: str
    kind: str = "note"


@dataclass
class Html:
    """Markup a section builds itself (escape what comes from data: :func:`markupsafe.escape`)."""
    body: Markup
    kind: str = "html"


@dataclass
class Section:
    id: str  # the anchor (unique in the page)
    title: str  # heading and table-of-contents entry
    summary: str = ""  # one line beside the title, and the <summary> when folded
    blocks: list = field(default_factory=list)
    children: list["Section"] = field(default_factory=list)
    folded: bool = True
    status: str = ""  # ok | failed | blocked | skipped | running | corrupt: colours the summary
    toc: bool = True  # listed in the table of contents


def anchor(*parts: str | None) -> str:
    """An id from names: ``anchor("stage", "ita", "03_pretraining")`` -> ``stage-ita-03_pretraining``."""
    return "-".join(re.sub(r"[^A-Za-z0-9_]+", "_", p) for p in parts if p)


def data_uri(path: Path) -> str:
    mime = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg"}[path.suffix.lower()]
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def body_rows(html: str) -> int:
    """The number of body rows of an HTML table (its ``<tbody>``'s, else all rows but the first)."""
    body = re.search(r"<tbody.*?</tbody>", html, flags=re.S | re.I)
    if body:
        return len(re.findall(r"<tr[\s>]", body.group(0), flags=re.I))
    return max(0, len(re.findall(r"<tr[\s>]", html, flags=re.I)) - 1)


def table(title: str, html: str, *, under_figure: bool = False, summary: str = "") -> Table:
    """A table block: folded when longer than :data:`FOLD_ROWS` rows or when a figure shows it."""
    rows = body_rows(html)
    folded = under_figure or rows > FOLD_ROWS
    if not summary:
        summary = f"{title}: {rows} rows" + (" (the numbers of the figure above)" if under_figure else "")
    return Table(title, Markup(html), rows, folded, summary)


def read_outputs(folder: Path) -> dict | None:
    """A stage's ``outputs.json`` (None when it has none), its listed files checked."""
    index = folder / INDEX
    if not index.is_file():
        return None
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ZagreusError(f"{index} is not valid JSON ({exc}); rerun that stage with --force") from None
    for entry, key in [(f, "png") for f in data.get("figures", [])] + [(t, "html") for t in data.get("tables", [])]:
        if not (folder / entry[key]).is_file():
            raise ZagreusError(f"{index} lists {entry[key]} but {folder / entry[key]} is missing; "
                               "rerun that stage with --force")
    return data


def stage_blocks(folder: Path, data: dict) -> list:
    """Blocks of a stage's outputs: each figure followed by the tables of the same numbers (those its
    ``tables`` key lists, a table whose ``figure`` key, or else whose id, names it), folded; then the
    other tables and the notes."""
    figures, tables = data.get("figures", []), list(data.get("tables", []))
    blocks: list = []
    for fig in figures:
        blocks.append(Figure(fig["title"], fig.get("caption", ""), data_uri(folder / fig["png"])))
        shows = [t for t in tables if t["id"] in fig.get("tables", ()) or (t.get("figure") or t["id"]) == fig["id"]]
        for tab in shows:
            tables.remove(tab)
            blocks.append(table(tab["title"], (folder / tab["html"]).read_text(encoding="utf-8"), under_figure=True))
    for tab in tables:
        blocks.append(table(tab["title"], (folder / tab["html"]).read_text(encoding="utf-8")))
    blocks += [Note(n) for n in data.get("notes", [])]
    return blocks


def count_blocks(blocks: list) -> str:
    """``2 figures, 5 tables`` (what a folded section holds)."""
    figures = sum(isinstance(b, Figure) for b in blocks)
    tables = sum(isinstance(b, Table) for b in blocks)
    parts = [f"{figures} figure{'s' * (figures != 1)}" if figures else "",
             f"{tables} table{'s' * (tables != 1)}" if tables else ""]
    return ", ".join(p for p in parts if p)
