"""nanotron's parameter names and shapes, and how each maps to transformers' Llama tensors
(qkv and gate_up fused on nanotron's side, RoPE rows interleaved or rotate-half). nanotron's Qwen2
(the config that holds ``no_rope_layer``) has the same names and layout; its NoPE model is
transformers' SmolLM3, whose tensors are named as Llama's."""

from __future__ import annotations

import re
from collections.abc import Callable

import torch

from ..model.arch import LlamaArch
from ..pipeline.errors import ZagreusError

NT_EMBED = "model.token_position_embeddings.pp_block.token_embedding.weight"
NT_LM_HEAD = "model.lm_head.pp_block.weight"
NT_FINAL_NORM = "model.final_layer_norm.pp_block.weight"
LAYER_PARTS = ("input_layernorm", "attn.qkv_proj", "attn.o_proj", "post_attention_layernorm",
               "mlp.gate_up_proj", "mlp.down_proj")

# nanotron model_config keys carried to transformers' LlamaConfig (same names on both sides).
CARRIED_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id", "hidden_act", "hidden_size",
                "initializer_range", "intermediate_size", "max_position_embeddings",
                "num_attention_heads", "num_hidden_layers", "num_key_value_heads", "pretraining_tp",
                "rms_norm_eps", "rope_scaling", "rope_theta", "tie_word_embeddings", "use_cache",
                "vocab_size", "attention_bias", "no_rope_layer")  # no_rope_layer: SmolLM3's no_rope_layers
# nanotron-only keys that change the architecture when set: refuse rather than convert wrongly.
# (key -> the only value this converter accepts)
ARCH_KEYS = {"attention_bias": False, "sliding_window_size": None,
             "rope_seq_len_interpolation_factor": None, "moe_config": None}


def arch_from_model_config(cfg: dict, where: str) -> tuple[LlamaArch, list[str]]:
    """The checked architecture of a nanotron ``model_config`` and the keys transformers does not carry."""
    for key, allowed in ARCH_KEYS.items():
        if cfg.get(key) not in (None, allowed):
            raise ZagreusError(f"{where}: {key}={cfg[key]!r} is not supported by this converter "
                               f"(a Llama, or a Qwen2 with NoPE layers, with {key}={allowed!r} is expected)")
    arch = LlamaArch.from_nanotron(cfg, where).check(where)
    dropped = sorted(k for k in cfg if k not in CARRIED_KEYS)
    return arch, dropped


def nanotron_shapes(arch: LlamaArch) -> dict[str, tuple[int, ...]]:
    """Every nanotron parameter in streaming order (embedding, layers, final norm, lm_head)."""
    h, i = arch.hidden_size, arch.intermediate_size
    shapes = {NT_EMBED: (arch.vocab_size, h)}
    for n in range(arch.num_layers):
        p = f"model.decoder.{n}.pp_block."
        shapes.update({p + "input_layernorm.weight": (h,),
                       p + "attn.qkv_proj.weight": (arch.q_rows + 2 * arch.kv_rows, h),
                       p + "attn.o_proj.weight": (h, arch.q_rows),
                       p + "post_attention_layernorm.weight": (h,),
                       p + "mlp.gate_up_proj.weight": (2 * i, h),
                       p + "mlp.down_proj.weight": (h, i)})
    shapes[NT_FINAL_NORM] = (h,)
    if not arch.tie_word_embeddings:
        shapes[NT_LM_HEAD] = (arch.vocab_size, h)
    return shapes


def split_spec(arch: LlamaArch, name: str) -> tuple[int, tuple[int, ...] | None] | None:
    """How nanotron shards ``name`` over tp: (split dim, contiguous chunks), None if not sharded."""
    if name.endswith("qkv_proj.weight"):
        return 0, (arch.q_rows, arch.kv_rows, arch.kv_rows)
    if name.endswith("gate_up_proj.weight"):
        return 0, (arch.intermediate_size, arch.intermediate_size)
    if name.endswith(("o_proj.weight", "down_proj.weight")):
        return 1, None
    if name in (NT_EMBED, NT_LM_HEAD):
        return 0, None
    return None


def _interleaved_to_half(w: torch.Tensor, n_heads: int, d: int) -> torch.Tensor:
    """Rows of each head from RoPE pairs (2j, 2j+1) (nanotron interleaved) to (j, j+d/2) (rotate-half)."""
    return w.reshape(n_heads, d // 2, 2, -1).transpose(1, 2).reshape(n_heads * d, -1)


def _half_to_interleaved(w: torch.Tensor, n_heads: int, d: int) -> torch.Tensor:
    return w.reshape(n_heads, 2, d // 2, -1).transpose(1, 2).reshape(n_heads * d, -1)


def hf_names(nt_name: str) -> list[str]:
    """The transformers names one nanotron parameter becomes."""
    if nt_name == NT_EMBED:
        return ["model.embed_tokens.weight"]
    if nt_name == NT_LM_HEAD:
        return ["lm_head.weight"]
    if nt_name == NT_FINAL_NORM:
        return ["model.norm.weight"]
    m = re.fullmatch(r"model\.decoder\.(\d+)\.pp_block\.(.+)\.weight", nt_name)
    if not m:
        raise KeyError(nt_name)
    p, part = f"model.layers.{m.group(1)}.", m.group(2)
    return {"attn.qkv_proj": [p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight",
                              p + "self_attn.v_proj.weight"],
            "attn.o_proj": [p + "self_attn.o_proj.weight"],
            "mlp.gate_up_proj": [p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"],
            "mlp.down_proj": [p + "mlp.down_proj.weight"],
            "input_layernorm": [p + "input_layernorm.weight"],
            "post_attention_layernorm": [p + "post_attention_layernorm.weight"]}[part]


def split_to_hf(nt_name: str, t: torch.Tensor, arch: LlamaArch) -> list[tuple[str, torch.Tensor]]:
    """One nanotron tensor -> its transformers tensors (own storage each, ready to save)."""
    names = hf_names(nt_name)
    if nt_name.endswith("qkv_proj.weight"):
        q, k, v = t.split([arch.q_rows, arch.kv_rows, arch.kv_rows])
        if arch.rope_interleaved:
            q = _interleaved_to_half(q, arch.num_heads, arch.head_dim)
            k = _interleaved_to_half(k, arch.num_kv_heads, arch.head_dim)
        parts = [q, k, v]
    elif nt_name.endswith("gate_up_proj.weight"):
        parts = list(t.split([arch.intermediate_size, arch.intermediate_size]))
    else:
        return [(names[0], t)]
    return [(n, p.clone()) for n, p in zip(names, parts)]


def fuse_from_hf(nt_name: str, get: Callable[[str], torch.Tensor], arch: LlamaArch) -> torch.Tensor:
    """The nanotron tensor for ``nt_name`` from transformers tensors (``get(hf_name)``)."""
    names = hf_names(nt_name)
    if nt_name == NT_LM_HEAD and arch.tie_word_embeddings:
        raise KeyError(nt_name)
    if nt_name.endswith("qkv_proj.weight"):
        q, k, v = (get(n) for n in names)
        if arch.rope_interleaved:
            q = _half_to_interleaved(q, arch.num_heads, arch.head_dim)
            k = _half_to_interleaved(k, arch.num_kv_heads, arch.head_dim)
        return torch.cat([q, k, v])
    if nt_name.endswith("gate_up_proj.weight"):
        return torch.cat([get(n) for n in names])
    return get(names[0])


def hf_shape(hf_name: str, arch: LlamaArch) -> tuple[int, ...]:
    h, i, d = arch.hidden_size, arch.intermediate_size, arch.head_dim
    last = hf_name.rsplit(".", 2)[-2]
    return {"embed_tokens": (arch.vocab_size, h), "lm_head": (arch.vocab_size, h), "norm": (h,),
            "input_layernorm": (h,), "post_attention_layernorm": (h,), "q_proj": (arch.num_heads * d, h),
            "k_proj": (arch.num_kv_heads * d, h), "v_proj": (arch.num_kv_heads * d, h),
            "o_proj": (h, arch.num_heads * d), "gate_proj": (i, h), "up_proj": (i, h),
            "down_proj": (h, i)}[last]
