"""What nanotron's Nanoset reads and asserts: the tokenizer string recorded in every ``.metadata``
(decided once, :func:`nanoset_tokenizer_name`), datatrove's DocumentTokenizer that records it, and
the checks of a token folder, each with a clear error, then a read-back with datatrove's dataset."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from datatrove.pipeline.tokens import DocumentTokenizer

from ..pipeline.errors import ZagreusError
from ..pipeline.spec import Spec
from .tokenizer import BOS, EOS, LLAMA_TOKENIZER, framed_tokenizer


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
