"""The nanotron training config, rendered per language from the spec, validated strictly.

``render(spec)`` builds the YAML that nanotron's ``run_train.py --config-file`` reads; for the
``full`` profile the results are committed as ``configs/nanotron/zagreus_350M_<lang>.yaml`` (a
test checks they equal the renderer's output). For ``ita`` the rendered config carries every
value of the report's config (section 4) except the documented corrections and adaptations of
:mod:`zagreus_utils.nanotron.report_config`. The model section comes from
:class:`zagreus_utils.model.arch.LlamaArch` (:func:`model_section`).

Validation is strict as nanotron is (dacite in strict mode: an unknown key is an error), against
:mod:`zagreus_utils.nanotron.schema`, plus the cross-field assertions of nanotron's
``Config.__post_init__``; with nanotron itself too when it is importable.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from ..pipeline import paths
from ..pipeline.errors import ZagreusError
from ..pipeline.spec import available, load_spec
from ..pipeline.stages import folder_name
from ..model.arch import LlamaArch, head_problems
from . import continual, schema
from .schedule import scheduler_section

KIT_NOTEBOOKS = paths.NOTEBOOKS  # the kit's stage notebooks (as imported; a runner may be given others)

NANOTRON_DIR = paths.CONFIGS / "nanotron"
CONFIG_NAME = "zagreus_350M_{language}.yaml"
HEADER = ("# Rendered by zagreus_utils.nanotron.config from configs/profiles/{profile}.yaml and "
          "configs/languages/{language}.yaml.\n"
          "# Do not edit: change the spec and re-render (a test checks this file equals the renderer's output).\n"
          "# Paths are relative to the repository root (the sbatch script runs from there).\n")

# --- values nanotron needs that the spec does not hold (the report's values) ------------------
PROJECT = "zagreus"
RUN = "zagreus-350M"               # the report's run name; checkpoints are per language anyway
NUM_LOADING_WORKERS = 0
DDP_BUCKET_CAP_MB = 100
MAKE_VOCAB_SIZE_DIVISIBLE_BY = 1
ACCUMULATE_GRAD_IN_FP32 = True
TORCH_ADAM_IS_FUSED = True
ZERO_STAGE = 0
PARALLELISM_KNOBS = {              # nanotron-only knobs of the report's config
    "expert_parallel_size": 1,
    "pp_engine": "1f1b",
    "recompute_layer": False,
    "tp_linear_async_communication": True,
    "tp_mode": "REDUCE_SCATTER",
    "tp_recompute_allgather": True,
}
CHECKPOINTS_PATH_IS_SHARED_FILE_SYSTEM = False
SAVE_INITIAL_STATE = False
SAVE_FINAL_STATE = False
LOGGING = {"iteration_step_info_interval": 1, "log_level": "info", "log_level_replica": "info"}
IGNORE_SANITY_CHECKS = True

LOG_LEVELS = ("debug", "info", "warning", "error", "critical", "passive")
DTYPES = ("bfloat16", "float16", "float32", "float", "half", "bf16", "fp16", "fp32", "float64", "int64")


# --- rendering ------------------------------------------------------------------------------

def committed_path(language: str) -> Path:
    return NANOTRON_DIR / CONFIG_NAME.format(language=language)


def stage_folder(runs_root: str | Path, profile: str, language: str, stage: str) -> str:
    return str(Path(runs_root) / profile / language / stage)


def render(spec, *, runs_root: str | Path = "runs", run_dir: str | Path | None = None,
           checkpoints_path: str | Path | None = None, tokenizer_name_or_path: str | None = None,
           resume_checkpoint_path: str | Path | None = None, start_checkpoint_path: str | Path | None = None) -> dict:
    """The nanotron config (a plain mapping) of one run.

    Paths default to the run folder layout under ``runs_root`` (relative, as committed); pass
    ``run_dir`` (``runs/<profile>/<language>``) for the absolute paths of an actual run. The
    tokenizer is the spec's ``name_or_path`` for a pretrained tokenizer; for a locally trained
    one (kind ``bpe``) it is the stage-02 tokenizer folder unless given. The data stages and the
    start checkpoint (``training.init_from``; ``start_checkpoint_path``: its nanotron folder, by
    default where stage 03 converts a Hugging Face one) are :mod:`zagreus_utils.nanotron.continual`'s.
    """
    p, lang = spec.profile, spec.language
    base = Path(run_dir) if run_dir is not None else Path(runs_root) / p.name / lang.code
    # the folders the kit's own stages 02 and 03 write (whatever notebooks a runner was given)
    tokenization = base / folder_name("tokenization", KIT_NOTEBOOKS)
    if tokenizer_name_or_path is None:
        tokenizer_name_or_path = (p.tokenizer.name_or_path if p.tokenizer.kind == "pretrained"
                                  else str(tokenization / "tokenizer"))
    m, t = p.model, p.training
    pretraining = base / folder_name("pretraining", KIT_NOTEBOOKS)
    return {
        "checkpoints": {
            "checkpoint_interval": t.checkpoint_interval,
            "checkpoints_path": str(checkpoints_path or pretraining / "checkpoints"),
            "checkpoints_path_is_shared_file_system": CHECKPOINTS_PATH_IS_SHARED_FILE_SYSTEM,
            **continual.checkpoint_keys(spec, pretraining, resume_checkpoint_path, start_checkpoint_path),
            "save_final_state": SAVE_FINAL_STATE,
            "save_initial_state": SAVE_INITIAL_STATE,
        },
        "data_stages": continual.data_stages_section(spec, base, tokenization.name, t.seed, NUM_LOADING_WORKERS),
        "general": {
            "benchmark_csv_path": None,
            "consumed_train_samples": None,
            "ignore_sanity_checks": IGNORE_SANITY_CHECKS,
            "project": PROJECT,
            "run": RUN,
            "seed": t.seed,
            "step": None,
        },
        "logging": dict(LOGGING),
        "model": model_section(LlamaArch.from_spec(spec), m.dtype, document_masking=t.document_masking),
        "optimizer": {
            "accumulate_grad_in_fp32": ACCUMULATE_GRAD_IN_FP32,
            "clip_grad": t.clip_grad,
            "learning_rate_scheduler": scheduler_section(t),
            "optimizer_factory": {
                "adam_beta1": t.adam_beta1,
                "adam_beta2": t.adam_beta2,
                "adam_eps": t.adam_eps,
                "name": "adamW",
                "torch_adam_is_fused": TORCH_ADAM_IS_FUSED,
            },
            "weight_decay": t.weight_decay,
            **weight_decay_exclude(LlamaArch.from_spec(spec), t.weight_decay_exclude),
            "zero_stage": ZERO_STAGE,
        },
        "parallelism": {"dp": p.parallelism.dp, "pp": p.parallelism.pp, "tp": p.parallelism.tp,
                        **PARALLELISM_KNOBS},
        "profiler": None,
        "tokenizer": {"tokenizer_max_length": None, "tokenizer_name_or_path": tokenizer_name_or_path,
                      "tokenizer_revision": None},
        "tokens": {
            "batch_accumulation_per_replica": t.batch_accumulation_per_replica,
            "limit_test_batches": 0,
            "limit_val_batches": 0,
            "micro_batch_size": t.micro_batch_size,
            "sequence_length": t.sequence_length,
            "train_steps": t.train_steps,
            "val_check_interval": t.checkpoint_interval,  # the report's value equals its checkpoint interval
        },
    }


def model_section(arch: LlamaArch, dtype: str, document_masking: bool = False) -> dict:
    """nanotron's ``model`` section of one architecture (its ``model_config`` from :meth:`LlamaArch.to_nanotron`).

    NoPE (``no_rope_layer``) and document masking (``_use_doc_masking``) exist only on nanotron
    main's Qwen2Config, so either switch renders that config (``is_qwen2_config``; same parameter
    layout, dacite picks it by its fields); with both off it stays the report's LlamaConfig.
    nanotron's Qwen2 attention always runs flash-attn's varlen kernel, the packed documents of a
    sequence cut by ``cu_seqlens`` from the position ids, which its data collator restarts after
    every EOS only when ``_use_doc_masking`` is true (the dataset's ``return_positions``, true by
    default, supplies them).
    """
    mc = arch.to_nanotron(qwen2=arch.no_rope_layer is not None or document_masking)
    if document_masking:
        mc["_use_doc_masking"] = True
    return {
        "ddp_bucket_cap_mb": DDP_BUCKET_CAP_MB,
        "dtype": dtype,
        "init_method": {"std": arch.init_std},
        "make_vocab_size_divisible_by": MAKE_VOCAB_SIZE_DIVISIBLE_BY,
        "model_config": mc,
    }


def weight_decay_exclude(arch: LlamaArch, patterns: list[str]) -> dict:
    """``{"weight_decay_exclude_named_params": patterns}`` (nanotron's regexes, ``re.match``-ed on
    its parameter names), nothing when there are none; a pattern that matches no parameter of this
    model is refused (e.g. transformers' ``embed_tokens`` for nanotron's ``.*token_embedding.*``)."""
    if not patterns:
        return {}
    from ..model.param_names import pattern_problems  # imports torch: only when the switch is on

    problems = pattern_problems(arch, patterns)
    if problems:
        raise ZagreusError("training.weight_decay_exclude: " + "; ".join(problems))
    return {"weight_decay_exclude_named_params": list(patterns)}


def size_weights(folders: list[str | Path]) -> list[float] | None:
    """Each folder's share of the tokens (its ``*.ds`` bytes; one token size per stage), to 6
    significant digits, as ``dataset_weights``; None while a folder holds no token files yet.

    nanotron main's TokenizedBytes loader blends folders in proportion to ``dataset_weights`` and
    *equally* when there are none (the old Nanoset mixed by size); the local trainer honours the
    same weights, so both read the same blend.
    """
    sizes = [sum(p.stat().st_size for p in Path(f).glob("*.ds")) if Path(f).is_dir() else 0 for f in folders]
    if not folders or not all(sizes):
        return None
    total = sum(sizes)
    return [float(f"{size / total:.6g}") for size in sizes]


def weigh_by_size(config: dict) -> list[float] | None:
    """Set ``dataset_weights`` of each data stage without weights from its folders' sizes
    (:func:`size_weights`); returns the last set."""
    found = None
    for stage in config.get("data_stages") or []:
        ds = stage["data"]["dataset"]
        if ds.get("dataset_weights"):
            continue  # weights the spec named (a data stage's mixture): kept
        folders = ds["dataset_folder"]
        weights = size_weights([folders] if isinstance(folders, str) else folders)
        if weights is not None:
            ds["dataset_weights"] = found = weights
    return found


def to_yaml(config: dict, header: str = "") -> str:
    """Deterministic YAML (sorted keys, block style), as nanotron's own ``save_as_yaml`` writes."""
    return header + yaml.safe_dump(config, sort_keys=True, default_flow_style=False, width=1000,
                                   allow_unicode=True)


def render_committed(language: str) -> str:
    """The text of ``configs/nanotron/zagreus_350M_<language>.yaml`` (the ``full`` profile)."""
    spec = load_spec(language, "full")
    config = render(spec)
    check(config, source=f"rendered config for full/{language}")
    return to_yaml(config, HEADER.format(profile="full", language=language))


def write_committed(languages: list[str] | None = None) -> list[Path]:
    """(Re)write the committed configs; returns the files written."""
    written = []
    NANOTRON_DIR.mkdir(parents=True, exist_ok=True)
    for lang in languages or available("languages"):
        path = committed_path(lang)
        path.write_text(render_committed(lang), encoding="utf-8")
        written.append(path)
    return written


def write(config: dict, path: str | Path, header: str = "") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_yaml(config, header), encoding="utf-8")
    return path


# --- loading and validation -----------------------------------------------------------------

def load(path: str | Path) -> dict:
    """Read a nanotron YAML config; invalid YAML is refused with its line and column."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ZagreusError(f"cannot read nanotron config {path}: {exc.strerror}") from None
    return loads(text, source=str(path))


def loads(text: str, source: str = "<config>") -> dict:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ZagreusError(f"invalid YAML in nanotron config {source}{where}: {problem}. "
                           "Fix the indentation/syntax there (nanotron cannot load it).") from None
    if not isinstance(data, dict):
        raise ZagreusError(f"nanotron config {source}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def key_problems(config: dict) -> list[str]:
    """Unknown and missing keys, each with where the key would belong."""
    problems = []
    for prob in schema.check_keys(config, schema.NANOTRON_SCHEMA, schema.REQUIRED):
        where = schema.dotted(prob.path) or "the top level"
        if prob.kind == "unknown":
            belongs = [b for b in prob.belongs if b != schema.dotted(prob.path + (prob.key,))]
            hint = f"; nanotron accepts it at: {', '.join(belongs)} (move it there)" if belongs else \
                "; nanotron has no such key (remove it or fix its spelling)"
            problems.append(f"unknown key {prob.key!r} at {where}{hint}")
        else:
            problems.append(f"missing required key {prob.key!r} at {where}; add it")
    return problems


def _get(config: dict, dotted: str, default=None):
    node: Any = config
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", dotted):
        if part.startswith("["):
            idx = int(part[1:-1])
            if not isinstance(node, list) or idx >= len(node):
                return default
            node = node[idx]
        else:
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
    return node


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def value_problems(config: dict) -> list[str]:
    """The checks of nanotron's dataclasses and ``Config.__post_init__`` (types and cross-field)."""
    probs: list[str] = []

    def need(cond: bool, msg: str):
        if not cond:
            probs.append(msg)

    for key in ("parallelism.dp", "parallelism.tp", "parallelism.pp", "tokens.sequence_length",
                "tokens.train_steps", "tokens.micro_batch_size", "tokens.batch_accumulation_per_replica",
                "checkpoints.checkpoint_interval", "optimizer.zero_stage"):
        v = _get(config, key)
        if v is not None:
            need(_is_int(v) and v >= (0 if key.endswith("zero_stage") else 1),
                 f"{key} must be a positive integer (got {v!r})")
    for key in ("optimizer.learning_rate_scheduler.learning_rate", "optimizer.weight_decay",
                "optimizer.optimizer_factory.adam_eps", "optimizer.optimizer_factory.adam_beta1",
                "optimizer.optimizer_factory.adam_beta2", "model.init_method.std"):
        v = _get(config, key)
        if v is not None:
            need(_is_num(v), f"{key} must be a number (got {v!r}; YAML reads '1e-3' as a string: write 1.0e-3)")
    for key in ("logging.log_level", "logging.log_level_replica"):
        v = _get(config, key)
        if v is not None:
            need(v in LOG_LEVELS, f"{key} must be one of {', '.join(LOG_LEVELS)} (got {v!r})")
    sched = _get(config, "optimizer.learning_rate_scheduler") or {}
    need(sched.get("lr_warmup_style") in ("linear", "constant"),
         f"optimizer.learning_rate_scheduler.lr_warmup_style must be linear or constant (got {sched.get('lr_warmup_style')!r})")
    if sched.get("lr_decay_style") is not None:
        need(sched["lr_decay_style"] in ("linear", "cosine", "1-sqrt"),
             f"optimizer.learning_rate_scheduler.lr_decay_style must be linear, cosine or 1-sqrt (got {sched['lr_decay_style']!r})")
    dtype = _get(config, "model.dtype")
    if dtype is not None:
        need(dtype in DTYPES, f"model.dtype {dtype!r} is not a torch dtype nanotron knows (e.g. bfloat16)")
    pp_engine = _get(config, "parallelism.pp_engine")
    if pp_engine is not None:
        need(str(pp_engine).lower() in ("1f1b", "afab"), f"parallelism.pp_engine must be 1f1b or afab (got {pp_engine!r})")
    tp_mode = _get(config, "parallelism.tp_mode")
    if tp_mode is not None:
        need(str(tp_mode).upper() in ("ALL_REDUCE", "REDUCE_SCATTER"),
             f"parallelism.tp_mode must be ALL_REDUCE or REDUCE_SCATTER (got {tp_mode!r})")
    factory = _get(config, "optimizer.optimizer_factory.name")
    if factory is not None:
        need(factory in ("adamW", "sgd"), f"optimizer.optimizer_factory.name must be adamW or sgd (got {factory!r})")

    stages = config.get("data_stages")
    if isinstance(stages, list) and stages:
        names = [s.get("name") for s in stages if isinstance(s, dict)]
        starts = [s.get("start_training_step") for s in stages if isinstance(s, dict)]
        need(1 in starts, "data_stages: one stage must start at step 1 (start_training_step: 1)")
        need(len(set(names)) == len(names), f"data_stages: names must be unique (got {names})")
        need(len(set(starts)) == len(starts), f"data_stages: start_training_step values must be unique (got {starts})")
        for i, s in enumerate(stages):
            ds = _get(s, "data.dataset") if isinstance(s, dict) else None
            if isinstance(ds, dict) and "dataset_folder" in ds:
                folders = ds["dataset_folder"]
                folders = [folders] if isinstance(folders, str) else folders
                need(isinstance(folders, list) and folders and all(isinstance(f, str) for f in folders),
                     f"data_stages[{i}].data.dataset.dataset_folder must be a path or a list of paths")
                weights = ds.get("dataset_weights")
                if weights is not None and isinstance(folders, list):
                    need(len(weights) == len(folders), f"data_stages[{i}]: {len(weights)} dataset_weights for "
                         f"{len(folders)} dataset folders; give one weight per folder")

    mc = _get(config, "model.model_config") or {}
    tp = _get(config, "parallelism.tp") or 1
    nh, nkv = mc.get("num_attention_heads"), mc.get("num_key_value_heads") or mc.get("num_attention_heads")
    if _is_int(nh) and _is_int(nkv) and _is_int(tp):
        need(nh % tp == 0, f"num_attention_heads ({nh}) must be divisible by tp ({tp})")
        need(nh >= nkv, f"num_attention_heads ({nh}) must be >= num_key_value_heads ({nkv})")
        need(nkv >= tp, f"num_key_value_heads ({nkv}) must be >= tp ({tp})")
    h = mc.get("hidden_size")
    if _is_int(h) and _is_int(nh) and _is_int(nkv) and nh > 0 and nkv > 0:
        probs.extend(head_problems(h, nh, nkv))
    return probs


def validate(config: dict) -> list[str]:
    """Every problem nanotron (main branch) would raise on this config; empty when it loads."""
    return key_problems(config) + value_problems(config)


def check(config: dict, source: str = "config") -> None:
    problems = validate(config)
    if problems:
        raise ZagreusError(f"nanotron config {source} would be refused by nanotron: " + "; ".join(problems))


def validate_with_nanotron(path: str | Path) -> str:
    """Load the file with nanotron itself when it is importable; says what was done.

    Raises :class:`ZagreusError` when nanotron refuses the file. nanotron's loader also reads
    the data folders' metadata and the tokenizer, so run this where the data is.
    """
    try:
        from nanotron.config import get_config_from_file  # type: ignore
    except Exception as exc:  # ImportError, or the circular import of the stale PyPI release
        return f"nanotron not importable here ({type(exc).__name__}); checked against the schema only"
    try:
        get_config_from_file(str(path))
    except Exception as exc:  # dacite errors, asserts in __post_init__
        raise ZagreusError(f"nanotron refuses {path}: {type(exc).__name__}: {exc}") from None
    return "loaded by nanotron.config.get_config_from_file"
