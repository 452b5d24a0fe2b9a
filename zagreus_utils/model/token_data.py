"""The local trainer's data: every token folder read with datatrove, blended and shuffled like
nanotron's Nanoset (:class:`TokenDataset`), and the batch collation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from ..pipeline.errors import ZagreusError
from .preflight import RETOKENIZE, read_metadata, token_file_problems


# --- the data -------------------------------------------------------------------------------

def blend_index(lengths: list[int], weights: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nanoset's ``build_nanoset_index_helper``: pick the dataset furthest below its share."""
    lengths = np.asarray(lengths, dtype=np.int64)
    current = np.zeros(len(lengths), dtype=np.int64)
    ds_index = np.empty(n, dtype=np.int64)
    sample_index = np.empty(n, dtype=np.int64)
    for i in range(n):
        err = weights * max(i, 1.0) - current
        d = int(np.argmax(err))
        ds_index[i] = d
        sample_index[i] = current[d] % lengths[d]
        current[d] += 1
    return ds_index, sample_index


def token_size_of(folder: str | Path, vocab_size: int) -> int:
    sizes = {size for _, _, size in read_metadata(Path(folder)) if size > 0}
    if len(sizes) == 1:
        return sizes.pop()
    return 4 if vocab_size > 65536 else 2


class TokenDataset(Dataset):
    """The blended, shuffled sample order over every token folder (a map-style torch Dataset).

    Item ``i`` is ``{"input_ids", "labels", "shift_labels", "sample_index"}``: the first
    ``seq_len`` tokens of a ``seq_len + 1`` window and the next-token targets of all of them.
    """

    def __init__(self, folders: list[str], seq_len: int, num_samples: int, *, seed: int, vocab_size: int,
                 weights: list[float] | None = None):
        from datatrove.utils.dataset import DatatroveFolderDataset

        self.folders = [str(f) for f in folders]
        self.seq_len = seq_len
        self.sources = []
        for f in self.folders:
            if not Path(f).is_dir():
                raise ZagreusError(f"token folder {f} does not exist; run the tokenization stage first")
            problems = token_file_problems(Path(f), token_size_of(f, vocab_size))
            if problems:
                raise ZagreusError(f"{problems[0]}; {RETOKENIZE}")
            try:
                self.sources.append(DatatroveFolderDataset(
                    f, seq_len, filename_pattern="*.ds", recursive=False,
                    token_size=token_size_of(f, vocab_size), shuffle=True, seed=seed))
            except FileNotFoundError:
                raise ZagreusError(f"token folder {f} holds no *.ds files; rerun the tokenization stage") from None
        self.lengths = [len(s) for s in self.sources]
        short = [f for f, n in zip(self.folders, self.lengths) if n == 0]
        if short:
            raise ZagreusError(f"token folder(s) {short} hold fewer than {seq_len + 1} tokens (one sample); "
                               "add data or lower the sequence length")
        w = np.asarray(weights if weights else self.lengths, dtype=np.float64)
        self.weights = w / w.sum()
        per_epoch = int(sum(self.lengths))
        ds_idx, s_idx = blend_index(self.lengths, self.weights, per_epoch)
        np.random.RandomState(seed).shuffle(ds_idx)
        np.random.RandomState(seed).shuffle(s_idx)
        epochs = num_samples // per_epoch + 1
        self.dataset_index = np.tile(ds_idx, epochs)[:num_samples]
        self.sample_index = np.tile(s_idx, epochs)[:num_samples]
        self.epochs = num_samples / per_epoch

    def __len__(self) -> int:
        return len(self.dataset_index)

    def __getitem__(self, i: int) -> dict:
        d = int(self.dataset_index[i])
        window = self.sources[d][int(self.sample_index[i]) % self.lengths[d]]["input_ids"]
        return {"input_ids": window[:-1], "labels": window[1:], "sample_index": i}

    def samples_per_source(self) -> dict[str, int]:
        counts = np.bincount(self.dataset_index, minlength=len(self.folders))
        return {Path(f).name: int(c) for f, c in zip(self.folders, counts)}


def collate(samples: list[dict]) -> dict:
    import torch

    labels = torch.stack([s["labels"] for s in samples])
    return {"input_ids": torch.stack([s["input_ids"] for s in samples]), "labels": labels,
            "shift_labels": labels, "sample_index": torch.tensor([s["sample_index"] for s in samples]),
            "use_cache": False}
