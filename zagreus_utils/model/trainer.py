"""The local pretraining path: the same Llama, trained with transformers' Trainer on the token folders.

Reads the very nanotron config the cluster path submits (``nanotron_config.render``), so both
paths train from one source of truth, and maps it one to one:

- model: ``LlamaForCausalLM`` with the config's shapes (GQA, tied embeddings, SwiGLU, RMSNorm,
  RoPE), initialised like nanotron's ``StandardParametrizator`` (normal(0, init std) for
  embeddings and column-parallel linears, std / sqrt(2 x layers) for the output projections,
  norms at one);
- data: every dataset folder read with datatrove's ``DatatroveFolderDataset`` (``seq_len + 1``
  token windows, next-token targets on all ``seq_len`` positions), blended like nanotron's
  Nanoset (in proportion to folder sizes unless weights are given, shuffled with the data seed,
  repeated in epochs until ``train_steps x global batch`` samples), consumed in order by a
  sequential sampler;
- optimizer: AdamW over every parameter (nanotron excludes none from weight decay by default) with
  the config's betas, eps and weight decay; gradient clipping at ``clip_grad``;
- schedule: nanotron's warmup-stable-decay (linear warmup from 0, constant, linear/cosine/1-sqrt
  decay from ``lr_decay_starting_step`` over ``lr_decay_steps`` to ``min_decay_lr``, then
  constant) via transformers' ``get_wsd_schedule`` where it matches exactly (``min_decay_lr`` 0:
  transformers' warmup starts at the minimum lr, nanotron's at 0), else a LambdaLR with
  nanotron's formula;
- fp32 on CPU, bf16 autocast on GPU;
- a checkpoint every ``checkpoint_interval`` steps, all kept, each an HF model folder with the
  tokenizer (``checkpoint-<step>/``), plus ``metrics.jsonl`` (step, loss, lr, grad_norm,
  tokens_seen, tokens_per_sec) and a tqdm progress bar;
- resumable: restarted after a kill it continues from the last complete checkpoint with the same
  data order (the sampler is deterministic and the Trainer skips the consumed batches), so no
  sample is repeated or skipped; ``samples.jsonl`` (optional) records which samples each step used.

Run it as ``python -m zagreus_utils.model.trainer --config-file <nanotron.yaml>``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from ..pipeline import manifest
from ..pipeline.errors import ZagreusError
from ..nanotron.config import NanotronSchedule

CHECKPOINT_PREFIX = "checkpoint-"
RUN_FILE = "run.json"
METRICS = "metrics.jsonl"
SAMPLES = "samples.jsonl"
COMPLETE_RECORD = "zagreus_complete.json"  # written by the on_save callback: the weights' sizes and sha256
STATE_FILES = ("optimizer.pt", "scheduler.pt", "trainer_state.json")  # the Trainer writes trainer_state.json last
PREVIOUS = manifest.SET_ASIDE  # <stage>/previous/<time>-<label>/: earlier runs and incomplete checkpoints, moved aside


# --- settings read from a nanotron config ---------------------------------------------------

@dataclass(frozen=True)
class Settings:
    # model
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    max_position_embeddings: int
    rms_norm_eps: float
    rope_theta: float
    tie_word_embeddings: bool
    hidden_act: str
    initializer_range: float
    init_std: float
    bos_token_id: int | None
    eos_token_id: int | None
    dtype: str
    # batch and steps
    sequence_length: int
    micro_batch_size: int
    accumulation: int
    train_steps: int
    # optimizer and schedule
    learning_rate: float
    lr_warmup_steps: int
    lr_warmup_style: str
    lr_decay_starting_step: int | None
    lr_decay_steps: int | None
    lr_decay_style: str
    min_decay_lr: float
    adam_beta1: float
    adam_beta2: float
    adam_eps: float
    weight_decay: float
    clip_grad: float | None
    # data, checkpoints, seeds
    dataset_folders: tuple[str, ...]
    dataset_weights: tuple[float, ...] | None
    data_seed: int
    seed: int
    checkpoint_interval: int
    checkpoints_path: str
    resume_checkpoint_path: str | None
    tokenizer_name_or_path: str

    @classmethod
    def from_nanotron(cls, config: dict, base: str | Path | None = None) -> "Settings":
        """From a nanotron config mapping; relative paths are taken from ``base`` (default: cwd)."""
        base = Path(base) if base else Path.cwd()

        def absolute(p):
            return str(p if Path(p).is_absolute() else base / p)

        try:
            mc = config["model"]["model_config"]
            tok = config["tokens"]
            opt = config["optimizer"]
            sch = opt["learning_rate_scheduler"]
            fac = opt["optimizer_factory"]
            stages = config["data_stages"]
            ckpt = config["checkpoints"]
        except (KeyError, TypeError) as exc:
            raise ZagreusError(f"the nanotron config lacks {exc}; render it with zagreus_utils.nanotron.config") from None
        if len(stages) != 1:
            raise ZagreusError(f"the local trainer supports one data stage; the config has {len(stages)}")
        ds = stages[0]["data"]["dataset"]
        folders = ds["dataset_folder"]
        folders = [folders] if isinstance(folders, str) else list(folders)
        weights = ds.get("dataset_weights")
        resume = ckpt.get("resume_checkpoint_path")
        return cls(
            vocab_size=mc["vocab_size"], hidden_size=mc["hidden_size"], intermediate_size=mc["intermediate_size"],
            num_layers=mc["num_hidden_layers"], num_heads=mc["num_attention_heads"],
            num_kv_heads=mc.get("num_key_value_heads") or mc["num_attention_heads"],
            max_position_embeddings=mc["max_position_embeddings"], rms_norm_eps=mc.get("rms_norm_eps", 1e-6),
            rope_theta=mc.get("rope_theta", 10000.0), tie_word_embeddings=bool(mc.get("tie_word_embeddings", False)),
            hidden_act=mc.get("hidden_act", "silu"), initializer_range=mc.get("initializer_range", 0.02),
            init_std=config["model"]["init_method"]["std"], bos_token_id=mc.get("bos_token_id"),
            eos_token_id=mc.get("eos_token_id"), dtype=str(config["model"].get("dtype", "bfloat16")),
            sequence_length=tok["sequence_length"], micro_batch_size=tok["micro_batch_size"],
            accumulation=tok["batch_accumulation_per_replica"], train_steps=tok["train_steps"],
            learning_rate=sch["learning_rate"], lr_warmup_steps=sch.get("lr_warmup_steps") or 0,
            lr_warmup_style=sch.get("lr_warmup_style") or "linear",
            lr_decay_starting_step=sch.get("lr_decay_starting_step"), lr_decay_steps=sch.get("lr_decay_steps"),
            lr_decay_style=sch.get("lr_decay_style") or "linear",
            min_decay_lr=sch["learning_rate"] if sch.get("min_decay_lr") is None else sch["min_decay_lr"],
            adam_beta1=fac["adam_beta1"], adam_beta2=fac["adam_beta2"], adam_eps=fac["adam_eps"],
            weight_decay=opt["weight_decay"], clip_grad=opt.get("clip_grad"),
            dataset_folders=tuple(absolute(f) for f in folders),
            dataset_weights=tuple(weights) if weights else None,
            data_seed=stages[0]["data"].get("seed") or 42, seed=config.get("general", {}).get("seed") or 42,
            checkpoint_interval=ckpt["checkpoint_interval"], checkpoints_path=absolute(ckpt["checkpoints_path"]),
            resume_checkpoint_path=absolute(resume) if resume else None,
            tokenizer_name_or_path=config.get("tokenizer", {}).get("tokenizer_name_or_path") or "",
        )

    def digest(self) -> str:
        """Hash of the settings that determine the training trajectory, not of where files are:
        the token folders by name (their content is in :func:`run_inputs`), a local tokenizer by
        file name (its content likewise), a Hub tokenizer by its id."""
        d = asdict(self)
        for k in ("checkpoints_path", "resume_checkpoint_path"):
            d.pop(k)
        d["dataset_folders"] = [Path(f).name for f in self.dataset_folders]
        tok = self.tokenizer_name_or_path
        d["tokenizer_name_or_path"] = Path(tok).name if tok and Path(tok).exists() else tok
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


# --- the schedule ---------------------------------------------------------------------------

def schedule_for(s: Settings) -> NanotronSchedule:
    """nanotron's schedule of these settings (see :class:`zagreus_utils.nanotron.config.NanotronSchedule`)."""
    return NanotronSchedule(s.learning_rate, s.lr_warmup_steps, s.lr_warmup_style, s.lr_decay_starting_step,
                            s.lr_decay_steps, s.lr_decay_style, s.min_decay_lr, s.train_steps)


def build_scheduler(optimizer, s: Settings):
    """(scheduler, how): transformers' WSD helper where it equals nanotron's schedule, else nanotron's lambda."""
    from torch.optim.lr_scheduler import LambdaLR

    ref = schedule_for(s)
    exact = (s.min_decay_lr == 0 and s.lr_warmup_style == "linear" and ref.decay_start >= ref.warmup
             and not (ref.warmup == 0 and ref.decay_steps == 0))
    if exact:
        from transformers import get_wsd_schedule

        sched = get_wsd_schedule(optimizer, num_warmup_steps=ref.warmup, num_decay_steps=ref.decay_steps,
                                 num_stable_steps=ref.decay_start - ref.warmup, warmup_type="linear",
                                 decay_type=s.lr_decay_style, min_lr_ratio=0.0)
        return sched, "transformers.get_wsd_schedule"
    return LambdaLR(optimizer, ref), "LambdaLR with nanotron's formula"


# --- the model ------------------------------------------------------------------------------

def hf_config(s: Settings):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=s.vocab_size, hidden_size=s.hidden_size, intermediate_size=s.intermediate_size,
        num_hidden_layers=s.num_layers, num_attention_heads=s.num_heads, num_key_value_heads=s.num_kv_heads,
        max_position_embeddings=s.max_position_embeddings, rms_norm_eps=s.rms_norm_eps, rope_theta=s.rope_theta,
        tie_word_embeddings=s.tie_word_embeddings, hidden_act=s.hidden_act, initializer_range=s.initializer_range,
        bos_token_id=s.bos_token_id, eos_token_id=s.eos_token_id, pad_token_id=None, attention_bias=False,
        mlp_bias=False, use_cache=True)


def nanotron_init_(model, std: float, num_layers: int) -> None:
    """nanotron's StandardParametrizator: normal(0, std); output projections std / sqrt(2 L); norms 1."""
    import torch

    scaled = std / math.sqrt(2 * num_layers)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            elif name.endswith(("o_proj.weight", "down_proj.weight")):
                p.normal_(0.0, scaled)
            elif name.endswith(".bias"):
                p.zero_()
            else:  # embedding (tied with the LM head), q/k/v, gate/up, an untied LM head
                p.normal_(0.0, std)


def build_model(s: Settings):
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(s.seed)
    cfg = hf_config(s)
    cfg._attn_implementation = "sdpa"
    model = LlamaForCausalLM(cfg)
    nanotron_init_(model, s.init_std, s.num_layers)
    if s.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    return model


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
    from .preflight import read_metadata

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

        from .preflight import RETOKENIZE, token_file_problems

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


# --- checkpoints and logs -------------------------------------------------------------------

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
    from ..pipeline.manifest import sha256_file

    ckpt = Path(checkpoint)
    weights = weight_files(ckpt)
    missing = [name for name in STATE_FILES if not (ckpt / name).is_file()]
    if weights is None or missing:
        raise ZagreusError(f"{ckpt} is not a complete checkpoint (missing: {', '.join(missing) or 'model weights'})")
    record = {"step": step_of(ckpt),
              "files": {f.name: {"size": f.stat().st_size, "sha256": sha256_file(f)} for f in weights}}
    path = ckpt / COMPLETE_RECORD
    _write_atomic(path, record)
    return path


def is_complete(checkpoint: str | Path) -> bool:
    """Complete: its completion record is there, and so is every weight file it lists (with the
    recorded size), the optimizer, the scheduler and the trainer state. Sizes only: see
    :func:`verify_checkpoint` for the hashes."""
    ckpt = Path(checkpoint)
    record = _read_run_file(ckpt / COMPLETE_RECORD) or {}
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
    from ..pipeline.manifest import sha256_file

    ckpt = Path(checkpoint)
    if not is_complete(ckpt):
        raise ZagreusError(f"{ckpt} is not a complete checkpoint (its weights, optimizer, scheduler, trainer state "
                           f"or {COMPLETE_RECORD} are missing); point at a complete checkpoint-<step> folder")
    for name, info in _read_run_file(ckpt / COMPLETE_RECORD)["files"].items():
        if sha256_file(ckpt / name) != info.get("sha256"):
            raise ZagreusError(f"{ckpt / name} differs from the sha256 recorded when it was saved (corrupt); "
                               f"move {ckpt.name} out of {ckpt.parent} to resume from the checkpoint before it, "
                               "or retrain with --force")


# --- what a run was trained on, and moving an earlier run aside ---------------------------

def _token_files(s: Settings) -> list[tuple[str, Path]]:
    """(key, file) of every token file the run reads: ``*.ds``, their index and metadata files."""
    found = []
    for i, folder in enumerate(s.dataset_folders):
        folder = Path(folder)
        if folder.is_dir():
            for f in sorted(folder.iterdir()):
                if f.is_file() and (f.name.endswith(".ds") or ".ds." in f.name or f.suffix == ".metadata"):
                    found.append((f"{i}:{folder.name}/{f.name}", f))
    return found


def _tokenizer_files(name: str) -> list[Path]:
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


def run_inputs(s: Settings, known: dict | None = None) -> tuple[str, dict]:
    """(fingerprint, record) of what a run is trained on: its settings (:meth:`Settings.digest`),
    the tokenizer's files and the token files, by content (sha256). A token file whose size and
    mtime equal those in ``known`` (an earlier record) keeps its recorded hash; others are hashed."""
    from ..pipeline.manifest import sha256_file, sha256_json

    known_files = (known or {}).get("token_files") or {}
    files = {}
    for key, f in _token_files(s):
        st = f.stat()
        old = known_files.get(key) or {}
        same = old.get("size") == st.st_size and old.get("mtime_ns") == st.st_mtime_ns and old.get("sha256")
        files[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns,
                      "sha256": old["sha256"] if same else sha256_file(f)}
    tokenizer = {f.name: sha256_file(f) for f in _tokenizer_files(s.tokenizer_name_or_path)}
    record = {"settings": s.digest(), "tokenizer": tokenizer, "token_files": files}
    fingerprint = sha256_json([record["settings"], tokenizer, {k: v["sha256"] for k, v in files.items()}])[:16]
    return fingerprint, record


def _differences(previous: dict | None, s: Settings, inputs: dict) -> str:
    """What differs between an earlier run's record and this run (for messages)."""
    if not previous:
        return "checkpoints without a run record"
    parts = []
    before = previous.get("inputs") or {}
    if previous.get("digest") != s.digest():
        old, now = previous.get("settings") or {}, json.loads(json.dumps(asdict(s)))  # tuples as lists

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
    return ", ".join(parts) or "other inputs"


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
    _write_atomic(dest / manifest.SET_ASIDE_RECORD, {"reason": reason, "from": str(Path(stage)),
                                       "items": [p.name for p in items],
                                       "moved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return dest


def step_of(checkpoint: str | Path) -> int:
    return int(Path(checkpoint).name[len(CHECKPOINT_PREFIX):])


def _truncate_jsonl(path: Path, max_step: int) -> None:
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


def _metrics_callback_class():
    from transformers import TrainerCallback

    class MetricsCallback(TrainerCallback):
        """One JSON line per optimizer step: loss, lr, grad norm, tokens seen, tokens/s."""

        def __init__(self, metrics_path: Path, tokens_per_step: int, samples_path: Path | None, sink: list,
                     step_delay: float = 0.0):
            self.metrics_path, self.samples_path = metrics_path, samples_path
            self.tokens_per_step = tokens_per_step
            self.sink = sink
            self.step_delay = step_delay
            self._t = None
            self._step_time = None
            self.t_start = None

        def on_train_begin(self, args, state, control, **kwargs):
            self._t = self.t_start = time.perf_counter()
            self._cpu = time.process_time()
            self._step_cpu = None

        def on_step_end(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                self.sink.clear()
                return
            if self.step_delay:  # ZAGREUS_STEP_DELAY: throttle (lets a test kill a run mid-way)
                time.sleep(self.step_delay)
            now, cpu = time.perf_counter(), time.process_time()
            self._step_time, self._step_cpu = now - self._t, cpu - self._cpu
            self._t, self._cpu = now, cpu
            if self.samples_path is not None:
                with open(self.samples_path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps({"step": state.global_step, "samples": list(self.sink)}) + "\n")
            self.sink.clear()

        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:  # the Trainer has written the whole checkpoint: record it
                record_complete(Path(args.output_dir) / f"{CHECKPOINT_PREFIX}{state.global_step}")

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs or not state.is_world_process_zero:
                return
            dt = self._step_time or float("nan")
            row = {"step": state.global_step, "loss": logs["loss"], "lr": logs.get("learning_rate"),
                   "grad_norm": logs.get("grad_norm"), "tokens_seen": state.global_step * self.tokens_per_step,
                   "tokens_per_sec": self.tokens_per_step / dt if dt and dt == dt else None,
                   "step_time_s": dt, "step_cpu_s": self._step_cpu, "elapsed_s": time.perf_counter() - self.t_start}
            with open(self.metrics_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")

    return MetricsCallback


def _quiet_progress_class():
    from transformers.trainer_callback import ProgressCallback

    class QuietProgress(ProgressCallback):
        """The tqdm bar without a printed dict per logged step."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.training_bar is not None and logs and "loss" in logs:
                self.training_bar.set_postfix(loss=f"{logs['loss']:.3f}", refresh=False)

    return QuietProgress


def _trainer_class():
    from transformers import Trainer

    class ZagreusTrainer(Trainer):
        """transformers' Trainer, recording which samples each step consumed."""

        sample_sink: list | None = None

        def _load_optimizer_and_scheduler(self, checkpoint):
            # DDP on CPU (torchrun, gloo): transformers maps the optimizer state to args.device, here
            # "cpu:<rank>", a location torch.load cannot restore; the state belongs on "cpu".
            if checkpoint is None or self.args.world_size <= 1 or self.args.device.type != "cpu":
                return super()._load_optimizer_and_scheduler(checkpoint)
            import torch

            opt, sched = Path(checkpoint) / "optimizer.pt", Path(checkpoint) / "scheduler.pt"
            if opt.is_file() and sched.is_file():
                self.optimizer.load_state_dict(torch.load(opt, map_location="cpu", weights_only=True))
                self.lr_scheduler.load_state_dict(torch.load(sched, weights_only=True))

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            idx = inputs.pop("sample_index", None)
            if idx is not None and self.sample_sink is not None:
                self.sample_sink.extend(int(i) for i in idx.tolist())
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)

    return ZagreusTrainer


# --- training -------------------------------------------------------------------------------

@dataclass
class TrainResult:
    output_dir: str
    checkpoints: list[str]
    metrics_path: str
    samples_path: str | None
    steps: int
    resumed_from: str | None
    status: str                     # trained | resumed | already complete
    wall_s: float
    initial_loss: float | None = None
    final_loss: float | None = None
    tokens_per_sec_median: float | None = None
    scheduler: str = ""
    device: str = ""
    precision: str = ""
    parameters: int = 0
    samples_per_source: dict = field(default_factory=dict)
    epochs_of_data: float = 0.0
    notes: list[str] = field(default_factory=list)
    fingerprint: str = ""           # of the settings, tokenizer and token files trained on (run_inputs)
    moved_aside: list[str] = field(default_factory=list)  # earlier runs / incomplete checkpoints moved, not deleted

    def as_dict(self) -> dict:
        return asdict(self)


def _load_tokenizer(name: str):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    p = Path(name)
    if p.is_file() and (p.parent / "tokenizer_config.json").is_file():
        p = p.parent  # a tokenizer.json inside a saved tokenizer folder: load the folder (special tokens)
    try:
        if p.is_file() and p.suffix == ".json":
            return PreTrainedTokenizerFast(tokenizer_file=str(p))
        return AutoTokenizer.from_pretrained(str(p) if p.exists() else name, local_files_only=True)
    except Exception:
        if p.is_dir() and (p / "tokenizer.json").is_file():
            return PreTrainedTokenizerFast(tokenizer_file=str(p / "tokenizer.json"))
        return None


def _metrics_summary(path: Path) -> tuple[float | None, float | None, float | None]:
    if not path.is_file():
        return None, None, None
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not rows:
        return None, None, None
    losses = [r["loss"] for r in rows]
    k = max(1, min(10, len(losses) // 10))
    tps = [r["tokens_per_sec"] for r in rows[1:] if r.get("tokens_per_sec")]
    return float(np.mean(losses[:k])), float(np.mean(losses[-k:])), float(np.median(tps)) if tps else None


def train(config: dict | str | Path, *, base: str | Path | None = None, output_dir: str | Path | None = None,
          resume: str | bool = "auto", on_mismatch: str = "error", force: bool = False, progress: bool = True,
          log_samples: bool = False, metrics_path: str | Path | None = None) -> TrainResult:
    """Train (or resume, or find complete) the run a nanotron config describes.

    A run is reused (resumed, or found complete) only when it was trained on the same settings,
    tokenizer and token files (:func:`run_inputs`, recorded in ``run.json``). ``resume``:
    ``"auto"`` continues from the last complete checkpoint in the output folder when there is one,
    ``False`` requires an empty folder, a path resumes from that checkpoint (the config's
    ``checkpoints.resume_checkpoint_path`` is used when set). ``on_mismatch``: what to do when the
    output folder holds a run trained on other settings or inputs: ``"error"``, or ``"move_aside"``
    (alias ``"restart"``: move it to ``<stage>/previous/`` and start over). ``force``: move any
    earlier run aside and train from scratch. Nothing is deleted: incomplete checkpoints (a kill
    mid-save) are moved aside too, and every move is named in the result's notes and ``moved_aside``.
    """
    import torch

    if on_mismatch not in ("error", "move_aside", "restart"):
        raise ZagreusError(f"on_mismatch must be 'error' or 'move_aside', not {on_mismatch!r}")
    if isinstance(config, (str, Path)):
        from ..nanotron.config import load

        path = Path(config)
        config = load(path)
        base = base or Path.cwd()
    s = Settings.from_nanotron(config, base)
    out = Path(output_dir or s.checkpoints_path)
    out.mkdir(parents=True, exist_ok=True)
    metrics = Path(metrics_path) if metrics_path else out.parent / METRICS
    samples = out.parent / SAMPLES if log_samples else None
    notes: list[str] = []
    moved: list[str] = []
    # Under torchrun every rank runs this; only rank 0 changes the folder (the others read it).
    main = int(os.environ.get("RANK", "0")) == 0

    # what is already there, and was it trained on these settings and inputs?
    run_file = out / RUN_FILE
    previous = _read_run_file(run_file)
    fingerprint, inputs = run_inputs(s, (previous or {}).get("inputs"))
    if force or _other_run(previous, out, fingerprint):
        reason = "retrained on request (force)" if force else \
            f"trained on other {_differences(previous, s, inputs)}"
        if not force and on_mismatch == "error":
            raise ZagreusError(f"{out} holds a run {reason}; rerun with --restart-on-mismatch (moves it to "
                               f"{out.parent / PREVIOUS}/), or choose another output folder")
        dest = _set_aside_run(out, metrics, samples, previous, reason) if main else None
        if dest is not None:
            moved.append(str(dest))
            notes.append(f"the earlier run in {out} ({reason}) was moved to {dest}; delete it when no longer needed")
        previous = None
    run_record = {"digest": s.digest(), "fingerprint": fingerprint, "settings": asdict(s), "inputs": inputs}
    if previous and previous.get("result"):
        run_record["result"] = previous["result"]
    if main:
        _write_atomic(run_file, run_record)

    resume_from: Path | None = None
    explicit = resume if isinstance(resume, (str, Path)) and resume != "auto" else s.resume_checkpoint_path
    if explicit:
        resume_from = Path(explicit)
        verify_checkpoint(resume_from)
    elif resume == "auto":
        done = checkpoints(out)
        resume_from = done[-1] if done else None
        if resume_from is not None:
            verify_checkpoint(resume_from)
    elif checkpoints(out, complete_only=False):
        raise ZagreusError(f"{out} already holds checkpoints; pass resume='auto' to continue or choose another folder")
    if main and (resume_from is not None or resume == "auto"):
        last = step_of(resume_from) if resume_from is not None else 0
        stale = [p for p in checkpoints(out, complete_only=False) if step_of(p) > last or not is_complete(p)]
        dest = move_aside(stale, out.parent, "incomplete", f"incomplete checkpoints, or after the one resumed from "
                          f"({resume_from.name if resume_from is not None else 'none: training from scratch'})")
        if dest is not None:
            moved.append(str(dest))
            notes.append(f"{', '.join(p.name for p in stale)} (incomplete, or after the resume point) moved to {dest}")
        for p in (metrics, samples):
            if p is not None:
                _truncate_jsonl(p, step_of(resume_from) if resume_from is not None else 0)

    ckpts = checkpoints(out)
    if resume_from is not None and step_of(resume_from) >= s.train_steps:
        stored = (previous or {}).get("result") or {}
        first, last, tps = _metrics_summary(metrics)
        res = TrainResult(str(out), [str(p) for p in ckpts], str(metrics), str(samples) if samples else None,
                          step_of(resume_from), str(resume_from), "already complete", 0.0, first, last, tps)
        for key in ("scheduler", "device", "precision", "parameters", "samples_per_source", "epochs_of_data"):
            if key in stored:
                setattr(res, key, stored[key])
        res.fingerprint, res.moved_aside = fingerprint, moved
        res.notes = notes + [f"the run was already complete (trained in {stored.get('wall_s', 0):.1f} s on the same "
                             f"settings, tokenizer and token files: fingerprint {fingerprint}); nothing trained"]
        return res

    from transformers import TrainingArguments, set_seed
    from transformers.trainer_callback import ProgressCallback

    cuda = torch.cuda.is_available()
    bf16 = cuda and s.dtype in ("bfloat16", "bf16")
    set_seed(s.seed)
    model = build_model(s)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    global_batch = s.micro_batch_size * s.accumulation * world
    dataset = TokenDataset(list(s.dataset_folders), s.sequence_length, s.train_steps * global_batch,
                           seed=s.data_seed, vocab_size=s.vocab_size,
                           weights=list(s.dataset_weights) if s.dataset_weights else None)
    if dataset.epochs > 1:
        notes.append(f"the data holds {sum(dataset.lengths)} samples for {len(dataset)} needed: "
                     f"{dataset.epochs:.2f} epochs (repeated like nanotron's Nanoset)")
    optimizer = torch.optim.AdamW(model.parameters(), lr=s.learning_rate, betas=(s.adam_beta1, s.adam_beta2),
                                  eps=s.adam_eps, weight_decay=s.weight_decay)
    scheduler, how = build_scheduler(optimizer, s)
    args = TrainingArguments(
        output_dir=str(out), max_steps=s.train_steps, per_device_train_batch_size=s.micro_batch_size,
        gradient_accumulation_steps=s.accumulation, max_grad_norm=s.clip_grad or 0.0,
        learning_rate=s.learning_rate, weight_decay=s.weight_decay, adam_beta1=s.adam_beta1,
        adam_beta2=s.adam_beta2, adam_epsilon=s.adam_eps,
        logging_strategy="steps", logging_steps=1, save_strategy="steps", save_steps=s.checkpoint_interval,
        save_total_limit=None, save_only_model=False, eval_strategy="no", report_to=[],
        seed=s.seed, data_seed=s.data_seed, train_sampling_strategy="sequential",
        dataloader_num_workers=0, dataloader_pin_memory=cuda, dataloader_drop_last=True,
        remove_unused_columns=False, use_cpu=not cuda, bf16=bf16, disable_tqdm=not progress,
        ignore_data_skip=False, log_level="warning",
        ddp_backend=("gloo" if not cuda else None) if world > 1 else None,  # DDP on CPU: gloo
    )
    from transformers.trainer_callback import PrinterCallback
    from transformers.utils import logging as hf_logging

    sink: list[int] = []
    delay = float(os.environ.get("ZAGREUS_STEP_DELAY", "0") or 0)
    callback = _metrics_callback_class()(metrics, global_batch * s.sequence_length, samples, sink, delay)
    trainer = _trainer_class()(model=model, args=args, train_dataset=dataset, data_collator=collate,
                               processing_class=_load_tokenizer(s.tokenizer_name_or_path),
                               optimizers=(optimizer, scheduler), callbacks=[callback])
    trainer.sample_sink = sink
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)  # no printed dict per step: metrics.jsonl has them
    if progress:
        trainer.add_callback(_quiet_progress_class()())
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # "Writing model shards" at every checkpoint
    t0 = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    wall = time.perf_counter() - t0
    first, last, tps = _metrics_summary(metrics)
    ckpts = checkpoints(out)
    if trainer.processing_class is None:
        notes.append(f"tokenizer {s.tokenizer_name_or_path!r} could not be loaded: checkpoints hold no tokenizer")
    result = TrainResult(
        str(out), [str(p) for p in ckpts], str(metrics), str(samples) if samples else None,
        trainer.state.global_step, str(resume_from) if resume_from else None,
        "resumed" if resume_from else "trained", wall, first, last, tps, how,
        "cuda" if cuda else "cpu", "bf16 autocast" if bf16 else "fp32",
        sum(p.numel() for p in model.parameters()), dataset.samples_per_source(), dataset.epochs, notes,
        fingerprint, moved)
    run_record["result"] = result.as_dict()
    if main:
        _write_atomic(run_file, run_record)
    return result


def _read_run_file(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except json.JSONDecodeError:
        return None


def _other_run(previous: dict | None, out: Path, fingerprint: str) -> bool:
    """The output folder holds a run trained on other settings or inputs (or checkpoints without a record)."""
    if previous:
        return previous.get("fingerprint") != fingerprint
    return bool(checkpoints(out, complete_only=False))


def _set_aside_run(out: Path, metrics: Path, samples: Path | None, previous: dict | None, reason: str) -> Path | None:
    """Move an earlier run (its checkpoint folder with ``run.json``, its logs) to ``<stage>/previous/``;
    a record with no checkpoint and no log holds nothing computed and is just replaced."""
    logs = [p for p in (metrics, samples, out.parent / SAMPLES) if p is not None and p.is_file()]
    if not checkpoints(out, complete_only=False) and not logs:
        return None
    label = ((previous or {}).get("fingerprint") or "unrecorded")[:8]
    dest = move_aside([out, *dict.fromkeys(logs)], out.parent, label, reason)
    out.mkdir(parents=True, exist_ok=True)
    return dest


def set_aside_other_run(config: dict | str | Path, *, base: str | Path | None = None,
                        force: bool = False) -> Path | None:
    """Before a multi-process (torchrun/Slurm) run, done once by the launching process so that the
    ranks never race over it: move an earlier run trained on other settings or inputs (any run,
    with ``force``) to ``<stage>/previous/``, as ``train(on_mismatch="move_aside")`` does, and write
    this run's record (so that the ranks agree and need not hash the token files again). Returns
    where the earlier run went (None: nothing moved)."""
    if isinstance(config, (str, Path)):
        from ..nanotron.config import load

        config = load(Path(config))
    s = Settings.from_nanotron(config, base)
    out = Path(s.checkpoints_path)
    run_file = out / RUN_FILE
    previous = _read_run_file(run_file)
    fingerprint, inputs = run_inputs(s, (previous or {}).get("inputs"))
    dest = None
    if force or _other_run(previous, out, fingerprint):
        reason = "retrained on request (force)" if force else f"trained on other {_differences(previous, s, inputs)}"
        dest = _set_aside_run(out, out.parent / METRICS, out.parent / SAMPLES, previous, reason)
        previous = None
    out.mkdir(parents=True, exist_ok=True)
    record = {"digest": s.digest(), "fingerprint": fingerprint, "settings": asdict(s), "inputs": inputs}
    if previous and previous.get("result"):
        record["result"] = previous["result"]
    _write_atomic(run_file, record)
    return dest


def _write_atomic(path: Path, record: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, path)


def stored_result(output_dir: str | Path) -> "TrainResult | None":
    """The result the last finished run recorded in ``<output_dir>/run.json`` (None before any)."""
    path = Path(output_dir) / RUN_FILE
    try:
        data = json.loads(path.read_text()).get("result")
    except (OSError, json.JSONDecodeError):
        return None
    return TrainResult(**data) if data else None


# --- command line ---------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m zagreus_utils.model.trainer", description=__doc__.splitlines()[0])
    ap.add_argument("--config-file", required=True, help="a nanotron config (rendered by zagreus_utils.nanotron.config)")
    ap.add_argument("--output-dir", default=None, help="checkpoint folder (default: the config's checkpoints_path)")
    ap.add_argument("--resume", default="auto", help="'auto' (default), 'no', or a checkpoint folder")
    ap.add_argument("--restart-on-mismatch", action="store_true",
                    help="move an earlier run trained on other settings or inputs to <stage>/previous/ and start over")
    ap.add_argument("--force", action="store_true",
                    help="move any earlier run to <stage>/previous/ and train from scratch")
    ap.add_argument("--log-samples", action="store_true", help="write samples.jsonl (sample indices per step)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    resume: str | bool = False if args.resume == "no" else args.resume
    try:
        res = train(args.config_file, output_dir=args.output_dir, resume=resume,
                    on_mismatch="move_aside" if args.restart_on_mismatch else "error", force=args.force,
                    progress=not args.no_progress, log_samples=args.log_samples)
    except ZagreusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(res.as_dict(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
