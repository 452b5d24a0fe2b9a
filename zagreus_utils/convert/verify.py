"""How a conversion verifies itself: an independent pure-torch Llama forward over nanotron's fused
tensors (:class:`FusedLlamaReference`) against transformers' logits, bit-exact round trips, and
the :class:`ConversionReport` that records both."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..model.arch import LlamaArch, nope_layers
from ..pipeline.errors import ZagreusError
from .checkpoint_io import HFWeights, NanotronCheckpoint
from .names import LAYER_PARTS, NT_EMBED, NT_FINAL_NORM, NT_LM_HEAD, split_to_hf

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "silu": torch.nn.functional.silu,
    "swish": torch.nn.functional.silu,
    "gelu": torch.nn.functional.gelu,
    "gelu_pytorch_tanh": lambda x: torch.nn.functional.gelu(x, approximate="tanh"),
    "relu": torch.relu,
}


@dataclasses.dataclass
class ConversionReport:
    """What a conversion did and how it verified itself."""

    src: Path
    dst: Path
    direction: str  # "nanotron-to-hf" | "hf-to-nanotron"
    parameters: int = 0  # unique parameters (tied embeddings counted once)
    tensors: int = 0  # tensors written (nanotron side: one file per tp shard)
    tp: int = 1  # tensor-parallel size of the nanotron side
    dtype: str = ""
    max_logits_diff: float | None = None
    logits_scale: float | None = None  # max |logit| of the reference, to read the difference against
    roundtrip_identical: bool | None = None
    seconds: float = 0.0
    bytes_written: int = 0
    step: int | None = None  # training step of the nanotron checkpoint, when known
    consumed_tokens: int | None = None
    tokenizer: str | None = None
    dropped_config_keys: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["src"], out["dst"] = str(self.src), str(self.dst)
        return out

    def __str__(self) -> str:
        rows = [(k, v) for k, v in self.to_dict().items() if v not in (None, [], "")]
        width = max(len(k) for k, _ in rows)
        fmt = {"max_logits_diff": "{:.3g}", "logits_scale": "{:.3g}", "seconds": "{:.2f}"}
        lines = []
        for key, value in rows:
            if isinstance(value, list):
                value = "; ".join(map(str, value))
            elif key in fmt:
                value = fmt[key].format(value)
            elif key == "bytes_written":
                value = f"{value} ({value / 1e9:.3f} GB)"
            lines.append(f"{key:<{width}}  {value}")
        return "\n".join(lines)


def rope_inv_freq(arch: LlamaArch) -> torch.Tensor:
    d = arch.head_dim
    inv = 1.0 / (arch.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    sc = arch.rope_scaling
    kind = (sc or {}).get("rope_type", (sc or {}).get("type", "default"))
    if kind == "default":
        pass
    elif kind == "linear":
        inv = inv / float(sc["factor"])
    elif kind == "llama3":
        factor, lo, hi = float(sc["factor"]), float(sc["low_freq_factor"]), float(sc["high_freq_factor"])
        old = float(sc["original_max_position_embeddings"])
        wavelen = 2 * math.pi / inv
        smooth = (old / wavelen - lo) / (hi - lo)
        mid = (1 - smooth) * inv / factor + smooth * inv
        inv = torch.where(wavelen > old / lo, inv / factor, torch.where(wavelen < old / hi, inv, mid))
    else:
        raise NotImplementedError(f"rope_scaling type {kind!r}")
    return inv.float()


class FusedLlamaReference:
    """A small pure-torch Llama forward written on nanotron's fused tensors (float32).

    Fed parameter by parameter in nanotron's order (embedding, each layer's six tensors, final
    norm, lm_head or the tied embedding), it runs each layer as soon as its tensors are in, so it
    never holds the whole model. RoPE follows the checkpoint: interleaved pairs (2j, 2j+1) when
    ``rope_interleaved``, rotate-half pairs (j, j + d/2) otherwise, and none in the NoPE layers
    (``no_rope_layer``: :func:`zagreus_utils.model.arch.nope_layers`); GQA shares kv head
    ``h // (heads / kv_heads)`` with query head ``h``.
    """

    def __init__(self, arch: LlamaArch, input_ids: torch.Tensor):
        self.arch, self.ids = arch, input_ids
        self.h: torch.Tensor | None = None
        self.embedding: torch.Tensor | None = None
        self.layer: dict[str, torch.Tensor] = {}
        self.logits: torch.Tensor | None = None
        self.final_norm: torch.Tensor | None = None
        self.index = 0  # the next layer's
        self.nope = set(nope_layers(arch.num_layers, arch.no_rope_layer))
        pos = torch.arange(input_ids.shape[1], dtype=torch.float32)
        ang = pos[:, None] * rope_inv_freq(arch)[None, :]  # [T, d/2]
        self.cos, self.sin = ang.cos(), ang.sin()

    def feed(self, name: str, t: torch.Tensor) -> None:
        if name == NT_EMBED:
            self.h = t[self.ids].float()
            if self.arch.tie_word_embeddings:
                self.embedding = t
            return
        if name == NT_FINAL_NORM:
            self.final_norm = t.float()
            if self.arch.tie_word_embeddings:
                self._head(self.embedding)
                self.embedding = None
            return
        if name == NT_LM_HEAD:
            self._head(t)
            return
        part = name.split(".pp_block.")[1].rsplit(".", 1)[0]
        self.layer[part] = t.float()
        if len(self.layer) == len(LAYER_PARTS):
            self._layer(self.layer)
            self.layer = {}

    def _rms(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.arch.rms_norm_eps) * w

    def _rope(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, T, heads, d]
        cos, sin = self.cos[None, :, None, :], self.sin[None, :, None, :]
        if self.arch.rope_interleaved:
            a, b = x[..., 0::2], x[..., 1::2]
            return torch.stack([a * cos - b * sin, b * cos + a * sin], dim=-1).flatten(-2)
        half = x.shape[-1] // 2
        a, b = x[..., :half], x[..., half:]
        return torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)

    def _layer(self, w: dict[str, torch.Tensor]) -> None:
        a, h = self.arch, self.h
        B, T, _ = h.shape
        x = self._rms(h, w["input_layernorm"])
        q, k, v = (x @ w["attn.qkv_proj"].T).split([a.q_rows, a.kv_rows, a.kv_rows], dim=-1)
        q, k = q.view(B, T, a.num_heads, a.head_dim), k.view(B, T, a.num_kv_heads, a.head_dim)
        if self.index not in self.nope:
            q, k = self._rope(q), self._rope(k)
        self.index += 1
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        v = v.view(B, T, a.num_kv_heads, a.head_dim).transpose(1, 2)
        group = a.num_heads // a.num_kv_heads
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(a.head_dim)
        scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        att = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, a.q_rows)
        h = h + att @ w["attn.o_proj"].T
        x = self._rms(h, w["post_attention_layernorm"])
        gate, up = (x @ w["mlp.gate_up_proj"].T).split([a.intermediate_size] * 2, dim=-1)
        self.h = h + (ACTIVATIONS[a.hidden_act](gate) * up) @ w["mlp.down_proj"].T

    def _head(self, weight: torch.Tensor) -> None:
        self.logits = _chunked_head(self._rms(self.h, self.final_norm), weight)


def reference_inputs(vocab_size: int, batch: int = 2, length: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (batch, length), generator=g)


def hf_logits(folder: Path, input_ids: torch.Tensor) -> torch.Tensor:
    """Logits of the transformers model in ``folder`` (its own class: Llama or SmolLM3; float32,
    eager attention, on CPU)."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:  # weights stay in their stored dtype, memory-mapped: no float32 copy of the whole model
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype="auto", attn_implementation="eager")
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    model.eval()
    # Compute in float32 one block at a time: each decoder layer (and the final norm) is cast up
    # just before it runs and dropped right after. bf16 -> fp32 is exact, so this equals loading
    # the model in float32, at the memory cost of one layer.
    hooks = []
    for block in list(model.model.layers) + [model.model.norm]:
        hooks.append(block.register_forward_pre_hook(lambda m, args: m.float() and None))
        hooks.append(block.register_forward_hook(lambda m, args, out: m.to("meta") and None))
    with torch.no_grad():
        embeds = model.model.embed_tokens(input_ids).float()
        hidden = model.model(inputs_embeds=embeds).last_hidden_state.float()
        head = model.lm_head.weight  # the embedding itself when tied
        logits = _chunked_head(hidden, head)
    for h in hooks:
        h.remove()
    del model
    return logits


def _chunked_head(hidden: torch.Tensor, weight: torch.Tensor, step: int = 16384) -> torch.Tensor:
    """``hidden @ weight.T`` in float32, a block of vocab rows at a time (no float32 copy of the head)."""
    return torch.cat([hidden @ weight[i:i + step].float().T for i in range(0, weight.shape[0], step)], -1)


def compare_logits(report: ConversionReport, ref: torch.Tensor | None, hf: torch.Tensor, lossy: bool) -> None:
    if ref is None:
        return
    diff = (ref - hf).abs().max().item()
    scale = ref.abs().max().item()
    report.max_logits_diff, report.logits_scale = diff, scale
    # float32 forwards of the same weights agree to ~1e-6 relative; a wrong permutation or split
    # is off by the logits' own size. Casting to a narrower dtype only gets reported.
    if not math.isfinite(diff):
        raise ZagreusError(f"verification failed for {report.dst}: the logits are not finite (NaN or inf "
                           f"weights in {report.src}?); {report.dst} was left as it was")
    if not lossy and not diff <= 1e-3 * max(scale, 1.0):
        raise ZagreusError(f"verification failed for {report.dst}: logits differ by {diff:.3g} "
                           f"(max |logit| {scale:.3g}) between source and result; {report.dst} was left as it was")
    if lossy:
        report.notes.append("weights were cast to a narrower dtype: the logits difference includes that rounding")


def reference_forward(arch: LlamaArch, ids: torch.Tensor, report: ConversionReport) -> FusedLlamaReference | None:
    try:
        return FusedLlamaReference(arch, ids)
    except NotImplementedError as exc:
        report.notes.append(f"logits not verified: the reference forward does not implement {exc}")
        return None


def tensor_digest(t: torch.Tensor) -> bytes:
    """A hash of a tensor's dtype, shape and bytes: equal digests mean bit-identical tensors."""
    h = hashlib.blake2b(f"{t.dtype}{tuple(t.shape)}".encode(), digest_size=32)
    h.update(t.detach().contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.digest()


def roundtrip_nt_hf(ckpt: NanotronCheckpoint, hf: HFWeights) -> bool:
    """Every nanotron tensor (read back, shards merged) split again equals the transformers source."""
    for name in ckpt.shapes:
        for hf_name, piece in split_to_hf(name, ckpt.read(name), ckpt.arch):
            source = hf.get(hf_name)
            if piece.dtype != source.dtype or not torch.equal(piece, source):
                return False
    return True
