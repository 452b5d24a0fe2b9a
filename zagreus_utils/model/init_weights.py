"""Where a local run starts from, when its nanotron config names a checkpoint that is not one of
its own (``checkpoints.resume_checkpoint_path``, what ``training.init_from`` renders to).

nanotron's meaning is kept: the weights always come from that checkpoint; its optimizer state only
with ``checkpoints.load_optimizer``; its LR schedule *and* step counter (hence the data position)
only with ``checkpoints.load_lr_scheduler``. The checkpoint may be

- ``trainer``: a ``checkpoint-<step>`` folder of this local trainer (the smoke run's stage 03):
  transformers weights beside ``optimizer.pt``, ``scheduler.pt`` and ``trainer_state.json``; with
  both flags set it is a resume of that run in a new folder (transformers' own resume);
- ``hf``: a transformers model folder, or a Hub id found in the local cache (``from_pretrained``,
  offline): weights only;
- ``nanotron``: a nanotron step folder, or a checkpoints folder with ``latest.txt``, read with the
  kit's converter (``zagreus_utils.convert``: tp shards merged, names mapped): weights only.

The model the trainer builds from the config gets these weights (:func:`load_into`); a checkpoint
whose shapes or RoPE/norm settings differ from the config is refused, naming both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..convert.checkpoint_io import NanotronCheckpoint
from ..convert.folders import resolve_nanotron_checkpoint
from ..convert.names import split_to_hf
from ..pipeline.errors import ZagreusError
from .arch import LlamaArch
from .checkpoints import STATE_FILES, step_of, verify_checkpoint, weight_files

#: what must agree between the checkpoint and the config for the logits to be the checkpoint's
MATCHING = ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads",
            "tie_word_embeddings", "rope_theta", "rms_norm_eps", "hidden_act")


@dataclass(frozen=True)
class InitSource:
    path: str
    kind: str                # trainer | hf | nanotron
    load_optimizer: bool     # checkpoints.load_optimizer
    load_lr_scheduler: bool  # checkpoints.load_lr_scheduler (with it, the step counter)

    @property
    def full_resume(self) -> bool:
        """Everything taken over: transformers' resume from that checkpoint."""
        return self.kind == "trainer" and self.load_optimizer and self.load_lr_scheduler

    def describe(self) -> str:
        kept = [n for n, on in (("optimizer state", self.load_optimizer),
                                ("LR schedule and step", self.load_lr_scheduler)) if on]
        return (f"started from the weights of {self.path} ({self.kind} layout)"
                + (f", taking over its {' and '.join(kept)}" if kept else
                   "; optimizer, LR schedule and step counter start afresh"))


def kind_of(path: str | Path) -> str:
    """``trainer``, ``nanotron`` or ``hf`` (a folder with config.json, or a Hub id)."""
    p = Path(path)
    if p.is_dir() and all((p / name).is_file() for name in STATE_FILES) and weight_files(p):
        return "trainer"
    if p.is_dir() and ((p / "model").is_dir() or (p / "latest.txt").is_file()
                       or any(c.name.isdigit() and (c / "model").is_dir() for c in p.iterdir())):
        return "nanotron"
    return "hf"


def init_source(config: dict, absolute, own_folder: str | Path) -> InitSource | None:
    """The checkpoint the config starts from, or None (from scratch, or a resume of this run:
    a checkpoint inside its own output folder)."""
    ckpt = config.get("checkpoints") or {}
    path = ckpt.get("resume_checkpoint_path")
    if not path:
        return None
    local = Path(path).is_absolute() or Path(absolute(path)).exists()
    full = absolute(path) if local else str(path)  # not on disk: a Hub id
    if local and Path(full).resolve().parent == Path(own_folder).resolve():
        return None
    return InitSource(full, kind_of(full) if local else "hf", bool(ckpt.get("load_optimizer", True)),
                      bool(ckpt.get("load_lr_scheduler", True)))


def _hf_state(path: str) -> tuple[dict, LlamaArch]:
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype="float32")
    except (OSError, ValueError) as exc:
        raise ZagreusError(f"cannot load the start model {path} (a transformers folder, or a Hub id in the local "
                           f"cache; offline): {str(exc).splitlines()[0]}; fix training.init_from") from None
    return model.state_dict(), LlamaArch.from_hf(model.config, f"{path}/config.json")


def _nanotron_state(path: str) -> tuple[dict, LlamaArch]:
    folder, _ = resolve_nanotron_checkpoint(Path(path))
    ckpt = NanotronCheckpoint(folder)
    state = {}
    for name, tensor in ckpt.tensors():
        for hf_name, piece in split_to_hf(name, tensor, ckpt.arch):
            state[hf_name] = piece.float()
    return state, ckpt.arch


def read_state(src: InitSource) -> tuple[dict, LlamaArch]:
    """(transformers state dict, architecture) of the checkpoint."""
    if src.kind == "trainer":
        verify_checkpoint(src.path)
    return _nanotron_state(src.path) if src.kind == "nanotron" else _hf_state(src.path)


def arch_differences(ours: LlamaArch, theirs: LlamaArch) -> list[str]:
    return [f"{k} {getattr(theirs, k)!r} (the run's config: {getattr(ours, k)!r})"
            for k in MATCHING if getattr(ours, k) != getattr(theirs, k)]


def load_into(model, src: InitSource, arch: LlamaArch) -> None:
    """Copy the checkpoint's weights into ``model`` (built from ``arch``), refusing another shape."""
    import torch

    state, theirs = read_state(src)
    diff = arch_differences(arch, theirs)
    if diff:
        raise ZagreusError(f"the start checkpoint {src.path} does not fit the run's model: {'; '.join(diff)}; "
                           "set the profile's model section to the checkpoint's shapes, or start from another "
                           "checkpoint (training.init_from)")
    if arch.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    own = model.state_dict()
    missing = sorted(k for k in own if k not in state and not (arch.tie_word_embeddings and k == "lm_head.weight"))
    if missing:
        raise ZagreusError(f"the start checkpoint {src.path} lacks {', '.join(missing[:5])}; point "
                           "training.init_from at a complete Llama checkpoint")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in state:
                p.copy_(state[name].to(p.dtype))


def load_optimizer_state(optimizer, src: InitSource) -> None:
    """The optimizer state of a ``trainer`` checkpoint (``load_optimizer`` with a reset schedule)."""
    import torch

    if src.kind != "trainer":
        raise ZagreusError(f"checkpoints.load_optimizer is true but {src.path} ({src.kind} layout) holds no optimizer "
                           "state the local trainer can read; add optimizer to training.init_reset")
    optimizer.load_state_dict(torch.load(Path(src.path) / "optimizer.pt", map_location="cpu", weights_only=True))


def check_resets(src: InitSource) -> None:
    """What the local trainer cannot take over from this layout (refused before any compute)."""
    if src.kind == "trainer" and src.load_lr_scheduler and not src.load_optimizer:
        raise ZagreusError(f"the config takes over the LR schedule and step of {src.path} but not its optimizer state "
                           "(checkpoints.load_lr_scheduler true, load_optimizer false): the local trainer takes over "
                           "the schedule and step only with the optimizer (transformers' resume); list lr_schedule "
                           "and step in training.init_reset too, or take the optimizer over as well")
    if src.kind != "trainer" and (src.load_optimizer or src.load_lr_scheduler):
        kept = [k for k, on in (("optimizer", src.load_optimizer), ("lr_schedule and step", src.load_lr_scheduler))
                if on]
        raise ZagreusError(f"{src.path} ({src.kind} layout) carries weights only, but the config takes over its "
                           f"{' and '.join(kept)} (checkpoints.load_optimizer / load_lr_scheduler): list "
                           "optimizer, lr_schedule and step in training.init_reset")


def start_point(src: InitSource | None, own_resume, train_steps: int):
    """The checkpoint transformers resumes from: the run's own last one when there is one, else the
    start checkpoint when everything is taken over from it (else None: a fresh start). Refuses a
    start checkpoint the run cannot continue."""
    if src is None or own_resume is not None:
        return own_resume
    check_resets(src)
    if not src.full_resume:
        return None
    step = step_of(src.path) if Path(src.path).name.startswith("checkpoint-") else 0
    if step >= train_steps:
        raise ZagreusError(f"the start checkpoint {src.path} has trained {step} steps, and its step counter is taken "
                           f"over (lr_schedule, step not in training.init_reset): raise training.train_steps above "
                           f"{step}, or reset the schedule and step")
    return Path(src.path)


def prepare_start(src: InitSource | None, resumed_from, model, optimizer, arch: LlamaArch) -> list[str]:
    """Give a run that starts (not resumes) from ``src`` its weights and, when taken over, its
    optimizer state; returns the note saying what was taken over."""
    if src is None:
        return []
    if resumed_from is not None and Path(resumed_from).resolve() != Path(src.path).resolve():
        return [f"resumed from its own checkpoint {Path(resumed_from).name} (the run was {src.describe()})"]
    if resumed_from is None:
        load_into(model, src, arch)
        if src.load_optimizer:
            load_optimizer_state(optimizer, src)
    return [f"this run {src.describe()}"]
