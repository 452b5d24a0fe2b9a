"""Stage 01, data: read each source of the language's mixture, filter, deduplicate, write clean shards.

Everything runs as datatrove pipelines (report section 3 uses datatrove for its data work) on the
launcher's executor (:mod:`zagreus_utils.cluster.executors`). Each source keeps its own pipeline, folders
and task numbering; one datatrove job covers every source (:class:`executors.PerSourceTask`):

1. ``filter``: a reader (ParquetReader/JsonlReader over a local folder or an ``hf://datasets/...``
   URL) -> ``min_chars`` (LambdaFilter: at least ``data.min_doc_chars`` characters) ->
   ``quality`` (LambdaFilter; prose: Gopher's alphabetic-word and mean-word-length rules; code:
   StarCoder-style line length and alphanumeric share) -> ``repetition`` (GopherRepetitionFilter,
   prose only) -> ParquetWriter ``work/<id>/filtered`` -> MinHash signatures. Each filter has an
   exclusion writer, so what it removed is kept (``removed/<id>/<step>/``), counted and shown.
2. ``minhash-buckets``, ``minhash-cluster``, ``minhash-filter`` (``data.dedup: minhash``): the rest
   of datatrove's four-step MinHash chain (regex word 5-grams, ``HashConfig(precision=64,
   hash_fc="sha1")``); the last step writes the surviving documents to ``clean/<id>/`` as parquet.
   With ``data.dedup: none`` the filter job writes ``clean/<id>/`` itself.

The smoke profile first generates the sample corpus (:mod:`zagreus_utils.sample_corpus.corpus`) into ``raw/`` and
reads it exactly like the real sources; ``raw/heldout`` and ``raw/sft`` stay there for later stages.
``summary.json`` lists the clean folders with their documents, bytes and estimated tokens (bytes/4,
before a tokenizer exists); the stats tables, figures and ``outputs.json`` feed the notebook and
the HTML report. With the ``slurm`` launcher each datatrove job is submitted as a Slurm array by
datatrove's ``SlurmPipelineExecutor`` and followed until it ends (``dry_run``: the sbatch scripts only).

Reruns: datatrove skips the tasks it finished (``logs/<job>/completions``), so a run that failed
halfway resumes; when the configuration (profile data settings, mixture, inputs, this code)
changes, the old logs and outputs are removed first (:func:`fresh_if_changed`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..pipeline import manifest, paths
from ..pipeline.errors import ZagreusError
from ..pipeline.outputs import StageOutputs
from ..pipeline.spec import Source, Spec, load_spec

# tqdm.auto (imported by datatrove's dependencies) warns in every notebook without ipywidgets.
warnings.filterwarnings("ignore", message="IProgress not found")

STAGE = "01_data"
BYTES_PER_TOKEN_ESTIMATE = 4  # before a tokenizer exists: the usual ~4 bytes of English per token
STEPS = ("min_chars", "quality", "repetition", "minhash")
GROUPS = ("eng", "target", "code")
GROUP_LABELS = {"eng": "English", "target": "target language", "code": "code"}
EXAMPLES_PER_STEP = 3
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9"]  # Okabe-Ito

# Where the report's datasets keep their parquet files on the Hugging Face hub, and their text column.
# ``{subset}`` is the mixture's subset (config name). Unknown datasets fall back to the subset folder.
HUB_LAYOUTS: dict[str, dict[str, str]] = {
    "HuggingFaceFW/fineweb": {"folder": "sample/{sample}", "glob": "*.parquet", "text_key": "text"},
    "HuggingFaceFW/fineweb-2": {"folder": "data/{subset}/train", "glob": "*.parquet", "text_key": "text"},
    "HuggingFaceFW/finepdfs": {"folder": "data/{subset}/train", "glob": "*.parquet", "text_key": "text"},
    "bigcode/starcoderdata": {"folder": "{subset}", "glob": "*.parquet", "text_key": "content"},
}


# --- small picklable pieces of the pipelines ------------------------------------------------

from datatrove.utils.word_tokenizers import WordTokenizer  # noqa: E402


class RegexWordTokenizer(WordTokenizer):
    """Words are runs of letters/digits (``\\w+``): no spacy/nltk models needed, any Latin language."""

    _word = re.compile(r"\w+")
    _sentence_end = re.compile(r"(?<=[.!?])\s+")

    def __init__(self):
        super().__init__("regex")

    def word_tokenize(self, text: str) -> list[str]:
        return self._word.findall(text)

    def sent_tokenize(self, text: str) -> list[str]:
        return [s for s in self._sentence_end.split(text) if s.strip()]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        spans, start = [], 0
        for sentence in self.sent_tokenize(text):
            start = text.index(sentence, start)
            spans.append((start, start + len(sentence)))
            start += len(sentence)
        return spans


@dataclass(frozen=True)
class MinChars:
    """Keep documents with at least ``n`` characters (after stripping surrounding blanks)."""

    n: int

    def __call__(self, doc) -> bool | tuple[bool, str]:
        return True if len(doc.text.strip()) >= self.n else (False, f"fewer than {self.n} characters")


@dataclass(frozen=True)
class ProseQuality:
    """Gopher's prose rules: >= ``min_alpha_words`` of the words hold a letter, and a mean word
    length within ``word_length`` (drops tables of numbers, symbol soup, concatenated junk)."""

    min_alpha_words: float = 0.8
    word_length: tuple[float, float] = (3.0, 10.0)

    def __call__(self, doc) -> bool | tuple[bool, str]:
        words = doc.text.split()
        if not words:
            return False, "no words"
        alpha = sum(any(ch.isalpha() for ch in w) for w in words) / len(words)
        if alpha < self.min_alpha_words:
            return False, f"only {alpha:.0%} of words hold a letter (< {self.min_alpha_words:.0%})"
        mean = sum(len(w) for w in words) / len(words)
        low, high = self.word_length
        if not low <= mean <= high:
            return False, f"mean word length {mean:.1f} outside [{low:g}, {high:g}]"
        return True


@dataclass(frozen=True)
class CodeQuality:
    """StarCoder-style code rules: no line over ``max_line`` characters, mean line length at most
    ``mean_line``, and at least ``min_alnum`` of the characters alphanumeric (drops minified or
    generated files and embedded data blobs)."""

    max_line: int = 1000
    mean_line: float = 100.0
    min_alnum: float = 0.25

    def __call__(self, doc) -> bool | tuple[bool, str]:
        text = doc.text
        lines = text.splitlines() or [""]
        longest = max(len(line) for line in lines)
        if longest > self.max_line:
            return False, f"a line of {longest} characters (> {self.max_line})"
        mean = sum(len(line) for line in lines) / len(lines)
        if mean > self.mean_line:
            return False, f"mean line length {mean:.0f} (> {self.mean_line:g})"
        alnum = sum(ch.isalnum() for ch in text) / max(1, len(text))
        if alnum < self.min_alnum:
            return False, f"only {alnum:.0%} alphanumeric characters (< {self.min_alnum:.0%})"
        return True


@dataclass(frozen=True)
class TagShards:
    """Pipeline step: tag each document with ``clean_shard`` = its position modulo ``n`` so that the
    writer spreads a task's output over ``n`` files (balanced tokenization tasks downstream)."""

    n: int

    def __call__(self, data, rank: int = 0, world_size: int = 1):
        for i, doc in enumerate(data):
            doc.metadata["clean_shard"] = i % self.n
            yield doc


# --- inputs ----------------------------------------------------------------------------------

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
        import pyarrow.parquet as pq

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
    import gzip

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


def resolve_dirs(profile: str, language: str, run_dir: str | os.PathLike = "", out_dir: str | os.PathLike = "",
                 stage: str = STAGE) -> tuple[Path, Path]:
    """The notebooks' ``run_dir``/``out_dir`` parameters: empty means the default run folder."""
    rd = Path(run_dir) if str(run_dir) else paths.run_dir(profile, language)
    od = Path(out_dir) if str(out_dir) else rd / stage
    return rd.resolve(), od.resolve()


# --- what a stage hands its notebook ---------------------------------------------------------

@dataclass
class StageResult:
    """What a stage hands its notebook: styled tables, figures, frames, dry-run scripts, notes."""

    out_dir: Path
    launcher: str
    tables: dict[str, Any] = field(default_factory=dict)  # id -> pandas Styler
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)  # id -> matplotlib Figure
    slurm_scripts: dict[str, str] = field(default_factory=dict)  # job name -> sbatch script
    notes: list[str] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def show_slurm(self) -> str:
        """All dry-run scripts, one after the other (print it)."""
        return "\n".join(f"# ===== {job} =====\n{script}" for job, script in self.slurm_scripts.items())


# --- running pipelines -----------------------------------------------------------------------

def fresh_if_changed(out: Path, key: dict, folders: list[Path], marker: Path) -> bool:
    """datatrove skips tasks it finished before (``logs/*/completions``): right for a rerun after a
    failure, wrong after the configuration changed. When ``key`` differs from the one recorded in
    ``marker``, remove ``folders`` (logs and outputs of the old configuration); returns True then."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    previous = json.loads(marker.read_text()).get("digest") if marker.is_file() else None
    if previous == digest:
        return False
    for folder in folders:
        if folder.exists():
            shutil.rmtree(folder)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"digest": digest, "key": key}, indent=2, default=str) + "\n")
    return True


def code_digest(*modules: str) -> str:
    """One hash over the named modules' code, each named by its path in the package (``stages/data``)."""
    h = hashlib.sha256()
    here = Path(__file__).parents[1]
    for name in modules:
        h.update((here / f"{name}.py").read_bytes())
    return h.hexdigest()[:16]


# --- the stage -------------------------------------------------------------------------------

def prepare_sample(spec: Spec, layout: Layout) -> dict:
    """Generate the sample corpus into ``raw/`` unless the same one (language, seed, scale, code) is there."""
    from ..sample_corpus import corpus

    seed, scale = spec.profile.training.seed, spec.profile.data.sample_scale
    per_type = spec.profile.data.sample_facts_per_type
    marker = layout.raw / ".zagreus-sample.json"
    key = {"language": spec.language.code, "seed": seed, "scale": scale, "facts_per_type": per_type,
           "code": code_digest("sample_corpus/corpus", "sample_corpus/knowledge"),
           "facts": corpus.kb.data_digest(spec.language.code)}
    summary_path = layout.raw / "summary.json"
    if marker.is_file() and summary_path.is_file() and json.loads(marker.read_text()) == key:
        summary = json.loads(summary_path.read_text())
        if all((layout.raw / "sources" / s.id).is_dir() for s in spec.language.mixture):
            return summary
    if layout.raw.exists():
        shutil.rmtree(layout.raw)
    summary = corpus.generate(layout.raw, spec.language.code, seed=seed, scale=scale, facts_per_type=per_type)
    marker.write_text(json.dumps(key, indent=2) + "\n")
    return summary


def plan_inputs(spec: Spec, layout: Layout, sources_dir: Path | None = None) -> list[SourceInput]:
    """Each mixture source's input, checked before any heavy work."""
    data = spec.profile.data
    if sources_dir is not None:
        inputs = [local_input(s, Path(sources_dir)) for s in spec.language.mixture]
    elif data.source == "sample":
        inputs = [local_input(s, layout.raw / "sources") for s in spec.language.mixture]
    else:
        if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes") or spec.profile.offline:
            from ..cluster import prefetch  # compute nodes without internet: the shards `zagreus prefetch` fetched

            inputs = [prefetch.cached_input(s, spec) for s in spec.language.mixture]
        else:
            inputs = [hub_input(s) for s in spec.language.mixture]
    for inp in inputs:
        check_input(inp)
    return inputs


def _reader(inp: SourceInput, folder: str | None = None, glob: str | None = None, text_key: str | None = None,
            limit: int = -1, source_id: str | None = None):
    from datatrove.pipeline.readers import JsonlReader, ParquetReader

    folder, glob = folder or inp.folder, glob or inp.glob
    kind = "jsonl" if "jsonl" in glob else "parquet"
    cls = JsonlReader if kind == "jsonl" else ParquetReader
    return cls(folder, glob_pattern=glob, text_key=text_key or inp.text_key, limit=limit,
               default_metadata={"zagreus_source": source_id or inp.source.id})


def _exclusion(layout: Layout, sid: str, step: str):
    from datatrove.pipeline.writers import JsonlWriter

    return JsonlWriter(str(layout.removed(sid, step)), output_filename="${rank}.jsonl", compression=None)


def minhash_config(seed: int):
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.utils.hashing import HashConfig

    # 14 buckets x 8 hashes over word 5-grams (datatrove's defaults: pairs above ~0.72 Jaccard
    # similarity are caught with high probability); sha1 hashes (xxhash 4.x rejects str input).
    return MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8, seed=seed,
                         hash_config=HashConfig(precision=64, hash_fc="sha1"))


def filter_steps(spec: Spec, inp: SourceInput, layout: Layout) -> list[tuple[str, Any, str]]:
    """(step, datatrove filter, rule in words) for one source."""
    from datatrove.pipeline.filters import GopherRepetitionFilter, LambdaFilter

    sid, data = inp.source.id, spec.profile.data
    steps = [("min_chars", LambdaFilter(MinChars(data.min_doc_chars),
                                        exclusion_writer=_exclusion(layout, sid, "min_chars")),
              f"at least {data.min_doc_chars} characters")]
    if group_of(inp.source) == "code":
        rule = CodeQuality()
        steps.append(("quality", LambdaFilter(rule, exclusion_writer=_exclusion(layout, sid, "quality")),
                      f"code: lines <= {rule.max_line} chars, mean line <= {rule.mean_line:g}, "
                      f">= {rule.min_alnum:.0%} alphanumeric"))
    else:
        rule = ProseQuality()
        steps.append(("quality", LambdaFilter(rule, exclusion_writer=_exclusion(layout, sid, "quality")),
                      f">= {rule.min_alpha_words:.0%} of words hold a letter, mean word length "
                      f"{rule.word_length[0]:g}-{rule.word_length[1]:g}"))
        # Gopher's line/paragraph and duplicated n-gram rules. The "top n-gram" rules are kept for
        # the real web data but left out for the sample corpus, whose template sentences ("If you
        # add three to ten, you get thirteen.") legitimately repeat their most common bigram.
        top = () if data.source == "sample" else ((2, 0.2), (3, 0.18), (4, 0.16))
        steps.append(("repetition", GopherRepetitionFilter(top_n_grams=top, language=RegexWordTokenizer(),
                                                           exclusion_writer=_exclusion(layout, sid, "repetition")),
                      "Gopher repetition: duplicated lines/paragraphs/n-grams"
                      + (" (top n-gram rules off for the templated sample)" if not top else "")))
    return steps


def _parquet_writer(folder: Path, filename: str):
    from datatrove.pipeline.writers import ParquetWriter

    # content-defined chunking and page indexes cost 2.4x the write time and help nobody here
    return ParquetWriter(str(folder), output_filename=filename, use_content_defined_chunking=False,
                         write_page_index=False)


@dataclass
class DataJobs:
    """Stage 01's datatrove jobs, in order (each depends on the one before), over every source."""

    jobs: list[tuple[str, Any]]  # (job name, executor)
    rules: dict[str, dict[str, str]]  # source -> step -> rule in words
    tasks: dict[str, int]  # source -> tasks of its filter pipeline (= its filtered shards)


def _source_tasks(spec: Spec, inp: SourceInput, launcher: str) -> int:
    if inp.local:  # readers shard by file: never more tasks than files
        from ..cluster.executors import slurm_bins

        n_files = len(list(Path(inp.folder).glob(inp.glob)))
        limit = _workers(spec) if launcher == "local" else slurm_bins(spec)  # Slurm: its array limit, if any
        return max(1, min(n_files, limit) if limit else n_files)
    return _workers(spec) if launcher == "local" else (spec.profile.slurm.tokenization.tasks or 1)


def _workers(spec: Spec) -> int:
    return max(1, min(spec.profile.data.workers, os.cpu_count() or 1))


def _sizes(inp: SourceInput, tasks: int) -> list[int]:
    """Bytes each task of a local source reads (to hand out the biggest tasks first)."""
    if not inp.local:
        return [0] * tasks
    files = sorted(Path(inp.folder).glob(inp.glob))
    return [sum(f.stat().st_size for f in files[k::tasks]) for k in range(tasks)]


def stage_jobs(spec: Spec, inputs: list[SourceInput], layout: Layout, launcher: str) -> DataJobs:
    """Stage 01 as four datatrove jobs over all sources (three when ``data.dedup`` is ``none``):

    ``filter``: per source, reader -> ``min_chars`` -> ``quality`` -> ``repetition`` (prose) ->
    with MinHash: ParquetWriter ``work/<id>/filtered`` -> MinHash signatures; without: the clean writer.
    ``minhash-buckets`` (14 tasks per source), ``minhash-cluster`` (1 per source),
    ``minhash-filter``: per source, reads the filtered shards back, drops the duplicates (kept in
    ``removed/<id>/minhash``) and writes ``clean/<id>/``.
    Each source keeps its own folders and task numbering (:class:`executors.PerSourceTask`).
    """
    from datatrove.pipeline.dedup.minhash import (MinhashDedupBuckets, MinhashDedupCluster,
                                                  MinhashDedupFilter, MinhashDedupSignature)

    from ..cluster.executors import PerSourceTask, make_executor, pack_tasks, slurm_bins

    data = spec.profile.data
    dedup = data.dedup == "minhash"
    local = launcher == "local"
    workers = _workers(spec) if local else None
    bins = workers if local else slurm_bins(spec)
    cfg = minhash_config(spec.profile.training.seed)
    rules, tasks = {}, {}
    plans: dict[str, list] = {"filter": [], "minhash-buckets": [], "minhash-cluster": [], "minhash-filter": []}
    pipes: dict[str, dict[str, list]] = {name: {} for name in plans}
    for inp in inputs:
        sid = inp.source.id
        n = tasks[sid] = _source_tasks(spec, inp, launcher)
        limit = -1 if data.max_docs_per_source is None else max(1, math.ceil(data.max_docs_per_source / n))
        # spread each task's clean output over enough files that tokenization can use every worker
        shards = max(1, math.ceil(bins / n)) if bins else 1
        clean = [TagShards(shards), _parquet_writer(layout.clean(sid), "${rank}_${clean_shard}.parquet")]
        steps = filter_steps(spec, inp, layout)
        rules[sid] = {name: rule for name, _, rule in steps}
        pipe = [_reader(inp, limit=limit)] + [f for _, f, _ in steps]
        if dedup:
            rules[sid]["minhash"] = (f"MinHash near-duplicates: word {cfg.n_grams}-grams, {cfg.num_buckets} "
                                     f"buckets x {cfg.hashes_per_bucket} hashes (Jaccard ~0.72+)")
            pipe += [_parquet_writer(layout.filtered(sid), "${rank}.parquet"),
                     MinhashDedupSignature(output_folder=str(layout.minhash(sid, "signatures")), config=cfg,
                                           language=RegexWordTokenizer())]
            pipes["minhash-buckets"][sid] = [MinhashDedupBuckets(
                input_folder=str(layout.minhash(sid, "signatures")), output_folder=str(layout.minhash(sid, "buckets")),
                config=cfg)]
            pipes["minhash-cluster"][sid] = [MinhashDedupCluster(
                input_folder=str(layout.minhash(sid, "buckets")), output_folder=str(layout.minhash(sid, "remove_ids")),
                config=cfg)]
            pipes["minhash-filter"][sid] = [
                _reader(inp, folder=str(layout.filtered(sid)), glob="*.parquet", text_key="text"),
                MinhashDedupFilter(input_folder=str(layout.minhash(sid, "remove_ids")),
                                   exclusion_writer=_exclusion(layout, sid, "minhash"))] + clean
            plans["minhash-buckets"] += [(n, (sid, k, cfg.num_buckets)) for k in range(cfg.num_buckets)]
            plans["minhash-cluster"].append((n, (sid, 0, 1)))
        else:
            pipe += clean
        pipes["filter"][sid] = pipe
        sized = sorted(zip(_sizes(inp, n), range(n)), reverse=True)
        plans["filter"] += [(size, (sid, k, n)) for size, k in sized]
        plans["minhash-filter"] += [(size, (sid, k, n)) for size, k in sized]
    jobs, previous = [], None
    for name in (("filter", "minhash-buckets", "minhash-cluster", "minhash-filter") if dedup else ("filter",)):
        plan = pack_tasks(plans[name], bins)  # one task per worker (local, or Slurm's array limit), by bytes
        ex = make_executor(spec, launcher, [PerSourceTask(plan, pipes[name])],
                           job_name=f"{spec.language.code}-{name}", logging_dir=layout.logs(name),
                           tasks=len(plan), workers=workers,
                           depends=None if local else previous)
        jobs.append((name, ex))
        previous = ex
    return DataJobs(jobs, rules, tasks)


def pad_filtered(folder: Path, tasks: int) -> None:
    """A filter task that kept nothing writes no shard; the MinHash filter job reads shard ``r`` as
    task ``r``'s stream (the order its signatures were computed in), so write empty ones."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    for rank in range(tasks):
        path = folder / f"{rank:05d}.parquet"
        if not path.exists():
            pq.write_table(pa.table({"text": pa.array([], pa.string()), "id": pa.array([], pa.string())}), path)


def run(spec: Spec, out_dir: str | os.PathLike, launcher: str = "local",
        sources_dir: str | os.PathLike | None = None, *, dry_run: bool = False,
        progress: bool = True) -> StageResult:
    """Run stage 01 for ``spec`` into ``out_dir``; returns tables/figures for the notebook.

    ``sources_dir``: read ``<sources_dir>/<source id>/`` instead of the profile's inputs (a local
    mirror of the sources, or tests' tiny inputs). ``launcher`` ``slurm`` submits each datatrove
    job with datatrove's ``SlurmPipelineExecutor`` and waits for it (:func:`executors.run_slurm`);
    with ``dry_run`` it only writes the sbatch scripts datatrove would submit.
    """
    from ..cluster.executors import check_launcher, run_job, slurm_dry_run

    check_launcher(launcher)
    layout = Layout(Path(out_dir).resolve())
    layout.out.mkdir(parents=True, exist_ok=True)
    result = StageResult(layout.out, launcher)
    launch = manifest.LaunchRecord(layout.out, "slurm" if launcher == "slurm" and not dry_run else
                                   ("local" if launcher == "local" else "none (Slurm dry run)"), launcher)
    t0 = time.perf_counter()
    sample = None
    if sources_dir is None and spec.profile.data.source == "sample":
        sample = prepare_sample(spec, layout)
    result.seconds["sample corpus"] = round(time.perf_counter() - t0, 2)
    inputs = plan_inputs(spec, layout, Path(sources_dir) if sources_dir is not None else None)

    key = {"spec_data": spec.profile.data.model_dump(), "seed": spec.profile.training.seed,
           "mixture": [s.model_dump() for s in spec.language.mixture], "launcher": launcher,
           "inputs": _input_listing(inputs), "code": code_digest("stages/data", "cluster/executors")}
    fresh_if_changed(layout.out, key, [layout.out / d for d in ("logs", "work", "clean", "removed", "stats")],
                     layout.out / "logs" / "config.json")

    outputs = StageOutputs(layout.out)
    planned = stage_jobs(spec, inputs, layout, launcher)
    rules = planned.rules
    if launcher == "slurm" and dry_run:
        for name, ex in planned.jobs:
            script = slurm_dry_run(ex)
            result.slurm_scripts[name] = script
            target = layout.out / "slurm" / f"{name}.sbatch"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(script)
        note = (f"Slurm dry run: {len(result.slurm_scripts)} sbatch scripts in slurm/ "
                f"({', '.join(result.slurm_scripts)}; "
                "each an array over every source's tasks, each depending on the one before); nothing was submitted.")
        outputs.note(note)
        result.notes.append(note)
    else:
        for k, (name, ex) in enumerate(planned.jobs):
            t1 = time.perf_counter()
            if note := run_job(ex, name, launcher, progress=progress, launch=launch):
                result.notes.append(note)
            result.seconds[name] = round(time.perf_counter() - t1, 2)
            if k == 0 and len(planned.jobs) > 1:
                for inp in inputs:
                    if not any(layout.filtered(inp.source.id).glob("*.parquet")):
                        raise ZagreusError(_nothing_left(inp, layout, rules[inp.source.id]))
                    pad_filtered(layout.filtered(inp.source.id), planned.tasks[inp.source.id])
        for inp in inputs:
            if not any(layout.clean(inp.source.id).glob("*.parquet")):
                raise ZagreusError(_nothing_left(inp, layout, rules[inp.source.id]))

    steps, examples = ([], []) if dry_run and launcher == "slurm" else collect_stats(spec, inputs, layout, rules)
    steps_df = pd.DataFrame(steps, columns=STEP_COLUMNS)
    examples_df = pd.DataFrame(examples, columns=EXAMPLE_COLUMNS)
    mixture_df = mixture_table(spec, steps_df)
    summary = write_summary(spec, layout, inputs, steps_df, launcher, sample)
    result.summary = summary

    layout.stats.mkdir(parents=True, exist_ok=True)
    steps_df.to_csv(layout.stats / "steps.csv", index=False)
    (layout.stats / "steps.json").write_text(steps_df.to_json(orient="records", indent=2, force_ascii=False))
    examples_df.to_csv(layout.stats / "removed_examples.csv", index=False)
    mixture_df.to_csv(layout.stats / "mixture.csv", index=False)

    result.frames.update(steps=steps_df, removed_examples=examples_df, mixture=mixture_df)
    result.tables["mixture"] = style_mixture(mixture_df)
    outputs.table("mixture", mixture_df, "Mixture against the report's budget (~1T tokens)", result.tables["mixture"])
    result.figures["mixture"] = mixture_figure(spec, mixture_df)
    outputs.figure("mixture", result.figures["mixture"], "Mixture against the report's budget",
                   "Left: the report's plan (400B English, 400B target language, 200B code) next to the token "
                   "counts it prints for its sources. Right: shares of the plan and of this run's cleaned "
                   f"data (estimated tokens = bytes / {BYTES_PER_TOKEN_ESTIMATE}).")
    if len(steps_df):
        result.tables["steps"] = style_steps(steps_df)
        outputs.table("steps", steps_df, "Documents, bytes and estimated tokens per source and step",
                      result.tables["steps"])
        result.tables["removed_examples"] = style_examples(examples_df)
        outputs.table("removed_examples", examples_df, "What each filter removed (examples)",
                      result.tables["removed_examples"])
        result.figures["removed"] = removed_figure(steps_df)
        outputs.figure("removed", result.figures["removed"], "What each filtering step removed",
                       "Per source, the share of the bytes read that each step removed (documents in "
                       "brackets), in pipeline order; everything else is kept in clean/<source>/.")
        total = steps_df[steps_df.step == "clean"]
        note = (f"{int(total.documents.sum()):,} clean documents, {int(total.bytes.sum()):,} bytes "
                f"(~{int(total.est_tokens.sum()):,} tokens at {BYTES_PER_TOKEN_ESTIMATE} bytes/token) from "
                f"{len(inputs)} sources.")
        outputs.note(note)
        result.notes.append(note)
    outputs.write()
    result.seconds["total"] = round(time.perf_counter() - t0, 2)
    return result


def run_stage(profile: str = "smoke", language: str = "ita", run_dir: str = "", out_dir: str = "",
              launcher: str = "local", overrides: dict | None = None, dry_run: bool = False) -> StageResult:
    """The notebook's entry point: the runner's parameters in, the stage's results out."""
    spec = load_spec(language, profile, parse_overrides(overrides))
    _, od = resolve_dirs(profile, language, run_dir, out_dir)
    return run(spec, od, launcher, dry_run=dry_run)


def parse_overrides(overrides) -> dict:
    """The notebooks' ``overrides`` parameter: a mapping, or its YAML/JSON text (``papermill -p``)."""
    if not overrides:
        return {}
    if isinstance(overrides, str):
        import yaml

        try:
            overrides = yaml.safe_load(overrides)
        except yaml.YAMLError:
            raise ZagreusError(f"overrides {overrides!r} is not a mapping such as "
                               "{'data.min_doc_chars': 20}") from None
    if not isinstance(overrides, dict):
        raise ZagreusError(f"overrides must be a mapping such as {{'data.min_doc_chars': 20}}, not {overrides!r}")
    return overrides


def _input_listing(inputs: list[SourceInput]) -> list:
    listing = []
    for inp in inputs:
        if inp.local:
            files = sorted(Path(inp.folder).glob(inp.glob))
            listing.append([inp.source.id, [(p.name, p.stat().st_size) for p in files]])
        else:
            listing.append([inp.source.id, inp.folder, inp.glob])
    return listing


def _nothing_left(inp: SourceInput, layout: Layout, rules: dict[str, str]) -> str:
    counts = {step: _jsonl_stats(layout.removed(inp.source.id, step), 0)[0] for step in rules}
    removed = ", ".join(f"{step} removed {n}" for step, n in counts.items())
    return (f"source {inp.source.id!r} ({inp.folder}): no document survived the filters ({removed}). "
            "Check the input, or lower data.min_doc_chars (e.g. --set data.min_doc_chars=20)")


# --- statistics ------------------------------------------------------------------------------

STEP_COLUMNS = ["source", "group", "step", "rule", "documents", "bytes", "est_tokens",
                "removed_documents", "removed_bytes", "removed_share"]
EXAMPLE_COLUMNS = ["source", "step", "reason", "id", "chars", "excerpt"]


def _parquet_stats(folder: Path) -> tuple[int, int]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    docs = nbytes = 0
    for f in sorted(Path(folder).glob("*.parquet")):
        col = pq.read_table(f, columns=["text"]).column("text")
        docs += len(col)
        if len(col):
            nbytes += int(pc.sum(pc.binary_length(col.cast("binary"))).as_py() or 0)
    return docs, nbytes


def _jsonl_stats(folder: Path, n_examples: int) -> tuple[int, int, list[dict]]:
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
                n, b, ex = _jsonl_stats(layout.removed(sid, step), EXAMPLES_PER_STEP)
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


def write_summary(spec: Spec, layout: Layout, inputs: list[SourceInput], steps: pd.DataFrame,
                  launcher: str, sample: dict | None) -> dict:
    """``summary.json``: what later stages read (clean folders, sizes, held-out/SFT locations)."""
    sources = {}
    for inp in inputs:
        sid = inp.source.id
        row = steps[(steps.source == sid) & (steps.step == "clean")] if len(steps) else steps
        sources[sid] = {
            "group": group_of(inp.source), "language": inp.source.language, "dataset": inp.source.dataset,
            "subset": inp.source.subset, "input": inp.folder,
            "clean": str(layout.clean(sid).relative_to(layout.out)),
            "documents": int(row.documents.iloc[0]) if len(row) else None,
            "bytes": int(row.bytes.iloc[0]) if len(row) else None,
            "est_tokens": int(row.est_tokens.iloc[0]) if len(row) else None,
        }
    summary = {"stage": STAGE, "language": spec.language.code, "profile": spec.profile.name,
               "launcher": launcher, "bytes_per_token_estimate": BYTES_PER_TOKEN_ESTIMATE,
               "dedup": spec.profile.data.dedup, "sources": sources,
               "sample": None if sample is None else {
                   "raw": "raw", "heldout": "raw/heldout", "sft": "raw/sft/conversations.jsonl",
                   "seed": sample.get("seed"), "scale": sample.get("scale")}}
    (layout.out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return summary


# --- display ---------------------------------------------------------------------------------

def fmt_int(v) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{int(v):,}"


def fmt_pct(v) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1%}"


def fmt_tokens(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    v = float(v)
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= size:
            return f"{v / size:.3g}{unit}"
    return f"{v:.0f}"


def styled(df: pd.DataFrame):
    """Index hidden, every text cell HTML-escaped (rules say ">=", excerpts hold code)."""
    return df.style.hide(axis="index").format(escape="html", precision=4)


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
    from matplotlib.figure import Figure

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
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig


def mixture_figure(spec: Spec, mixture: pd.DataFrame):
    from matplotlib.figure import Figure

    rows = mixture[mixture.group != "total"].reset_index(drop=True)
    labels = ["English", spec.language.name, "code"]
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
    for ax in (left, right):
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig
