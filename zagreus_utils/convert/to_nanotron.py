"""Hugging Face Llama folder -> nanotron checkpoint (:func:`hf_to_nanotron`), and writing a
nanotron checkpoint from full tensors, sharded over tp as nanotron does
(:func:`write_nanotron_checkpoint`)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
import yaml

from ..model.arch import LlamaArch
from ..nanotron import schema
from ..pipeline.errors import ZagreusError
from .checkpoint_io import (CHECKPOINT_VERSION, HFWeights, NanotronCheckpoint, param_folder, save_safetensors,
                            shard_file_name, shard_tensor)
from .folders import check_target, dtype_name, folder_bytes, staged_target, tokenizer_files
from .names import arch_from_model_config, fuse_from_hf, hf_names, hf_shape, nanotron_shapes, split_spec
from .verify import ConversionReport, compare_logits, hf_logits, reference_forward, reference_inputs, roundtrip_nt_hf


def nanotron_yaml(model_config: dict, tp: int, dtype: torch.dtype, run: str, tokenizer: str | None) -> dict:
    return {
        "general": {"project": "zagreus-convert", "run": run, "seed": 42, "step": 0,
                    "consumed_train_samples": 0, "ignore_sanity_checks": True},
        "parallelism": {"dp": 1, "pp": 1, "tp": tp, "pp_engine": "1f1b", "tp_mode": "ALL_REDUCE",
                        "tp_linear_async_communication": False},
        "model": {"model_config": model_config,
                  "init_method": {"std": model_config.get("initializer_range") or 0.02},
                  "dtype": dtype_name(dtype), "make_vocab_size_divisible_by": 1, "ddp_bucket_cap_mb": 25},
        "tokenizer": {"tokenizer_name_or_path": tokenizer, "tokenizer_revision": None,
                      "tokenizer_max_length": None},
    }


def validate_yaml(cfg: dict, where: Path) -> None:
    problems = schema.check_keys(cfg, schema.NANOTRON_SCHEMA, schema.REQUIRED)
    if problems:
        text = ", ".join(f"{p.kind} {schema.dotted(p.path + (p.key,))}" for p in problems)
        raise ZagreusError(f"{where}: not a valid nanotron config: {text}")


def check_tp(arch: LlamaArch, tp: int) -> None:
    if not isinstance(tp, int) or tp < 1:
        raise ZagreusError(f"tp={tp!r}: must be a whole number of at least 1")
    for what, size in [("num_attention_heads", arch.num_heads), ("num_key_value_heads", arch.num_kv_heads),
                       ("intermediate_size", arch.intermediate_size), ("vocab_size", arch.vocab_size)]:
        if size % tp:
            raise ZagreusError(f"tp={tp} does not divide {what}={size}: nanotron shards these evenly")


def write_nanotron_checkpoint(dst, model_config: dict, tensors: Iterable[tuple[str, torch.Tensor]], tp: int = 1,
                              overwrite: bool = False, tokenizer: str | None = None, run: str = "converted",
                              src: Path | None = None) -> tuple[int, int, int]:
    """Write a nanotron checkpoint folder from full (unsharded) nanotron tensors, sharded over ``tp``
    exactly as nanotron does (chunk-wise for qkv and gate_up). Returns (parameters, files, bytes).
    Written into a temporary sibling that becomes ``dst`` when complete (:func:`staged_target`)."""
    arch, _ = arch_from_model_config(model_config, "model_config")
    check_tp(arch, tp)
    with staged_target(Path(dst), src, overwrite) as work:
        return write_nanotron_folder(work, arch, model_config, tensors, tp, tokenizer, run, src)


def write_nanotron_folder(dst: Path, arch: LlamaArch, model_config: dict, tensors: Iterable[tuple[str, torch.Tensor]],
                    tp: int, tokenizer: str | None, run: str, src: Path | None) -> tuple[int, int, int]:
    shapes = nanotron_shapes(arch)
    model_dir = dst / "model"
    params = files = nbytes = 0
    dtype = None
    seen = set()
    for name, t in tensors:
        if name not in shapes:
            raise ZagreusError(f"unknown nanotron parameter {name}")
        if tuple(t.shape) != shapes[name]:
            raise ZagreusError(f"{name}: shape {tuple(t.shape)}, the config implies {shapes[name]}")
        seen.add(name)
        dtype = dtype or t.dtype
        params += t.numel()
        folder = param_folder(model_dir, name)
        folder.mkdir(parents=True, exist_ok=True)
        spec = split_spec(arch, name)
        if spec is None:
            outs = [(folder / "model_weight.safetensors", t.contiguous(), None)]
        else:
            outs = [(folder / shard_file_name(r, tp), local, {
                "version": CHECKPOINT_VERSION, "local_global_slices_pairs": pairs,
                "unsharded_shape": str(tuple(int(x) for x in t.shape))})
                for r, (local, pairs) in enumerate(shard_tensor(t, tp, spec))]
        for path, local, meta in outs:
            save_safetensors({"data": local}, path, meta)
            files += 1
            nbytes += path.stat().st_size
    missing = [n for n in shapes if n not in seen]
    if missing:
        raise ZagreusError(f"parameters never given to the writer: {', '.join(missing[:5])}")

    (dst / "model_config.json").write_text(json.dumps(model_config, indent=2) + "\n")
    cfg = nanotron_yaml(model_config, tp, dtype or torch.float32, run, tokenizer)
    validate_yaml(cfg, dst / "config.yaml")
    (dst / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    meta = {"version": CHECKPOINT_VERSION, "tp": tp, "dp": 1, "cp": 1,
            "metas": {"consumed_train_samples": 0, "last_train_step": 0, "consumed_tokens_total": 0,
                      "last_stage_idx": 0,
                      "data_stages": [{"name": "converted", "start_training_step": 1, "consumed_train_samples": 0,
                                       "sequence_length": model_config.get("max_position_embeddings"),
                                       "consumed_tokens_per_dataset_folder": {}}]},
            "custom_metas": {"converted_from": str(src)} if src else None}
    (dst / "checkpoint_metadata.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    nbytes += folder_bytes([dst / "model_config.json", dst / "config.yaml", dst / "checkpoint_metadata.json"])
    return params, files, nbytes


def hf_to_nanotron(src, dst, tp: int = 1, overwrite: bool = False, verify: bool = True,
                   rope_interleaved: bool = False) -> ConversionReport:
    """Export a transformers Llama folder (or SmolLM3: nanotron's Qwen2 with ``no_rope_layer``) as a
    nanotron checkpoint folder (``tp`` shards per parameter), verified by logits and a bit-exact
    round trip.

    ``rope_interleaved=True`` writes q and k rows in nanotron's interleaved RoPE order (and says so
    in the config); the default keeps transformers' rotate-half order, as the report's config does.
    """
    from transformers import AutoConfig

    t0 = time.perf_counter()
    src, dst = Path(src), Path(dst)
    if not (src / "config.json").is_file():
        raise ZagreusError(f"{src} is not a transformers model folder: config.json is missing")
    try:
        hf_cfg = AutoConfig.from_pretrained(str(src))
    except (ValueError, OSError, json.JSONDecodeError) as exc:
        raise ZagreusError(f"{src / 'config.json'}: {exc}") from exc
    nt_cfg = {**LlamaArch.from_hf(hf_cfg, str(src / "config.json"), rope_interleaved).to_nanotron(),
              "attention_bias": False}
    arch, _ = arch_from_model_config(nt_cfg, str(src / "config.json"))
    weights = HFWeights(src)
    shapes = nanotron_shapes(arch)
    expected = {n for name in shapes for n in hf_names(name)}
    ignorable = {k for k in weights.where if k.endswith("rotary_emb.inv_freq")}
    if arch.tie_word_embeddings:
        ignorable.add("lm_head.weight")  # some writers store the tied copy anyway
    unknown = sorted(set(weights.where) - expected - ignorable)
    if unknown:
        raise ZagreusError(f"{src}: unknown tensors for a Llama with this config.json: {', '.join(unknown[:8])}")
    missing = sorted(expected - set(weights.where))
    if missing:
        raise ZagreusError(f"{src}: missing tensors: {', '.join(missing[:8])}"
                           + (f" and {len(missing) - 8} more" if len(missing) > 8 else ""))
    report = ConversionReport(src=src, dst=dst, direction="hf-to-nanotron", tp=tp)
    check_tp(arch, tp)
    check_target(dst, src, overwrite)
    if arch.tie_word_embeddings and "lm_head.weight" in weights.where and not torch.equal(
            weights.get("lm_head.weight"), weights.get("model.embed_tokens.weight")):
        raise ZagreusError(f"{src}: tie_word_embeddings is true but lm_head.weight differs from the embedding")

    dtypes: set[str] = set()

    def stream() -> Iterator[tuple[str, torch.Tensor]]:
        for name in shapes:
            parts = {n: weights.get(n) for n in hf_names(name)}
            for hf_name, hf_t in parts.items():
                want = hf_shape(hf_name, arch)
                if tuple(hf_t.shape) != want:
                    raise ZagreusError(f"{weights.where[hf_name]}: wrong tensor shape for {hf_name}: expected "
                                       f"{want} from config.json, found {tuple(hf_t.shape)}: the config and "
                                       "the weights do not match")
            t = fuse_from_hf(name, parts.__getitem__, arch)
            del parts
            dtypes.add(dtype_name(t.dtype))
            if ref is not None:
                ref.feed(name, t)
            yield name, t

    tokenizer = str(src.resolve()) if any(tokenizer_files(src)) else None
    with staged_target(dst, src, overwrite) as work:  # first: an unwritable DST fails before any work
        ids = reference_inputs(arch.vocab_size)
        src_logits = hf_logits(src, ids) if verify else None
        ref = reference_forward(arch, ids, report) if verify else None
        if ref is None:
            src_logits = None
        try:
            params, files, nbytes = write_nanotron_folder(work, arch, nt_cfg, stream(), tp, tokenizer, src.name, src)
        finally:
            weights.close()
        report.parameters, report.tensors, report.bytes_written = params, files, nbytes
        report.dtype = "/".join(sorted(dtypes))
        report.tokenizer = tokenizer
        if verify:
            if src_logits is not None:
                compare_logits(report, ref.logits, src_logits, lossy=False)
            report.roundtrip_identical = roundtrip_nt_hf(NanotronCheckpoint(work), HFWeights(src))
            if not report.roundtrip_identical:
                raise ZagreusError(f"verification failed: the result read back and split again differs from "
                                   f"{src}; {dst} was left as it was")
    report.seconds = time.perf_counter() - t0
    return report
