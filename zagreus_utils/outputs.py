"""A stage's figures and tables for the HTML report: ``<out_dir>/outputs.json``.

Every stage that has something to show collects it here; :mod:`zagreus_utils.report` embeds what
the index lists. Figures are saved as PNG and SVG, tables as HTML (escaped) and CSV.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

INDEX = "outputs.json"


class StageOutputs:
    """Collects a stage's figures (PNG+SVG) and tables (HTML+CSV) and writes ``outputs.json``."""

    def __init__(self, out_dir: Path):
        self.out = Path(out_dir)
        self.index: dict[str, list] = {"figures": [], "tables": [], "notes": []}

    def figure(self, fig_id: str, fig, title: str, caption: str) -> None:
        folder = self.out / "figures"
        folder.mkdir(parents=True, exist_ok=True)
        png, svg = folder / f"{fig_id}.png", folder / f"{fig_id}.svg"
        fig.savefig(png, dpi=120, bbox_inches="tight", facecolor="white")
        fig.savefig(svg, bbox_inches="tight", facecolor="white", metadata={"Date": None})
        self.index["figures"].append({"id": fig_id, "title": title, "caption": caption,
                                      "png": png.relative_to(self.out).as_posix(),
                                      "svg": svg.relative_to(self.out).as_posix()})

    def table(self, table_id: str, df: pd.DataFrame, title: str, styler=None) -> None:
        """``df`` as CSV, and as HTML through ``styler`` (default: the frame, text escaped)."""
        folder = self.out / "tables"
        folder.mkdir(parents=True, exist_ok=True)
        html, csv = folder / f"{table_id}.html", folder / f"{table_id}.csv"
        df.to_csv(csv, index=False)
        if styler is None:
            styler = df.style.hide(axis="index").format(escape="html", precision=4)
        html.write_text(styler.to_html(), encoding="utf-8")
        self.index["tables"].append({"id": table_id, "title": title,
                                     "html": html.relative_to(self.out).as_posix(),
                                     "csv": csv.relative_to(self.out).as_posix()})

    def note(self, text: str) -> None:
        self.index["notes"].append(text)

    def write(self) -> Path:
        path = self.out / INDEX
        path.write_text(json.dumps(self.index, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path
