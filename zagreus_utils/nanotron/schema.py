"""The keys nanotron (main branch) accepts in a training config, as plain nested data.

nanotron loads its YAML with dacite in strict mode, so any key that is not a field of the
dataclass at that place is an error. This module writes those dataclasses down as a schema:

- a ``dict`` maps each allowed key to the schema of its value;
- ``None`` means "any value" (a leaf, or a free-form mapping such as ``rope_scaling``);
- a one-element ``list`` means "a list of items shaped like this";
- ``Variants`` means "one of these shapes" (dacite picks the union member that fits).

``REQUIRED`` lists the fields without defaults (one list per place: what each member of a union
needs is left to nanotron). The helpers at the bottom are generic: the audit also runs them over a
schema built from axolotl's pydantic models.

This copy is what validates where nanotron is not installed (pre-flight on a login node, the local
launcher, the converter). tests/test_nanotron_config.py compares it, field by field, with the
dataclasses of the pinned nanotron (main, 2411b022), so it cannot drift from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Variants:
    """A value that must match one of several shapes (a Union of dataclasses)."""

    options: dict[str, dict]

    def pick(self, value: dict) -> tuple[str, dict]:
        """The option sharing the most keys with ``value`` (first one on a tie)."""
        keys = set(value)
        return max(self.options.items(), key=lambda kv: len(keys & set(kv[1])))


def _leaves(*names: str) -> dict[str, None]:
    return dict.fromkeys(names)


GENERAL = _leaves("project", "run", "seed", "step", "consumed_train_samples", "benchmark_csv_path",
                  "ignore_sanity_checks")

PARALLELISM = _leaves("dp", "pp", "tp", "pp_engine", "tp_mode", "tp_linear_async_communication",
                      "recompute_layer", "tp_recompute_allgather", "expert_parallel_size",
                      "context_parallel_size")

LLAMA_CONFIG = _leaves(
    "bos_token_id", "eos_token_id", "hidden_act", "hidden_size", "initializer_range",
    "intermediate_size", "is_llama_config", "max_position_embeddings", "num_attention_heads",
    "num_hidden_layers", "attention_bias", "num_key_value_heads", "pad_token_id", "pretraining_tp",
    "rms_norm_eps", "rope_scaling", "rope_theta", "rope_interleaved", "tie_word_embeddings",
    "use_cache", "vocab_size", "_attn_implementation", "z_loss_enabled", "z_loss_coefficient",
)

# nanotron main's Qwen2Config: the one that holds no_rope_layer and _use_doc_masking
QWEN2_CONFIG = _leaves(
    "bos_token_id", "eos_token_id", "hidden_act", "hidden_size", "initializer_range",
    "intermediate_size", "is_qwen2_config", "max_position_embeddings", "num_attention_heads",
    "num_hidden_layers", "num_key_value_heads", "pad_token_id", "pretraining_tp", "rms_norm_eps",
    "rope_scaling", "rope_theta", "rope_interleaved", "rope_seq_len_interpolation_factor",
    "tie_word_embeddings", "use_cache", "vocab_size", "_attn_implementation", "flex_attention_mask",
    "attention_bias", "sliding_window_size", "z_loss_enabled", "z_loss_coefficient", "no_rope_layer",
    "_fused_rotary_emb", "_fused_rms_norm", "_use_qkv_packed", "_use_doc_masking", "log_attn_probs",
    "ring_attn_heads_k_stride", "moe_config",
)

MODEL_CONFIG = Variants({"LlamaConfig": LLAMA_CONFIG, "Qwen2Config": QWEN2_CONFIG})

INIT_METHOD = Variants({
    "RandomInit": _leaves("std", "scaling_method"),
    "SpectralMupInit": _leaves("use_mup"),
    "ExistingCheckpointInit": _leaves("path"),
})

MODEL = {
    "model_config": MODEL_CONFIG,
    "init_method": INIT_METHOD,
    "dtype": None,
    "make_vocab_size_divisible_by": None,
    "ddp_bucket_cap_mb": None,
}

TOKENIZER = _leaves("tokenizer_name_or_path", "tokenizer_revision", "tokenizer_max_length")

CHECKPOINTS = _leaves("checkpoints_path", "checkpoint_interval", "save_initial_state",
                      "save_final_state", "resume_checkpoint_path", "load_lr_scheduler",
                      "load_optimizer", "checkpoints_path_is_shared_file_system")

LOGGING = _leaves("log_level", "log_level_replica", "iteration_step_info_interval")

METRICS_LOGGING = _leaves("log_level", "log_detail_interval")

TOKENS = _leaves("sequence_length", "train_steps", "micro_batch_size",
                 "batch_accumulation_per_replica", "val_check_interval", "limit_val_batches",
                 "limit_test_batches")

LR_SCHEDULER = _leaves("learning_rate", "lr_warmup_steps", "lr_warmup_style", "lr_decay_style",
                       "lr_decay_steps", "lr_decay_starting_step", "min_decay_lr")

OPTIMIZER_FACTORY = Variants({
    "AdamWOptimizerArgs": _leaves("name", "adam_eps", "adam_beta1", "adam_beta2",
                                  "torch_adam_is_fused"),
    "SGDOptimizerArgs": _leaves("name"),
})

OPTIMIZER = {
    "optimizer_factory": OPTIMIZER_FACTORY,
    "zero_stage": None,
    "weight_decay": None,
    "clip_grad": None,
    "accumulate_grad_in_fp32": None,
    "learning_rate_scheduler": LR_SCHEDULER,
    "weight_decay_exclude_named_params": None,
}

NANOSET = _leaves("dataset_folder", "dataset_weights", "dataset_read_path", "tokenizer_name",
                  "vocab_size", "token_size_in_bytes", "return_positions", "skip_in_stream",
                  "pad_samples_to_global_batch_size", "dataset_max_tokens", "shuffle_files",
                  "use_old_brrr_dataloader")

DATASET = Variants({
    "NanosetDatasetsArgs": NANOSET,
    "PretrainDatasetsArgs": _leaves("hf_dataset_or_datasets", "hf_dataset_splits",
                                    "hf_dataset_config_name",
                                    "dataset_processing_num_proc_per_process",
                                    "dataset_overwrite_cache", "text_column_name"),
    "SFTDatasetsArgs": _leaves("hf_dataset_or_datasets", "hf_dataset_splits",
                               "hf_dataset_config_name", "dataset_processing_num_proc_per_process",
                               "dataset_overwrite_cache", "sft_dataloader", "debug_max_samples"),
})

DATA_STAGE = {
    "name": None,
    "start_training_step": None,
    "sequence_length": None,
    "data": {"dataset": DATASET, "seed": None, "num_loading_workers": None},
}

PROFILER = _leaves("profiler_export_path", "wait", "warmup", "active", "repeat", "skip_first",
                   "record_shapes", "profile_memory", "with_stack", "export_chrome_trace")

LIGHTEVAL = {
    "slurm_script_dir": None,
    "logs_path": None,
    "local_checkpoint_dir": None,
    "parallelism": PARALLELISM,
    "batch_size": None,
    "generation": None,  # one GenerationArgs or a dict of them
    "tasks": _leaves("tasks", "custom_tasks", "max_samples", "num_fewshot_seeds",
                     "dataset_loading_processes", "multichoice_continuations_start_space",
                     "no_multichoice_continuations_start_space"),
    "logging": _leaves("local_output_path", "push_results_to_hub", "push_details_to_hub",
                       "push_results_to_tensorboard", "hub_repo_results", "hub_repo_details",
                       "hub_repo_tensorboard", "tensorboard_metric_prefix"),
    "wandb": _leaves("wandb_project", "wandb_entity", "wandb_run_name"),
    "slurm": _leaves("gpus_per_node", "partition", "hf_cache", "cpus_per_task", "qos", "time",
                     "reservation"),
    "s3_save_path": None,
    "upload_to_wandb": None,
    "wandb_project": None,
    "wandb_entity": None,
    "output_dir": None,
    "nanotron_path": None,
    "eval_config_override": None,
    "eval_interval": None,
    "eval_interval_file": None,
}

S3_UPLOAD = _leaves("upload_s3_path", "remove_after_upload", "s5cmd_numworkers",
                    "s5cmd_concurrency", "s5cmd_path")

NANOTRON_SCHEMA: dict[str, Any] = {
    "general": GENERAL,
    "parallelism": PARALLELISM,
    "model": MODEL,
    "tokenizer": TOKENIZER,
    "checkpoints": CHECKPOINTS,
    "logging": LOGGING,
    "metrics_logging": METRICS_LOGGING,
    "tokens": TOKENS,
    "optimizer": OPTIMIZER,
    "data_stages": [DATA_STAGE],
    "profiler": PROFILER,
    "lighteval": LIGHTEVAL,
    "s3_upload": S3_UPLOAD,
}

# Fields without a default (dacite reports them missing). Paths use "[]" for list items.
REQUIRED: dict[str, tuple[str, ...]] = {
    "": ("general", "parallelism", "model"),
    "general": ("project",),
    "parallelism": ("dp", "pp", "tp"),
    "model": ("model_config", "init_method"),
    "checkpoints": ("checkpoints_path", "checkpoint_interval"),
    "tokens": ("sequence_length", "train_steps", "micro_batch_size",
               "batch_accumulation_per_replica"),
    "optimizer": ("optimizer_factory", "zero_stage", "weight_decay", "clip_grad",
                  "accumulate_grad_in_fp32", "learning_rate_scheduler"),
    "optimizer.learning_rate_scheduler": ("learning_rate",),
    "data_stages[]": ("name", "start_training_step", "data"),
    "data_stages[].data": ("dataset", "seed"),
    "profiler": ("profiler_export_path",),
    "lighteval.parallelism": ("dp", "pp", "tp"),
    "s3_upload": ("upload_s3_path", "remove_after_upload", "s5cmd_numworkers", "s5cmd_concurrency",
                  "s5cmd_path"),
}

# A few top-level keys are enough to tell a nanotron config from other YAML.
NANOTRON_MARKERS = frozenset(NANOTRON_SCHEMA)


@dataclass
class KeyProblem:
    path: tuple  # where the key was found: keys and list indices
    key: str
    kind: str  # "unknown" | "missing"
    belongs: list[str]  # dotted places in the schema where a key of this name is allowed


def dotted(path: tuple) -> str:
    """``("data_stages", 0, "data")`` -> ``data_stages[0].data``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def schema_paths(schema: Any, prefix: str = "") -> dict[str, list[str]]:
    """Every key name in ``schema`` -> the dotted places where it is allowed."""
    found: dict[str, list[str]] = {}

    def walk(node: Any, where: str) -> None:
        if isinstance(node, list):
            walk(node[0], where + "[]")
        elif isinstance(node, Variants):
            for option in node.options.values():
                walk(option, where)
        elif isinstance(node, dict):
            for key, sub in node.items():
                place = f"{where}.{key}" if where else key
                if place not in found.setdefault(key, []):
                    found[key].append(place)
                walk(sub, place)

    walk(schema, prefix)
    return found


def check_keys(data: Any, schema: Any, required: dict[str, tuple[str, ...]] | None = None
               ) -> list[KeyProblem]:
    """Keys of ``data`` that ``schema`` does not allow at their place, and missing required keys."""
    index = schema_paths(schema)
    problems: list[KeyProblem] = []

    def walk(value: Any, node: Any, path: tuple, generic: str) -> None:
        if node is None:
            return
        if isinstance(node, list):
            if isinstance(value, list):
                for i, item in enumerate(value):
                    walk(item, node[0], path + (i,), generic + "[]")
            return
        if not isinstance(value, dict):
            return
        if isinstance(node, Variants):
            node = node.pick(value)[1]
        for key in (required or {}).get(generic, ()):
            if key not in value:
                problems.append(KeyProblem(path, key, "missing", []))
        for key, sub_value in value.items():
            if key in node:
                walk(sub_value, node[key], path + (key,), f"{generic}.{key}" if generic else key)
            else:
                problems.append(KeyProblem(path, str(key), "unknown", index.get(str(key), [])))

    walk(data, schema, (), "")
    return problems
