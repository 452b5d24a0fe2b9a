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
changes, the old logs and outputs are removed first (:func:`reruns.fresh_if_changed`).

Where things are: the inputs and the stage folder's layout in :mod:`.data_inputs`, the filter rules
in :mod:`.data_filters`, the statistics, tables and figures in :mod:`.data_report`; this module
builds the datatrove jobs and runs the stage (:func:`run`).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.pipeline.dedup.minhash import (MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter,
                                              MinhashDedupSignature)
from datatrove.pipeline.filters import GopherRepetitionFilter, LambdaFilter
from datatrove.pipeline.readers import JsonlReader, ParquetReader
from datatrove.pipeline.writers import JsonlWriter, ParquetWriter

from ..cluster import prefetch
from ..cluster.executors import (PerSourceTask, make_executor, pack_tasks, run_job, slurm_bins,
                                 write_dry_run_scripts)
from ..pipeline import manifest
from ..pipeline.context import StageContext, StageResult
from ..pipeline.errors import ZagreusError
from ..pipeline.outputs import StageOutputs
from ..pipeline.spec import Spec
from .data_filters import CodeQuality, MinChars, ProseQuality, RegexWordTokenizer, TagShards, minhash_config
from .data_inputs import Layout, SourceInput, check_input, group_of, hub_input, local_input
from .data_report import (BYTES_PER_TOKEN_ESTIMATE, EXAMPLE_COLUMNS, STEP_COLUMNS, collect_stats, jsonl_stats,
                          mixture_figure, mixture_table, removed_figure, style_examples, style_mixture, style_steps)
from .reruns import code_digest, fresh_if_changed

# the code whose change makes the stage start afresh (its rerun key)
CODE = ("stages/data", "stages/data_filters", "stages/data_inputs", "cluster/executors")

# tqdm.auto (imported by datatrove's dependencies) warns in every notebook without ipywidgets.
warnings.filterwarnings("ignore", message="IProgress not found")

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
            # compute nodes without internet: the shards `zagreus prefetch` fetched
            inputs = [prefetch.cached_input(s, spec) for s in spec.language.mixture]
        else:
            inputs = [hub_input(s) for s in spec.language.mixture]
    for inp in inputs:
        check_input(inp)
    return inputs


def _reader(inp: SourceInput, folder: str | None = None, glob: str | None = None, text_key: str | None = None,
            limit: int = -1, source_id: str | None = None):
    folder, glob = folder or inp.folder, glob or inp.glob
    kind = "jsonl" if "jsonl" in glob else "parquet"
    cls = JsonlReader if kind == "jsonl" else ParquetReader
    return cls(folder, glob_pattern=glob, text_key=text_key or inp.text_key, limit=limit,
               default_metadata={"zagreus_source": source_id or inp.source.id})


def _exclusion(layout: Layout, sid: str, step: str):
    return JsonlWriter(str(layout.removed(sid, step)), output_filename="${rank}.jsonl", compression=None)



def filter_steps(spec: Spec, inp: SourceInput, layout: Layout) -> list[tuple[str, Any, str]]:
    """(step, datatrove filter, rule in words) for one source."""
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
    folder.mkdir(parents=True, exist_ok=True)
    for rank in range(tasks):
        path = folder / f"{rank:05d}.parquet"
        if not path.exists():
            pq.write_table(pa.table({"text": pa.array([], pa.string()), "id": pa.array([], pa.string())}), path)


def run(ctx: StageContext, *, sources_dir: str | os.PathLike | None = None, dry_run: bool = False,
        progress: bool = True) -> StageResult:
    """Stage 01 for ``ctx``'s language and profile into its stage folder; tables/figures for the notebook.

    ``sources_dir``: read ``<sources_dir>/<source id>/`` instead of the profile's inputs (a local
    mirror of the sources, or tests' tiny inputs). ``launcher`` ``slurm`` submits each datatrove
    job with datatrove's ``SlurmPipelineExecutor`` and waits for it (:func:`executors.run_slurm`);
    with ``dry_run`` it only writes the sbatch scripts datatrove would submit.
    """
    spec, launcher = ctx.spec, ctx.launcher
    layout = Layout(ctx.out_dir)
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
           "inputs": _input_listing(inputs), "code": code_digest(*CODE)}
    fresh_if_changed(layout.out, key, [layout.out / d for d in ("logs", "work", "clean", "removed", "stats")],
                     layout.out / "logs" / "config.json")

    outputs = StageOutputs(layout.out)
    planned = stage_jobs(spec, inputs, layout, launcher)
    rules = planned.rules
    if launcher == "slurm" and dry_run:
        result.slurm_scripts.update(write_dry_run_scripts(planned.jobs, layout.out / "slurm"))
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
    summary = write_summary(spec, layout, inputs, steps_df, launcher, sample, ctx.stage.name)
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
    counts = {step: jsonl_stats(layout.removed(inp.source.id, step), 0)[0] for step in rules}
    removed = ", ".join(f"{step} removed {n}" for step, n in counts.items())
    return (f"source {inp.source.id!r} ({inp.folder}): no document survived the filters ({removed}). "
            "Check the input, or lower data.min_doc_chars (e.g. --set data.min_doc_chars=20)")


def write_summary(spec: Spec, layout: Layout, inputs: list[SourceInput], steps: pd.DataFrame,
                  launcher: str, sample: dict | None, stage: str) -> dict:
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
    summary = {"stage": stage, "language": spec.language.code, "profile": spec.profile.name,
               "launcher": launcher, "bytes_per_token_estimate": BYTES_PER_TOKEN_ESTIMATE,
               "dedup": spec.profile.data.dedup, "sources": sources,
               "sample": None if sample is None else {
                   "raw": "raw", "heldout": "raw/heldout", "sft": "raw/sft/conversations.jsonl",
                   "seed": sample.get("seed"), "scale": sample.get("scale")}}
    (layout.out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return summary


