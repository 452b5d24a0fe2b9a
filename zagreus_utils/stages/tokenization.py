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
and that the token size matches the vocabulary. :func:`nanoset_tokenizer_name` is the one place
that string is decided; it is what the ``.metadata`` files record and what ``tokenized/summary.json``
hands the pretraining stage. :func:`verify_nanoset_folder` checks it all and the result is read
back with datatrove's ``DatatroveFolderDataset``.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from ..pipeline import manifest, paths
from .data import (PALETTE, StageResult, code_digest, fmt_int, fmt_tokens, fresh_if_changed, parse_overrides,
                   resolve_dirs, styled)
from ..pipeline.errors import ZagreusError
from ..pipeline.outputs import StageOutputs
from ..pipeline.spec import Spec, load_spec

STAGE = "02_tokenization"
UPSTREAM = "01_data"
BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"
IM_START, IM_END, PAD = "<|im_start|>", "<|im_end|>", "<|pad|>"
SPECIAL_TOKENS = [BOS, EOS, IM_START, IM_END, PAD]  # ids 0..4 in the smoke BPE
LLAMA_TOKENIZER = "meta-llama/Llama-3.2-1B"  # the report's tokenizer (section 3)
# What a hub tokenizer needs in the local cache: nanotron loads it with AutoTokenizer, which in
# transformers 5 also reads the repo's config.json (offline, without it: "couldn't connect").
HUB_TOKENIZER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
REPORT_TEXT_TO_TOKENS = 3.0  # "for every 1 GB of text, approximately 3 GB of tokenized outputs"
REPORT_DISK_TB = (3.0, 5.0)  # "at least 3 to 5 terabytes of disk space" for ~1T tokens
PLAN_TOKENS = 1_000_000_000_000
FERTILITY_BYTES = 256 * 1024  # text per language group for the fertility table
MERGE_POOL_MIN_BYTES = 1 << 30  # below this much clean parquet, merges run in-process
CHATML_TEMPLATE = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content']"
                   " + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}"
                   "{{ '<|im_start|>assistant\\n' }}{% endif %}")


def token_size_for(vocab_size: int) -> int:
    """Bytes per token in datatrove/Nanoset files: uint16 up to 65,536 ids, uint32 beyond."""
    return 2 if vocab_size <= np.iinfo(np.uint16).max + 1 else 4


# --- the tokenizer string --------------------------------------------------------------------

def nanoset_tokenizer_name(spec: Spec, out_dir: str | os.PathLike) -> str:
    """THE tokenizer string of this run: recorded in every ``.metadata`` and carried by the
    pretraining config as ``tokenizer.tokenizer_name_or_path`` (nanotron asserts they are equal).

    A pretrained tokenizer: its name as the profile gives it (``meta-llama/Llama-3.2-1B``). The
    smoke BPE: the absolute path of the saved tokenizer folder ``<out_dir>/tokenizer`` (a folder
    AutoTokenizer loads; a bare ``tokenizer.json`` path would make nanotron's AutoTokenizer fail).
    """
    if spec.profile.tokenizer.kind == "pretrained":
        return spec.profile.tokenizer.name_or_path
    return str(Path(out_dir).resolve() / "tokenizer")


def check_tokenizer_name(name: str, where: str = "tokenizer.name_or_path") -> str:
    """Refuse a tokenizer string that cannot pass Nanoset's check (before any heavy work)."""
    problem = None
    if not name or not name.strip():
        problem = "it is empty"
    elif name != name.strip():
        problem = "it has leading/trailing blanks (the config's value would be compared without them)"
    elif "|" in name:
        problem = "it contains '|', the separator of the .metadata line 'tokenizer|token_size'"
    elif "\n" in name or "\r" in name:
        problem = "it contains a line break (the .metadata line would be cut there)"
    elif name.endswith(".json"):
        problem = ("it names a tokenizer.json file: nanotron loads the name with AutoTokenizer, which "
                   "needs a hub name or a tokenizer folder")
    if problem:
        raise ZagreusError(f"tokenizer string {name!r} ({where}) would not pass nanotron's Nanoset check: "
                           f"{problem}. Use a hub name such as {LLAMA_TOKENIZER!r} or a tokenizer folder")
    return name


# --- finding / making the tokenizer ----------------------------------------------------------

def cached_tokenizer_file(name_or_path: str) -> Path | None:
    """``tokenizer.json`` of a local folder or of a hub tokenizer in the local HF cache (offline)."""
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        return p / "tokenizer.json" if (p / "tokenizer.json").is_file() else None
    if p.is_file():
        return p if p.name.endswith(".json") else None
    if name_or_path.count("/") != 1 or name_or_path.startswith(("/", ".")):
        return None
    from huggingface_hub import constants, try_to_load_from_cache

    seen = []
    for cache in (constants.HF_HUB_CACHE, str(Path.home() / ".cache" / "huggingface" / "hub")):
        if cache in seen:
            continue
        seen.append(cache)
        try:
            found = try_to_load_from_cache(name_or_path, "tokenizer.json", cache_dir=cache)
        except Exception:  # a malformed repo id, an unreadable cache
            found = None
        if isinstance(found, str) and Path(found).is_file():
            return Path(found)
    return None


def pretrained_tokenizer_file(spec: Spec) -> Path:
    """The profile's pretrained tokenizer, offline, or a clear error saying how to get it."""
    name = spec.profile.tokenizer.name_or_path
    found = cached_tokenizer_file(name)
    if found is None:
        from huggingface_hub import constants

        raise ZagreusError(
            f"tokenizer {name!r} (configs/profiles/{spec.profile.name}.yaml tokenizer.name_or_path) cannot be "
            f"loaded offline: it is not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) nor a local "
            f"folder with a tokenizer.json. Pre-fill the cache on a machine with network access (the repo is "
            f"gated: accept its licence, then `huggingface-cli login` and `huggingface-cli download {name} "
            f"{' '.join(HUB_TOKENIZER_FILES)}`) and point HF_HOME at that cache, "
            f"or run the embedded profile instead (--profile smoke)")
    return found


def train_bpe(texts: Iterable[str], vocab_size: int, folder: str | os.PathLike, *, model_max_length: int = 4096):
    """Train a byte-level BPE and save it as a transformers tokenizer folder; returns the tokenizer.

    Special tokens: ``SPECIAL_TOKENS`` at ids 0..4 (bos, eos, ChatML, pad); reserved tokens fill the
    vocabulary up to exactly ``vocab_size`` when the text has too few merges. Like Llama-3, encoding
    with special tokens prepends ``<|begin_of_text|>``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < len(SPECIAL_TOKENS) + 256:
        raise ZagreusError(f"tokenizer.vocab_size {vocab_size} is too small for a byte-level BPE "
                           f"(256 bytes + {len(SPECIAL_TOKENS)} special tokens at least)")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    missing = vocab_size - tok.get_vocab_size()
    if missing > 0:
        tok.add_special_tokens([f"<|reserved_special_token_{i}|>" for i in range(missing)])
    for i, t in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(t) == i, (t, tok.token_to_id(t))
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, 0)]),
    ])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   model_max_length=model_max_length,
                                   additional_special_tokens=[IM_START, IM_END])
    fast.chat_template = CHATML_TEMPLATE
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(folder))
    return fast


# --- datatrove: tokenizing with the Nanoset string -------------------------------------------

from datatrove.pipeline.tokens import DocumentTokenizer  # noqa: E402


_FRAMED: dict[tuple, Any] = {}


def framed_tokenizer(tokenizer_file: str | os.PathLike, bos: str = BOS, eos: str = EOS):
    """The ``tokenizers.Tokenizer`` of ``tokenizer_file`` framing each text as ``<bos> text <eos>``,
    loaded once per process (and inherited, not reloaded, by forked datatrove workers)."""
    from tokenizers import Tokenizer
    from tokenizers.processors import TemplateProcessing

    st = Path(tokenizer_file).stat()
    key = (str(tokenizer_file), st.st_mtime_ns, st.st_size, bos, eos)
    if key not in _FRAMED:
        tok = Tokenizer.from_file(str(tokenizer_file))
        ids = {t: tok.token_to_id(t) for t in (bos, eos)}
        if None in ids.values():
            raise ZagreusError(f"{tokenizer_file} has no {[t for t, i in ids.items() if i is None]} token; "
                               "use a Llama-3-style tokenizer or retrain the smoke tokenizer")
        tok.post_processor = TemplateProcessing(single=f"{bos} $A {eos}", pair=None, special_tokens=list(ids.items()))
        _FRAMED[key] = tok
    return _FRAMED[key]


class NanosetDocumentTokenizer(DocumentTokenizer):
    """datatrove's DocumentTokenizer that loads the tokenizer from a ``tokenizer.json`` file but
    records ``tokenizer_name`` (the Nanoset string) in the ``.metadata`` files, and frames each
    document as ``<bos> text <eos>``."""

    def __init__(self, output_folder, tokenizer_file: str, tokenizer_name: str, bos: str = BOS, eos: str = EOS,
                 **kwargs):
        super().__init__(output_folder, tokenizer_name_or_path=tokenizer_name, **kwargs)
        self.tokenizer_file = str(tokenizer_file)
        self.bos, self.eos = bos, eos
        self._owner_pid = os.getpid()

    @property
    def tokenizer(self):  # a plain property: the instance (pickled for every task) never holds it
        if os.getpid() != self._owner_pid:
            # A worker process (forked pool or Slurm task) tokenizes on one core. After a fork the
            # parent's rayon threads are gone: with TOKENIZERS_PARALLELISM=true set explicitly,
            # tokenizers would keep using them and hang, so turn its parallelism off here.
            os.environ["TOKENIZERS_PARALLELISM"] = "false"
        return framed_tokenizer(self.tokenizer_file, self.bos, self.eos)


def stage_jobs(spec: Spec, launcher: str, clean: dict[str, Path], out: Path, tokenizer_file: Path,
               name: str) -> list[tuple[str, Any]]:
    """Stage 02 as two datatrove jobs over every source (:class:`executors.PerSourceTask`):

    ``tokenize``: per source and clean shard, ParquetReader -> DocumentTokenizer (Nanoset string
    ``name`` in the metadata) into ``work/<id>/``; ``merge``: per source, DocumentTokenizerMerger
    (shuffled) into ``tokenized/<id>/``, the folder nanotron's Nanoset reads.
    """
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.tokens import DocumentTokenizerMerger

    from ..cluster.executors import PerSourceTask, make_executor, pack_tasks, slurm_bins

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


# --- Nanoset checks --------------------------------------------------------------------------

def read_metadata(path: Path) -> tuple[str, int, int]:
    """A datatrove ``.metadata`` file: (tokenizer string, token size, token count)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    if len(lines) < 2 or "|" not in lines[0]:
        raise ZagreusError(f"{path} is not a datatrove .metadata file (first line must be "
                           f"'tokenizer|token_size', second the token count); retokenize")
    name, _, size = lines[0].rpartition("|")
    try:
        return name, int(size), int(lines[1])
    except ValueError:
        raise ZagreusError(f"{path}: cannot read token size {size!r} / token count {lines[1]!r}; retokenize") from None


def verify_nanoset_folder(folder: str | os.PathLike, expected_name: str, vocab_size: int,
                          max_token_id: int | None = None) -> dict:
    """What nanotron's Nanoset asserts on a token folder, checked now with a clear error each:

    * the folder holds ``*.ds`` files, each with its ``.index`` and ``.metadata``;
    * the first ``.metadata`` (the one Nanoset reads) records ``expected_name`` (the pretraining
      config's ``tokenizer_name_or_path``) and the token size of ``vocab_size`` (2 or 4 bytes);
    * every file agrees, sizes are whole tokens, the index ends at the last token, the recorded token
      count is right, and no token id reaches ``vocab_size`` (the model's embedding rows).
    """
    folder = Path(folder)
    fix = "retokenize (zagreus run --stages tokenization --force)"
    files = sorted(folder.glob("*.ds")) if folder.is_dir() else []
    if not files:
        raise ZagreusError(f"token folder {folder} holds no *.ds files: Nanoset would find no data; {fix}")
    metas = sorted(folder.glob("*.ds.metadata"))
    if not metas:
        raise ZagreusError(f"token folder {folder} has no .metadata file: Nanoset reads the tokenizer string "
                           f"from the first one; {fix}")
    want_size = token_size_for(vocab_size)
    for meta in metas:  # Nanoset reads the first one; the merger also writes a folder-level one
        name, size, _ = read_metadata(meta)
        if name != expected_name:
            raise ZagreusError(f"token folder {folder}: {meta.name} records tokenizer {name!r} but the "
                               f"pretraining config will carry {expected_name!r}; Nanoset asserts they are equal. "
                               f"Tokenize with the same tokenizer string: {fix}")
        if size != want_size:
            raise ZagreusError(f"token folder {folder}: {meta.name} records {size}-byte tokens but a vocabulary "
                               f"of {vocab_size:,} needs {want_size}-byte tokens (uint16 up to 65,536 ids); {fix}")
    tokens = documents = 0
    dtype = np.uint16 if want_size == 2 else np.uint32
    top = -1
    for ds in files:
        meta, index = Path(f"{ds}.metadata"), Path(f"{ds}.index")
        if not meta.is_file() or not index.is_file():
            raise ZagreusError(f"token folder {folder}: {ds.name} lacks its .index or .metadata file; {fix}")
        m_name, m_size, m_count = read_metadata(meta)
        if (m_name, m_size) != (expected_name, want_size):
            raise ZagreusError(f"token folder {folder}: {meta.name} records {m_name!r}|{m_size}, unlike "
                               f"{expected_name!r}|{want_size}; {fix}")
        nbytes = ds.stat().st_size
        if nbytes % want_size:
            raise ZagreusError(f"{ds}: {nbytes} bytes is not a whole number of {want_size}-byte tokens; {fix}")
        count = nbytes // want_size
        ends = np.fromfile(index, dtype=np.uint64)
        if len(ends) and int(ends[-1]) != count:
            raise ZagreusError(f"{ds}: the index ends at token {int(ends[-1])} but the file holds {count}; {fix}")
        if m_count != count:
            raise ZagreusError(f"{meta}: records {m_count} tokens but {ds.name} holds {count}; {fix}")
        if count:
            top = max(top, int(np.fromfile(ds, dtype=dtype).max()))
        tokens += count
        documents += len(ends)
    limit = vocab_size if max_token_id is None else max_token_id + 1
    if top >= limit:
        raise ZagreusError(f"token folder {folder}: token id {top} does not fit a vocabulary of {limit:,} "
                           f"(the model's embedding); tokenize with the model's tokenizer; {fix}")
    return {"folder": str(folder), "files": len(files), "tokens": tokens, "documents": documents,
            "token_size": want_size, "tokenizer": expected_name, "max_token_id": top,
            "bytes": sum(p.stat().st_size for p in folder.iterdir() if p.is_file())}


def read_back(folder: str | os.PathLike, seq_len: int, token_size: int) -> dict:
    """Open the folder the way the trainers do (datatrove's DatatroveFolderDataset, ``*.ds``, not
    recursive) and take its first ``seq_len + 1`` window."""
    from datatrove.utils.dataset import DatatroveFolderDataset

    try:
        ds = DatatroveFolderDataset(str(folder), seq_len, filename_pattern="*.ds", recursive=False,
                                    token_size=token_size)
    except FileNotFoundError as exc:
        raise ZagreusError(f"DatatroveFolderDataset found no token files in {folder}: {exc}") from None
    if len(ds) == 0:
        raise ZagreusError(f"token folder {folder} holds fewer than {seq_len + 1} tokens (one training sample of "
                           "sequence_length + 1); add data or lower training.sequence_length")
    first = ds[0]["input_ids"]
    if len(first) != seq_len + 1:
        raise ZagreusError(f"DatatroveFolderDataset returned {len(first)} tokens from {folder}, not {seq_len + 1}")
    return {"samples": len(ds), "first": first.tolist()}


# --- measurements ----------------------------------------------------------------------------

def _texts(folder: Path, limit_bytes: int) -> list[str]:
    import pyarrow.parquet as pq

    out, size = [], 0
    for f in sorted(folder.glob("*.parquet")):
        for t in pq.read_table(f, columns=["text"]).column("text").to_pylist():
            out.append(t)
            size += len(t.encode("utf-8"))
            if size >= limit_bytes:
                return out
    return out


def fertility(tokenizers: dict[str, Any], texts_by_group: dict[str, list[str]]) -> pd.DataFrame:
    """Tokens per word and bytes per token, per tokenizer and language group (no special tokens)."""
    rows = []
    for tname, tok in tokenizers.items():
        for group, texts in texts_by_group.items():
            if not texts:
                continue
            enc = tok.encode_batch(texts, add_special_tokens=False)
            tokens = sum(len(e.ids) for e in enc)
            words = sum(len(t.split()) for t in texts)
            nbytes = sum(len(t.encode("utf-8")) for t in texts)
            rows.append({"tokenizer": tname, "language": group, "documents": len(texts), "words": words,
                         "bytes": nbytes, "tokens": tokens,
                         "tokens_per_word": round(tokens / words, 3) if words else None,
                         "bytes_per_token": round(nbytes / tokens, 3) if tokens else None})
    return pd.DataFrame(rows)


def storage_table(per_source: pd.DataFrame, token_size: int, bytes_per_token: float | None,
                  tokenizer_label: str, llama_bytes_per_token: float | None) -> pd.DataFrame:
    """Text in vs tokens out, and what ~1T tokens need on disk (this tokenizer; Llama-3.2's 4-byte ids)."""
    text_in = int(per_source.text_bytes.sum())
    out = int(per_source.token_bytes.sum())
    tokens = int(per_source.tokens.sum())
    index_per_token = (int(per_source.index_bytes.sum()) / tokens) if tokens else 0.0
    rows = [{"what": "this run: text in -> token files out", "tokenizer": tokenizer_label,
             "text_bytes": text_in, "token_bytes": out, "tokens": tokens,
             "out_per_in": round(out / text_in, 3) if text_in else None, "report_rule": REPORT_TEXT_TO_TOKENS}]
    for label, size, bpt in ((tokenizer_label, token_size, bytes_per_token),
                             (f"{LLAMA_TOKENIZER} (report)", 4, llama_bytes_per_token)):
        text = PLAN_TOKENS * bpt if bpt else None
        tok_bytes = PLAN_TOKENS * (size + index_per_token)
        rows.append({"what": "plan: ~1T tokens", "tokenizer": label, "text_bytes": text, "token_bytes": tok_bytes,
                     "tokens": PLAN_TOKENS, "out_per_in": round(tok_bytes / text, 3) if text else None,
                     "report_rule": REPORT_TEXT_TO_TOKENS})
    return pd.DataFrame(rows)


# --- the stage -------------------------------------------------------------------------------

def require_data(profile: str = "smoke", language: str = "ita", run_dir: str = "") -> dict:
    """Stage 01's manifest must say ok (a clear error naming the command that fixes it otherwise)."""
    rd, _ = resolve_dirs(profile, language, run_dir, "", STAGE)
    return manifest.require(rd / UPSTREAM, UPSTREAM, profile, language)


def _clean_sources(spec: Spec, data_dir: Path) -> dict[str, dict]:
    summary_path = data_dir / "summary.json"
    if not summary_path.is_file():
        raise ZagreusError(f"{summary_path} is missing: stage {UPSTREAM} did not finish; run it first "
                           f"(zagreus run --profile {spec.profile.name} --languages {spec.language.code} "
                           "--stages data)")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    found = {}
    for s in spec.language.mixture:
        info = summary.get("sources", {}).get(s.id)
        folder = data_dir / (info or {}).get("clean", f"clean/{s.id}")
        if info is None or not folder.is_dir() or not any(folder.glob("*.parquet")):
            raise ZagreusError(f"source {s.id!r}: no clean parquet shards in {folder} (stage {UPSTREAM} output). "
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
    from tokenizers import Tokenizer

    t0 = time.perf_counter()
    cfg = spec.profile.tokenizer
    if cfg.kind == "pretrained":
        path = pretrained_tokenizer_file(spec)
    else:
        folder = out / "tokenizer"
        path = folder / "tokenizer.json"
        key = {"vocab": cfg.vocab_size, "code": code_digest("stages/tokenization"),
               "inputs": _clean_listing(sources)}
        marker = out / "logs" / "tokenizer.json"
        stale = fresh_if_changed(out, key, [folder], marker)
        if stale or not path.is_file():
            if not sources:
                raise ZagreusError(f"the smoke tokenizer is trained on stage {UPSTREAM}'s clean text, which is "
                                   f"missing; run that stage first (with the local launcher)")
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


def run(spec: Spec, out_dir: str | os.PathLike, launcher: str = "local",
        data_dir: str | os.PathLike | None = None, *, dry_run: bool = False, progress: bool = True) -> StageResult:
    """Stage 02 for ``spec``: tokenizer, token folders (``tokenized/<id>``), checks, tables, figures.

    ``data_dir``: stage 01's folder (default: ``<out_dir>/../01_data``). ``launcher`` ``slurm``
    submits the tokenize and merge jobs with datatrove's ``SlurmPipelineExecutor`` and waits for
    each (:func:`executors.run_slurm`); ``dry_run`` only writes their sbatch scripts.
    """
    from ..cluster.executors import check_launcher, run_job, slurm_dry_run

    check_launcher(launcher)
    t0 = time.perf_counter()
    out = Path(out_dir).resolve()
    data_dir = Path(data_dir).resolve() if data_dir is not None else out.parent / UPSTREAM
    name = check_tokenizer_name(nanoset_tokenizer_name(spec, out))
    if spec.profile.tokenizer.kind == "pretrained":
        pretrained_tokenizer_file(spec)  # refuse an uncached tokenizer before anything else
    result = StageResult(out, launcher)
    out.mkdir(parents=True, exist_ok=True)
    dry = launcher == "slurm" and dry_run
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
           "code": code_digest("stages/tokenization", "cluster/executors"),
           "inputs": _clean_listing(sources)}
    fresh_if_changed(out, key, [tokenized, work, logs / "tokenize", logs / "merge"], logs / "config.json")

    outputs = StageOutputs(out)
    ids = [s.id for s in spec.language.mixture]
    clean = {sid: (sources or {}).get(sid, {}).get("path", data_dir / "clean" / sid) for sid in ids}
    if dry:
        for job, ex in stage_jobs(spec, launcher, clean, out, tok_path, name):
            script = slurm_dry_run(ex)
            result.slurm_scripts[job] = script
            (out / "slurm").mkdir(parents=True, exist_ok=True)
            (out / "slurm" / f"{job}.sbatch").write_text(script)
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
    from tokenizers import Tokenizer

    groups: dict[str, list[str]] = {}
    for s in spec.language.mixture:
        label = {"eng": "English", "code": "code"}.get(s.language, spec.language.name)
        have = sum(len(t.encode("utf-8")) for t in groups.get(label, []))
        if have < FERTILITY_BYTES:
            groups.setdefault(label, []).extend(_texts(sources[s.id]["path"], FERTILITY_BYTES - have))
    this_label = (f"smoke BPE ({vocab:,})" if spec.profile.tokenizer.kind == "bpe"
                  else spec.profile.tokenizer.name_or_path)
    available = {this_label: tok}
    smoke_bpe = paths.run_dir("smoke", spec.language.code) / STAGE / "tokenizer" / "tokenizer.json"
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
        "stage": STAGE, "language": spec.language.code, "profile": spec.profile.name,
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


def run_stage(profile: str = "smoke", language: str = "ita", run_dir: str = "", out_dir: str = "",
              launcher: str = "local", overrides: dict | None = None, dry_run: bool = False) -> StageResult:
    """The notebook's entry point: requires stage 01, then runs stage 02."""
    require_data(profile, language, run_dir)
    spec = load_spec(language, profile, parse_overrides(overrides))
    rd, od = resolve_dirs(profile, language, run_dir, out_dir, STAGE)
    return run(spec, od, launcher, data_dir=rd / UPSTREAM, dry_run=dry_run)


# --- display ---------------------------------------------------------------------------------

def style_per_source(df: pd.DataFrame):
    return (styled(df)
            .format({c: fmt_int for c in ("documents", "tokens", "text_bytes", "token_bytes", "index_bytes",
                                            "samples", "max_token_id")})
            .set_caption("token_bytes: .ds + .index + .metadata of the merged folder; samples: "
                         "sequence_length + 1 windows DatatroveFolderDataset serves."))


def style_fertility(df: pd.DataFrame):
    return (styled(df).format({c: fmt_int for c in ("documents", "words", "bytes", "tokens")})
            .format({"tokens_per_word": "{:.2f}", "bytes_per_token": "{:.2f}"})
            .set_caption("Words: whitespace-separated; special tokens not counted."))


def _fmt_bytes(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    v = float(v)
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if v >= size:
            return f"{v / size:.3g} {unit}"
    return f"{v:.0f} B"


def style_storage(df: pd.DataFrame):
    return (styled(df)
            .format({"text_bytes": _fmt_bytes, "token_bytes": _fmt_bytes, "tokens": fmt_tokens,
                     "out_per_in": lambda v: "—" if v is None or pd.isna(v) else f"{v:.2f}x",
                     "report_rule": lambda v: f"{v:.0f}x"})
            .set_caption("Report: 1 GB of text -> ~3 GB tokenized; ~1T tokens need 3-5 TB. Plan rows: text needed "
                         "= 1T x bytes per token; token files = 1T x (id bytes + index bytes per token)."))


def fertility_figure(fert: pd.DataFrame):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8))
    left, right = fig.subplots(1, 2)
    langs = list(dict.fromkeys(fert.language))
    toks = list(dict.fromkeys(fert.tokenizer))
    width = 0.8 / max(1, len(toks))
    for k, tname in enumerate(toks):
        for ax, col, fmt in ((left, "tokens_per_word", "{:.2f}"), (right, "bytes_per_token", "{:.2f}")):
            sub = fert[fert.tokenizer == tname].set_index("language")
            xs = [i - 0.4 + width * (k + 0.5) for i, lang in enumerate(langs) if lang in sub.index]
            ys = [float(sub.loc[lang, col]) for lang in langs if lang in sub.index]
            bars = ax.bar(xs, ys, width=width * 0.9, color=PALETTE[k % len(PALETTE)], label=tname)
            for b, y in zip(bars, ys):
                ax.text(b.get_x() + b.get_width() / 2, y, fmt.format(y), ha="center", va="bottom", fontsize=8)
    for ax, label, title in ((left, "tokens per word", "Fertility (lower: fewer tokens per word)"),
                             (right, "bytes per token", "Compression (higher: more text per token)")):
        ax.set_xticks(range(len(langs)))
        ax.set_xticklabels(langs)
        ax.set_ylabel(label)
        ax.set_title(title, fontsize=11)
        ax.set_ylim(0, ax.get_ylim()[1] * 1.25)
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(fontsize=8, frameon=False, loc="upper left")
    fig.tight_layout()
    return fig


def storage_figure(per_source: pd.DataFrame, storage: pd.DataFrame):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.4, 1]})
    x = range(len(per_source))
    text_mb = per_source.text_bytes / 1e6
    tok_mb = per_source.token_bytes / 1e6
    left.bar([i - 0.2 for i in x], text_mb, width=0.4, color=PALETTE[0], label="text in (clean)")
    left.bar([i + 0.2 for i in x], tok_mb, width=0.4, color=PALETTE[1], label="token files out")
    left.scatter([i + 0.2 for i in x], text_mb * REPORT_TEXT_TO_TOKENS, marker="_", s=500, color="black",
                 zorder=3, label="report's rule: 3 x text")
    for i, (t, n) in enumerate(zip(tok_mb, per_source.tokens)):
        left.text(i + 0.2, t, f"{n / 1e3:,.0f}k tok", ha="center", va="bottom", fontsize=7.5)
    left.set_xticks(list(x))
    left.set_xticklabels(per_source.source, fontsize=9)
    left.set_ylabel("MB")
    left.set_ylim(0, max(list(tok_mb) + list(text_mb * REPORT_TEXT_TO_TOKENS)) * 1.2)
    left.set_title("This run: text in vs token files out", fontsize=11)
    left.legend(fontsize=8, frameon=False, loc="upper right")

    plan = storage[storage.what.str.startswith("plan")].reset_index(drop=True)
    labels, values, colors = [], [], []
    for _, r in plan.iterrows():
        short = r.tokenizer if len(r.tokenizer) <= 22 else r.tokenizer.split("/")[-1]
        labels.append(f"token files\n{short}")
        values.append(r.token_bytes / 1e12)
        colors.append(PALETTE[1])
        if r.text_bytes is not None and not pd.isna(r.text_bytes):
            labels.append(f"text needed\n{short}")
            values.append(r.text_bytes / 1e12)
            colors.append(PALETTE[0])
    bars = right.bar(range(len(values)), values, color=colors, width=0.6, zorder=2)
    for b, v in zip(bars, values):
        right.text(b.get_x() + b.get_width() / 2, v, f"{v:.1f} TB", ha="center", va="bottom", fontsize=8)
    right.axhspan(*REPORT_DISK_TB, color="#dddddd", zorder=0, label="report: 3-5 TB for ~1T tokens")
    right.set_xticks(range(len(values)))
    right.set_xticklabels(labels, fontsize=7.5)
    right.set_ylabel("TB for ~1T tokens")
    right.set_ylim(0, max(values + [REPORT_DISK_TB[1]]) * 1.2)
    right.set_title("Extrapolated to the ~1T-token plan", fontsize=11)
    right.legend(fontsize=8, frameon=False, loc="upper left")
    for ax in (left, right):
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig
