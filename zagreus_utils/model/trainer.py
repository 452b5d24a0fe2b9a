"""The local pretraining path: the same Llama, trained with transformers' Trainer on the token folders.

Reads the very nanotron config the cluster path submits (``nanotron_config.render``), so both
paths train from one source of truth, and maps it one to one:

- model: ``LlamaForCausalLM`` with the config's shapes (GQA, tied embeddings, SwiGLU, RMSNorm,
  RoPE; ``SmolLM3ForCausalLM`` when ``no_rope_layer`` drops RoPE in some layers), initialised like nanotron's ``StandardParametrizator`` (normal(0, init std) for
  embeddings and column-parallel linears, std / sqrt(2 x layers) for the output projections,
  norms at one);
- data: every dataset folder read with datatrove's ``DatatroveFolderDataset`` (``seq_len + 1``
  token windows, next-token targets on all ``seq_len`` positions), blended like nanotron's
  Nanoset (in proportion to folder sizes unless weights are given, shuffled with the data seed,
  repeated in epochs until ``train_steps x global batch`` samples), consumed in order by a
  sequential sampler;
- optimizer: AdamW over every parameter (nanotron excludes none from weight decay by default) with
  the config's betas, eps and weight decay; gradient clipping at ``clip_grad``;
- the SmolLM3 recipe switches (NoPE, document masking, weight decay exclusion) as nanotron does
  them: :mod:`zagreus_utils.model.recipe`;
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

from ..pipeline.errors import ZagreusError
from ..nanotron.config import load
from ..nanotron.schedule import NanotronSchedule
from .arch import LlamaArch
from .checkpoints import (PREVIOUS, checkpoints, is_complete, move_aside, read_record, step_of, truncate_jsonl,
                          verify_checkpoint, write_atomic)
from .recipe import causal_lm_class, collate_for, param_groups, pattern_problems
from .callbacks import metrics_callback_class, quiet_progress_class, trainer_class
from . import init_weights, staged_data
from .run_inputs import SAMPLES, differences, other_run, run_inputs, set_aside_run

RUN_FILE = "run.json"
METRICS = "metrics.jsonl"


# --- settings read from a nanotron config ---------------------------------------------------

@dataclass(frozen=True)
class Settings:
    arch: LlamaArch  # the model (init_std included)
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
    # the SmolLM3 recipe switches (nanotron's _use_doc_masking, weight_decay_exclude_named_params)
    document_masking: bool = False
    weight_decay_exclude: tuple[str, ...] = ()
    # continual pretraining: the data stages (staged_data) and the start checkpoint (init_weights)
    data_stages: tuple[staged_data.StageFeed, ...] = ()
    init: init_weights.InitSource | None = None

    @classmethod
    def from_nanotron(cls, config: dict, base: str | Path | None = None) -> "Settings":
        """From a nanotron config mapping; relative paths are taken from ``base`` (default: cwd)."""
        base = Path(base) if base else Path.cwd()

        def absolute(p):
            return str(p if Path(p).is_absolute() else base / p)

        try:
            tok = config["tokens"]
            opt = config["optimizer"]
            sch = opt["learning_rate_scheduler"]
            fac = opt["optimizer_factory"]
            config["data_stages"]
            ckpt = config["checkpoints"]
            config["model"]["model_config"]
            config["model"]["init_method"]["std"]
        except (KeyError, TypeError) as exc:
            raise ZagreusError(f"the nanotron config lacks {exc}; render it with zagreus_utils.nanotron.config") from None
        data_stages = staged_data.read_stages(config, absolute, tok["train_steps"])
        folders = list(dict.fromkeys(f for st in data_stages for f in st.folders))  # every stage's, once
        weights = data_stages[0].weights if len(data_stages) == 1 else None
        init = init_weights.init_source(config, absolute, absolute(ckpt["checkpoints_path"]))
        resume = None if init else ckpt.get("resume_checkpoint_path")
        arch = LlamaArch.from_nanotron(config).check("model.model_config")
        exclude = tuple(opt.get("weight_decay_exclude_named_params") or ())
        problems = pattern_problems(arch, exclude)
        if problems:
            raise ZagreusError("optimizer.weight_decay_exclude_named_params: " + "; ".join(problems))
        return cls(
            arch=arch,
            dtype=str(config["model"].get("dtype", "bfloat16")),
            sequence_length=tok["sequence_length"], micro_batch_size=tok["micro_batch_size"],
            accumulation=tok["batch_accumulation_per_replica"], train_steps=tok["train_steps"],
            learning_rate=sch["learning_rate"], lr_warmup_steps=sch.get("lr_warmup_steps") or 0,
            lr_warmup_style=sch.get("lr_warmup_style") or "linear",
            lr_decay_starting_step=sch.get("lr_decay_starting_step"), lr_decay_steps=sch.get("lr_decay_steps"),
            lr_decay_style=sch.get("lr_decay_style") or "linear",
            min_decay_lr=sch["learning_rate"] if sch.get("min_decay_lr") is None else sch["min_decay_lr"],
            adam_beta1=fac["adam_beta1"], adam_beta2=fac["adam_beta2"], adam_eps=fac["adam_eps"],
            weight_decay=opt["weight_decay"], clip_grad=opt.get("clip_grad"),
            dataset_folders=tuple(folders),
            dataset_weights=tuple(weights) if weights else None,
            data_seed=data_stages[0].seed, seed=config.get("general", {}).get("seed") or 42,
            checkpoint_interval=ckpt["checkpoint_interval"], checkpoints_path=absolute(ckpt["checkpoints_path"]),
            resume_checkpoint_path=absolute(resume) if resume else None,
            tokenizer_name_or_path=config.get("tokenizer", {}).get("tokenizer_name_or_path") or "",
            document_masking=bool(config["model"]["model_config"].get("_use_doc_masking")),
            weight_decay_exclude=exclude,
            data_stages=data_stages, init=init,
        )

    def record(self) -> dict:
        """The settings as one flat mapping (``run.json``'s ``settings``; what :meth:`digest` hashes)."""
        a = self.arch
        model = {"vocab_size": a.vocab_size, "hidden_size": a.hidden_size, "intermediate_size": a.intermediate_size,
                 "num_layers": a.num_layers, "num_heads": a.num_heads, "num_kv_heads": a.num_kv_heads,
                 "max_position_embeddings": a.max_position_embeddings, "rms_norm_eps": a.rms_norm_eps,
                 "rope_theta": a.rope_theta, "tie_word_embeddings": a.tie_word_embeddings,
                 "hidden_act": a.hidden_act, "initializer_range": a.initializer_range, "init_std": a.init_std,
                 "bos_token_id": a.bos_token_id, "eos_token_id": a.eos_token_id}
        rest = asdict(self)
        rest.pop("arch")
        if a.no_rope_layer is not None:
            model["no_rope_layer"] = a.no_rope_layer
        # one stage and no start checkpoint: the record as before data stages (the same digest)
        rest["data_stages"] = staged_data.stage_record(self.data_stages) if len(self.data_stages) > 1 else None
        for key, off in (("document_masking", False), ("weight_decay_exclude", ()), ("data_stages", None),
                         ("init", None)):
            if rest[key] == off:  # a switch left off: the record (and digest) of runs before it
                rest.pop(key)
        return {**model, **rest}

    def digest(self) -> str:
        """Hash of the settings that determine the training trajectory, not of where files are:
        the token folders by name (their content is in :func:`run_inputs`), a local tokenizer by
        file name (its content likewise), a Hub tokenizer by its id."""
        d = self.record()
        for k in ("checkpoints_path", "resume_checkpoint_path"):
            d.pop(k)
        d["dataset_folders"] = [Path(f).name for f in self.dataset_folders]
        if self.init is not None:  # its weights' content is in run_inputs
            d["init"] = {**d["init"], "path": Path(self.init.path).name}
        tok = self.tokenizer_name_or_path
        d["tokenizer_name_or_path"] = Path(tok).name if tok and Path(tok).exists() else tok
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


# --- the schedule ---------------------------------------------------------------------------

def schedule_for(s: Settings) -> NanotronSchedule:
    """nanotron's schedule of these settings (see :class:`zagreus_utils.nanotron.schedule.NanotronSchedule`)."""
    return NanotronSchedule(s.learning_rate, s.lr_warmup_steps, s.lr_warmup_style, s.lr_decay_starting_step,
                            s.lr_decay_steps, s.lr_decay_style, s.min_decay_lr, s.train_steps)


def build_scheduler(optimizer, s: Settings):
    """(scheduler, how): transformers' WSD helper where it equals nanotron's schedule, else nanotron's lambda."""
    from torch.optim.lr_scheduler import LambdaLR

    ref = schedule_for(s)
    # (no warmup: nanotron's formula still gives 0 at step 0, transformers' the peak)
    exact = (s.min_decay_lr == 0 and s.lr_warmup_style == "linear" and ref.decay_start >= ref.warmup > 0)
    if exact:
        from transformers import get_wsd_schedule

        sched = get_wsd_schedule(optimizer, num_warmup_steps=ref.warmup, num_decay_steps=ref.decay_steps,
                                 num_stable_steps=ref.decay_start - ref.warmup, warmup_type="linear",
                                 decay_type=s.lr_decay_style, min_lr_ratio=0.0)
        return sched, "transformers.get_wsd_schedule"
    return LambdaLR(optimizer, ref), "LambdaLR with nanotron's formula"


# --- the model ------------------------------------------------------------------------------

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

    torch.manual_seed(s.seed)
    cfg = s.arch.to_hf_config()
    cfg._attn_implementation = "sdpa"
    model = causal_lm_class(s.arch)(cfg)
    nanotron_init_(model, s.arch.init_std, s.arch.num_layers)
    if s.arch.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    return model


def build_optimizer(model, s: Settings):
    """AdamW with the config's betas, eps and weight decay (0 for the excluded parameters)."""
    import torch

    return torch.optim.AdamW(param_groups(model, s.arch, s.weight_decay, s.weight_decay_exclude),
                             lr=s.learning_rate, betas=(s.adam_beta1, s.adam_beta2), eps=s.adam_eps,
                             weight_decay=s.weight_decay)


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
          log_samples: bool = False, metrics_path: str | Path | None = None,
          callbacks: list | None = None) -> TrainResult:
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
    ``callbacks``: more transformers ``TrainerCallback`` instances (e.g. :func:`callbacks.embedding_norm_callback_class`).
    """
    import torch

    if on_mismatch not in ("error", "move_aside", "restart"):
        raise ZagreusError(f"on_mismatch must be 'error' or 'move_aside', not {on_mismatch!r}")
    if isinstance(config, (str, Path)):
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
    previous = read_record(run_file)
    fingerprint, inputs = run_inputs(s, (previous or {}).get("inputs"))
    if force or other_run(previous, out, fingerprint):
        reason = "retrained on request (force)" if force else \
            f"trained on other {differences(previous, s, inputs)}"
        if not force and on_mismatch == "error":
            raise ZagreusError(f"{out} holds a run {reason}; rerun with --restart-on-mismatch (moves it to "
                               f"{out.parent / PREVIOUS}/), or choose another output folder")
        dest = set_aside_run(out, metrics, samples, previous, reason) if main else None
        if dest is not None:
            moved.append(str(dest))
            notes.append(f"the earlier run in {out} ({reason}) was moved to {dest}; delete it when no longer needed")
        previous = None
    run_record = {"digest": s.digest(), "fingerprint": fingerprint, "settings": s.record(), "inputs": inputs}
    if previous and previous.get("result"):
        run_record["result"] = previous["result"]
    if main:
        write_atomic(run_file, run_record)

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
        resume_from = init_weights.start_point(s.init, resume_from, s.train_steps)
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
                truncate_jsonl(p, step_of(resume_from) if resume_from is not None else 0)

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
    dataset = staged_data.build(s.data_stages, s.sequence_length, s.train_steps, global_batch,
                                vocab_size=s.arch.vocab_size)
    notes += staged_data.repeat_notes(dataset)
    optimizer = build_optimizer(model, s)
    notes += init_weights.prepare_start(s.init, resume_from, model, optimizer, s.arch)
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
    callback = metrics_callback_class()(metrics, global_batch * s.sequence_length, samples, sink, delay)
    tokenizer = _load_tokenizer(s.tokenizer_name_or_path)
    trainer = trainer_class()(model=model, args=args, train_dataset=dataset,
                               data_collator=collate_for(s.arch, s.document_masking,
                                                         getattr(tokenizer, "eos_token_id", None)),
                               processing_class=tokenizer,
                               optimizers=(optimizer, scheduler), callbacks=[callback, *(callbacks or ())])
    trainer.sample_sink = sink
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)  # no printed dict per step: metrics.jsonl has them
    if progress:
        trainer.add_callback(quiet_progress_class()())
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
        write_atomic(run_file, run_record)
    return result


def set_aside_other_run(config: dict | str | Path, *, base: str | Path | None = None,
                        force: bool = False) -> Path | None:
    """Before a multi-process (torchrun/Slurm) run, done once by the launching process so that the
    ranks never race over it: move an earlier run trained on other settings or inputs (any run,
    with ``force``) to ``<stage>/previous/``, as ``train(on_mismatch="move_aside")`` does, and write
    this run's record (so that the ranks agree and need not hash the token files again). Returns
    where the earlier run went (None: nothing moved)."""
    if isinstance(config, (str, Path)):
        config = load(Path(config))
    s = Settings.from_nanotron(config, base)
    out = Path(s.checkpoints_path)
    run_file = out / RUN_FILE
    previous = read_record(run_file)
    fingerprint, inputs = run_inputs(s, (previous or {}).get("inputs"))
    dest = None
    if force or other_run(previous, out, fingerprint):
        reason = "retrained on request (force)" if force else f"trained on other {differences(previous, s, inputs)}"
        dest = set_aside_run(out, out.parent / METRICS, out.parent / SAMPLES, previous, reason)
        previous = None
    out.mkdir(parents=True, exist_ok=True)
    record = {"digest": s.digest(), "fingerprint": fingerprint, "settings": s.record(), "inputs": inputs}
    if previous and previous.get("result"):
        record["result"] = previous["result"]
    write_atomic(run_file, record)
    return dest


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
