"""What a local training run was trained on (settings, tokenizer and token files, by content),
how it differs from an earlier run, and moving an earlier run aside."""

from __future__ import annotations

import json
from pathlib import Path

from ..pipeline.manifest import sha256_file, sha256_json
from .checkpoints import checkpoints, move_aside

SAMPLES = "samples.jsonl"


def _token_files(s) -> list[tuple[str, Path]]:
    """(key, file) of every token file the run reads: ``*.ds``, their index and metadata files."""
    found = []
    for i, folder in enumerate(s.dataset_folders):
        folder = Path(folder)
        if folder.is_dir():
            for f in sorted(folder.iterdir()):
                if f.is_file() and (f.name.endswith(".ds") or ".ds." in f.name or f.suffix == ".metadata"):
                    found.append((f"{i}:{folder.name}/{f.name}", f))
    return found


def _init_files(s) -> list[tuple[str, Path]]:
    """(key, file) of the weights a run starts from (``Settings.init``; a Hub id: none, its id is
    in the settings)."""
    src = getattr(s, "init", None)
    p = Path(src.path) if src is not None else None
    if p is None or not p.exists():
        return []
    files = [f for f in sorted(p.rglob("*")) if f.is_file() and (f.suffix in (".safetensors", ".bin", ".pt")
                                                                or f.name.endswith(".json"))]
    return [(f"init:{f.relative_to(p)}", f) for f in files]


def tokenizer_files(name: str) -> list[Path]:
    """The files the trainer loads the tokenizer from (see :func:`_load_tokenizer`)."""
    p = Path(name) if name else None
    if p is not None and p.is_file() and (p.parent / "tokenizer_config.json").is_file():
        p = p.parent
    if p is not None and p.is_dir():
        return sorted(f for f in p.iterdir() if f.is_file())
    if p is not None and p.is_file():
        return [p]
    if name:
        try:  # a Hub id: the cached files, when there are any
            from huggingface_hub import try_to_load_from_cache

            cached = [try_to_load_from_cache(name, f) for f in ("tokenizer.json", "tokenizer_config.json")]
            return [Path(c) for c in cached if isinstance(c, str)]
        except Exception:
            return []
    return []


def run_inputs(s, known: dict | None = None) -> tuple[str, dict]:
    """(fingerprint, record) of what a run is trained on: its settings (:meth:`Settings.digest`),
    the tokenizer's files and the token files, by content (sha256). A token file whose size and
    mtime equal those in ``known`` (an earlier record) keeps its recorded hash; others are hashed."""
    def hashed(found: list[tuple[str, Path]], known_files: dict) -> dict:
        files = {}
        for key, f in found:
            st = f.stat()
            old = known_files.get(key) or {}
            same = old.get("size") == st.st_size and old.get("mtime_ns") == st.st_mtime_ns and old.get("sha256")
            files[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns,
                          "sha256": old["sha256"] if same else sha256_file(f)}
        return files

    files = hashed(_token_files(s), (known or {}).get("token_files") or {})
    tokenizer = {f.name: sha256_file(f) for f in tokenizer_files(s.tokenizer_name_or_path)}
    record = {"settings": s.digest(), "tokenizer": tokenizer, "token_files": files}
    parts = [record["settings"], tokenizer, {k: v["sha256"] for k, v in files.items()}]
    init = hashed(_init_files(s), (known or {}).get("init_files") or {})
    if init:  # the start checkpoint's weights (only then, so that other runs keep their fingerprint)
        record["init_files"] = init
        parts.append({k: v["sha256"] for k, v in init.items()})
    fingerprint = sha256_json(parts)[:16]
    return fingerprint, record


def differences(previous: dict | None, s, inputs: dict) -> str:
    """What differs between an earlier run's record and this run (for messages)."""
    if not previous:
        return "checkpoints without a run record"
    parts = []
    before = previous.get("inputs") or {}
    if previous.get("digest") != s.digest():
        old, now = previous.get("settings") or {}, json.loads(json.dumps(s.record()))  # tuples as lists

        def view(key, value):  # as the digest sees it: token folders and a local tokenizer by name
            if key == "dataset_folders":
                return [Path(f).name for f in value or ()]
            return Path(value).name if key == "tokenizer_name_or_path" and value and Path(value).is_absolute() else value

        keys = [k for k, v in now.items() if k not in ("checkpoints_path", "resume_checkpoint_path")
                and view(k, old.get(k)) != view(k, v)]
        if keys:
            parts.append(f"settings ({', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''})")
    if not before:
        parts.append("inputs not recorded")
    else:
        if before.get("tokenizer") != inputs["tokenizer"]:
            parts.append("tokenizer")
        old_files = {k: v.get("sha256") for k, v in (before.get("token_files") or {}).items()}
        new_files = {k: v["sha256"] for k, v in inputs["token_files"].items()}
        changed = sorted(k.split(":", 1)[-1] for k in set(old_files) | set(new_files)
                         if old_files.get(k) != new_files.get(k))
        if changed:
            parts.append(f"token files ({', '.join(changed[:4])}{' ...' if len(changed) > 4 else ''})")
        if before.get("init_files") != inputs.get("init_files") and (before.get("init_files") or inputs.get("init_files")):
            old_init = {k: v.get("sha256") for k, v in (before.get("init_files") or {}).items()}
            if old_init != {k: v["sha256"] for k, v in (inputs.get("init_files") or {}).items()}:
                parts.append("start checkpoint (training.init_from)")
    return ", ".join(parts) or "other inputs"


def other_run(previous: dict | None, out: Path, fingerprint: str) -> bool:
    """The output folder holds a run trained on other settings or inputs (or checkpoints without a record)."""
    if previous:
        return previous.get("fingerprint") != fingerprint
    return bool(checkpoints(out, complete_only=False))


def set_aside_run(out: Path, metrics: Path, samples: Path | None, previous: dict | None, reason: str) -> Path | None:
    """Move an earlier run (its checkpoint folder with ``run.json``, its logs) to ``<stage>/previous/``;
    a record with no checkpoint and no log holds nothing computed and is just replaced."""
    logs = [p for p in (metrics, samples, out.parent / SAMPLES) if p is not None and p.is_file()]
    if not checkpoints(out, complete_only=False) and not logs:
        return None
    label = ((previous or {}).get("fingerprint") or "unrecorded")[:8]
    dest = move_aside([out, *dict.fromkeys(logs)], out.parent, label, reason)
    out.mkdir(parents=True, exist_ok=True)
    return dest
