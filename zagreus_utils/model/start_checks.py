"""Pre-flight of a continual pretraining run: the start model (``training.init_from``) against
the spec and the token folders, and the data stages against the steps; before any compute.

Each failure names the file, the key and the fix: the start model's tokenizer differs from the
one the token folders were made with (name, vocabulary size and a hash of every token and id);
its shape differs from the profile's (through :meth:`LlamaArch.from_hf` / ``from_nanotron``);
``training.sequence_length`` exceeds its ``max_position_embeddings``; ``training.init_reset``
keeps a state it does not hold (a Hugging Face model has no optimizer, schedule or step), or keeps
a step at or past ``train_steps``; a data stage starts after the last step.
"""

from __future__ import annotations

from pathlib import Path

from ..pipeline import paths
from ..pipeline.errors import ZagreusError
from ..pipeline.spec import value_source
from .arch import LlamaArch
from .checks import Check
from .start_model import HF, StartModel, locate, resolve_path, tokenizer_print
from ..nanotron.continual import START_FOLDER

# LlamaArch field -> the profile key that sets it (what a mismatch names)
SHAPE_KEYS = {
    "vocab_size": "tokenizer.vocab_size", "hidden_size": "model.hidden_size",
    "intermediate_size": "model.intermediate_size", "num_layers": "model.num_hidden_layers",
    "num_heads": "model.num_attention_heads", "num_kv_heads": "model.num_key_value_heads",
    "tie_word_embeddings": "model.tie_word_embeddings", "hidden_act": "model.hidden_act",
    "rope_theta": "model.rope_theta", "rope_interleaved": "model.rope_interleaved",
    "rms_norm_eps": "model.rms_norm_eps",
}


def _where(spec, key: str, overrides: dict | None = None) -> str:
    try:
        return value_source(spec.profile.name, key, overrides)
    except ZagreusError:  # a profile outside configs/ (tests): name the key only
        return f"profile {spec.profile.name}"


def check_stages(config: dict) -> Check:
    """Every data stage starts within the run (nanotron's 1-based ``start_training_step``)."""
    steps = (config.get("tokens") or {}).get("train_steps")
    stages = config.get("data_stages") or []
    late = [f"data_stages[{i}] ({s.get('name')!r}) starts at step {s.get('start_training_step')}"
            for i, s in enumerate(stages) if isinstance(s, dict) and isinstance(steps, int)
            and isinstance(s.get("start_training_step"), int) and s["start_training_step"] > steps]
    if late:
        return Check("data stages (start steps)", False, "; ".join(late) + f", after the last step "
                     f"(tokens.train_steps={steps}): nanotron would never read it",
                     "move the stage's start_step (data_stages in the profile) before training.train_steps, "
                     "or raise train_steps")
    return Check("data stages (start steps)", True, ", ".join(
        f"{s.get('name')!r} from step {s.get('start_training_step')}" for s in stages if isinstance(s, dict))
        or "none")


def check_resets(spec, start: StartModel, train_steps: int, overrides: dict | None = None) -> Check:
    """``training.init_reset`` against what the start model holds."""
    reset = set(spec.profile.training.init_reset)
    where = _where(spec, "training.init_reset", overrides)
    kept = [r for r in ("optimizer", "lr_schedule", "step") if r not in reset]
    if start.kind == HF and kept:
        return Check("start model: reset", False, f"training.init_reset ({where}) keeps {kept}, but "
                     f"{start.folder} is a Hugging Face model: it holds weights only",
                     "set training.init_reset: [optimizer, lr_schedule, step], or start from a nanotron "
                     "checkpoint that saved those states")
    problems = []
    if "optimizer" in kept and not start.holds("optimizer"):
        problems.append(f"keeps the optimizer but {start.folder / 'optimizer'} is missing or empty")
    if "lr_schedule" in kept and not start.holds("lr_scheduler"):
        problems.append(f"keeps the LR schedule but {start.folder / 'lr_scheduler'} is missing or empty")
    last = start.last_step() if "step" in kept else None
    if last is not None and last >= train_steps:
        problems.append(f"keeps the step counter, at {last} in {start.folder / 'checkpoint_metadata.json'}, "
                        f"not below training.train_steps ({train_steps}): nanotron asserts train_steps > "
                        "the checkpoint's last step")
    if problems:
        return Check("start model: reset", False, f"training.init_reset {sorted(reset)} ({where}) "
                     + "; ".join(problems),
                     "add what the checkpoint lacks to training.init_reset (optimizer; lr_schedule and step "
                     "together), or raise training.train_steps above the checkpoint's step")
    detail = f"resets {sorted(reset) or 'nothing'}"
    if "step" in kept:
        detail += f"; continues from step {start.last_step()}"
    return Check("start model: reset", True, detail)


def check_shape(spec, start: StartModel, arch: LlamaArch, overrides: dict | None = None) -> Check:
    """The start model's architecture against the profile's (``LlamaArch.from_spec``)."""
    want = LlamaArch.from_spec(spec)
    diffs = [f"{key} is {getattr(want, field)!r} ({_where(spec, key, overrides)}) but the start model has "
             f"{getattr(arch, field)!r}" for field, key in SHAPE_KEYS.items()
             if getattr(want, field) != getattr(arch, field)]
    if diffs:
        return Check("start model: shape vs spec", False, f"{start.config_file}: " + "; ".join(diffs),
                     "set those profile keys to the start model's values (--set KEY=VALUE or the profile "
                     "file), or start from a model of the profile's shape")
    return Check("start model: shape vs spec", True,
                 f"{arch.num_layers} layers x {arch.hidden_size}, {arch.num_heads}/{arch.num_kv_heads} heads, "
                 f"vocabulary {arch.vocab_size}: as the profile")


def check_sequence(spec, start: StartModel, arch: LlamaArch, seq: int, overrides: dict | None = None) -> Check:
    mpe = arch.max_position_embeddings
    if seq > mpe:
        return Check("start model: sequence length", False,
                     f"training.sequence_length {seq} ({_where(spec, 'training.sequence_length', overrides)}) exceeds the start "
                     f"model's max_position_embeddings {mpe} ({start.config_file})",
                     f"set training.sequence_length to at most {mpe}, or extend the start model's context first")
    return Check("start model: sequence length", True, f"{seq} <= its max_position_embeddings {mpe}")


def check_tp(start: StartModel, arch: LlamaArch, tp: int) -> Check:
    """nanotron shards heads, the MLP and the vocabulary over tp (and pads a vocabulary tp does not
    divide, which a start model's embedding then does not fit): the converter's rule."""
    from ..convert.to_nanotron import check_tp as converter_check  # imports torch: only with a start model

    try:
        converter_check(arch, tp)
    except ZagreusError as exc:
        return Check("start model: tensor parallelism", False, f"{start.config_file}: {exc}",
                     "set parallelism.tp (and dp, hardware) to a divisor of those sizes, e.g. tp 1")
    return Check("start model: tensor parallelism", True, f"tp {tp} divides its heads, MLP and vocabulary")


def check_tokenizer(spec, start: StartModel, data_tokenizer: str | None, base: Path, what: str,
                    overrides: dict | None = None) -> Check:
    """The start model's tokenizer against ``data_tokenizer`` (the token folders' tokenizer string,
    or the profile's pretrained tokenizer before stage 02 ran): same vocabulary, token for token."""
    name = "start model: tokenizer vs token folders"
    source = start.tokenizer_source()
    if source is None:
        return Check(name, None, f"{start.folder} carries no tokenizer (no tokenizer files, no config.yaml "
                     "tokenizer_name_or_path)", f"copy the start model's tokenizer files into {start.folder}")
    mine = tokenizer_print(source, base)
    theirs = tokenizer_print(data_tokenizer, base) if data_tokenizer else None
    if mine is None or theirs is None:
        missing = source if mine is None else data_tokenizer
        return Check(name, None, f"cannot read tokenizer {missing!r} here to compare",
                     "pre-fill the Hugging Face cache (HF_HOME) or give local tokenizer folders")
    if mine.sha256 != theirs.sha256:
        return Check(name, False, f"the start model's tokenizer {mine.text()} differs from {what} {theirs.text()}",
                     f"tokenize the data with the start model's tokenizer (tokenizer.kind: pretrained, "
                     f"tokenizer.name_or_path: {source} in {_where(spec, 'tokenizer.name_or_path', overrides)}, then rerun "
                     "stage 02), or start from a model trained with the data's tokenizer")
    return Check(name, True, f"same vocabulary as {what}: {theirs.text()}")


def check_start(spec, config: dict | None = None, base: Path = paths.REPO_ROOT,
                overrides: dict | None = None) -> list[Check]:
    """Every check of ``training.init_from`` (none when it is null). With the rendered nanotron
    ``config`` the tokenizer is compared with the token folders' (``tokenizer.tokenizer_name_or_path``,
    which :func:`zagreus_utils.model.preflight.check_data` holds equal to their ``.metadata``);
    without it (``zagreus run``'s plan) with the profile's pretrained tokenizer, when it has one."""
    t = spec.profile.training
    if t.init_from is None:
        return []
    try:
        start = locate(t.init_from, base)
        arch = start.arch()
    except ZagreusError as exc:
        return [Check("start model (training.init_from)", False, str(exc),
                      f"set training.init_from ({_where(spec, 'training.init_from', overrides)}) to a model "
                      "folder, a Hub id in the local cache, or null")]
    checks = [Check("start model (training.init_from)", True,
                    f"{start.kind} model at {start.folder}" + (f" ({start.note})" if start.note else ""))]
    train_steps = (config or {}).get("tokens", {}).get("train_steps", t.train_steps)
    seq = (config or {}).get("tokens", {}).get("sequence_length", t.sequence_length)
    tp = (config or {}).get("parallelism", {}).get("tp", spec.profile.parallelism.tp)
    checks += [check_resets(spec, start, train_steps, overrides), check_shape(spec, start, arch, overrides),
               check_sequence(spec, start, arch, seq, overrides), check_tp(start, arch, tp)]
    if config is not None:
        data_tok = (config.get("tokenizer") or {}).get("tokenizer_name_or_path")
        checks.append(check_tokenizer(spec, start, data_tok, base, "the token folders' tokenizer", overrides))
    elif spec.profile.tokenizer.kind == "pretrained":
        checks.append(check_tokenizer(spec, start, spec.profile.tokenizer.name_or_path, base,
                                      "the profile's tokenizer", overrides))
    return checks


def pending_start(spec, config: dict, base: Path = paths.REPO_ROOT) -> Path | None:
    """The folder the config loads that stage 03 fills before training (a Hugging Face start model
    converted to nanotron's layout), or None."""
    path = (config.get("checkpoints") or {}).get("resume_checkpoint_path")
    if spec.profile.training.init_from is None or not path or Path(path).name != START_FOLDER:
        return None
    return resolve_path(str(path), base)
