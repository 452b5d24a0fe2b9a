"""The SFT config checked by axolotl's own ``validate_config``, and what that validation lets through.

:func:`validate` raises a clear error when axolotl refuses the config; :func:`findings` lists what
it accepts without effect: keys axolotl silently drops, renamed or deprecated keys, settings that
have no effect (e.g. cosine knobs under a constant schedule), plus (:data:`REPORT_FINDINGS`) what
the report's config and Slurm script get wrong.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ...pipeline.errors import ZagreusError
from ...pipeline.spec import OFFLINE_VARIABLES, load_spec
from .config import _MISSING, _short, flatten, is_cpu, render

# --- validation with axolotl ----------------------------------------------------------------

OFFLINE_ENV = {"AXOLOTL_DO_NOT_TRACK": "1", "DO_NOT_TRACK": "1", **dict.fromkeys(OFFLINE_VARIABLES, "1"),
               "HF_HUB_DISABLE_TELEMETRY": "1",
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
    spec = load_spec(language, "full")
    result = validate(render(spec), spec)
    result.findings += [{"key": k, "value": "", "kind": kind, "finding": text}
                        for k, kind, text in REPORT_FINDINGS if k.startswith("(sbatch)")]
    return result

