"""Stage 02, tokenization: the tokenizer, datatrove token folders nanotron's Nanoset reads, checks.

Tokenizer. ``full`` uses the report's Llama-3.2 tokenizer by name, loaded offline from the local
Hugging Face cache (or a local folder). ``smoke`` trains a byte-level BPE on the stage-01 clean
text with the profile's vocabulary size and Llama-3-style special tokens: ``<|begin_of_text|>``
(id 0) and ``<|end_of_text|>`` (id 1), as the smoke model's bos/eos ids say, then ``<|im_start|>``,
``<|im_end|>`` (ChatML, for SFT) and ``<|pad|>``; reserved tokens fill any vocabulary the corpus
cannot, so the vocabulary is exactly the model's. It is saved as a transformers tokenizer folder.

Token folders. Each clean source is tokenized with datatrove's ``DocumentTokenizer`` (one job, the
launcher's executor) and merged/shuffled with ``DocumentTokenizerMerger`` into
``tokenized/<source id>/`` (``000_<id>.ds`` + ``.index`` + ``.metadata``). Each document is framed
``<|begin_of_text|> text <|end_of_text|>``: the BOS is what the Llama-3.2 tokenizer's own
post-processor adds in the report's script; the EOS marks where a document ends.

Nanoset. nanotron reads the first ``*.metadata`` of each folder and asserts that its first line's
tokenizer string equals the config's ``tokenizer_name_or_path`` (then loads it with AutoTokenizer)
and that the token size matches the vocabulary. :func:`nanoset.nanoset_tokenizer_name` is the one
place that string is decided; it is what the ``.metadata`` files record and what
``tokenized/summary.json`` hands the pretraining stage. :func:`nanoset.verify_nanoset_folder`
checks it all and the result is read back with datatrove's ``DatatroveFolderDataset``.

Where things are: the tokenizer (special tokens, offline lookup, the smoke BPE) in :mod:`.tokenizer`,
the Nanoset string and checks in :mod:`.nanoset`, fertility and storage in
:mod:`.tokenization_report`; this module builds the datatrove jobs and runs the stage (:func:`run`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
from datatrove.pipeline.readers import ParquetReader
from datatrove.pipeline.tokens import DocumentTokenizerMerger
from tokenizers import Tokenizer

from ..cluster.executors import PerSourceTask, make_executor, pack_tasks, run_job, slurm_bins, write_dry_run_scripts
from ..pipeline import manifest, paths
from ..pipeline.context import StageContext, StageResult
from ..pipeline.errors import ZagreusError
from ..pipeline.outputs import StageOutputs
from ..pipeline.spec import ENGLISH, Spec
from .display import styled
from .nanoset import (NanosetDocumentTokenizer, check_tokenizer_name, nanoset_tokenizer_name, read_back,
                      token_size_for, verify_nanoset_folder)
from .reruns import code_digest, fresh_if_changed
from .tokenization_report import (fertility, fertility_figure, storage_figure, storage_table, style_fertility,
                                  style_per_source, style_storage)
from .tokenizer import (BOS, EOS, LLAMA_TOKENIZER, cached_tokenizer_file, framed_tokenizer, pretrained_tokenizer_file,
                        train_bpe)

# the code whose change makes the stage start afresh (its rerun key)
CODE = ("stages/tokenization", "stages/nanoset", "stages/tokenizer", "cluster/executors")
FERTILITY_BYTES = 256 * 1024  # text per language group for the fertility table
MERGE_POOL_MIN_BYTES = 1 << 30  # below this much clean parquet, merges run in-process


def stage_jobs(spec: Spec, launcher: str, clean: dict[str, Path], out: Path, tokenizer_file: Path,
               name: str) -> list[tuple[str, Any]]:
    """Stage 02 as two datatrove jobs over every source (:class:`executors.PerSourceTask`):

    ``tokenize``: per source and clean shard, ParquetReader -> DocumentTokenizer (Nanoset string
    ``name`` in the metadata) into ``work/<id>/``; ``merge``: per source, DocumentTokenizerMerger
    (shuffled) into ``tokenized/<id>/``, the folder nanotron's Nanoset reads.
    """
    local = launcher == "local"
    seed = spec.profile.training.seed
    work, tokenized, logs = out / "work", out / "tokenized", out / "logs"
    plan, tok_pipes, merge_pipes = [], {}, {}
    for sid, folder in clean.items():
        files = sorted(Path(folder).glob("*.parquet"))
        n = max(1, len(files))
        reader = ParquetReader(str(folder), glob_pattern="*.parquet", text_key="text", read_metadata=False)
        reader.add_file_path = False  # no per-document path metadata: nothing downstream reads it
        tok_pipes[sid] = [reader,
                          NanosetDocumentTokenizer(str(work / sid), tokenizer_file=str(tokenizer_file),
                                                   tokenizer_name=name, save_filename=sid, shuffle_documents=False,
                                                   seed=seed)]
        merge_pipes[sid] = [DocumentTokenizerMerger(str(work / sid), str(tokenized / sid), save_filename=sid,
                                                    shuffle=True, seed=seed, progress=False)]
        # task k of n reads shard k (the reader's files[k::n]); a dry run before any data plans one task
        plan += [(f.stat().st_size, (sid, k, n)) for k, f in enumerate(files)] or [(0, (sid, 0, 1))]
    merges = merge_sizes = [(sum(f.stat().st_size for f in Path(clean[sid]).glob("*.parquet")), (sid, 0, 1))
                            for sid in clean]
    workers = max(1, min(spec.profile.data.workers, os.cpu_count() or 1)) if local else None
    bins = workers if local else slurm_bins(spec)
    plan, merges = pack_tasks(plan, bins), pack_tasks(merges, bins)  # a task per worker (local, or Slurm's limit)
    if local and Path(tokenizer_file).is_file():
        framed_tokenizer(tokenizer_file)  # load it here once: the forked workers inherit it
    tokenize = make_executor(spec, launcher, [PerSourceTask(plan, tok_pipes)],
                             job_name=f"{spec.language.code}-tokenize", logging_dir=logs / "tokenize",
                             tasks=len(plan), workers=workers)
    # a merge is a sequential copy: below ~1 GB of text a pool of workers costs more than it saves
    small = sum(size for size, _ in merge_sizes) < MERGE_POOL_MIN_BYTES
    merge = make_executor(spec, launcher, [PerSourceTask(merges, merge_pipes)],
                          job_name=f"{spec.language.code}-merge", logging_dir=logs / "merge",
                          tasks=len(merges), workers=1 if local and small else workers,
                          depends=None if local else tokenize)
    return [("tokenize", tokenize), ("merge", merge)]


# --- measurements ----------------------------------------------------------------------------

def _texts(folder: Path, limit_bytes: int) -> list[str]:
    out, size = [], 0
    for f in sorted(folder.glob("*.parquet")):
        for t in pq.read_table(f, columns=["text"]).column("text").to_pylist():
            out.append(t)
            size += len(t.encode("utf-8"))
            if size >= limit_bytes:
                return out
    return out


# --- the stage -------------------------------------------------------------------------------

def _clean_sources(spec: Spec, data_dir: Path) -> dict[str, dict]:
    """Stage 01's clean shards per source (``data_dir/summary.json``), each folder checked to hold some."""
    summary_path = data_dir / "summary.json"
    if not summary_path.is_file():
        raise ZagreusError(f"{summary_path} is missing: stage {data_dir.name} did not finish; run it first "
                           f"(zagreus run --profile {spec.profile.name} --languages {spec.language.code} "
                           "--stages data)")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    found = {}
    for s in spec.language.mixture:
        info = summary.get("sources", {}).get(s.id)
        folder = data_dir / (info or {}).get("clean", f"clean/{s.id}")
        if info is None or not folder.is_dir() or not any(folder.glob("*.parquet")):
            raise ZagreusError(f"source {s.id!r}: no clean parquet shards in {folder} (stage {data_dir.name} output). "
                               f"Rerun it: zagreus run --profile {spec.profile.name} --languages "
                               f"{spec.language.code} --stages data --force")
        found[s.id] = {**info, "path": folder}
    return found


def _clean_listing(sources: dict[str, dict] | None) -> list:
    """Names, sizes and times of the clean shards (a rerun of stage 01 rewrites them: start afresh)."""
    return sorted((sid, [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(i["path"].glob("*.parquet"))])
                  for sid, i in (sources or {}).items())


def prepare_tokenizer(spec: Spec, out: Path, sources: dict[str, dict] | None, result: StageResult) -> tuple[Path, Any]:
    """(tokenizer.json path, tokenizers.Tokenizer): trained (smoke) or found offline (full)."""
    t0 = time.perf_counter()
    cfg = spec.profile.tokenizer
    if cfg.kind == "pretrained":
        path = pretrained_tokenizer_file(spec)
    else:
        folder = out / "tokenizer"
        path = folder / "tokenizer.json"
        key = {"vocab": cfg.vocab_size, "code": code_digest(CODE[0], "stages/tokenizer"),
               "inputs": _clean_listing(sources)}
        marker = out / "logs" / "tokenizer.json"
        stale = fresh_if_changed(out, key, [folder], marker)
        if stale or not path.is_file():
            if not sources:
                raise ZagreusError("the smoke tokenizer is trained on stage 01's clean text, which is "
                                   "missing; run that stage first (with the local launcher)")
            texts = (t for i in sources.values() for t in _texts(i["path"], 1 << 62))
            train_bpe(texts, cfg.vocab_size, folder, model_max_length=spec.profile.model.max_position_embeddings)
    tok = Tokenizer.from_file(str(path))
    result.seconds["tokenizer"] = round(time.perf_counter() - t0, 2)
    vocab = tok.get_vocab_size()
    if vocab != cfg.vocab_size:
        raise ZagreusError(f"tokenizer {cfg.name_or_path!r} has {vocab:,} tokens but the model's vocabulary "
                           f"(configs/profiles/{spec.profile.name}.yaml tokenizer.vocab_size) is "
                           f"{cfg.vocab_size:,}; nanotron asserts they match. Set tokenizer.vocab_size: {vocab}")
    for token, want in ((BOS, spec.profile.model.bos_token_id), (EOS, spec.profile.model.eos_token_id)):
        got = tok.token_to_id(token)
        if got != want:
            raise ZagreusError(f"tokenizer {cfg.name_or_path!r}: {token} has id {got}, but the model's "
                               f"{'bos' if token == BOS else 'eos'}_token_id (configs/profiles/"
                               f"{spec.profile.name}.yaml model) is {want}; make them agree")
    return path, tok


def run(ctx: StageContext, *, dry_run: bool = False, progress: bool = True) -> StageResult:
    """Stage 02 for ``ctx``: tokenizer, token folders (``tokenized/<id>``), checks, tables, figures.

    It reads stage 01's clean shards (``ctx.upstream("data")``, which must have finished ok).
    ``launcher`` ``slurm`` submits the tokenize and merge jobs with datatrove's
    ``SlurmPipelineExecutor`` and waits for each (:func:`executors.run_slurm`); ``dry_run`` only
    writes their sbatch scripts.
    """
    spec, launcher, out = ctx.spec, ctx.launcher, ctx.out_dir
    t0 = time.perf_counter()
    dry = launcher == "slurm" and dry_run
    data_dir = ctx.upstream("data", check=not dry)
    name = check_tokenizer_name(nanoset_tokenizer_name(spec, out))
    if spec.profile.tokenizer.kind == "pretrained":
        pretrained_tokenizer_file(spec)  # refuse an uncached tokenizer before anything else
    result = StageResult(out, launcher)
    out.mkdir(parents=True, exist_ok=True)
    launch = manifest.LaunchRecord(out, "none (Slurm dry run)" if dry else launcher, launcher)
    try:
        sources = _clean_sources(spec, data_dir)
    except ZagreusError:
        if not dry:
            raise
        sources = None  # a dry run after a dry run: scripts only
    if sources is None and spec.profile.tokenizer.kind == "bpe":  # dry run without clean text: planned path
        tok_path, tok = out / "tokenizer" / "tokenizer.json", None
    else:
        tok_path, tok = prepare_tokenizer(spec, out, sources, result)
    vocab = spec.profile.tokenizer.vocab_size
    token_size = token_size_for(vocab)
    seq_len = spec.profile.training.sequence_length
    tokenized, work, logs = out / "tokenized", out / "work", out / "logs"

    key = {"name": name, "vocab": vocab, "launcher": launcher, "seed": spec.profile.training.seed,
           "tokenizer_sha": manifest.sha256_file(tok_path) if tok_path.is_file() else None,
           "code": code_digest(*CODE),
           "inputs": _clean_listing(sources)}
    fresh_if_changed(out, key, [tokenized, work, logs / "tokenize", logs / "merge"], logs / "config.json")

    outputs = StageOutputs(out)
    ids = [s.id for s in spec.language.mixture]
    clean = {sid: (sources or {}).get(sid, {}).get("path", data_dir / "clean" / sid) for sid in ids}
    if dry:
        result.slurm_scripts.update(write_dry_run_scripts(stage_jobs(spec, launcher, clean, out, tok_path, name),
                                                          out / "slurm"))
        note = (f"Slurm dry run: {len(result.slurm_scripts)} sbatch scripts in slurm/ (tokenize, then merge; each "
                f"an array over every source); tokenizer string {name!r}; nothing was submitted.")
        outputs.note(note)
        result.notes.append(note)
        outputs.write()
        return result

    t1 = time.perf_counter()
    for job, ex in stage_jobs(spec, launcher, clean, out, tok_path, name):
        t2 = time.perf_counter()
        if note := run_job(ex, job, launcher, progress=progress, launch=launch):
            result.notes.append(note)
        result.seconds[job] = round(time.perf_counter() - t2, 2)
    result.seconds["datatrove"] = round(time.perf_counter() - t1, 2)

    # what Nanoset will assert, then a read-back through datatrove's dataset reader
    rows, checks = [], []
    for sid in ids:
        v = verify_nanoset_folder(tokenized / sid, name, vocab)
        back = read_back(tokenized / sid, seq_len, token_size)
        index_bytes = sum(p.stat().st_size for p in (tokenized / sid).glob("*.ds.index"))
        rows.append({"source": sid, "group": sources[sid].get("group"), "documents": v["documents"],
                     "tokens": v["tokens"], "text_bytes": sources[sid].get("bytes") or 0,
                     "token_bytes": v["bytes"], "index_bytes": index_bytes, "files": v["files"],
                     "samples": back["samples"], "max_token_id": v["max_token_id"],
                     "bytes_per_token": (round((sources[sid].get("bytes") or 0) / v["tokens"], 3)
                                         if v["tokens"] else None)})
        first = back["first"]
        checks.append({"source": sid, "metadata": f"{name}|{token_size}", "tokenizer string = config": "yes",
                       f"token size ({token_size} B for {vocab:,} ids)": "yes",
                       "ids < vocab": f"yes (max {v['max_token_id']})",
                       f"samples of {seq_len + 1} tokens": f"{back['samples']:,}",
                       "first tokens": tok.decode(first[:24], skip_special_tokens=False)[:80]})
    per_source = pd.DataFrame(rows)
    checks_df = pd.DataFrame(checks)

    # fertility for every tokenizer available offline
    groups: dict[str, list[str]] = {}
    for s in spec.language.mixture:
        label = {ENGLISH[0]: ENGLISH[1], "code": "code"}.get(s.language, spec.language.name)
        have = sum(len(t.encode("utf-8")) for t in groups.get(label, []))
        if have < FERTILITY_BYTES:
            groups.setdefault(label, []).extend(_texts(sources[s.id]["path"], FERTILITY_BYTES - have))
    this_label = (f"smoke BPE ({vocab:,})" if spec.profile.tokenizer.kind == "bpe"
                  else spec.profile.tokenizer.name_or_path)
    available = {this_label: tok}
    smoke_bpe = paths.run_dir("smoke", spec.language.code) / ctx.stage.name / "tokenizer" / "tokenizer.json"
    if spec.profile.tokenizer.kind != "bpe" and smoke_bpe.is_file():  # a smoke run of this language exists
        available["smoke BPE (smoke run)"] = Tokenizer.from_file(str(smoke_bpe))
    llama_file = cached_tokenizer_file(LLAMA_TOKENIZER)
    if llama_file is not None and spec.profile.tokenizer.name_or_path != LLAMA_TOKENIZER:
        available[f"{LLAMA_TOKENIZER}"] = Tokenizer.from_file(str(llama_file))
    fert = fertility(available, groups)
    if llama_file is None:
        result.notes.append(f"{LLAMA_TOKENIZER} is not in the local Hugging Face cache: fertility shows the "
                            "run's tokenizer only (nothing is downloaded).")
    bpt = float(per_source.text_bytes.sum() / per_source.tokens.sum()) if per_source.tokens.sum() else None
    llama_bpt = bpt if spec.profile.tokenizer.name_or_path == LLAMA_TOKENIZER else None
    llama_rows = fert[fert.tokenizer == LLAMA_TOKENIZER] if len(fert) else fert
    if len(llama_rows):
        llama_bpt = float(llama_rows.bytes.sum() / llama_rows.tokens.sum())
    storage = storage_table(per_source, token_size, bpt, this_label, llama_bpt)

    summary = {
        "stage": ctx.stage.name, "language": spec.language.code, "profile": spec.profile.name,
        "tokenizer": name, "tokenizer_name_or_path": name, "tokenizer_file": str(tok_path),
        "tokenizer_kind": spec.profile.tokenizer.kind, "vocab_size": vocab, "token_size": token_size,
        "bos_token": BOS, "eos_token": EOS, "bos_token_id": tok.token_to_id(BOS), "eos_token_id": tok.token_to_id(EOS),
        "document_framing": f"{BOS} text {EOS}", "sequence_length": seq_len,
        "metadata_line": f"{name}|{token_size}",
        "sources": {r["source"]: {"folder": str(tokenized / r["source"]), "tokens": int(r["tokens"]),
                                  "documents": int(r["documents"]), "files": int(r["files"]),
                                  "text_bytes": int(r["text_bytes"]), "token_bytes": int(r["token_bytes"]),
                                  f"samples_of_{seq_len + 1}": int(r["samples"])} for r in rows},
        "total_tokens": int(per_source.tokens.sum()),
    }
    (tokenized / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    result.summary = summary

    stats = out / "stats"
    stats.mkdir(parents=True, exist_ok=True)
    for fid, df in (("tokens_per_source", per_source), ("fertility", fert), ("storage", storage),
                    ("nanoset_checks", checks_df)):
        df.to_csv(stats / f"{fid}.csv", index=False)
    result.frames.update(tokens_per_source=per_source, fertility=fert, storage=storage, nanoset_checks=checks_df)
    result.tables["tokens_per_source"] = style_per_source(per_source)
    result.tables["fertility"] = style_fertility(fert)
    result.tables["storage"] = style_storage(storage)
    result.tables["nanoset_checks"] = styled(checks_df).set_caption(
        "What nanotron's Nanoset asserts, checked on each folder, then a read-back with DatatroveFolderDataset.")
    titles = {"tokens_per_source": "Tokens per source (Nanoset folders)",
              "fertility": "Tokenizer fertility per language", "storage": "Storage: text in, tokens out, ~1T plan",
              "nanoset_checks": "Nanoset checks and read-back"}
    for fid, df in result.frames.items():
        outputs.table(fid, df, titles[fid], result.tables[fid])
    result.figures["fertility"] = fertility_figure(fert)
    outputs.figure("fertility", result.figures["fertility"], "Tokenizer fertility per language",
                   "Tokens per word (lower is better) and bytes per token for every tokenizer available offline, "
                   "on up to 256 KB of clean text per language group; special tokens not counted.")
    result.figures["storage"] = storage_figure(per_source, storage)
    outputs.figure("storage", result.figures["storage"], "Tokens per source and storage",
                   "Left: text bytes in and token-file bytes out (.ds + .index + .metadata) per source, with the "
                   "report's 1 GB text -> ~3 GB tokenized rule. Right: disk for ~1T tokens, this run's tokenizer "
                   "and Llama-3.2 (4-byte ids), against the report's 3-5 TB.")
    note = (f"{summary['total_tokens']:,} tokens in {len(ids)} Nanoset folders (tokenized/<source>), tokenizer "
            f"string {name!r}, {token_size}-byte ids, vocabulary {vocab:,}.")
    outputs.note(note)
    result.notes.insert(0, note)
    for n in result.notes[1:]:
        outputs.note(n)
    outputs.write()
    result.seconds["total"] = round(time.perf_counter() - t0, 2)
    return result
