"""The local trainer's checkpoints: ``checkpoint-<step>`` folders, their completion records and
hashes, and moving earlier runs aside (never deleting them)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ..pipeline import manifest
from ..pipeline.errors import ZagreusError
from ..pipeline.manifest import sha256_file

CHECKPOINT_PREFIX = "checkpoint-"
COMPLETE_RECORD = "zagreus_complete.json"  # written by the on_save callback: the weights' sizes and sha256
STATE_FILES = ("optimizer.pt", "scheduler.pt", "trainer_state.json")  # the Trainer writes trainer_state.json last
PREVIOUS = manifest.SET_ASIDE  # <stage>/previous/<time>-<label>/: earlier runs and incomplete checkpoints, moved aside


def checkpoints(folder: str | Path, complete_only: bool = True) -> list[Path]:
    """``checkpoint-<step>`` folders, by step (complete ones only by default: :func:`is_complete`)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for p in folder.glob(f"{CHECKPOINT_PREFIX}*"):
        step = p.name[len(CHECKPOINT_PREFIX):]
        if p.is_dir() and step.isdigit() and (not complete_only or is_complete(p)):
            found.append((int(step), p))
    return [p for _, p in sorted(found)]


def weight_files(checkpoint: str | Path) -> list[Path] | None:
    """The model weights of a checkpoint: ``model.safetensors``, or the index and every shard it
    lists; None when any is missing."""
    ckpt = Path(checkpoint)
    if (ckpt / "model.safetensors").is_file():
        return [ckpt / "model.safetensors"]
    index = ckpt / "model.safetensors.index.json"
    try:
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    files = [ckpt / name for name in shards]
    return [index, *files] if files and all(f.is_file() for f in files) else None


def record_complete(checkpoint: str | Path) -> Path:
    """Write the checkpoint's completion record (size and sha256 of each weight file) once every
    file of the checkpoint is there; what the Trainer's ``on_save`` calls."""
    ckpt = Path(checkpoint)
    weights = weight_files(ckpt)
    missing = [name for name in STATE_FILES if not (ckpt / name).is_file()]
    if weights is None or missing:
        raise ZagreusError(f"{ckpt} is not a complete checkpoint (missing: {', '.join(missing) or 'model weights'})")
    record = {"step": step_of(ckpt),
              "files": {f.name: {"size": f.stat().st_size, "sha256": sha256_file(f)} for f in weights}}
    path = ckpt / COMPLETE_RECORD
    write_atomic(path, record)
    return path


def is_complete(checkpoint: str | Path) -> bool:
    """Complete: its completion record is there, and so is every weight file it lists (with the
    recorded size), the optimizer, the scheduler and the trainer state. Sizes only: see
    :func:`verify_checkpoint` for the hashes."""
    ckpt = Path(checkpoint)
    record = read_record(ckpt / COMPLETE_RECORD) or {}
    files = record.get("files") if isinstance(record, dict) else None
    weights = weight_files(ckpt)
    if not files or weights is None or {f.name for f in weights} != set(files):
        return False
    if not all((ckpt / name).is_file() for name in STATE_FILES):
        return False
    return all((ckpt / name).stat().st_size == (info or {}).get("size") for name, info in files.items())


def verify_checkpoint(checkpoint: str | Path) -> None:
    """Raise a :class:`ZagreusError` naming the file unless the checkpoint is complete and each
    weight file still has the sha256 recorded when it was saved."""
    ckpt = Path(checkpoint)
    if not is_complete(ckpt):
        raise ZagreusError(f"{ckpt} is not a complete checkpoint (its weights, optimizer, scheduler, trainer state "
                           f"or {COMPLETE_RECORD} are missing); point at a complete checkpoint-<step> folder")
    for name, info in read_record(ckpt / COMPLETE_RECORD)["files"].items():
        if sha256_file(ckpt / name) != info.get("sha256"):
            raise ZagreusError(f"{ckpt / name} differs from the sha256 recorded when it was saved (corrupt); "
                               f"move {ckpt.name} out of {ckpt.parent} to resume from the checkpoint before it, "
                               "or retrain with --force")


def move_aside(items: list[Path], stage: Path, label: str, reason: str) -> Path | None:
    """Move the existing ``items`` (checkpoint folders, logs) into ``<stage>/previous/<time>-<label>/``
    with a ``moved.json`` saying why; nothing is deleted. Returns that folder (None: nothing to move)."""
    items = [p for p in items if p is not None and p.exists()]
    if not items:
        return None
    base = Path(stage) / PREVIOUS / f"{time.strftime('%Y%m%d-%H%M%S')}-{label}"
    dest, n = base, 1
    while dest.exists():
        n += 1
        dest = base.with_name(f"{base.name}-{n}")
    dest.mkdir(parents=True)
    for p in items:
        os.replace(p, dest / p.name)
    write_atomic(dest / manifest.SET_ASIDE_RECORD, {"reason": reason, "from": str(Path(stage)),
                                       "items": [p.name for p in items],
                                       "moved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return dest


def step_of(checkpoint: str | Path) -> int:
    return int(Path(checkpoint).name[len(CHECKPOINT_PREFIX):])


def truncate_jsonl(path: Path, max_step: int) -> None:
    if not path.is_file():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= max_step:
                keep.append(line)
        except json.JSONDecodeError:
            break  # a line cut by the kill: drop it and what follows
    path.write_text("".join(line + "\n" for line in keep), encoding="utf-8")


def read_record(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except json.JSONDecodeError:
        return None


def write_atomic(path: Path, record: dict) -> None:
    manifest.write_json(path, record)
