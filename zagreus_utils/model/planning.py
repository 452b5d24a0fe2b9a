"""Compute planning from the architecture: parameters, FLOPs, memory, MFU, days and GPU-hours.

Everything is counted from the weight shapes of the Llama family (GQA, SwiGLU, RMSNorm, tied or
untied embeddings), never from nanotron's own printout (which double-counts tied embeddings and
ignores GQA). FLOPs per token follow nanotron's ``get_flops`` convention, so that the numbers
compare with the ``model_tflops_per_gpu`` of its training logs: 3 x (forward matmuls, the LM
head included, plus the attention scores and their product with the values, over the full
sequence).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from ..nanotron.schedule import NanotronSchedule, lr_at
from ..results.formatting import count as fmt_count, memory as fmt_bytes  # noqa: F401 (planning.fmt_*: the display names)
from .arch import LlamaArch

#: dense bf16 peak TFLOP/s per GPU, for the GPUs a profile may name
PEAK_TFLOPS = {"A100": 312.0, "H100": 989.0, "H200": 989.0, "L40S": 362.0, "A10G": 125.0}

GIB = 2**30


# --- parameters -----------------------------------------------------------------------------

def parameter_counts(arch: LlamaArch) -> dict[str, float]:
    """Parameters by component, counted from the shapes.

    ``total`` counts a tied embedding once; ``non_embedding`` is everything but the token
    embedding and an untied LM head; ``embedding_share`` is the rest's share of ``total``.
    """
    h, i, L = arch.hidden_size, arch.intermediate_size, arch.num_layers
    q = h * arch.num_heads * arch.head_dim
    kv = 2 * h * arch.kv_dim
    o = arch.num_heads * arch.head_dim * h
    bias = (arch.num_heads * arch.head_dim + 2 * arch.kv_dim + h) if arch.attention_bias else 0
    attention = L * (q + kv + o + bias)
    mlp = L * 3 * h * i  # gate, up, down
    norms = L * 2 * h + h  # two RMSNorms per layer + the final one
    embedding = arch.vocab_size * h
    lm_head = 0 if arch.tie_word_embeddings else arch.vocab_size * h
    non_embedding = attention + mlp + norms
    total = non_embedding + embedding + lm_head
    return {
        "embedding": embedding,
        "lm_head (untied)": lm_head,
        "attention": attention,
        "mlp": mlp,
        "norms": norms,
        "non_embedding": non_embedding,
        "total": total,
        "embedding_share": (embedding + lm_head) / total,
    }


# --- FLOPs ----------------------------------------------------------------------------------

def flops_per_token(arch: LlamaArch, seq_len: int) -> dict[str, float]:
    """Training FLOPs per token (forward + backward), nanotron's convention.

    ``dense`` is 6 x the matmul parameters (the LM head included, tied or not: it is a matmul
    either way; the embedding lookup is free); ``attention`` is 12 x layers x heads x head_dim x
    sequence (scores and weighted values, forward and backward, not halved for causality).
    """
    h, L = arch.hidden_size, arch.num_layers
    matmul = L * (h * arch.num_heads * arch.head_dim + 2 * h * arch.kv_dim
                  + arch.num_heads * arch.head_dim * h + 3 * h * arch.intermediate_size) + arch.vocab_size * h
    dense = 6 * matmul
    attention = 12 * L * arch.num_heads * arch.head_dim * seq_len
    return {"matmul_parameters": matmul, "dense": dense, "attention": attention, "total": dense + attention}


def mfu(tokens_per_sec_per_gpu: float, flops_token: float, peak_tflops: float | None) -> float | None:
    """Model FLOPs utilisation: achieved model FLOP/s per GPU over the GPU's peak."""
    if not peak_tflops:
        return None
    return tokens_per_sec_per_gpu * flops_token / (peak_tflops * 1e12)


# --- memory ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class MemorySettings:
    micro_batch_size: int
    seq_len: int
    dp: int = 1
    tp: int = 1
    pp: int = 1
    zero_stage: int = 0
    param_bytes: int = 2            # bf16 weights (4 for fp32 training)
    fp32_master: bool = True        # fp32 master copy of the weights (mixed precision)
    fp32_grad_accumulation: bool = True  # nanotron's accumulate_grad_in_fp32
    recompute_layer: bool = False
    overhead_gib: float = 1.5       # CUDA context, allocator caches, NCCL buffers


def training_memory(arch: LlamaArch, s: MemorySettings) -> dict[str, float]:
    """Estimated bytes per rank while training (an estimate, not a measurement).

    Weights, gradients, the fp32 master copy and gradient accumulator, AdamW's two fp32 moments
    (sharded over dp with ZeRO-1), activations saved for the backward pass (flash attention: no
    seq x seq scores kept; per layer and token: RMSNorm inputs/outputs, q/k/v, the attention
    output, gate/up/activation/product of the SwiGLU MLP) and the logits (bf16 plus the fp32 copy
    the loss upcasts to). Model-parallel sizes divide weights and activations evenly.
    """
    n = parameter_counts(arch)["total"] / (s.tp * s.pp)
    weights = n * s.param_bytes
    grads = n * s.param_bytes
    master = n * 4 if (s.fp32_master and s.param_bytes < 4) else 0
    accum = n * 4 if (s.fp32_grad_accumulation and s.param_bytes < 4) else 0
    optim = n * 8
    if s.zero_stage >= 1:
        optim /= s.dp
        master /= s.dp
    tokens = s.micro_batch_size * s.seq_len
    act_bytes = 2 if s.param_bytes < 4 else 4
    h, i = arch.hidden_size, arch.intermediate_size
    per_layer_token = act_bytes * ((4 * h + 2 * arch.kv_dim) + (2 * h + 4 * i))
    layers = arch.num_layers / s.pp
    if s.recompute_layer:
        activations = tokens * layers * act_bytes * h + tokens * per_layer_token  # layer inputs + one layer
    else:
        activations = tokens * layers * per_layer_token
    activations /= s.tp
    logits = tokens * arch.vocab_size * (act_bytes + 4) / s.tp
    overhead = s.overhead_gib * GIB
    total = weights + grads + master + accum + optim + activations + logits + overhead
    return {"weights": weights, "gradients": grads, "fp32_master_weights": master,
            "fp32_grad_accumulator": accum, "adam_states": optim, "activations": activations,
            "logits": logits, "overhead": overhead, "total": total}


def memory_settings_from_spec(spec) -> MemorySettings:
    p = spec.profile
    bf16 = p.model.dtype != "float32"
    return MemorySettings(micro_batch_size=p.training.micro_batch_size, seq_len=p.training.sequence_length,
                          dp=p.parallelism.dp, tp=p.parallelism.tp, pp=p.parallelism.pp,
                          param_bytes=2 if bf16 else 4, fp32_master=bf16, fp32_grad_accumulation=bf16,
                          overhead_gib=1.5 if p.hardware.gpus_per_node else 0.5)


# --- planner --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    tokens: float
    gpus: int
    tokens_per_sec: float
    days: float
    gpu_hours: float
    hardware: str = ""
    mfu: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def plan(tokens: float, *, gpus: int, tokens_per_sec_per_gpu: float | None = None,
         tokens_per_sec: float | None = None, hardware: str = "", flops_token: float | None = None,
         peak_tflops: float | None = None) -> Plan:
    """Days and GPU-hours to train on ``tokens`` with ``gpus`` at a given throughput.

    Give the throughput per GPU or in total (one of the two).
    """
    if (tokens_per_sec is None) == (tokens_per_sec_per_gpu is None):
        raise ValueError("give exactly one of tokens_per_sec and tokens_per_sec_per_gpu")
    gpus = max(int(gpus), 1)
    total = tokens_per_sec if tokens_per_sec is not None else tokens_per_sec_per_gpu * gpus
    seconds = tokens / total
    per_gpu = total / gpus
    util = mfu(per_gpu, flops_token, peak_tflops) if flops_token else None
    return Plan(tokens, gpus, total, seconds / 86400, seconds * gpus / 3600, hardware, util)


def tokens_per_sec_for_mfu(target_mfu: float, flops_token: float, peak_tflops: float) -> float:
    """Per-GPU throughput that a given MFU means on this model."""
    return target_mfu * peak_tflops * 1e12 / flops_token


# --- the report's log line, checked against its config ----------------------------------------

def log_line_check(row: Mapping[str, Any], arch: LlamaArch, seq_len: int, *, declared_gpus: int,
                   peak_tflops: float | None, micro_batch_size: int, dp: int,
                   config: Mapping[str, Any] | None = None) -> list[dict]:
    """What a parsed nanotron log line says vs what the config and the architecture imply.

    ``row`` is one row of :func:`zagreus_utils.nanotron.logs.parse_nanotron_log`; with the nanotron
    ``config`` the line's total steps and learning rate are compared with it too. Returns rows
    ``{quantity, logged, derived, ratio, note}``; nanotron prints 3 significant digits, so ratios
    within about 1 % agree.
    """
    out: list[dict] = []

    def add(quantity, logged, derived, note=""):
        ratio = (logged / derived) if (logged is not None and derived) else None
        out.append({"quantity": quantity, "logged": logged, "derived": derived, "ratio": ratio, "note": note})

    if config is not None and row.get("step") is not None:
        add("train_steps", row.get("train_steps"), config["tokens"]["train_steps"], "the line's 'iteration: i / N' vs the config")
        add("learning rate at this step", row.get("lr"), lr_at(int(row["step"]), NanotronSchedule.from_config(config)),
            "nanotron's warmup-stable-decay schedule of the config")
    fpt = flops_per_token(arch, seq_len)["total"]
    tps, tpg = row.get("tokens_per_sec"), row.get("tokens_per_sec_per_gpu")
    gbs_tokens = micro_batch_size * dp * seq_len
    add("global batch (tokens)", row.get("global_batch_tokens"), gbs_tokens,
        f"micro_batch_size {micro_batch_size} x dp {dp} x sequence {seq_len}")
    if tps and tpg:
        add("GPUs (tokens_per_sec / tokens_per_sec_per_gpu)", tps / tpg, declared_gpus,
            "the config's dp x tp x pp")
    it_ms = row.get("time_per_iteration_ms")
    if it_ms and row.get("global_batch_tokens"):
        add("tokens_per_sec (global batch / iteration time)", tps, row["global_batch_tokens"] / (it_ms / 1000))
    if tpg:
        add("model TFLOP/s per GPU", row.get("model_tflops_per_gpu"), tpg * fpt / 1e12,
            f"tokens_per_sec_per_gpu x {fpt / 1e9:.2f} GFLOP/token (from the shapes)")
        if peak_tflops:
            logged_mfu = (row.get("model_tflops_per_gpu") or 0) / peak_tflops or None
            add("MFU", logged_mfu, mfu(tpg, fpt, peak_tflops), f"peak {peak_tflops:g} TFLOP/s")
    if row.get("consumed_tokens") and row.get("step") and row.get("global_batch_tokens"):
        add("consumed tokens", row["consumed_tokens"], row["step"] * row["global_batch_tokens"],
            "step x global batch (a batch change or a resumed run breaks this)")
    if row.get("eta_seconds") is not None and it_ms and row.get("train_steps"):
        add("eta (days)", row["eta_seconds"] / 86400,
            (row["train_steps"] - row["step"]) * it_ms / 1000 / 86400, "remaining steps x iteration time")
    return out


def summary_rows(arch: LlamaArch, seq_len: int) -> list[dict]:
    """Parameters and FLOPs as display rows (for the notebook and the report)."""
    p = parameter_counts(arch)
    f = flops_per_token(arch, seq_len)
    return [
        {"quantity": "parameters, total (tied embedding counted once)", "value": fmt_count(p["total"]), "exact": p["total"]},
        {"quantity": "parameters, non-embedding", "value": fmt_count(p["non_embedding"]), "exact": p["non_embedding"]},
        {"quantity": "parameters, embedding (+ untied LM head)", "value": fmt_count(p["embedding"] + p["lm_head (untied)"]),
         "exact": p["embedding"] + p["lm_head (untied)"]},
        {"quantity": "embedding share", "value": f"{100 * p['embedding_share']:.1f} %", "exact": p["embedding_share"]},
        {"quantity": "training FLOPs per token, 6N (matmuls incl. LM head)", "value": f"{f['dense'] / 1e9:.3f} G", "exact": f["dense"]},
        {"quantity": f"training FLOPs per token, attention (seq {seq_len})", "value": f"{f['attention'] / 1e9:.3f} G", "exact": f["attention"]},
        {"quantity": "training FLOPs per token, total", "value": f"{f['total'] / 1e9:.3f} G", "exact": f["total"]},
    ]


def days_text(days: float) -> str:
    if math.isinf(days) or days > 3650:
        return f"{days / 365:.0f} years"
    return f"{days:.1f} days"
