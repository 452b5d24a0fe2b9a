"""nanotron checkpoint -> Hugging Face Llama folder (SmolLM3 when ``no_rope_layer`` drops RoPE in
some layers) (:func:`nanotron_to_hf`), verified by logits and a bit-exact round trip."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ..pipeline.errors import ZagreusError
from .checkpoint_io import MAX_SHARD_BYTES, HFShardWriter, HFWeights, NanotronCheckpoint
from .folders import (as_dtype, attach_tokenizer, dtype_name, folder_bytes, release_memory,
                      resolve_nanotron_checkpoint, staged_target, write_generation_config)
from .names import NT_EMBED, fuse_from_hf, split_to_hf
from .verify import ConversionReport, compare_logits, hf_logits, reference_forward, reference_inputs, tensor_digest


def nanotron_to_hf(src, dst, tokenizer=None, overwrite: bool = False, dtype=None, verify: bool = True,
                   max_shard_bytes: int = MAX_SHARD_BYTES, extra_files: dict[str, str] | None = None
                   ) -> ConversionReport:
    """Convert a nanotron checkpoint (a step folder, or a checkpoints root with latest.txt) to a
    transformers Llama folder at ``dst``, verified by logits and a bit-exact round trip.

    Written into a temporary sibling (:func:`staged_target`) that replaces ``dst`` only once verified;
    ``extra_files`` (name -> text) are written into it too, so they appear together with the model."""
    t0 = time.perf_counter()
    src, dst = Path(src), Path(dst)
    want_dtype = as_dtype(dtype)
    if tokenizer is not None and not Path(tokenizer).exists():
        raise ZagreusError(f"tokenizer {tokenizer} does not exist (a local folder is needed; hub names are not fetched)")
    folder, picked = resolve_nanotron_checkpoint(src)
    ckpt = NanotronCheckpoint(folder)
    arch = ckpt.arch
    report = ConversionReport(src=folder, dst=dst, direction="nanotron-to-hf", tp=ckpt.tp,
                              dropped_config_keys=ckpt.dropped_keys)
    if picked:
        report.notes.append(picked)
    if arch.rope_interleaved:
        report.notes.append("rope_interleaved: q and k rows permuted per head to rotate-half")
    if arch.no_rope_layer is not None:
        report.notes.append(f"no_rope_layer {arch.no_rope_layer}: written as transformers' SmolLM3 (no_rope_layers)")
    metas = (ckpt.meta or {}).get("metas") or {}
    report.step = metas.get("last_train_step")
    report.consumed_tokens = metas.get("consumed_tokens_total")
    if ckpt.meta and ckpt.meta.get("tp") not in (None, ckpt.tp):
        report.notes.append(f"checkpoint_metadata.json says tp={ckpt.meta['tp']}, the shard files tp={ckpt.tp}")
    with staged_target(dst, folder, overwrite) as work:
        _write_hf(ckpt, work, report, tokenizer, want_dtype, verify, max_shard_bytes)
        for name, text in (extra_files or {}).items():
            (work / name).write_text(text)
    report.seconds = time.perf_counter() - t0
    return report


def _write_hf(ckpt: NanotronCheckpoint, work: Path, report: ConversionReport, tokenizer, want_dtype,
              verify: bool, max_shard_bytes: int) -> None:
    """The body of :func:`nanotron_to_hf`: write and verify the transformers folder in ``work``."""
    arch, folder, dst = ckpt.arch, ckpt.folder, report.dst
    first: torch.Tensor | None = ckpt.read(NT_EMBED)  # first in streaming order anyway
    src_dtype = first.dtype
    out_dtype = want_dtype or src_dtype
    report.dtype = dtype_name(out_dtype)
    lossy = torch.finfo(out_dtype).bits < torch.finfo(src_dtype).bits or (
        out_dtype != src_dtype and torch.finfo(out_dtype).bits == torch.finfo(src_dtype).bits)

    plan = []
    for name, shape in ckpt.shapes.items():
        pieces = split_to_hf(name, torch.empty(shape, dtype=torch.int8, device="meta"), arch)
        plan += [(n, p.numel() * (torch.finfo(out_dtype).bits // 8)) for n, p in pieces]
    writer = HFShardWriter(work, plan, max_shard_bytes)
    ids = reference_inputs(arch.vocab_size)
    ref = reference_forward(arch, ids, report) if verify else None
    params = 0
    digests: dict[str, bytes] | None = {} if verify and out_dtype == src_dtype else None
    for name in ckpt.shapes:
        t, first = (first if name == NT_EMBED else ckpt.read(name)), None
        if ref is not None:
            ref.feed(name, t)
        if digests is not None:
            digests[name] = tensor_digest(t)
        for hf_name, piece in split_to_hf(name, t, arch):
            params += piece.numel()
            writer.add(hf_name, piece.to(out_dtype))
        del t
    writer.finish()
    release_memory()
    report.parameters, report.tensors = params, writer.tensors_written

    hf_cfg = arch.to_hf_config(architectures=[arch.hf_architecture], dtype=out_dtype)
    hf_cfg.save_pretrained(str(work))
    write_generation_config(ckpt.config, work)
    written = [work / "config.json", work / "generation_config.json"]
    tok = Path(tokenizer) if tokenizer else None
    if tok is None:
        name = (ckpt.yaml_config().get("tokenizer") or {}).get("tokenizer_name_or_path")
        if name and Path(str(name)).is_dir():
            tok = Path(str(name))
            report.notes.append(f"tokenizer taken from config.yaml: {tok}")
        else:
            report.notes.append("no tokenizer attached (pass --tokenizer FOLDER)"
                                + (f"; config.yaml names {name!r}" if name else ""))
    if tok is not None:
        written += [work / n for n in attach_tokenizer(tok, work, arch.vocab_size)]
        report.tokenizer = str(tok)
    report.bytes_written = writer.bytes_written + folder_bytes(written)

    if verify:
        if ref is not None and ref.logits is not None:
            compare_logits(report, ref.logits, hf_logits(work, ids), lossy)
        del ref
        if digests is not None:
            hf = HFWeights(work)
            report.roundtrip_identical = all(tensor_digest(fuse_from_hf(n, hf.get, arch)) == d
                                             for n, d in digests.items())
            if not report.roundtrip_identical:
                raise ZagreusError(f"verification failed: the result read back and fused again differs from "
                                   f"{folder}; {dst} was left as it was")
