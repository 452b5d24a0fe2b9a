"""Stage 05 SFT: the report's axolotl config rendered from the spec, checked, and run for real.

Rendering (:func:`render`): for a GPU profile (``full``) the report's section-5 config, value for
value, with the :data:`ADAPTATIONS` the kit must make (its own converted checkpoint as the base
model, its run folders instead of the report's cluster paths); committed for every language as
``configs/axolotl/zagreus_sft_<lang>.yaml`` (a test checks they equal :func:`render_committed`).
For a CPU profile (``smoke``) the same config with the :data:`CPU_CHANGES` (fp32, sdpa attention,
no FSDP, few steps...); :func:`differences` lists every difference from the report's config with
its reason, and fails loudly (an empty reason) when one is not explained.

Checking (:func:`prepare`): the dataset rows (``conversation`` lists of system/user/assistant
messages), the base model folder and its tokenizer, and the chat template are checked before
anything runs; the config is validated with axolotl's own ``validate_config``, and
:func:`findings` lists what that validation lets through: keys axolotl silently drops, renamed
or deprecated keys, and settings that have no effect (e.g. cosine knobs under a constant
schedule), plus what the report's config and Slurm script get wrong.

Running: ``local`` runs axolotl's own CLI entry points (``axolotl.cli.preprocess`` then
``axolotl.cli.train``) as subprocesses, offline and with telemetry off, logs in ``<out>/logs``;
``slurm`` renders ``slurm/sft.sbatch.j2`` (``srun torchrun -m axolotl.cli.train``) with nodes and
GPUs per node from ``profile.slurm.sft``, and dry-runs, submits and follows it.

Reading results: :func:`label_mask_example` tokenizes one conversation with axolotl's own
``chat_template`` prompt strategy (the labels it trains on), :func:`loss_curves` reads the
trainer state, :func:`chat`/:func:`compare_chats` generate through the chat template.

This module keeps its top-level imports light: ``python -m zagreus_utils.stages.sft`` is the process
that runs axolotl's CLI, and the worker processes that ``datasets`` spawns re-import it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..pipeline import paths
from ..pipeline.errors import ZagreusError

AXOLOTL_DIR = paths.CONFIGS / "axolotl"
CONFIG_NAME = "zagreus_sft_{language}.yaml"
TEMPLATE = paths.REPO_ROOT / "slurm" / "sft.sbatch.j2"
LAUNCHERS = ("local", "slurm")
HEADER = ("# Rendered by zagreus_utils.stages.sft from configs/profiles/{profile}.yaml and "
          "configs/languages/{language}.yaml.\n"
          "# Do not edit: change the spec and re-render (a test checks this file equals the renderer's output).\n"
          "# The report's section-5 config except the adaptations listed by zagreus_utils.stages.sft.ADAPTATIONS;\n"
          "# paths are relative to the repository root (the sbatch script runs from there).\n")

# --- the report's config, as printed (section 5, "Axolotl Configuration") --------------------

REPORT_CONFIG_YAML = r'''base_model: giux78/zagreus-0.4B-ita 
strict: false
output_dir: ./ale_outputs/opendata-zagreus-sft-final
seed: 42
chat_template_jinja: "{%- for message in messages -%}\n    {{- \"<|im_start|>\" + message.role + \"\\n\" + message.content + \"<|im_end|>\" + \"\\n\" -}}\n{%- endfor -%}\n{%- if add_generation_prompt -%}\n\t{{- \"<|im_start|>assistant\\n\" -}}\n{%- endif -%}"
datasets:
  - path: /training/openitaliandata
    type: chat_template
    field_messages: conversation
    roles_to_train: ["assistant"]
    train_on_eos: turn

dataset_prepared_path: ./ale_outputs/dataset_cache/opendata-zagreus-sft

sequence_len: 4096
sample_packing: true
eval_sample_packing: true
pad_to_sequence_len: true

# Cosine schedule knobs
cosine_constant_lr_ratio: 0.8
cosine_min_lr_ratio: 0.3

optimizer: adamw_torch_fused
lr_scheduler: constant
learning_rate: 1.0e-03

max_grad_norm: 1.0
micro_batch_size: 1
gradient_accumulation_steps: 8

num_epochs: 3

bf16: auto
flash_attention: true
gradient_checkpointing: true

logging_steps: 10
eval_strategy: steps
eval_steps: 300
save_strategy: steps
save_steps: 500
save_total_limit: 3
val_set_size: 10000

fsdp_config:
  fsdp_sharding_strategy: FULL_SHARD
  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
  fsdp_transformer_layer_cls_to_wrap: LlamaDecoderLayer
  fsdp_backward_prefetch_policy: BACKWARD_PRE
  fsdp_state_dict_type: FULL_STATE_DICT

special_tokens:
  pad_token: <|im_end|>
  eos_token: <|im_end|>
'''

_REPORT_BLOCK = re.compile(r"## Axolotl Configuration.*?```yaml\n(.*?)```", re.S)


def report_config(markdown_path: str | Path | None = None) -> dict:
    """The report's axolotl config: from its markdown when given, else the transcription above."""
    if markdown_path is None:
        return yaml.safe_load(REPORT_CONFIG_YAML)
    source = Path(markdown_path)
    if not source.is_file():
        raise ZagreusError(f"the report's markdown is not at {source}; pass its path")
    m = _REPORT_BLOCK.search(source.read_text(encoding="utf-8"))
    if not m:
        raise ZagreusError(f"{source}: no '## Axolotl Configuration' YAML block found")
    return yaml.safe_load(m.group(1))


CHATML_TEMPLATE: str = yaml.safe_load(REPORT_CONFIG_YAML)["chat_template_jinja"]
ROLES = ("system", "user", "assistant")  # the roles of the report's data (OpenItalianData style)
FIELD_MESSAGES = "conversation"

# --- values the spec does not hold (the report's; see the reply for the spec additions) -------
SFT_SEED = 42                 # the report's SFT seed (the pretraining seed is training.seed = 8)
SMOKE_MAX_STEPS = 40          # CPU profiles: optimizer steps (about 2 epochs of the smoke data)
SMOKE_EVAL_STEPS = 20
SMOKE_LOGGING_STEPS = 1
SFT_DATA = Path("01_data") / "raw" / "sft" / "conversations.jsonl"
CONVERTED = Path("04_conversion") / "hf"   # the conversion stage's HF folders, hf/step-<N>
STAGE = "05_sft"

REMOVE = object()  # a CPU change that removes the key


@dataclass(frozen=True)
class Change:
    key: str      # flattened key (``fsdp_config``, ``datasets[0].path``)
    kind: str     # adaptation | cpu | profile
    reason: str


ADAPTATIONS: tuple[Change, ...] = (
    Change("base_model", "adaptation",
           "The report fine-tunes its published checkpoint (hub id giux78/zagreus-0.4B-ita); the kit "
           "fine-tunes the conversion stage's Hugging Face export of its own last pretraining checkpoint "
           "for the run's language (<run>/04_conversion/hf/step-<training.train_steps>)."),
    Change("output_dir", "adaptation",
           "A folder of the report's working directory; the kit writes the SFT model into the stage "
           "folder (<run>/05_sft/model)."),
    Change("datasets[0].path", "adaptation",
           "/training/openitaliandata is a folder on the report's cluster (OpenItalianData, Italian only); "
           "the kit reads the data stage's SFT file in the same format (<run>/01_data/raw/sft/"
           "conversations.jsonl: the generated bilingual conversations for smoke, the real data for full)."),
    Change("dataset_prepared_path", "adaptation",
           "The report's cache folder; the kit keeps axolotl's tokenized dataset in the stage folder "
           "(<run>/05_sft/dataset_cache)."),
)

# (key, value or REMOVE or a callable(spec) -> value, reason); applied in this order for CPU profiles
CPU_CHANGES: tuple[tuple[str, Any, str], ...] = (
    ("bf16", False,
     "bf16: auto falls back to fp16 on a CPU host and the trainer then fails; CPU trains in fp32."),
    ("flash_attention", REMOVE,
     "flash-attn needs CUDA (ImportError on CPU); replaced by attn_implementation."),
    ("attn_implementation", "sdpa",
     "PyTorch's scaled-dot-product attention runs on CPU; axolotl keeps packed samples apart with a "
     "block-diagonal mask for sdpa (attn_decontaminates_packing), as flash-attention does."),
    ("gradient_checkpointing", False,
     "Recomputing activations only saves memory, which a tiny model does not need; it costs ~30% time."),
    ("fsdp_config", REMOVE,
     "FSDP needs an accelerator (the trainer fails at start without one); one CPU process, no sharding."),
    ("max_steps", lambda spec: SMOKE_MAX_STEPS,
     "A few optimizer steps (module default SMOKE_MAX_STEPS) keep the smoke run within its time budget; "
     "it takes precedence over num_epochs."),
    ("logging_steps", SMOKE_LOGGING_STEPS, "Log every step so that the short run still draws a loss curve."),
    ("eval_steps", lambda spec: SMOKE_EVAL_STEPS, "Evaluate a few times within the short run."),
    ("save_steps", lambda spec: SMOKE_MAX_STEPS,
     "One checkpoint, at the last step (it carries trainer_state.json, the loss history)."),
    ("save_total_limit", 1, "One checkpoint is kept."),
    ("dataset_num_proc", 1,
     "One tokenization process: on 2 cores a process pool per packing pass costs more than it saves."),
    ("dataloader_num_workers", 0, "Batches are built in the training process (no worker process per epoch)."),
)

PROFILE_REASONS = {
    "sequence_len": "The profile's sft.sequence_len: the smoke conversations are under 140 tokens and the "
                    "smoke model has 256 positions; 4096 works on CPU but is slow.",
    "micro_batch_size": "The profile's sft.micro_batch_size (4 packed sequences per step on CPU).",
    "gradient_accumulation_steps": "The profile's sft.gradient_accumulation_steps: no accumulation in a "
                                   "single-process CPU run.",
    "num_epochs": "The profile's sft.num_epochs (max_steps bounds the run).",
    "learning_rate": "The profile's sft.learning_rate.",
    "val_set_size": "The profile's sft.val_set_size: a fraction (5%) of the data, since 10000 rows is more "
                    "than the generated conversations (axolotl fails when the eval split exceeds the data).",
}


def _reasons() -> dict[str, str]:
    out = {c.key: c.reason for c in ADAPTATIONS}
    out.update({key: reason for key, _, reason in CPU_CHANGES})
    out.update(PROFILE_REASONS)
    return out


# --- rendering ------------------------------------------------------------------------------

def is_cpu(spec) -> bool:
    """A profile without GPUs (``hardware.gpus_per_node: 0``) gets the CPU variant."""
    return not spec.profile.hardware.gpus_per_node


def base_model_path(spec, run_dir: str | Path) -> Path:
    """Where the conversion stage puts the last pretraining checkpoint: ``hf/step-<train_steps>``."""
    return Path(run_dir) / CONVERTED / f"step-{spec.profile.training.train_steps}"


def resolve_base_model(spec, run_dir: str | Path) -> Path:
    """The base model of an actual run: ``hf/step-<train_steps>`` when the conversion stage wrote
    it, else its last converted checkpoint (``hf/final`` where a hand-made folder has that name)."""
    expected = base_model_path(spec, run_dir)
    if expected.is_dir():
        return expected
    hf = Path(run_dir) / CONVERTED
    steps = sorted((int(p.name[5:]), p) for p in hf.glob("step-*") if p.name[5:].isdigit() and p.is_dir())
    if steps:
        return steps[-1][1]
    if (hf / "final").is_dir():
        return hf / "final"
    raise ZagreusError(f"no base model: {expected} does not exist (nor any {hf}/step-<N>); the conversion "
                       "stage writes it: zagreus run --stages conversion")


def committed_path(language: str) -> Path:
    return AXOLOTL_DIR / CONFIG_NAME.format(language=language)


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() and abs(value) >= 1 else value


def render(spec, *, run_dir: str | Path | None = None, out_dir: str | Path | None = None,
           runs_root: str | Path = "runs", base_model: str | Path | None = None,
           dataset: str | Path | None = None, max_steps: int | None = None,
           chat_template: str | None = None) -> dict:
    """The axolotl config (a plain mapping, the report's key order) of one run.

    Paths default to the run folder layout under ``runs_root`` (relative, as committed); pass
    ``run_dir`` (and ``out_dir``) for the absolute paths of an actual run. A profile without GPUs
    gets the :data:`CPU_CHANGES`; ``max_steps`` replaces :data:`SMOKE_MAX_STEPS` there.
    """
    p, lang = spec.profile, spec.language
    run = Path(run_dir) if run_dir is not None else Path(runs_root) / p.name / lang.code
    out = Path(out_dir) if out_dir is not None else run / STAGE
    cfg = report_config()
    s = p.sft
    cfg.update({
        "base_model": str(base_model or base_model_path(spec, run)),
        "output_dir": str(out / "model"),
        "seed": SFT_SEED,
        "sequence_len": s.sequence_len,
        "learning_rate": s.learning_rate,
        "micro_batch_size": s.micro_batch_size,
        "gradient_accumulation_steps": s.gradient_accumulation_steps,
        "num_epochs": s.num_epochs,
        "val_set_size": _number(s.val_set_size),
        "dataset_prepared_path": str(out / "dataset_cache"),
    })
    if chat_template is not None:
        cfg["chat_template_jinja"] = chat_template
    cfg["datasets"][0]["path"] = str(dataset or run / SFT_DATA)
    if is_cpu(spec):
        for key, value, _ in CPU_CHANGES:
            if value is REMOVE:
                cfg.pop(key, None)
            else:
                cfg[key] = value(spec) if callable(value) else value
        if max_steps is not None:
            cfg["max_steps"] = int(max_steps)
            cfg["save_steps"] = int(max_steps)
            cfg["eval_steps"] = max(1, min(cfg["eval_steps"], int(max_steps) // 2))
    elif max_steps is not None:
        cfg["max_steps"] = int(max_steps)
    return cfg


def to_yaml(cfg: dict, header: str = "") -> str:
    """Deterministic YAML in the config's own key order (as the report writes it)."""
    return header + yaml.safe_dump(cfg, sort_keys=False, default_flow_style=False, width=10_000,
                                   allow_unicode=True)


def render_committed(language: str) -> str:
    """The text of ``configs/axolotl/zagreus_sft_<language>.yaml`` (the ``full`` profile)."""
    from ..pipeline.spec import load_spec

    return to_yaml(render(load_spec(language, "full")), HEADER.format(profile="full", language=language))


def write_committed(languages: list[str] | None = None) -> list[Path]:
    """(Re)write the committed configs; returns the files written."""
    from ..pipeline.spec import available

    AXOLOTL_DIR.mkdir(parents=True, exist_ok=True)
    written = []
    for lang in languages or available("languages"):
        path = committed_path(lang)
        path.write_text(render_committed(lang), encoding="utf-8")
        written.append(path)
    return written


def load_config(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ZagreusError(f"cannot read axolotl config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ZagreusError(f"axolotl config {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ZagreusError(f"axolotl config {path}: expected a mapping at the top level")
    return data


# --- differences ----------------------------------------------------------------------------

def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "l": [{"x": 2}]}`` -> ``{"a.b": 1, "l[0].x": 2}`` (scalar lists stay whole)."""
    out: dict[str, Any] = {}
    if isinstance(node, dict) and node:
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(node, list) and node and any(isinstance(v, (dict, list)) for v in node):
        for i, value in enumerate(node):
            out.update(flatten(value, f"{prefix}[{i}]"))
    else:
        out[prefix] = node
    return out


def _short(value: Any, limit: int = 80) -> str:
    if value is _MISSING:
        return "(absent)"
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


_MISSING = object()


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        return float(a) == float(b)
    if isinstance(a, str) and isinstance(b, str):
        return a.strip() == b.strip()  # the report's base_model line ends in a blank
    return a == b


def difference_rows(full_cfg: dict, smoke_cfg: dict) -> list[dict]:
    """Every key whose value differs (or that only one side has), with its reason ('' if none)."""
    a, b = flatten(full_cfg), flatten(smoke_cfg)
    reasons = _reasons()
    rows = []
    for key in list(a) + [k for k in b if k not in a]:
        va, vb = a.get(key, _MISSING), b.get(key, _MISSING)
        if va is not _MISSING and vb is not _MISSING and _same(va, vb):
            continue
        top = key.split(".")[0].split("[")[0]
        reason = reasons.get(key) or reasons.get(top, "")
        rows.append({"key": key, "report": _short(va), "smoke": _short(vb), "reason": reason})
    return rows


def differences(full_cfg: dict, smoke_cfg: dict):
    """A DataFrame (key, report, smoke, reason): every difference of ``smoke_cfg`` from ``full_cfg``.

    ``full_cfg`` is normally the report's own config (:func:`report_config`), so the table shows
    the adaptations too. A difference without a listed reason has an empty ``reason``.
    """
    import pandas as pd

    return pd.DataFrame(difference_rows(full_cfg, smoke_cfg), columns=["key", "report", "smoke", "reason"])


# --- validation with axolotl ----------------------------------------------------------------

OFFLINE_ENV = {"AXOLOTL_DO_NOT_TRACK": "1", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1",
               "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
               "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}
RENAMED = {"flash_attention": "attn_implementation"}
# What the report's config and Slurm script get wrong or leave without effect (shown with the
# findings of the validation; where a key is concerned the validation flags it too).
REPORT_FINDINGS: tuple[tuple[str, str, str], ...] = (
    ("fsdp_config.fsdp_sharding_strategy", "dropped",
     "axolotl strips the deprecated fsdp_ prefix and its FSDPConfig has no sharding_strategy: the key is "
     "dropped without a word. No harm: accelerate's FSDP1 default is FULL_SHARD, the report's value."),
    ("fsdp_config.fsdp_backward_prefetch_policy", "dropped",
     "Dropped the same way (axolotl 0.19 has no backward-prefetch field at all): BACKWARD_PRE is never "
     "applied and accelerate runs with its default, NO_PREFETCH."),
    ("cosine_constant_lr_ratio", "no effect",
     "Under lr_scheduler: constant the cosine knobs are ignored (axolotl applies them only to "
     "lr_scheduler: cosine): the learning rate is a flat 1e-3 for all 3 epochs, with no warmup and no decay."),
    ("cosine_min_lr_ratio", "no effect", "As cosine_constant_lr_ratio: ignored under a constant schedule."),
    ("flash_attention", "deprecated",
     "A deprecated alias: axolotl turns it into attn_implementation: flash_attention_2."),
    ("fsdp_config", "deprecated",
     "fsdp_-prefixed keys are deprecated, and without fsdp_version axolotl pins FSDP1, itself deprecated "
     "(transformers plans to remove it in v5.20)."),
    ("strict", "no effect",
     "strict: false (or true) does not change validation: unknown keys are silently dropped either way."),
    ("special_tokens.eos_token", "note",
     "Essential with train_on_eos: turn: the turn terminator <|im_end|> is then the EOS and gets a label; "
     "without it axolotl only warns and the model never learns to stop. A base tokenizer without "
     "<|im_start|>/<|im_end|> (Llama-3.2's has neither) gets <|im_end|> added as a new token (embeddings "
     "resized) while <|im_start|>, not listed under `tokens:`, stays split into byte-level pieces."),
    ("(sbatch) --gres / GPUS_PER_NODE", "inconsistent",
     "The report's script asks for --nodes=4 ('# 2 nodes') and --gres=gpu:8 ('# 4 A100 per node') but "
     "starts torchrun with GPUS_PER_NODE=4: 16 ranks on 32 allocated GPUs, half of them idle. The kit "
     "renders nodes from slurm.sft.nodes and uses slurm.sft.gpus_per_node for both --gres and --nproc_per_node."),
    ("(sbatch) config file", "note",
     "The script trains training/opendata-zagreus-350M-sft-fsdp-debug.yaml, a file name that differs from "
     "the config shown (output_dir opendata-zagreus-sft-final): the two may not be the same run."),
)


@dataclass
class Validation:
    config: dict                     # what axolotl's validate_config made of it (plain JSON values)
    findings: list[dict]             # key, value, kind, finding
    warnings: list[str] = field(default_factory=list)  # what axolotl logged while validating

    def table(self):
        import pandas as pd

        return pd.DataFrame(self.findings, columns=["key", "value", "kind", "finding"])


def apply_offline_env(env: dict | None = None) -> dict:
    """The offline/telemetry variables set into ``env`` (default: this process's environment)."""
    target = os.environ if env is None else env
    for key, value in OFFLINE_ENV.items():
        target[key] = value
    return target


def capabilities(spec) -> tuple[dict, dict]:
    """axolotl's (capabilities, env_capabilities) for the profile's hardware (not this host's)."""
    import torch

    hw, sl = spec.profile.hardware, spec.profile.slurm.sft
    gpu = not is_cpu(spec)
    n = (sl.nodes or hw.nodes) * (sl.gpus_per_node or hw.gpus_per_node) if gpu else 1
    arch = {"A100": "sm_80", "H100": "sm_90", "H200": "sm_90"}.get(hw.gpu.upper(), "sm_80")
    caps = {"bf16": gpu, "fp8": False, "tf32": gpu, "n_gpu": max(1, n), "compute_capability": arch if gpu else None}
    return caps, {"torch_version": torch.__version__.split("+")[0]}


def _cpu_caps() -> tuple[dict, dict]:
    """axolotl's capability dicts for one CPU process."""
    import torch

    return ({"bf16": False, "fp8": False, "tf32": False, "n_gpu": 1, "compute_capability": None},
            {"torch_version": torch.__version__.split("+")[0]})


class _Capture:
    """Collects what axolotl logs (warnings and up) while a block runs."""

    def __init__(self):
        import logging

        self.records: list[str] = []
        outer = self

        class Handler(logging.Handler):
            def emit(self, record):
                outer.records.append(record.getMessage())

        self.handler = Handler(level=logging.WARNING)
        self.logger = logging.getLogger("axolotl")

    def __enter__(self):
        self.logger.addHandler(self.handler)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self.handler)


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda v: getattr(v, "value", str(v))))


def validate(cfg: dict, spec=None, *, caps: tuple[dict, dict] | None = None) -> Validation:
    """Validate ``cfg`` with axolotl's own ``validate_config``; raise on refusal, list the findings.

    ``caps``: axolotl's capability dicts; by default the profile's hardware (``spec``), or this
    host's when no spec is given.
    """
    apply_offline_env()
    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault

    try:
        from axolotl.utils.logging import MultiProcessAdapter

        MultiProcessAdapter.warning_once.cache_clear()  # report deprecations on every call
    except Exception:  # noqa: BLE001 (only the message cache; validation works without it)
        pass
    if caps is None:
        caps = capabilities(spec) if spec is not None else _cpu_caps()
    with _Capture() as cap:
        try:
            out = validate_config(DictDefault(_plain(cfg)), capabilities=caps[0], env_capabilities=caps[1])
        except Exception as exc:  # pydantic ValidationError, ValueError from axolotl's validators
            raise ZagreusError(f"axolotl refuses the SFT config: {_describe(exc)}") from None
    validated = _plain(dict(out))
    return Validation(validated, findings(cfg, validated, cap.records), cap.records)


def _describe(exc: Exception) -> str:
    """A pydantic error as ``key: message (got value)`` lines joined by '; '; others as they are."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            parts = [f"{'.'.join(str(p) for p in e['loc']) or '(config)'}: {e['msg']} (got {e.get('input')!r:.60})"
                     for e in errors()]
            return "; ".join(parts) + ". Fix these keys in the SFT config (or the spec they come from)"
        except Exception:  # noqa: BLE001 (fall back to the plain message)
            pass
    return f"{type(exc).__name__}: {exc}"


def findings(cfg: dict, validated: dict, warnings: list[str] = ()) -> list[dict]:
    """What axolotl's validation let through: dropped/renamed keys, settings without effect, notes."""
    given, kept = flatten(cfg), flatten(validated)
    known = {key: (kind, text) for key, kind, text in REPORT_FINDINGS}
    rows: list[dict] = []

    def add(key, kind, text, value=_MISSING):
        shown = _short(given[key]) if value is _MISSING and key in given else ("" if value is _MISSING else value)
        rows.append({"key": key, "value": shown, "kind": kind, "finding": text})

    for key, value in given.items():
        if key in kept:
            continue
        head, _, leaf = key.rpartition(".")
        if key in RENAMED and RENAMED[key] in kept:
            kind, text = known.get(key, ("deprecated", ""))
            add(key, "renamed", f"read as {RENAMED[key]}: {kept[RENAMED[key]]}. " + text)
        elif leaf.startswith("fsdp_") and f"{head}.{leaf[5:]}" in kept:
            add(key, "renamed", f"read as {head}.{leaf[5:]} (the fsdp_ prefix is deprecated)")
        elif any(k.startswith(key + ".") or k.startswith(key + "[") for k in kept):
            continue  # a mapping that axolotl expanded
        else:
            kind, text = known.get(key, ("dropped", ""))
            add(key, "dropped", text or "not in axolotl's schema: dropped without a word, no effect")
    sched = validated.get("lr_scheduler")
    for knob in ("cosine_constant_lr_ratio", "cosine_min_lr_ratio"):
        if given.get(knob) is not None and sched != "cosine":
            add(knob, "no effect", known[knob][1] if knob in known else
                f"only used with lr_scheduler: cosine (here {sched})")
    for knob in ("warmup_steps", "warmup_ratio"):
        if given.get(knob) and sched == "constant":
            add(knob, "no effect", "lr_scheduler: constant has no warmup (constant_with_warmup has)")
    if not validated.get("val_set_size"):
        for knob in ("eval_steps", "eval_sample_packing", "eval_strategy"):
            if knob in given:
                add(knob, "no effect", "val_set_size is 0: there is no eval split")
    if given.get("max_steps"):
        add("num_epochs", "no effect", f"max_steps ({given['max_steps']}) bounds the run; num_epochs only "
            "matters when it would end the run earlier")
    if "strict" in given:
        add("strict", "no effect", known["strict"][1])
    fsdp = cfg.get("fsdp_config") or {}
    if any(str(k).startswith("fsdp_") and k != "fsdp_version" for k in fsdp) or (fsdp and "fsdp_version" not in cfg):
        add("fsdp_config", "deprecated", known["fsdp_config"][1],
            value=f"fsdp_version: {validated.get('fsdp_version')}")
    if given.get("special_tokens.eos_token"):
        add("special_tokens.eos_token", "note", known["special_tokens.eos_token"][1])
    for message in dict.fromkeys(warnings):
        add("(axolotl log)", "warning", message.strip().splitlines()[0][:300], value="")
    return rows


def validate_report(language: str = "ita") -> Validation:
    """axolotl's validation of the ``full`` config (the report's, adapted) on the report's hardware,
    with the findings about the report's Slurm script added."""
    from ..pipeline.spec import load_spec

    spec = load_spec(language, "full")
    result = validate(render(spec), spec)
    result.findings += [{"key": k, "value": "", "kind": kind, "finding": text}
                        for k, kind, text in REPORT_FINDINGS if k.startswith("(sbatch)")]
    return result


# --- input checks ---------------------------------------------------------------------------

@dataclass
class DatasetStats:
    path: str
    rows: int
    messages: int
    assistant_turns: int
    by_language: dict[str, int]
    roles: dict[str, int]
    first: list[dict]  # the first conversation (for the label-mask example)


def check_dataset(path: str | Path, field_messages: str = FIELD_MESSAGES, roles: tuple[str, ...] = ROLES) -> DatasetStats:
    """Refuse SFT data axolotl would choke on or train nothing from; name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ZagreusError(f"SFT data {path} does not exist; the data stage writes it "
                           f"(zagreus run --stages data) or point datasets[0].path at your own file")
    rows = messages = assistant = 0
    by_lang: dict[str, int] = {}
    role_counts: dict[str, int] = {}
    first: list[dict] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ZagreusError(f"{where}: not valid JSON ({exc.msg}); each line must be one JSON object") from None
            if not isinstance(row, dict):
                raise ZagreusError(f"{where}: a row must be a JSON object with a {field_messages!r} list, "
                                   f"got {type(row).__name__}")
            if field_messages not in row:
                raise ZagreusError(f"{where}: no {field_messages!r} field (the config's field_messages); the row "
                                   f"has {sorted(row) or 'no keys'}. Each row needs "
                                   f'{{"{field_messages}": [{{"role": ..., "content": ...}}, ...]}}')
            conv = row[field_messages]
            if not isinstance(conv, list) or not conv:
                raise ZagreusError(f"{where}: {field_messages!r} must be a non-empty list of messages, got {conv!r:.80}")
            for k, msg in enumerate(conv):
                if not isinstance(msg, dict) or "role" not in msg or "content" not in msg:
                    raise ZagreusError(f"{where}: message {k} of {field_messages!r} must be an object with "
                                       f"'role' and 'content', got {msg!r:.80}")
                if msg["role"] not in roles:
                    raise ZagreusError(f"{where}: message {k} has unknown role {msg['role']!r}; valid roles: "
                                       f"{', '.join(roles)}")
                if not isinstance(msg["content"], str):
                    raise ZagreusError(f"{where}: message {k} content must be a string, got "
                                       f"{type(msg['content']).__name__}")
                role_counts[msg["role"]] = role_counts.get(msg["role"], 0) + 1
            messages += len(conv)
            assistant += sum(m["role"] == "assistant" for m in conv)
            rows += 1
            lang = str(row.get("lang", "?"))
            by_lang[lang] = by_lang.get(lang, 0) + 1
            if not first:
                first = conv
    if rows == 0:
        raise ZagreusError(f"SFT data {path} is empty: no conversations to train on. Rerun the data stage "
                           "(zagreus run --stages data --force) or fill the file")
    if assistant == 0:
        raise ZagreusError(f"SFT data {path}: no conversation has an assistant turn, so with "
                           "roles_to_train: [assistant] nothing would be trained")
    return DatasetStats(str(path), rows, messages, assistant, by_lang, role_counts, first)


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")  # any one: a tokenizer to load


def check_base_model(folder: str | Path):
    """The base model folder has a config and a tokenizer that loads; returns the tokenizer."""
    folder = Path(folder)
    fix = "the conversion stage writes it: zagreus run --stages conversion"
    if not folder.is_dir():
        raise ZagreusError(f"base model folder {folder} does not exist; {fix}")
    if not (folder / "config.json").is_file():
        raise ZagreusError(f"base model folder {folder} has no config.json: not a Hugging Face model; {fix}")
    if not any((folder / f).is_file() for f in TOKENIZER_FILES):
        raise ZagreusError(f"base model folder {folder} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}); "
                           f"axolotl loads the tokenizer from the base model. Attach it ({fix}, or "
                           "`zagreus convert nanotron-to-hf --tokenizer ...`)")
    apply_offline_env()
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except Exception as exc:  # noqa: BLE001 (any loading failure is the folder's)
        raise ZagreusError(f"the tokenizer in {folder} does not load: {type(exc).__name__}: {exc}") from None


def check_template(template: str, tokenizer, conversation: list[dict], eos_token: str | None = None) -> str:
    """Render one conversation through ``template``; refuse a template that fails or drops content."""
    try:
        text = tokenizer.apply_chat_template(conversation, chat_template=template, tokenize=False)
        prompt = tokenizer.apply_chat_template(conversation[:1], chat_template=template, tokenize=False,
                                               add_generation_prompt=True)
    except Exception as exc:  # jinja2 TemplateSyntaxError/UndefinedError, ValueError...
        raise ZagreusError(f"the chat template (chat_template_jinja) does not render: {type(exc).__name__}: "
                           f"{exc}. Fix the template in the SFT config") from None
    if not isinstance(text, str) or not text.strip():
        raise ZagreusError("the chat template (chat_template_jinja) renders an empty string; it must write "
                           "every message")
    missing = [m["role"] for m in conversation if m["content"] and m["content"] not in text]
    if missing:
        raise ZagreusError(f"the chat template (chat_template_jinja) drops the content of the {missing[0]!r} "
                           "message(s); it must write every message's content")
    if eos_token and eos_token not in text:
        raise ZagreusError(f"the chat template never writes the EOS override {eos_token!r} (special_tokens."
                           "eos_token): with train_on_eos: turn no turn end would be trained")
    if prompt == tokenizer.apply_chat_template(conversation[:1], chat_template=template, tokenize=False):
        raise ZagreusError("the chat template ignores add_generation_prompt: generation would not start an "
                           "assistant turn")
    return text


# --- the stage: prepare, run, read ----------------------------------------------------------

@dataclass
class Plan:
    """A checked, validated SFT run, ready to launch."""

    profile: str
    language: str
    run_dir: Path
    out_dir: Path
    config: dict
    config_path: Path
    base_model: Path
    dataset: DatasetStats
    validation: Validation | None
    cpu: bool
    rendered_example: str = ""


def stage_dirs(profile: str, language: str, run_dir: str | Path = "", out_dir: str | Path = "") -> tuple[Path, Path]:
    run = Path(run_dir) if run_dir else paths.run_dir(profile, language)
    return run, (Path(out_dir) if out_dir else run / STAGE)


def prepare(spec, run_dir: str | Path, out_dir: str | Path | None = None, *, max_steps: int | None = None,
            chat_template: str | None = None, validate_config: bool = True) -> Plan:
    """Check the inputs, render and validate the config, write ``<out>/axolotl.yaml``."""
    run = Path(run_dir).resolve()
    out = Path(out_dir).resolve() if out_dir else run / STAGE
    cfg = render(spec, run_dir=run, out_dir=out, max_steps=max_steps, chat_template=chat_template,
                 base_model=resolve_base_model(spec, run))
    ds = cfg["datasets"][0]
    stats = check_dataset(ds["path"], ds.get("field_messages", "messages"))
    base = Path(cfg["base_model"])
    tokenizer = check_base_model(base)
    eos = (cfg.get("special_tokens") or {}).get("eos_token")
    example = check_template(cfg["chat_template_jinja"], tokenizer, stats.first, eos)
    validation = validate(cfg, spec) if validate_config else None
    out.mkdir(parents=True, exist_ok=True)
    path = out / "axolotl.yaml"
    path.write_text(to_yaml(cfg, f"# axolotl config of {spec.profile.name}/{spec.language.code}, rendered by "
                               "zagreus_utils.stages.sft\n"), encoding="utf-8")
    return Plan(spec.profile.name, spec.language.code, run, out, cfg, path, base, stats, validation,
                is_cpu(spec), example)


def axolotl_argv(step: str, config: str | Path, entry: str = "kit") -> list[str]:
    """The command of one axolotl CLI step (``preprocess`` or ``train``).

    ``entry="axolotl"``: ``python -m axolotl.cli.<step> cfg`` exactly. ``"kit"`` (default): the same
    ``axolotl.cli.<step>.do_cli`` called from ``python -m zagreus_utils.stages.sft``, whose light main
    module keeps the process pool that ``datasets.save_to_disk`` spawns from re-importing all of
    axolotl (about 20 s per preprocess on 2 cores).
    """
    if step not in ("preprocess", "train"):
        raise ZagreusError(f"unknown axolotl step {step!r}: preprocess or train")
    if entry == "axolotl":
        return [sys.executable, "-m", f"axolotl.cli.{step}", str(config)]
    if entry == "kit":
        return [sys.executable, "-m", "zagreus_utils.stages.sft", step, str(config)]
    raise ZagreusError(f"unknown entry {entry!r}: 'kit' or 'axolotl'")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    text = text.replace("\r", "\n")
    kept = [ln for ln in text.splitlines() if ln.strip()]
    return "\n".join(kept[-lines:])


def run_step(step: str, config: str | Path, log_path: str | Path, *, entry: str = "kit",
             timeout_s: float | None = None, env: dict | None = None) -> float:
    """Run one axolotl CLI step offline; raise with the log's tail when it fails. Returns seconds."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    argv = axolotl_argv(step, config, entry)
    environ = apply_offline_env(dict(os.environ if env is None else env))
    environ["PYTHONPATH"] = os.pathsep.join([str(paths.REPO_ROOT), environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    t0 = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        log.write(f"$ {shlex.join(argv)}\n")
        log.flush()
        try:
            res = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=environ,
                                 cwd=str(Path(config).parent), timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise ZagreusError(f"axolotl {step} did not finish within {timeout_s:.0f} s; log: {log_path}\n"
                               f"--- last lines ---\n{_tail(log_path)}") from None
    seconds = time.perf_counter() - t0
    if res.returncode:
        raise ZagreusError(f"axolotl {step} failed (exit {res.returncode}); log: {log_path}\n"
                           f"--- last lines ---\n{_tail(log_path)}")
    return seconds


@dataclass
class LocalRun:
    model_dir: Path
    seconds: dict[str, float]
    logs: dict[str, Path]
    chat_template: str


def run_local(plan: Plan | str | Path, out_dir: str | Path | None = None, *, entry: str = "kit",
              timeout_s: float | None = None) -> LocalRun:
    """axolotl preprocess, then train, on this machine; checks that the output carries the template."""
    config_path = Path(plan.config_path if isinstance(plan, Plan) else plan)
    out = Path(out_dir) if out_dir else (plan.out_dir if isinstance(plan, Plan) else config_path.parent)
    cfg = load_config(config_path)
    model_dir = Path(cfg["output_dir"])
    _clear_previous_model(model_dir, out)
    logs = {step: out / "logs" / f"{step}.log" for step in ("preprocess", "train")}
    seconds = {step: run_step(step, config_path, logs[step], entry=entry, timeout_s=timeout_s)
               for step in ("preprocess", "train")}
    template = check_output(model_dir)
    return LocalRun(model_dir, seconds, logs, template)


def _clear_previous_model(model_dir: Path, out: str | Path) -> None:
    if model_dir.is_dir() and Path(out).resolve() in model_dir.resolve().parents:
        import shutil

        shutil.rmtree(model_dir)  # a previous run's checkpoints would pass for this run's loss history


def run(plan: Plan, spec, launcher: str = "local", *, progress: bool = True) -> LocalRun:
    """The stage's SFT run: :func:`run_local` (``local``) or :func:`run_slurm` (``slurm``: the job is
    submitted and followed); ``<out>/launch.json`` records which ran it and the Slurm job."""
    from ..pipeline.manifest import LaunchRecord

    check_launcher(launcher)
    launch = LaunchRecord(plan.out_dir, launcher)
    if launcher == "slurm":
        return run_slurm(plan, spec, progress=progress, launch=launch)
    return run_local(plan)


def describe_run(run: LocalRun) -> str:
    """Two lines for the notebook: times and logs, then the model folder."""
    times = ", ".join(f"{k} {v:.1f} s" for k, v in run.seconds.items())
    return (f"{times}; logs: " + ", ".join(str(p) for p in run.logs.values())
            + f"\nmodel: {run.model_dir} (chat template: {len(run.chat_template)} characters)")


def check_output(model_dir: str | Path) -> str:
    """The trained folder loads and its tokenizer carries a chat template; returns the template."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise ZagreusError(f"axolotl finished but wrote no model to {model_dir} (no config.json); see the train log")
    apply_offline_env()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    if not tok.chat_template:
        raise ZagreusError(f"the SFT model's tokenizer in {model_dir} has no chat template "
                           "(chat_template.jinja missing); generation could not use the chat format")
    return tok.chat_template


# --- Slurm ----------------------------------------------------------------------------------

DEFAULT_MODULES = ("profile/global", "cuda/12.2", "cudnn", "nccl")   # the report's
DEFAULT_NCCL = (("NCCL_IB_DISABLE", "0"), ("NCCL_SOCKET_IFNAME", "ib0,eno,eth"))
DEFAULT_MASTER_PORT = 29400
SHELL = "/bin/bash"


def _count(key: str, value, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ZagreusError(f"slurm setting {key} must be an integer >= {minimum} (got {value!r}); "
                           "fix it in the profile's slurm.sft section")
    return value


@dataclass
class SlurmScript:
    header: str   # the #SBATCH lines (zagreus_utils.cluster.slurm.sbatch_header)
    body: str     # slurm/sft.sbatch.j2, filled
    nodes: int
    gpus_per_node: int
    procs_per_node: int
    world_size: int

    @property
    def text(self) -> str:
        """The script as :func:`zagreus_utils.cluster.slurm.write_script` writes it."""
        return f"#!{SHELL}\n{self.header.rstrip()}\n\n{self.body.lstrip()}"


def render_sbatch(spec, config_path: str | Path, *, workdir: str | Path = paths.REPO_ROOT,
                  job_name: str | None = None, output: str | Path = "slurm-%j.out", venv: str | Path | None = "auto",
                  modules=None, hf_home: str | None = None, nccl=None,
                  master_port: int = DEFAULT_MASTER_PORT, logs_dir: str | Path | None = None) -> SlurmScript:
    """The sbatch script of one SFT run: ``srun torchrun ... -m axolotl.cli.train <config>``.

    Nodes and GPUs per node come from ``profile.slurm.sft``; ``--gres=gpu:N`` and torchrun's
    ``--nproc_per_node`` are the same N (a CPU profile: no gres, one process per node). The
    ``#SBATCH`` lines are written by :func:`zagreus_utils.cluster.slurm.sbatch_header` (sbatch's own
    quoting); every value in the script body is ``shlex.quote``-d. ``venv="auto"``: this
    interpreter's environment. ``modules``/``nccl`` default to the report's on GPU profiles and to
    none on CPU profiles.
    """
    from ..cluster import slurm as slurm_mod

    p = spec.profile
    sl = p.slurm.sft
    nodes = _count("slurm.sft.nodes", sl.nodes if sl.nodes is not None else p.hardware.nodes, 1)
    gpus = _count("slurm.sft.gpus_per_node",
                  sl.gpus_per_node if sl.gpus_per_node is not None else p.hardware.gpus_per_node, 0)
    cpus = None if sl.cpus_per_task is None else _count("slurm.sft.cpus_per_task", sl.cpus_per_task, 1)
    if not sl.time:
        raise ZagreusError("slurm.sft.time is missing; set it in the profile (e.g. 12:00:00)")
    procs = gpus or 1
    if venv == "auto":
        venv = sys.prefix if (Path(sys.prefix) / "bin" / "activate").is_file() else None
    modules = DEFAULT_MODULES if (modules is None and gpus) else (modules or ())
    nccl = DEFAULT_NCCL if (nccl is None and gpus) else (nccl or ())
    pairs = slurm_mod.env_pairs(nccl)
    header = slurm_mod.sbatch_header(
        job_name=job_name or f"zagreus-sft-{spec.language.code}", account=p.slurm.account,
        partition=p.slurm.partition, nodes=nodes, ntasks_per_node=1, gres=f"gpu:{gpus}" if gpus else None,
        cpus_per_task=cpus, time=sl.time, output=str(output))
    body = slurm_mod.render_body(
        TEMPLATE,
        profile=p.name, language=spec.language.code, nodes=nodes, gpus_per_node=gpus, procs_per_node=procs,
        workdir=str(workdir), modules=[str(m) for m in modules], venv=str(venv) if venv else "",
        venv_activate=str(Path(venv) / "bin" / "activate") if venv else "", hf_home=hf_home,
        omp_threads=max((cpus or procs) // procs, 1), nccl=pairs,
        master_port=_count("master_port", master_port, 1), config=str(config_path),
        logs_dir=str(logs_dir) if logs_dir else "", cpus_per_task=cpus or 1)
    return SlurmScript(header, body, nodes, gpus, procs, nodes * procs)


def write_sbatch(script: SlurmScript, path: str | Path) -> Path:
    from ..cluster import slurm as slurm_mod

    return slurm_mod.write_script(path, script.header, script.body, shell=SHELL)


def slurm(plan: Plan, spec, *, dry_run: bool = True, follow: bool = False, timeout_s: float | None = None,
          progress: bool = False, pending_timeout: float | None = 600, launch=None, **render_kwargs) -> dict:
    """Render ``<out>/sft.sbatch`` (logs to ``<out>/logs/slurm-<job>.out``, and axolotl's
    ``preprocess.log``/``train.log`` beside it as the local launcher writes them) and check its syntax.

    ``dry_run``: return it without submitting (and, where a Slurm controller answers, with
    ``sbatch --test-only``'s verdict). Else refuse a partition whose nodes are all drained or down,
    submit it (``sbatch --parsable``) and, with ``follow``, wait until it ends with a progress line
    (:func:`zagreus_utils.cluster.slurm.follow` raises with the job id, state and the log's tail on failure).
    ``launch``: a :class:`zagreus_utils.pipeline.manifest.LaunchRecord` to add the job to.
    """
    from ..cluster import slurm as slurm_mod

    logs = Path(plan.out_dir) / "logs"
    render_kwargs.setdefault("logs_dir", logs)
    script = render_sbatch(spec, plan.config_path, output=logs / "slurm-%j.out", **render_kwargs)
    path = write_sbatch(script, Path(plan.out_dir) / "sft.sbatch")
    text = slurm_mod.dry_run(path)  # bash -n
    result: dict[str, Any] = {"script": text, "path": str(path), "nodes": script.nodes,
                              "gpus_per_node": script.gpus_per_node, "procs_per_node": script.procs_per_node,
                              "world_size": script.world_size, "command": ["sbatch", "--parsable", str(path)]}
    if dry_run:
        if slurm_mod.cluster_available():
            try:
                result["test_only"] = slurm_mod.submit(path, test_only=True)
            except ZagreusError as exc:
                result["test_only"] = f"refused: {exc}"
        else:
            result["test_only"] = "no Slurm controller answers here: syntax checked with bash -n only"
        return result
    logs.mkdir(parents=True, exist_ok=True)
    slurm_mod.require("sbatch")
    slurm_mod.check_nodes(spec.profile.slurm.partition)  # all drained/down: a clear error, nothing submitted
    t0 = time.perf_counter()
    job = slurm_mod.submit(path)
    result["job_id"] = job
    result["log"] = str(logs / f"slurm-{job}.out")
    if launch is not None:
        launch.job("sft", job, "SUBMITTED", log=f"logs/slurm-{job}.out")
    if follow:
        try:
            state = slurm_mod.follow(job, log_path=logs / f"slurm-{job}.out", progress=progress, timeout=timeout_s,
                                     pending_timeout=pending_timeout, label="SFT (axolotl): Slurm job")
        except slurm_mod.JobFailed as exc:
            if launch is not None:
                launch.job("sft", job, exc.state, seconds=round(time.perf_counter() - t0, 1))
            raise
        result["state"] = state.state
        result["seconds"] = round(time.perf_counter() - t0, 1)
        if launch is not None:
            launch.job("sft", job, state.state, seconds=result["seconds"])
    return result


def run_slurm(plan: Plan, spec, *, progress: bool = True, timeout_s: float | None = None, launch=None,
              **render_kwargs) -> LocalRun:
    """The ``slurm`` launcher's SFT: submit ``sft.sbatch`` (axolotl preprocess, then
    ``srun torchrun -m axolotl.cli.train``), follow it, and check the model it wrote, as
    :func:`run_local` does. Returns the same :class:`LocalRun` (logs ``preprocess``/``train`` are
    axolotl's output, written by the job; ``seconds['slurm job']`` from submission to end)."""
    cfg = load_config(plan.config_path)
    model_dir = Path(cfg["output_dir"])
    _clear_previous_model(model_dir, plan.out_dir)
    res = slurm(plan, spec, dry_run=False, follow=True, timeout_s=timeout_s, progress=progress, launch=launch,
                **render_kwargs)
    logs = Path(plan.out_dir) / "logs"
    template = check_output(model_dir)
    return LocalRun(model_dir, {"slurm job": res["seconds"]},
                    {"preprocess": logs / "preprocess.log", "train": logs / "train.log", "slurm": Path(res["log"])},
                    template)


# --- reading results ------------------------------------------------------------------------

def label_mask_example(cfg: dict, tokenizer=None, conversation: list[dict] | None = None):
    """One conversation tokenized by axolotl's own ``chat_template`` strategy (what it trains on).

    Returns a DataFrame: position, token_id, token (decoded), label, trained (label != -100).
    ``tokenizer``: default axolotl's own loader on the config (EOS/pad overrides applied).
    """
    import pandas as pd

    apply_offline_env()
    from axolotl.prompt_strategies.chat_template import StrategyLoader
    from axolotl.utils.config import normalize_config, validate_config
    from axolotl.utils.dict import DictDefault

    caps = _cpu_caps()
    local = _plain(cfg)
    for key in ("fsdp_config", "flash_attention"):  # GPU-only settings play no part in tokenizing
        local.pop(key, None)
    acfg = validate_config(DictDefault(local), capabilities=caps[0], env_capabilities=caps[1])
    normalize_config(acfg)
    if tokenizer is None:
        from axolotl.loaders import load_tokenizer

        tokenizer = load_tokenizer(acfg)
    if conversation is None:
        conversation = check_dataset(cfg["datasets"][0]["path"]).first
    field_messages = cfg["datasets"][0].get("field_messages", "messages")
    strategy = StrategyLoader()(tokenizer, acfg, acfg.datasets[0])
    out = strategy.tokenize_prompt({field_messages: conversation})
    ids, labels = list(out["input_ids"]), list(out["labels"])
    return pd.DataFrame({"position": range(len(ids)), "token_id": ids,
                         "token": [tokenizer.decode([i]) for i in ids], "label": labels,
                         "trained": [lab != -100 for lab in labels]})


def trained_spans(mask_df) -> list[str]:
    """The decoded text of each run of consecutive trained tokens."""
    spans, current = [], []
    for token, trained in zip(mask_df["token"], mask_df["trained"]):
        if trained:
            current.append(token)
        elif current:
            spans.append("".join(current))
            current = []
    if current:
        spans.append("".join(current))
    return spans


def label_mask_html(mask_df) -> str:
    """The example as HTML: trained tokens highlighted, token boundaries visible on hover."""
    import html

    parts = ['<div style="font-family:monospace;white-space:pre-wrap;line-height:1.7;border:1px solid #ccc;'
             'padding:8px">']
    for pos, tid, token, trained in zip(mask_df["position"], mask_df["token_id"], mask_df["token"],
                                        mask_df["trained"]):
        style = ("background:#b7e4c7;border-bottom:2px solid #2d6a4f" if trained
                 else "color:#6c757d;background:#f1f3f5")
        parts.append(f'<span title="#{pos} id {tid}{" trained" if trained else ""}" style="{style};'
                     f'margin-right:1px">{html.escape(token)}</span>')
    n, t = len(mask_df), int(mask_df["trained"].sum())
    parts.append(f'</div><p style="font-size:90%">{t} of {n} tokens trained (green: label = token; '
                 'grey: label -100, ignored by the loss).</p>')
    return "".join(parts)


def _latest_trainer_state(model_dir: Path) -> Path | None:
    candidates = [model_dir / "trainer_state.json"] + sorted(
        model_dir.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[-1]))
    found = [p for p in candidates if p.is_file()]
    return found[-1] if found else None


_LOG_DICT = re.compile(r"\{'(?:loss|eval_loss)'[^{}]*\}")


def loss_curves(model_dir: str | Path, train_log: str | Path | None = None):
    """Train and eval loss per step (DataFrame: step, epoch, split, loss, learning_rate).

    From the last checkpoint's ``trainer_state.json``; else parsed from the train log's metric lines.
    """
    import ast

    import pandas as pd

    rows = []
    state = _latest_trainer_state(Path(model_dir))
    if state is not None:
        for entry in json.loads(state.read_text())["log_history"]:
            for key, split in (("loss", "train"), ("eval_loss", "eval")):
                if key in entry:
                    rows.append({"step": entry.get("step"), "epoch": entry.get("epoch"), "split": split,
                                 "loss": float(entry[key]), "learning_rate": entry.get("learning_rate")})
    elif train_log is not None and Path(train_log).is_file():
        step = 0
        for match in _LOG_DICT.finditer(Path(train_log).read_text(encoding="utf-8", errors="replace")):
            entry = ast.literal_eval(match.group(0))
            split = "eval" if "eval_loss" in entry else "train"
            step += split == "train"
            rows.append({"step": step, "epoch": float(entry.get("epoch", "nan")), "split": split,
                         "loss": float(entry.get("loss", entry.get("eval_loss"))),
                         "learning_rate": float(entry["learning_rate"]) if "learning_rate" in entry else None})
    if not rows:
        raise ZagreusError(f"no loss history in {model_dir} (no trainer_state.json) or in {train_log}")
    return pd.DataFrame(rows, columns=["step", "epoch", "split", "loss", "learning_rate"])


def plot_loss(df, title: str = "SFT loss"):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for split, style in (("train", "-"), ("eval", "o--")):
        part = df[df["split"] == split]
        if len(part):
            ax.plot(part["step"], part["loss"], style, label=f"{split} loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (trained tokens)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


_MODELS: dict[tuple[str, int], tuple[Any, Any]] = {}


def _load(model_dir: str | Path):
    apply_offline_env()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = Path(model_dir)
    key = (str(model_dir.resolve()), (model_dir / "config.json").stat().st_mtime_ns)
    if key not in _MODELS:
        tok = AutoTokenizer.from_pretrained(str(model_dir))
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
        model.eval()
        if len(_MODELS) >= 4:
            _MODELS.clear()
        _MODELS[key] = (tok, model)
    return _MODELS[key]


def chat(model_dir: str | Path, messages: list[dict], max_new_tokens: int = 48,
         chat_template: str | None = None) -> str:
    """Greedy generation through the chat template: the model's own, else ``chat_template``
    (default: the report's ChatML template, for a base model that has none)."""
    import torch

    tok, model = _load(model_dir)
    template = tok.chat_template or chat_template or CHATML_TEMPLATE
    prompt = tok.apply_chat_template(messages, chat_template=template, tokenize=False, add_generation_prompt=True)
    enc = tok(prompt, return_tensors="pt", add_special_tokens=False)
    stops = [i for i in {tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")}
             if isinstance(i, int) and i >= 0 and i != tok.unk_token_id]
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stops or None,
                             pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else (stops or [0])[0])
    return tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def sample_prompts(dataset: str | Path, language: str, per_language: int = 2) -> list[tuple[str, list[dict]]]:
    """``per_language`` prompts (system + first user message) in English and in ``language``."""
    picked: dict[str, list] = {"eng": [], language: []}
    with open(dataset, encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            lang = row.get("lang")
            if lang in picked and len(picked[lang]) < per_language:
                conv = row[FIELD_MESSAGES]
                head = [m for m in conv[: next(i for i, m in enumerate(conv) if m["role"] == "user") + 1]]
                picked[lang].append(head)
            if all(len(v) >= per_language for v in picked.values()):
                break
    return [(lang, msgs) for lang in ("eng", language) for msgs in picked[lang]]


def compare_chats(base_dir: str | Path, sft_dir: str | Path, prompts: list[tuple[str, list[dict]]],
                  max_new_tokens: int = 48):
    """Base vs SFT answers to the same prompts through the chat template (DataFrame)."""
    import pandas as pd

    rows = []
    for lang, messages in prompts:
        rows.append({"lang": lang, "prompt": messages[-1]["content"],
                     "base": chat(base_dir, messages, max_new_tokens),
                     "sft": chat(sft_dir, messages, max_new_tokens)})
    return pd.DataFrame(rows, columns=["lang", "prompt", "base", "sft"])


# --- outputs.json ---------------------------------------------------------------------------

def write_outputs(plan: Plan, *, differences_df, findings_df, curves=None, figure=None, chats=None,
                  notes: list[str] = ()) -> Path:
    """The stage's figures and tables for the HTML report (``<out>/outputs.json``)."""
    from ..pipeline.outputs import StageOutputs

    out = StageOutputs(plan.out_dir)
    run = f"{plan.profile}/{plan.language}"
    if figure is not None:
        out.figure("sft_loss", figure, f"SFT loss ({run})",
                   "Train and eval loss per optimizer step of the axolotl SFT run (trained tokens only).")
    if curves is not None:
        out.table("sft_loss", curves, f"SFT loss history ({run})")
    if chats is not None:
        out.table("sft_chats", chats, f"Base vs SFT answers through the chat template ({run})")
    out.table("sft_config_differences", differences_df, f"SFT config: differences from the report's ({run})")
    out.table("sft_findings", findings_df, "SFT config: what axolotl's validation lets through (the report's config)")
    out.note(f"SFT {run}: {plan.dataset.rows} conversations {plan.dataset.by_language}; config "
             f"{plan.config_path.name}")
    for text in notes:
        out.note(text)
    return out.write()


def check_launcher(launcher: str) -> str:
    if launcher not in LAUNCHERS:
        raise ZagreusError(f"unknown launcher {launcher!r}; choose one of: {', '.join(LAUNCHERS)}")
    return launcher


# --- the process that runs axolotl's CLI (see axolotl_argv) ---------------------------------

def _main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("preprocess", "train"):
        print("usage: python -m zagreus_utils.stages.sft {preprocess|train} CONFIG.yaml", file=sys.stderr)
        return 2
    apply_offline_env()
    step, config = argv
    if step == "preprocess":
        from axolotl.cli.preprocess import do_cli
    else:
        from axolotl.cli.train import do_cli
    # axolotl's multipack sampler calls gc.collect() each time it packs (5 times per dataloader: every
    # epoch and every eval); with the ~700k objects that axolotl's training modules put on the heap
    # each call costs ~0.6 s on 2 cores. Import them first and freeze them out of the collector.
    import gc
    import importlib

    for module in ("axolotl.train", "axolotl.common.datasets", "axolotl.core.builders", "axolotl.loaders"):
        try:
            importlib.import_module(module)
        except ImportError:  # another axolotl layout: only the speed-up is lost
            pass
    gc.collect()
    gc.freeze()
    do_cli(config=config)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
