"""A stage's figures and tables for the HTML report: ``<out_dir>/outputs.json``.

Every stage that has something to show collects it here; :mod:`zagreus_utils.results.report` embeds what
the index lists. Figures are saved as PNG and SVG, tables as HTML (escaped) and CSV.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pandas as pd

INDEX = "outputs.json"


class StageOutputs:
    """Collects a stage's figures (PNG+SVG) and tables (HTML+CSV) and writes ``outputs.json``."""

    def __init__(self, out_dir: Path):
        self.out = Path(out_dir)
        self.index: dict[str, list] = {"figures": [], "tables": [], "notes": []}

    def figure(self, fig_id: str, fig, title: str, caption: str, **extra) -> None:
        """``fig`` as ``figures/<fig_id>.png`` (dpi 120) and ``.svg``, the same bytes for the same
        figure (fixed SVG salt, no date), so that manifests compare equal across reruns."""
        import matplotlib

        folder = self.out / "figures"
        folder.mkdir(parents=True, exist_ok=True)
        png, svg = folder / f"{fig_id}.png", folder / f"{fig_id}.svg"
        with matplotlib.rc_context({"svg.hashsalt": fig_id, "svg.fonttype": "path"}):
            fig.savefig(png, dpi=120, bbox_inches="tight", facecolor="white")
            fig.savefig(svg, bbox_inches="tight", facecolor="white", metadata={"Date": None})
        self.index["figures"].append({"id": fig_id, "title": title, "caption": caption,
                                      "png": png.relative_to(self.out).as_posix(),
                                      "svg": svg.relative_to(self.out).as_posix(), **extra})

    def table(self, table_id: str, df: pd.DataFrame, title: str, styler=None,
              csv: Callable[[Path], None] | None = None, **extra) -> None:
        """``df`` as CSV (``csv(path)`` writes it when given), and as HTML through ``styler``
        (default: the frame, text escaped); ``extra`` keys go into the index entry."""
        folder = self.out / "tables"
        folder.mkdir(parents=True, exist_ok=True)
        html, csv_path = folder / f"{table_id}.html", folder / f"{table_id}.csv"
        if csv is None:
            df.to_csv(csv_path, index=False)
        else:
            csv(csv_path)
        if styler is None:
            styler = df.style.hide(axis="index").format(escape="html", precision=4)
        html.write_text(styler.to_html(), encoding="utf-8")
        self.index["tables"].append({"id": table_id, "title": title,
                                     "html": html.relative_to(self.out).as_posix(),
                                     "csv": csv_path.relative_to(self.out).as_posix(), **extra})

    def note(self, text: str) -> None:
        self.index["notes"].append(text)

    def write(self, prune: bool = False) -> Path:
        """Write ``outputs.json``; ``prune``: first remove figure and table files of an earlier
        build that this one did not write, so the folders hold exactly what the index lists."""
        if prune:
            written = {self.out / e[k] for e in self.index["figures"] for k in ("png", "svg")}
            written |= {self.out / e[k] for e in self.index["tables"] for k in ("html", "csv")}
            for sub, suffixes in (("figures", {".png", ".svg"}), ("tables", {".html", ".csv"})):
                folder = self.out / sub
                for path in folder.iterdir() if folder.is_dir() else ():
                    if path.is_file() and path.suffix in suffixes and path not in written:
                        path.unlink()
        path = self.out / INDEX
        path.write_text(json.dumps(self.index, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path
