"""The held-out slice: the last documents of each stage-02 token folder, never trained on.

Stage 02's merger shuffled each folder's documents, so its last ones are a random sample of the
source. :func:`split` writes a training copy of every folder without them (datatrove's own
``TokenizedFile`` writer: ``.ds``, ``.ds.index``, ``.metadata``, as nanotron's Nanoset and the local
trainer read them) and returns the held-out documents (each framed ``<bos> text <eos>``), which
are also saved as ``heldout.npz``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from datatrove.pipeline.tokens.tokenizer import TokenizedFile

from ...model.preflight import read_metadata
from ...model.token_data import token_size_of
from ...pipeline.errors import ZagreusError

HELDOUT_FILE = "heldout.npz"


@dataclass
class HeldOut:
    documents: list[np.ndarray]          # token ids, one array per document
    sources: list[str]                   # the folder each came from
    train_folders: list[Path]            # the training copies, in the order of the input folders
    per_source: dict[str, dict] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return int(sum(len(d) for d in self.documents))


def _read(ds: Path, token_size: int) -> tuple[np.ndarray, np.ndarray]:
    dtype = np.uint32 if token_size == 4 else np.uint16
    tokens = np.fromfile(ds, dtype=dtype)
    index = ds.with_name(ds.name + ".index")
    ends = np.fromfile(index, dtype="<u8").astype(np.int64) if index.is_file() else np.array([len(tokens)])
    if len(ends) and ends[-1] != len(tokens):
        raise ZagreusError(f"{ds} holds {len(tokens)} tokens but {index.name} ends at {ends[-1]}; "
                           "rerun the tokenization stage (zagreus run --stages tokenization --force)")
    return tokens, ends


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def split(folders: list[Path], out: Path, fraction: float, vocab_size: int) -> HeldOut:
    """Hold out ``fraction`` of each folder's documents (at least one where a folder has two or
    more; the last ones of its last file) into ``out/heldout.npz``; training copies in ``out/train/``."""
    docs, sources, train, per_source = [], [], [], {}
    if (out / "train").exists():
        shutil.rmtree(out / "train")  # rebuilt from stage 02's folders, which hold everything
    for folder in map(Path, folders):
        files = sorted(folder.glob("*.ds"))
        if not files:
            raise ZagreusError(f"token folder {folder} holds no *.ds files; rerun the tokenization stage")
        token_size = token_size_of(folder, vocab_size)
        tokenizer = next((tok for _, tok, _ in read_metadata(folder) if tok), "")
        dest = out / "train" / folder.name
        dest.mkdir(parents=True)
        for f in files[:-1]:
            for part in f.parent.glob(f.name + "*"):
                _link_or_copy(part, dest / part.name)
        last = files[-1]
        tokens, ends = _read(last, token_size)
        n = len(ends)
        k = min(n - 1, max(1, int(round(n * fraction)))) if n >= 2 else 0
        cut = int(ends[n - k - 1]) if k else len(tokens)
        writer = TokenizedFile(str(dest), last.name, save_index=True, tokenizer_name_or_path=tokenizer,
                               save_final_metadata=True, token_size=token_size)
        writer.write_bytes(tokens[:cut].tobytes(), doc_ends=[int(e) for e in ends[:n - k]])
        writer.close()
        if (folder / f"{folder.name}.ds.metadata").is_file():  # the merger's total, as it writes it
            total = sum(int(np.fromfile(f.with_name(f.name + ".index"), dtype="<u8")[-1])
                        for f in dest.glob("*.ds") if f.with_name(f.name + ".index").is_file())
            writer.write_final_metadata(total, filename=f"{folder.name}.ds")
        starts = np.concatenate([[0], ends[:-1]])
        for j in range(n - k, n):
            docs.append(tokens[starts[j]:ends[j]].astype(np.int64))
            sources.append(folder.name)
        per_source[folder.name] = {"documents": n, "heldout_documents": k, "tokens": int(len(tokens)),
                                   "heldout_tokens": int(len(tokens) - cut)}
        train.append(dest)
    if not docs:
        raise ZagreusError(f"no token folder among {[str(f) for f in folders]} holds two documents: "
                           "nothing can be held out; rerun the data and tokenization stages with more data")
    np.savez(out / HELDOUT_FILE, tokens=np.concatenate(docs), ends=np.cumsum([len(d) for d in docs]),
             sources=np.array(sources))
    return HeldOut(docs, sources, train, per_source)
