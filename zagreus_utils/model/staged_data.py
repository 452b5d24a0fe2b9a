"""The local trainer's data stages, read like nanotron's ``data_stages``: each stage feeds the steps
from its ``start_training_step`` (1-based, as nanotron counts) up to the next stage's, with its own
token folders, weights and seed.

As nanotron builds one dataloader per stage that starts at the stage's first sample, the sample
order here is the concatenation of one :class:`~zagreus_utils.model.token_data.TokenDataset` per
stage, each sized for its own steps x global batch: position ``i`` of the order is step
``i // global_batch + 1``, so the mixture changes exactly at each stage's start step. The order is
a pure function of the stages, the token files and the seeds, which is what makes a resumed run
(the Trainer skips the batches it had consumed) read exactly the samples an uninterrupted one
would. One stage gives the :class:`TokenDataset` itself, as before data stages existed.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from torch.utils.data import Dataset

from ..pipeline.errors import ZagreusError
from .token_data import TokenDataset


@dataclass(frozen=True)
class StageFeed:
    """One data stage as the trainer reads it from the rendered nanotron config (the spec's stage is
    :class:`zagreus_utils.pipeline.data_stages.DataStage`)."""

    name: str
    start_training_step: int  # nanotron's: the first (1-based) step that reads this stage
    folders: tuple[str, ...]
    weights: tuple[float, ...] | None
    seed: int


def read_stages(config: dict, absolute: Callable[[str], str], train_steps: int) -> tuple[StageFeed, ...]:
    """The ``data_stages`` of a nanotron config, in order of their start, checked as nanotron does
    (the first at step 1, starts distinct) and against ``train_steps`` (a stage that starts after
    the last step would never run)."""
    try:
        raw = list(config["data_stages"])
        stages = []
        for st in raw:
            ds = st["data"]["dataset"]
            folders = ds["dataset_folder"]
            folders = [folders] if isinstance(folders, str) else list(folders)
            weights = ds.get("dataset_weights")
            stages.append(StageFeed(str(st["name"]), int(st["start_training_step"]),
                                    tuple(absolute(f) for f in folders), tuple(weights) if weights else None,
                                    st["data"].get("seed") or 42))
    except (KeyError, TypeError) as exc:
        raise ZagreusError(f"the nanotron config's data_stages lack {exc}; render it with "
                           "zagreus_utils.nanotron.config") from None
    if not stages:
        raise ZagreusError("the nanotron config has no data_stages; render it with zagreus_utils.nanotron.config")
    stages.sort(key=lambda s: s.start_training_step)
    starts = [s.start_training_step for s in stages]
    if starts[0] != 1:
        raise ZagreusError(f"data_stages: the first stage ({stages[0].name!r}) starts at step {starts[0]}; "
                           "nanotron needs one that starts at step 1 (data_stages[0].start_step: 0 in the profile)")
    if len(set(starts)) != len(starts):
        raise ZagreusError(f"data_stages: two stages start at the same step ({starts}); give each its own start")
    late = [s for s in stages if s.start_training_step > train_steps]
    if late:
        raise ZagreusError(f"data_stages: {late[0].name!r} starts at step {late[0].start_training_step}, after the "
                           f"last step ({train_steps}): move it earlier or raise training.train_steps")
    return tuple(stages)


def folder_labels(folders) -> list[str]:
    """Short names of token folders: their own names, or (two languages' ``fineweb2``) the shortest
    tails of their paths that tell them apart."""
    parts = [Path(f).parts for f in folders]
    for n in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-n:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [str(f) for f in folders]


def step_ranges(stages: tuple[StageFeed, ...], train_steps: int) -> list[tuple[int, int]]:
    """(first, last) 1-based step of each stage."""
    starts = [s.start_training_step for s in stages]
    return [(a, (starts[i + 1] - 1) if i + 1 < len(starts) else train_steps) for i, a in enumerate(starts)]


class StagedTokenDataset(Dataset):
    """The sample order of several data stages: stage ``k``'s own blended order for its steps."""

    def __init__(self, stages: tuple[StageFeed, ...], seq_len: int, train_steps: int, global_batch: int, *,
                 vocab_size: int):
        self.stages = stages
        self.global_batch = global_batch
        self.ranges = step_ranges(stages, train_steps)
        self.parts = [TokenDataset(list(st.folders), seq_len, (last - first + 1) * global_batch, seed=st.seed,
                                   vocab_size=vocab_size, weights=list(st.weights) if st.weights else None)
                      for st, (first, last) in zip(stages, self.ranges)]
        self.offsets = [(first - 1) * global_batch for first, _ in self.ranges]
        self.epochs = max(p.epochs for p in self.parts)

    def __len__(self) -> int:
        return self.offsets[-1] + len(self.parts[-1])

    def part_of(self, i: int) -> int:
        return bisect_right(self.offsets, i) - 1

    def __getitem__(self, i: int) -> dict:
        k = self.part_of(i)
        item = self.parts[k][i - self.offsets[k]]
        item["sample_index"] = i
        return item

    def samples_per_source(self) -> dict[str, int]:
        """``"<stage>: <folder>"`` -> samples drawn from it."""
        out = {}
        for st, part in zip(self.stages, self.parts):
            counts = np.bincount(part.dataset_index, minlength=len(part.folders))
            for label, n in zip(folder_labels(part.folders), counts):
                out[f"{st.name}: {label}"] = int(n)
        return out


def source_of(dataset: Dataset, i: int) -> tuple[str, str, int]:
    """(stage, token folder, window index in that folder) of position ``i`` of the sample order: what
    the sample really is, whichever dataset the trainer built."""
    if isinstance(dataset, StagedTokenDataset):
        k = dataset.part_of(i)
        stage, part, j = dataset.stages[k].name, dataset.parts[k], i - dataset.offsets[k]
    else:
        stage, part, j = "", dataset, i
    d = int(part.dataset_index[j])
    return stage, folder_labels(part.folders)[d], int(part.sample_index[j]) % part.lengths[d]


def build(stages: tuple[StageFeed, ...], seq_len: int, train_steps: int, global_batch: int, *,
          vocab_size: int) -> Dataset:
    """The trainer's dataset: one stage's :class:`TokenDataset` (as before), or the staged order."""
    if len(stages) == 1:
        st = stages[0]
        return TokenDataset(list(st.folders), seq_len, train_steps * global_batch, seed=st.seed,
                            vocab_size=vocab_size, weights=list(st.weights) if st.weights else None)
    return StagedTokenDataset(stages, seq_len, train_steps, global_batch, vocab_size=vocab_size)


def repeat_notes(dataset: Dataset) -> list[str]:
    """Where a stage's data is read more than once (repeated in epochs, like nanotron's Nanoset)."""
    parts = dataset.parts if isinstance(dataset, StagedTokenDataset) else [dataset]
    names = [f"data stage {st.name!r}: " for st in dataset.stages] if isinstance(dataset, StagedTokenDataset) else [""]
    return [f"{name}the data holds {sum(p.lengths)} samples for {len(p)} needed: {p.epochs:.2f} epochs "
            "(repeated like nanotron's Nanoset)" for name, p in zip(names, parts) if p.epochs > 1]


def stage_record(stages: tuple[StageFeed, ...]) -> list[dict]:
    """The stages as the settings' record holds them: folders by name (not where they are)."""
    return [{"name": s.name, "start_training_step": s.start_training_step,
             "folders": folder_labels(s.folders), "weights": list(s.weights) if s.weights else None,
             "seed": s.seed} for s in stages]

