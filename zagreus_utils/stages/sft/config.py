"""The SFT stage's axolotl config: the report's (section 5), rendered from the spec, and its differences.

:func:`render`: for a GPU profile (``full``) the report's section-5 config, value for value, with
the :data:`ADAPTATIONS` the kit must make (its own converted checkpoint as the base model, its run
folders instead of the report's cluster paths); committed for every language as
``configs/axolotl/zagreus_sft_<lang>.yaml`` (a test checks they equal :func:`render_committed`).
For a CPU profile (``smoke``) the same config with the :data:`CPU_CHANGES` (fp32, sdpa attention,
no FSDP, few steps...); :func:`differences` lists every difference from the report's config with
its reason, and an unexplained one has an empty reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ...pipeline import paths, stages
from ...pipeline.errors import ZagreusError
from ...pipeline.spec import available, load_spec

AXOLOTL_DIR = paths.CONFIGS / "axolotl"
CONFIG_NAME = "zagreus_sft_{language}.yaml"
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
SFT_DATA = Path("raw") / "sft" / "conversations.jsonl"  # in the data stage's folder
CONVERTED = "hf"  # in the conversion stage's folder: its HF exports, hf/step-<N>

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


def converted_dir(run_dir: str | Path) -> Path:
    """The conversion stage's Hugging Face exports in a run folder (``<conversion>/hf``)."""
    return Path(run_dir) / stages.folder_name("conversion") / CONVERTED


def sft_data_path(run_dir: str | Path) -> Path:
    """The data stage's SFT conversations in a run folder."""
    return Path(run_dir) / stages.folder_name("data") / SFT_DATA


def base_model_path(spec, run_dir: str | Path) -> Path:
    """Where the conversion stage puts the last pretraining checkpoint: ``hf/step-<train_steps>``."""
    return converted_dir(run_dir) / f"step-{spec.profile.training.train_steps}"


def resolve_base_model(spec, run_dir: str | Path) -> Path:
    """The base model of an actual run: ``hf/step-<train_steps>`` when the conversion stage wrote
    it, else its last converted checkpoint (``hf/final`` where a hand-made folder has that name)."""
    expected = base_model_path(spec, run_dir)
    if expected.is_dir():
        return expected
    hf = converted_dir(run_dir)
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
    out = Path(out_dir) if out_dir is not None else run / stages.folder_name("sft")
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
    cfg["datasets"][0]["path"] = str(dataset or sft_data_path(run))
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
    return to_yaml(render(load_spec(language, "full")), HEADER.format(profile="full", language=language))


def write_committed(languages: list[str] | None = None) -> list[Path]:
    """(Re)write the committed configs; returns the files written."""
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
    return pd.DataFrame(difference_rows(full_cfg, smoke_cfg), columns=["key", "report", "smoke", "reason"])

