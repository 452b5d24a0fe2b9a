"""The models the eval stage evaluates: the converted base checkpoints and the SFT model.

Every sub-folder of the conversion stage's ``hf/`` is a base checkpoint (an HF model folder with
config, weights and tokenizer; its step from ``zagreus_checkpoint.json`` ``{"step": N}``, else from
its name: ``step-100``, ``checkpoint-100``, ``iter_0000100``, ``95k``); the SFT stage's ``model/``
is the SFT model. A missing or incomplete one is a clear error.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ...pipeline import stages
from ...pipeline.errors import ZagreusError

@dataclass(frozen=True)
class ModelEntry:
    name: str                 # folder name, e.g. step-100; "sft" for the SFT model
    path: str
    kind: str                 # base | instruct
    step: int | None = None


_STEP_KEYS = ("step", "checkpoint_step", "iteration", "train_step", "global_step")
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def _step_of(folder: Path) -> int | None:
    meta = folder / "zagreus_checkpoint.json"
    if meta.is_file():
        try:
            data = json.loads(meta.read_text())
        except json.JSONDecodeError:
            raise ZagreusError(f"{meta} is not valid JSON; rerun the conversion stage") from None
        for key in _STEP_KEYS:
            if isinstance(data.get(key), int):
                return data[key]
    m = re.search(r"(\d+)(k?)$", folder.name)
    if m:
        return int(m.group(1)) * (1000 if m.group(2) else 1)
    return None


def check_model(folder: Path, what: str = "checkpoint") -> None:
    """A Hugging Face model folder: config.json, weights and a tokenizer, or a clear error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ZagreusError(f"missing {what}: {folder} does not exist")
    problems = []
    if not (folder / "config.json").is_file():
        problems.append("no config.json")
    if not any((folder / w).is_file() for w in _WEIGHTS):
        problems.append("no weights (model.safetensors or pytorch_model.bin)")
    if not any((folder / t).is_file() for t in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")):
        problems.append("no tokenizer")
    if problems:
        raise ZagreusError(f"{what} {folder} is not a complete Hugging Face model folder ({'; '.join(problems)}); "
                           "rerun the stage that writes it")


def find_checkpoints(hf_dir: Path, steps: Iterable[int | str] | None = None) -> list[ModelEntry]:
    """The converted base checkpoints under ``hf_dir``, sorted by training step.

    Every sub-folder is a checkpoint; its step is ``step`` (or ``checkpoint_step``/``iteration``)
    in its ``zagreus_checkpoint.json``, else the number that ends its name (``step-100``,
    ``checkpoint-100``, ``iter_0000100``, ``95k``). ``steps`` (numbers or folder names) selects
    some; one that is not there is an error listing those that are.
    """
    hf_dir = Path(hf_dir)
    if not hf_dir.is_dir():
        raise ZagreusError(f"no converted checkpoints: {hf_dir} does not exist. Run the conversion stage "
                           "first (zagreus run --stages conversion)")
    found: dict[str, ModelEntry] = {}
    seen: set[Path] = set()
    for folder in sorted(p for p in hf_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        real = folder.resolve()
        if real in seen:  # e.g. a `latest` link to another checkpoint
            continue
        seen.add(real)
        check_model(folder)
        step = _step_of(folder)
        if step is None:
            raise ZagreusError(f"cannot tell the training step of checkpoint {folder}: name it step-<N> or "
                               'write {"step": N} into its zagreus_checkpoint.json')
        found[folder.name] = ModelEntry(folder.name, str(folder.resolve()), "base", step)
    if not found:
        raise ZagreusError(f"no converted checkpoints in {hf_dir}; run the conversion stage first "
                           "(zagreus run --stages conversion)")
    models = sorted(found.values(), key=lambda m: (m.step, m.name))
    if steps is not None:
        wanted = list(steps)
        chosen = []
        for s in wanted:
            hit = [m for m in models if str(s) in (m.name, str(m.step))]
            if not hit:
                have = ", ".join(f"{m.name} (step {m.step})" for m in models)
                raise ZagreusError(f"missing checkpoint {s!r} in {hf_dir}; available: {have}")
            chosen.extend(h for h in hit if h not in chosen)
        models = chosen
    return models


def discover_models(run_dir: Path, *, steps=None, sft: bool = True) -> list[ModelEntry]:
    """Base checkpoints (the conversion stage's ``hf/*``) then the SFT model (the SFT stage's ``model``)."""
    run_dir = Path(run_dir)
    models = find_checkpoints(run_dir / stages.folder_name("conversion") / "hf", steps)
    if sft:
        folder = run_dir / stages.folder_name("sft") / "model"
        if not folder.is_dir():
            raise ZagreusError(f"missing SFT model: {folder} does not exist. Run the SFT stage first "
                               "(zagreus run --stages sft)")
        check_model(folder, "SFT model")
        models.append(ModelEntry("sft", str(folder.resolve()), "instruct", None))
    return models


def model_fingerprint(folder: Path) -> str:
    """A hash of a model folder's files (size + content; size + mtime above 64 MiB)."""
    h = hashlib.sha256()
    for p in sorted(Path(folder).rglob("*")):
        if not p.is_file():
            continue
        st = p.stat()
        h.update(f"{p.relative_to(folder)}:{st.st_size}".encode())
        if st.st_size <= 64 * 2**20:
            h.update(p.read_bytes())
        else:
            h.update(str(st.st_mtime_ns).encode())
    return h.hexdigest()[:16]

