"""The model a continual pretraining run starts from (``training.init_from``), read without training.

:func:`locate` finds it: a nanotron checkpoint (a step folder with ``model/`` and
``model_config.json``, or a checkpoints folder with ``latest.txt``), a Hugging Face model folder
(``config.json``), or a Hub id read from the local Hugging Face cache (nothing is downloaded here).
:class:`StartModel` then gives its architecture (:class:`LlamaArch`, through ``from_hf`` or
``from_nanotron``), its tokenizer's fingerprint (:func:`tokenizer_print`), and for a nanotron
checkpoint what it holds besides the weights (optimizer and LR-scheduler states, the last step).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import yaml
from tokenizers import Tokenizer

from ..pipeline.errors import ZagreusError
from ..pipeline.paths import hub_cache
from .arch import LlamaArch

HF, NANOTRON = "hf", "nanotron"


@dataclass(frozen=True)
class TokenizerPrint:
    """What identifies a tokenizer: where it was read, how many tokens, a hash of token -> id."""

    name: str
    vocab_size: int
    sha256: str

    def text(self) -> str:
        return f"{self.name} ({self.vocab_size} tokens, vocabulary sha256 {self.sha256[:12]})"


def tokenizer_print(name_or_path: str | Path, base: Path | None = None) -> TokenizerPrint | None:
    """The fingerprint of a tokenizer folder, ``tokenizer.json`` file or Hub id (local cache only);
    None when it cannot be read here. The hash covers every token and its id (added tokens too)."""
    text = str(name_or_path)
    path = Path(text) if Path(text).is_absolute() or base is None else base / text
    tok_file = path / "tokenizer.json" if path.is_dir() else path if path.suffix == ".json" else None
    vocab = None
    if tok_file is not None and tok_file.is_file():
        try:
            vocab = Tokenizer.from_file(str(tok_file)).get_vocab(with_added_tokens=True)
        except Exception:  # not a tokenizers file: let transformers try the folder
            vocab = None
    if vocab is None:
        from transformers import AutoTokenizer

        try:
            vocab = AutoTokenizer.from_pretrained(str(path) if path.exists() else text, local_files_only=True).get_vocab()
        except Exception:  # not a tokenizer, or a Hub id not in the local cache
            return None
    blob = json.dumps(sorted(vocab.items(), key=lambda kv: kv[1]), ensure_ascii=False).encode()
    return TokenizerPrint(text, len(vocab), hashlib.sha256(blob).hexdigest())


@dataclass(frozen=True)
class StartModel:
    given: str        # training.init_from as written
    kind: str         # HF or NANOTRON
    folder: Path      # the HF model folder (or its cache snapshot) or the nanotron step folder
    note: str = ""    # how it was found (e.g. the step picked from latest.txt)

    @property
    def config_file(self) -> Path:
        return self.folder / ("config.json" if self.kind == HF else "model_config.json")

    def arch(self) -> LlamaArch:
        """Its architecture; a ZagreusError naming the file when nanotron's Llama cannot hold it."""
        if self.kind == HF:
            return LlamaArch.from_hf(self.folder, str(self.config_file))
        try:
            config = json.loads(self.config_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ZagreusError(f"{self.config_file}: cannot read the model config ({exc})") from None
        return LlamaArch.from_nanotron(config, str(self.config_file))

    def tokenizer_source(self) -> str | None:
        """Where its tokenizer is: tokenizer files in the folder, else (nanotron) the tokenizer its
        ``config.yaml`` names; None when it names none."""
        if (self.folder / "tokenizer.json").is_file() or (self.folder / "tokenizer_config.json").is_file():
            return str(self.folder)
        if self.kind == NANOTRON:
            return ((self.nanotron_yaml().get("tokenizer") or {}).get("tokenizer_name_or_path")) or None
        return None

    def nanotron_yaml(self) -> dict:
        path = self.folder / "config.yaml"
        try:
            return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.is_file() else {}
        except yaml.YAMLError as exc:
            raise ZagreusError(f"{path}: not valid YAML ({exc})") from None

    def last_step(self) -> int | None:
        """A nanotron checkpoint's ``last_train_step`` (``checkpoint_metadata.json``); None for HF."""
        path = self.folder / "checkpoint_metadata.json"
        if self.kind != NANOTRON or not path.is_file():
            return None
        try:
            return int(json.loads(path.read_text(encoding="utf-8"))["metas"]["last_train_step"])
        except (OSError, ValueError, KeyError, TypeError):
            raise ZagreusError(f"{path}: no metas.last_train_step (not a nanotron checkpoint_metadata.json)") from None

    def holds(self, state: str) -> bool:
        """Whether a nanotron checkpoint saved ``optimizer`` or ``lr_scheduler`` state (a converted
        model holds neither)."""
        return self.kind == NANOTRON and (self.folder / state).is_dir() and any((self.folder / state).iterdir())


def resolve_path(init_from: str, base: Path) -> Path:
    p = Path(init_from).expanduser()
    return p if p.is_absolute() else base / p


def looks_like_hub_id(text: str) -> bool:
    return text.count("/") == 1 and not text.startswith((".", "/", "~")) and all(text.split("/"))


def locate(init_from: str, base: Path) -> StartModel:
    """The start model of ``training.init_from``; a ZagreusError naming the key and the fix when it
    is neither a nanotron checkpoint, nor a Hugging Face folder, nor a cached Hub id."""
    path = resolve_path(init_from, base)
    if path.is_dir():
        if (path / "model").is_dir() or (path / "latest.txt").is_file():
            from ..convert.folders import resolve_nanotron_checkpoint  # imports torch: only for a nanotron folder

            step, note = resolve_nanotron_checkpoint(path)
            if not (step / "model_config.json").is_file():
                raise ZagreusError(f"training.init_from {init_from}: {step} has model/ but no model_config.json; "
                                   "point init_from at a complete nanotron checkpoint folder")
            return StartModel(init_from, NANOTRON, step, note or "")
        if (path / "config.json").is_file():
            return StartModel(init_from, HF, path)
        raise ZagreusError(f"training.init_from {init_from}: {path} is neither a Hugging Face model folder "
                           "(config.json) nor a nanotron checkpoint (model/ and model_config.json, or latest.txt); "
                           "point init_from at one")
    if path.exists():
        raise ZagreusError(f"training.init_from {init_from}: {path} is a file; point init_from at a model folder")
    if looks_like_hub_id(init_from):
        from huggingface_hub import snapshot_download

        try:
            folder = Path(snapshot_download(init_from, local_files_only=True, cache_dir=hub_cache(),
                                            allow_patterns=["config.json", "tokenizer*", "special_tokens_map.json"]))
        except Exception:  # not in the local cache (offline: nothing is fetched here)
            raise ZagreusError(f"training.init_from {init_from}: not a folder under {base} and not in the local "
                               "Hugging Face cache; download it first (huggingface-cli download "
                               f"{init_from}, or zagreus prefetch) or give a local folder") from None
        if not (folder / "config.json").is_file():
            raise ZagreusError(f"training.init_from {init_from}: the cached snapshot {folder} has no config.json")
        return StartModel(init_from, HF, folder, f"Hub id read from the local cache ({folder})")
    raise ZagreusError(f"training.init_from {init_from}: {path} does not exist; give an existing model folder "
                       "(relative paths are taken from the repository root) or a Hub id (org/name)")
