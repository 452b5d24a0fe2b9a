"""Stage 01's inputs: where each mixture source's shards are (a local folder, or the report's
datasets on the Hugging Face hub), checked before any pipeline runs; and where the stage writes."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from ..pipeline.errors import ZagreusError
from ..pipeline.spec import Source

# Where the report's datasets keep their parquet files on the Hugging Face hub, and their text column.
# ``{subset}`` is the mixture's subset (config name). Unknown datasets fall back to the subset folder.
HUB_LAYOUTS: dict[str, dict[str, str]] = {
    "HuggingFaceFW/fineweb": {"folder": "sample/{sample}", "glob": "*.parquet", "text_key": "text"},
    "HuggingFaceFW/fineweb-2": {"folder": "data/{subset}/train", "glob": "*.parquet", "text_key": "text"},
    "HuggingFaceFW/finepdfs": {"folder": "data/{subset}/train", "glob": "*.parquet", "text_key": "text"},
    "bigcode/starcoderdata": {"folder": "{subset}", "glob": "*.parquet", "text_key": "content"},
}



@dataclass(frozen=True)
class SourceInput:
    source: Source
    folder: str  # a local folder or an fsspec URL (hf://datasets/...)
    glob: str
    text_key: str
    local: bool

    @property
    def reader_kind(self) -> str:
        return "jsonl" if "jsonl" in self.glob else "parquet"


def group_of(source: Source) -> str:
    return source.language if source.language in ("eng", "code") else "target"


def hub_input(source: Source) -> SourceInput:
    """The ``hf://datasets/...`` folder, glob and text column of a mixture source (full profile)."""
    layout = HUB_LAYOUTS.get(source.dataset)
    subset = source.subset or ""
    if layout is None:
        folder, glob, text_key = subset, "**/*.parquet", "text"
    else:
        folder = layout["folder"].format(subset=subset, sample=subset.removeprefix("sample-"))
        glob, text_key = layout["glob"], layout["text_key"]
        if source.dataset == "HuggingFaceFW/fineweb" and not subset.startswith("sample-"):
            folder = f"data/{subset}" if subset else "data"
            glob = "**/*.parquet" if not subset else glob
        if source.dataset == "bigcode/starcoderdata" and not subset:
            glob = "*/*.parquet"  # every language folder
    url = f"hf://datasets/{source.dataset}" + (f"/{folder.strip('/')}" if folder.strip("/") else "")
    return SourceInput(source, url, glob, text_key, local=False)


def local_input(source: Source, sources_dir: Path) -> SourceInput:
    """``<sources_dir>/<source id>/`` holding parquet (or jsonl) shards with a ``text`` column."""
    folder = Path(sources_dir) / source.id
    glob = "*.parquet"
    if folder.is_dir() and not any(folder.glob("*.parquet")) and any(folder.glob("*.jsonl*")):
        glob = "*.jsonl*"
    return SourceInput(source, str(folder), glob, "text", local=True)


def check_input(inp: SourceInput) -> list[Path]:
    """Refuse a missing or empty source folder, or shards without the text column, naming them."""
    if not inp.local:
        return []
    folder = Path(inp.folder)
    if not folder.is_dir():
        raise ZagreusError(f"source {inp.source.id!r}: input folder {folder} does not exist. Put the "
                           f"source's parquet shards (with a {inp.text_key!r} column) there, or rerun the "
                           "data stage so that it generates the sample corpus (zagreus run --stages data --force)")
    files = sorted(p for p in folder.glob(inp.glob) if p.is_file())
    if not files:
        raise ZagreusError(f"source {inp.source.id!r}: input folder {folder} is empty (no *.parquet or "
                           f"*.jsonl files). Put the source's shards there, or remove {inp.source.id!r} "
                           "from the language's mixture")
    if inp.reader_kind == "parquet":
        for f in files:
            try:
                columns = pq.read_schema(f).names
            except Exception as exc:  # not a parquet file at all
                raise ZagreusError(f"source {inp.source.id!r}: {f} is not a readable parquet file ({exc})") from None
            if inp.text_key not in columns:
                raise ZagreusError(f"source {inp.source.id!r}: {f} has no {inp.text_key!r} column (its columns: "
                                   f"{', '.join(columns) or 'none'}). Rename the text column to {inp.text_key!r}")
    else:
        for f in files:
            first = _first_jsonl_record(f)
            if first is not None and inp.text_key not in first:
                raise ZagreusError(f"source {inp.source.id!r}: {f} records have no {inp.text_key!r} key (keys: "
                                   f"{', '.join(first) or 'none'}). Rename the text field to {inp.text_key!r}")
    return files


def _first_jsonl_record(path: Path) -> dict | None:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                try:
                    return json.loads(line)
                except json.JSONDecodeError:
                    raise ZagreusError(f"{path}: the first record is not valid JSON") from None
    return None


# --- layout of the stage folder --------------------------------------------------------------

@dataclass(frozen=True)
class Layout:
    out: Path

    @property
    def raw(self) -> Path: return self.out / "raw"
    def clean(self, sid: str) -> Path: return self.out / "clean" / sid
    def removed(self, sid: str, step: str) -> Path: return self.out / "removed" / sid / step
    def filtered(self, sid: str) -> Path: return self.out / "work" / sid / "filtered"
    def minhash(self, sid: str, part: str) -> Path: return self.out / "work" / sid / "minhash" / part
    def logs(self, job: str) -> Path: return self.out / "logs" / job
    @property
    def stats(self) -> Path: return self.out / "stats"
