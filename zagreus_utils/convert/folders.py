"""The folders a conversion reads and writes: finding the step folder of a nanotron checkpoint,
staged writes that replace the target only when verified, disk faults as one line, the tokenizer
copied beside the weights."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from ..pipeline.errors import ZagreusError

CHECKPOINT_INFO = "zagreus_checkpoint.json"  # step and tokens seen, written by stage 04 beside the weights
DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}
TOKENIZER_FILES = ("special_tokens_map.json", "vocab.json", "merges.txt", "added_tokens.json",
                   "chat_template.jinja", "chat_template.json", "vocab.txt", "spiece.model")


def resolve_nanotron_checkpoint(src: Path) -> tuple[Path, str | None]:
    """The step folder to convert: ``src`` itself, or the latest step of a checkpoints root."""
    src = Path(src)
    if not src.exists():
        raise ZagreusError(f"{src} does not exist")
    if (src / "model").is_dir():
        return src, None
    latest = src / "latest.txt"
    if latest.is_file():
        step = latest.read_text().strip()
        folder = src / step
        if not (folder / "model").is_dir():
            raise ZagreusError(f"{latest} names step {step!r} but {folder}/model is missing")
        return folder, f"picked step {step} from {latest}"
    steps = [p for p in src.iterdir() if p.name.isdigit() and (p / "model").is_dir()] if src.is_dir() else []
    if steps:
        folder = max(steps, key=lambda p: int(p.name))
        return folder, f"no latest.txt in {src}: picked the highest step folder {folder.name}"
    raise ZagreusError(f"{src} is not a nanotron checkpoint: expected model/ and model_config.json in it, "
                       "or a checkpoints folder with latest.txt")


_HF_MODEL_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def _existing_model(dst: Path) -> Path | None:
    for name in _HF_MODEL_FILES + ("model_config.json", "checkpoint_metadata.json"):
        if (dst / name).exists():
            return dst / name
    for pattern in ("model-*.safetensors", "pytorch_model-*.bin"):
        hit = next(iter(sorted(dst.glob(pattern))), None)
        if hit:
            return hit
    if (dst / "model").is_dir() and next((dst / "model").rglob("*.safetensors"), None):
        return dst / "model"
    return None


def check_target(dst: Path, src: Path | None, overwrite: bool) -> None:
    """Refuse a target that is a file, is the source, or holds a model (unless ``overwrite``)."""
    if dst.exists() and not dst.is_dir():
        raise ZagreusError(f"{dst} exists and is not a folder")
    if src is not None and dst.resolve() == src.resolve():
        raise ZagreusError(f"{dst}: the target is the source folder")
    if dst.is_dir() and not overwrite and (held := _existing_model(dst)) is not None:
        raise ZagreusError(f"{dst} already holds a model ({held.name}); pass --overwrite to replace it")


def staging_folder(dst: Path) -> Path:
    """The temporary sibling a conversion to ``dst`` writes into (``DST.tmp-<pid>``)."""
    return dst.parent / f"{dst.name}.tmp-{os.getpid()}"


@contextlib.contextmanager
def staged_target(dst: Path, src: Path | None = None, overwrite: bool = False) -> Iterator[Path]:
    """Write into a fresh temporary sibling of ``dst``; it becomes ``dst`` only if the block ends
    without an error (a failed verification included). On any error the temporary folder is
    removed and ``dst`` is left exactly as it was. With ``overwrite`` a model already in ``dst``
    is replaced as a whole folder; into an existing folder without a model the files are moved.
    Disk faults (read-only, full, permissions) become one :class:`ZagreusError` naming the path."""
    check_target(Path(dst), src, overwrite)
    dst = Path(os.path.realpath(dst))  # "." or a symlink: the folder itself, beside its siblings
    work = staging_folder(dst)
    try:
        if work.exists():  # left by an earlier process with the same pid that was killed
            shutil.rmtree(work)
        dst.parent.mkdir(parents=True, exist_ok=True)
        work.mkdir()
        yield work
        _commit(work, dst)
    except OSError as exc:
        raise disk_error(exc, dst) from exc
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def _commit(work: Path, dst: Path) -> None:
    if not dst.exists():
        work.rename(dst)
    elif _existing_model(dst) is not None:  # overwrite (checked before writing): swap folders
        old = dst.parent / f"{dst.name}.replaced-{os.getpid()}"
        if old.exists():
            shutil.rmtree(old)
        dst.rename(old)
        try:
            work.rename(dst)
        except OSError:
            old.rename(dst)
            raise
        for p in sorted(old.iterdir()):  # the user's own files (notes ...) stay; the old model goes
            if not _belongs_to_model(p) and not (dst / p.name).exists():
                os.replace(p, dst / p.name)
        shutil.rmtree(old)
    else:  # a folder without a model (empty, or other files): add the new files to it
        for p in sorted(work.iterdir()):
            target = dst / p.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(p, target)
        work.rmdir()


def _belongs_to_model(p: Path) -> bool:
    """A file of a model folder that a replacing model must not inherit: weights, configs, tokenizer."""
    name = p.name
    return (name in _HF_MODEL_FILES or name in ("model", "model_config.json", "checkpoint_metadata.json",
                                                 "config.yaml", "generation_config.json", "README.md",
                                                 CHECKPOINT_INFO)
            or name.startswith("tokenizer") or name in TOKENIZER_FILES
            or re.fullmatch(r"(model|pytorch_model)-\d+-of-\d+\.(safetensors|bin)", name) is not None)


_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}


def disk_error(exc: OSError, dst: Path) -> ZagreusError:
    """One line for a file-system fault while converting to ``dst``: the path, the cause, the fix."""
    path = exc.filename or dst
    reason = exc.strerror or str(exc)
    if exc.errno in _FULL:
        fix = f"free space there or choose another destination; {dst} was left as it was"
    elif exc.errno in _NOT_WRITABLE:
        fix = f"make it writable or choose a writable destination; {dst} was left as it was"
    else:
        fix = f"{dst} was left as it was"
    return ZagreusError(f"{path}: {reason} ({fix})")


def tokenizer_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file()
                  and (p.name.startswith("tokenizer") or p.name in TOKENIZER_FILES))


def attach_tokenizer(tokenizer: Path, dst: Path, vocab_size: int) -> list[str]:
    """Copy a local tokenizer folder's tokenizer files into ``dst``; refuse one larger than the model."""
    tok = Path(tokenizer)
    if not tok.exists():
        raise ZagreusError(f"tokenizer {tok} does not exist (a local folder is needed; hub names are not fetched)")
    files = [tok] if tok.is_file() else tokenizer_files(tok)
    if not files:
        raise ZagreusError(f"{tok}: no tokenizer files (tokenizer.json, tokenizer_config.json, tokenizer.model ...)")
    tj = next((f for f in files if f.name == "tokenizer.json"), None)
    if tj is not None:
        try:
            data = json.loads(tj.read_text())
        except json.JSONDecodeError as exc:
            raise ZagreusError(f"{tj}: not valid JSON ({exc})") from exc
        ids = list(((data.get("model") or {}).get("vocab") or {}).values()) if isinstance(
            (data.get("model") or {}).get("vocab"), dict) else []
        ids += [t.get("id", -1) for t in data.get("added_tokens") or []]
        top = max((i for i in ids if isinstance(i, int)), default=-1)
        if top >= vocab_size:
            raise ZagreusError(f"{tj}: token id {top} does not fit the model's vocab_size={vocab_size}")
    for f in files:
        shutil.copy2(f, dst / f.name)
    return [f.name for f in files]


def write_generation_config(cfg: dict, dst: Path) -> None:
    from transformers import GenerationConfig

    GenerationConfig(bos_token_id=cfg.get("bos_token_id"), eos_token_id=cfg.get("eos_token_id"),
                     pad_token_id=cfg.get("pad_token_id")).save_pretrained(str(dst))


def as_dtype(value) -> torch.dtype | None:
    if value is None or isinstance(value, torch.dtype):
        return value
    if str(value) not in DTYPES:
        raise ZagreusError(f"dtype {value!r}: use one of {', '.join(DTYPES)}")
    return DTYPES[str(value)]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def folder_bytes(paths: Iterable[Path]) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file())


def release_memory() -> None:
    """Give freed heap back to the OS (glibc keeps many mid-sized tensor buffers otherwise)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass
