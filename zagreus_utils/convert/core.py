"""Stage 04 conversion: nanotron checkpoints <-> Hugging Face Llama folders, without nanotron.

Needs only torch, safetensors and transformers: no GPU, no torchrun, no nanotron. The nanotron
layout (``../shared/reference/nanotron-formats.md``) is read and written directly:

- ``model/``: one safetensors file per parameter (tensor under ``data``); the dotted parameter
  name becomes folders. Tensor-parallel shards are named ``model_weight_pp-rank-P-of-PP_tp-rank-T-of-TP``
  and carry ``version``, ``local_global_slices_pairs`` and ``unsharded_shape`` in their header;
  they are merged by those recorded slices (qkv and gate_up are sharded *inside* each chunk).
- ``model_config.json``, ``config.yaml``, ``checkpoint_metadata.json``.

Conversions stream parameter by parameter. After converting, the tool verifies itself:

- logits of the source and of the result on fixed inputs: the Hugging Face model (loaded by
  transformers from what was written, or from the source) against an independent pure-torch
  forward over nanotron's *fused* tensors (:class:`FusedLlamaReference`, interleaved or
  rotate-half RoPE as the checkpoint says);
- a round trip: the result read back from disk and converted back equals the source bit for bit.

Library: :func:`nanotron_to_hf`, :func:`hf_to_nanotron`, :func:`write_nanotron_checkpoint`.
CLI: :func:`main` (``zagreus convert nanotron-to-hf|hf-to-nanotron ...``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import json
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from ..pipeline.errors import ZagreusError

CHECKPOINT_VERSION = "1.5"  # nanotron's CHECKPOINT_VERSION on main (2026)
MAX_SHARD_BYTES = 2 * 1024**3  # Hugging Face weight files are split at 2 GB
CHECKPOINT_INFO = "zagreus_checkpoint.json"  # step and tokens seen, written by stage 04 beside the weights

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
                "vocab_size", "attention_bias")
REQUIRED_KEYS = ("hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers",
                 "vocab_size")
# nanotron-only keys that change the architecture when set: refuse rather than convert wrongly.
# (key -> the only value this converter accepts)
ARCH_KEYS = {"attention_bias": False, "no_rope_layer": None, "sliding_window_size": None,
             "rope_seq_len_interpolation_factor": None, "moe_config": None}
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "silu": torch.nn.functional.silu,
    "swish": torch.nn.functional.silu,
    "gelu": torch.nn.functional.gelu,
    "gelu_pytorch_tanh": lambda x: torch.nn.functional.gelu(x, approximate="tanh"),
    "relu": torch.relu,
}
DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}
TOKENIZER_FILES = ("special_tokens_map.json", "vocab.json", "merges.txt", "added_tokens.json",
                   "chat_template.jinja", "chat_template.json", "vocab.txt", "spiece.model")


# --------------------------------------------------------------------------------------------
# Report


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


# --------------------------------------------------------------------------------------------
# Architecture


@dataclasses.dataclass(frozen=True)
class Arch:
    """The dimensions and conventions a conversion needs, from either side's config."""

    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    vocab_size: int
    tied: bool
    rope_interleaved: bool = False
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None
    rms_norm_eps: float = 1e-6
    hidden_act: str = "silu"

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def q_rows(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_rows(self) -> int:
        return self.num_kv_heads * self.head_dim

    def check(self, where: str) -> None:
        h, n, k = self.hidden_size, self.num_heads, self.num_kv_heads
        if min(h, n, k, self.intermediate_size, self.num_layers, self.vocab_size) <= 0:
            raise ZagreusError(f"{where}: sizes must be positive ({self})")
        if h % n or n % k or (h // n) % 2:
            raise ZagreusError(f"{where}: hidden_size={h}, num_attention_heads={n}, num_key_value_heads={k}"
                               " do not give an even head size shared by grouped kv heads")
        if self.hidden_act not in ACTIVATIONS:
            raise ZagreusError(f"{where}: hidden_act={self.hidden_act!r} is not supported "
                               f"(one of {', '.join(ACTIVATIONS)})")

    def nanotron_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every nanotron parameter in streaming order (embedding, layers, final norm, lm_head)."""
        h, i = self.hidden_size, self.intermediate_size
        shapes = {NT_EMBED: (self.vocab_size, h)}
        for n in range(self.num_layers):
            p = f"model.decoder.{n}.pp_block."
            shapes.update({p + "input_layernorm.weight": (h,),
                           p + "attn.qkv_proj.weight": (self.q_rows + 2 * self.kv_rows, h),
                           p + "attn.o_proj.weight": (h, self.q_rows),
                           p + "post_attention_layernorm.weight": (h,),
                           p + "mlp.gate_up_proj.weight": (2 * i, h),
                           p + "mlp.down_proj.weight": (h, i)})
        shapes[NT_FINAL_NORM] = (h,)
        if not self.tied:
            shapes[NT_LM_HEAD] = (self.vocab_size, h)
        return shapes

    def split_spec(self, name: str) -> tuple[int, tuple[int, ...] | None] | None:
        """How nanotron shards ``name`` over tp: (split dim, contiguous chunks), None if not sharded."""
        if name.endswith("qkv_proj.weight"):
            return 0, (self.q_rows, self.kv_rows, self.kv_rows)
        if name.endswith("gate_up_proj.weight"):
            return 0, (self.intermediate_size, self.intermediate_size)
        if name.endswith(("o_proj.weight", "down_proj.weight")):
            return 1, None
        if name in (NT_EMBED, NT_LM_HEAD):
            return 0, None
        return None


def _arch_from_nanotron(cfg: dict, where: str) -> tuple[Arch, list[str]]:
    missing = [k for k in REQUIRED_KEYS if cfg.get(k) is None]
    if missing:
        raise ZagreusError(f"{where}: missing model config keys: {', '.join(missing)}")
    for key, allowed in ARCH_KEYS.items():
        if cfg.get(key) not in (None, allowed):
            raise ZagreusError(f"{where}: {key}={cfg[key]!r} is not supported by this converter "
                               f"(a Llama with {key}={allowed!r} is expected)")
    kv = cfg.get("num_key_value_heads") or cfg["num_attention_heads"]
    arch = Arch(hidden_size=int(cfg["hidden_size"]), intermediate_size=int(cfg["intermediate_size"]),
                num_layers=int(cfg["num_hidden_layers"]), num_heads=int(cfg["num_attention_heads"]),
                num_kv_heads=int(kv), vocab_size=int(cfg["vocab_size"]),
                tied=bool(cfg.get("tie_word_embeddings", False)),
                rope_interleaved=bool(cfg.get("rope_interleaved", False)),
                rope_theta=float(cfg.get("rope_theta") or 10000.0), rope_scaling=cfg.get("rope_scaling"),
                rms_norm_eps=float(cfg.get("rms_norm_eps") or 1e-6),
                hidden_act=str(cfg.get("hidden_act") or "silu"))
    arch.check(where)
    dropped = sorted(k for k in cfg if k not in CARRIED_KEYS)
    return arch, dropped


def _hf_rope(cfg) -> tuple[float, dict | None]:
    """(rope_theta, rope_scaling) from a transformers config, old (4.x) or new (rope_parameters)."""
    params = getattr(cfg, "rope_parameters", None)
    if isinstance(params, dict) and "rope_theta" in params:
        scaling = {k: v for k, v in params.items() if k != "rope_theta"}
        if scaling.get("rope_type", scaling.get("type", "default")) == "default":
            scaling = None
        return float(params["rope_theta"]), scaling
    return float(getattr(cfg, "rope_theta", 10000.0)), getattr(cfg, "rope_scaling", None)


def _nanotron_config_from_hf(cfg, where: str, rope_interleaved: bool) -> dict:
    if getattr(cfg, "model_type", "llama") != "llama":
        raise ZagreusError(f"{where}: model_type={cfg.model_type!r}; only Llama models convert to nanotron's Llama")
    for key in ("attention_bias", "mlp_bias"):
        if getattr(cfg, key, False):
            raise ZagreusError(f"{where}: {key}=true has no place in nanotron's Llama (no biases)")
    head_dim = getattr(cfg, "head_dim", None)
    if head_dim not in (None, cfg.hidden_size // cfg.num_attention_heads):
        raise ZagreusError(f"{where}: head_dim={head_dim} differs from hidden_size/num_attention_heads="
                           f"{cfg.hidden_size // cfg.num_attention_heads}; nanotron derives it from those")
    theta, scaling = _hf_rope(cfg)
    return {
        "bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id,
        "hidden_act": cfg.hidden_act, "hidden_size": cfg.hidden_size,
        "initializer_range": cfg.initializer_range, "intermediate_size": cfg.intermediate_size,
        "is_llama_config": True, "max_position_embeddings": cfg.max_position_embeddings,
        "num_attention_heads": cfg.num_attention_heads, "num_hidden_layers": cfg.num_hidden_layers,
        "num_key_value_heads": cfg.num_key_value_heads or cfg.num_attention_heads,
        "pad_token_id": cfg.pad_token_id, "pretraining_tp": getattr(cfg, "pretraining_tp", 1),
        "rms_norm_eps": cfg.rms_norm_eps, "rope_scaling": scaling, "rope_theta": theta,
        "rope_interleaved": bool(rope_interleaved), "tie_word_embeddings": bool(cfg.tie_word_embeddings),
        "use_cache": getattr(cfg, "use_cache", True), "vocab_size": cfg.vocab_size,
        "attention_bias": False,
    }


def _hf_config_from_nanotron(cfg: dict, dtype: torch.dtype):
    from transformers import LlamaConfig

    kwargs = {k: cfg[k] for k in CARRIED_KEYS if k in cfg}
    kwargs.setdefault("num_key_value_heads", cfg["num_attention_heads"])
    kwargs["rope_theta"] = float(kwargs.get("rope_theta") or 10000.0)
    kwargs["attention_bias"] = False
    return LlamaConfig(architectures=["LlamaForCausalLM"], dtype=dtype, **kwargs)


# --------------------------------------------------------------------------------------------
# Tensor mapping


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


def split_to_hf(nt_name: str, t: torch.Tensor, arch: Arch) -> list[tuple[str, torch.Tensor]]:
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


def fuse_from_hf(nt_name: str, get: Callable[[str], torch.Tensor], arch: Arch) -> torch.Tensor:
    """The nanotron tensor for ``nt_name`` from transformers tensors (``get(hf_name)``)."""
    names = hf_names(nt_name)
    if nt_name == NT_LM_HEAD and arch.tied:
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


# --------------------------------------------------------------------------------------------
# nanotron parameter files

_FILE_RE = re.compile(r"model_(?P<suffix>[A-Za-z0-9_]+?)"
                      r"(?:_pp-rank-(?P<pp>\d+)-of-(?P<pps>\d+)_tp-rank-(?P<tp>\d+)-of-(?P<tps>\d+)"
                      r"(?:_exp-rank-(?P<exp>\d+)-of-(?P<exps>\d+))?)?\.safetensors")


def _slice_str(s: slice) -> str:
    return ",".join("None" if x is None else str(int(x)) for x in (s.start, s.stop, s.step))


def _int_or_none(text: str) -> int | None:
    text = text.strip()
    if text == "None":
        return None
    digits = re.findall(r"-?\d+", text)  # tolerate numpy reprs such as "np.int64(1600)"
    if not digits:
        raise ValueError(text)
    return int(digits[-1])


def format_slices_pairs(pairs: Iterable[tuple[tuple[slice, ...], tuple[slice, ...]]]) -> str:
    """nanotron's ``local_global_slices_pairs`` string: ``l|l#g|g;...`` with ``start,stop,step``."""
    return ";".join("|".join(map(_slice_str, local)) + "#" + "|".join(map(_slice_str, glob))
                    for local, glob in pairs)


def parse_slices_pairs(text: str) -> list[tuple[tuple[slice, ...], tuple[slice, ...]]]:
    pairs = []
    for pair in text.split(";"):
        local, glob = pair.split("#")
        pairs.append(tuple(tuple(slice(*(_int_or_none(x) for x in s.split(","))) for s in side.split("|"))
                           for side in (local, glob)))
    return pairs


def parse_shape(text: str) -> tuple[int, ...]:
    return tuple(_int_or_none(x) for x in text.strip().strip("()").split(",") if x.strip())


def shard_file_name(tp_rank: int, tp: int, pp_rank: int = 0, pp: int = 1, suffix: str = "weight") -> str:
    return f"model_{suffix}_pp-rank-{pp_rank}-of-{pp}_tp-rank-{tp_rank}-of-{tp}.safetensors"


def param_folder(model_dir: Path, nt_name: str) -> Path:
    return model_dir.joinpath(*nt_name.split(".")[:-1])


def shard_tensor(t: torch.Tensor, tp: int, spec: tuple[int, tuple[int, ...] | None]
                 ) -> list[tuple[torch.Tensor, str]]:
    """nanotron's tp sharding of one full tensor: [(local tensor, local_global_slices_pairs)] per rank."""
    dim, chunks = spec
    nd = t.dim()
    full = tuple(slice(None) for _ in range(nd))

    def along(s: slice) -> tuple[slice, ...]:
        return tuple(s if d == dim else slice(None) for d in range(nd))

    out = []
    for rank in range(tp):
        if chunks is None:
            size = t.shape[dim] // tp
            glob = slice(rank * size, (rank + 1) * size)
            out.append((t.narrow(dim, rank * size, size).contiguous(), format_slices_pairs([(full, along(glob))])))
            continue
        pieces, pairs, g0 = [], [], 0
        for chunk in chunks:
            size = chunk // tp
            l0 = g0 // tp
            pieces.append(t.narrow(dim, g0 + rank * size, size))
            pairs.append((along(slice(l0, l0 + size)), along(slice(g0 + rank * size, g0 + (rank + 1) * size))))
            g0 += chunk
        out.append((torch.cat(pieces, dim).contiguous(), format_slices_pairs(pairs)))
    return out


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


class NanotronCheckpoint:
    """A nanotron checkpoint folder on disk: its config, and its parameters merged over tp shards."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.model_dir = folder / "model"
        self.config_file = folder / "model_config.json"
        self.config = self._read_config()
        self.arch, self.dropped_keys = _arch_from_nanotron(self.config, str(self.config_file))
        self.meta = self._read_json(folder / "checkpoint_metadata.json")
        self.shapes = self.arch.nanotron_shapes()
        self.files = self._scan()
        tps = {int(m["tps"]) for fs in self.files.values() for _, m in fs if m["tps"]}
        self.tp = max(tps) if tps else 1

    # -- config
    def _read_json(self, path: Path) -> dict | None:
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ZagreusError(f"{path}: not valid JSON ({exc})") from exc

    def _read_config(self) -> dict:
        cfg = self._read_json(self.config_file)
        if cfg is not None:
            return cfg
        yaml_file = self.folder / "config.yaml"
        if yaml_file.is_file():
            import yaml

            data = yaml.safe_load(yaml_file.read_text()) or {}
            cfg = (data.get("model") or {}).get("model_config")
            if isinstance(cfg, dict):
                self.config_file = yaml_file
                return cfg
            raise ZagreusError(f"{yaml_file}: no model.model_config section, and no model_config.json beside it")
        raise ZagreusError(f"{self.folder} is not a nanotron checkpoint: model_config.json is missing")

    def yaml_config(self) -> dict:
        path = self.folder / "config.yaml"
        if not path.is_file():
            return {}
        import yaml

        try:
            return yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ZagreusError(f"{path}: not valid YAML ({exc})") from exc

    # -- files
    def _scan(self) -> dict[str, list[tuple[Path, dict]]]:
        if not self.model_dir.is_dir():
            raise ZagreusError(f"{self.folder} is not a nanotron checkpoint: the model/ folder is missing")
        found: dict[str, list[tuple[Path, dict]]] = {}
        bad = []
        for path in sorted(self.model_dir.rglob("*.safetensors")):
            m = _FILE_RE.fullmatch(path.name)
            if not m:
                bad.append(path)
                continue
            parts = path.parent.relative_to(self.model_dir).parts
            found.setdefault(".".join(parts + (m["suffix"],)), []).append((path, m.groupdict()))
        unknown = [n for n in found if n not in self.shapes] + [_rel(p, self.folder) for p in bad]
        if unknown:
            hint = (" (tie_word_embeddings is true in the config, so lm_head must not be stored)"
                    if NT_LM_HEAD in unknown and self.arch.tied else "")
            raise ZagreusError(f"{self.model_dir}: unknown parameters for the config in {self.config_file.name}"
                               f"{hint}: {', '.join(sorted(unknown)[:8])}"
                               + (f" and {len(unknown) - 8} more" if len(unknown) > 8 else ""))
        missing = [n for n in self.shapes if n not in found]
        if missing:
            tp = max((int(m["tps"]) for fs in found.values() for _, m in fs if m["tps"]), default=1)
            expected = [_rel(param_folder(self.model_dir, n) / (
                shard_file_name(0, tp) if self.arch.split_spec(n) else "model_weight.safetensors"), self.folder)
                for n in missing]
            raise ZagreusError(f"{self.folder}: missing parameters ({len(missing)}): expected file "
                               + ", ".join(expected[:5]) + (" ..." if len(expected) > 5 else ""))
        return found

    def read(self, name: str) -> torch.Tensor:
        """The full tensor of parameter ``name``, merged from its shards by their recorded slices."""
        from safetensors import safe_open

        expected = self.shapes[name]
        entries = self.files[name]
        sharded = [(p, m) for p, m in entries if m["tps"]]
        if len(entries) == 1 and not sharded:
            path = entries[0][0]
            t, _ = self._open(path, safe_open)
            self._check_shape(path, tuple(t.shape), expected, name)
            return t
        if len(sharded) != len(entries):
            raise ZagreusError(f"{param_folder(self.model_dir, name)}: both sharded and unsharded files for {name}")
        tp = int(sharded[0][1]["tps"])
        by_rank: dict[int, tuple[Path, dict]] = {}
        for path, m in sharded:
            if int(m["tps"]) != tp:
                raise ZagreusError(f"{path}: tp size {m['tps']} differs from {tp} of the other shards of {name}")
            if int(m["tp"]) in by_rank:
                raise ZagreusError(f"{path}: a second file for tp rank {m['tp']} of {name} "
                                   f"(also {by_rank[int(m['tp'])][0].name})")
            by_rank[int(m["tp"])] = (path, m)
        for rank in range(tp):
            if rank not in by_rank:
                some = sharded[0][1]
                want = param_folder(self.model_dir, name) / shard_file_name(rank, tp, int(some["pp"]), int(some["pps"]))
                raise ZagreusError(f"missing shard: {want} (tp rank {rank} of {tp} for {name})")
        out = None
        covered: list[tuple[int, int, int]] = []  # (dim, start, stop) of global slices filled
        for rank in range(tp):
            path, _ = by_rank[rank]
            shard, meta = self._open(path, safe_open)
            try:
                pairs = parse_slices_pairs(meta["local_global_slices_pairs"])
                shape = parse_shape(meta["unsharded_shape"])
            except (KeyError, ValueError, TypeError) as exc:
                if tp == 1:  # a single shard without usable metadata holds the whole tensor
                    self._check_shape(path, tuple(shard.shape), expected, name)
                    return shard
                raise ZagreusError(f"{path}: unreadable tp metadata (local_global_slices_pairs, "
                                   f"unsharded_shape): {exc!r}") from exc
            self._check_shape(path, shape, expected, name, what="unsharded_shape")
            if out is None:
                if len(pairs) == 1 and tuple(shard.shape) == shape and tp == 1:
                    return shard
                out = torch.empty(shape, dtype=shard.dtype)
            if shard.dtype != out.dtype:
                raise ZagreusError(f"{path}: dtype {shard.dtype} differs from {out.dtype} of the other shards")
            for local, glob in pairs:
                try:
                    src, dst = shard[local], out[glob]
                except IndexError as exc:
                    raise ZagreusError(f"{path}: slices {_fmt_slices(local)} -> {_fmt_slices(glob)} do not fit "
                                       f"a shard of shape {tuple(shard.shape)} in {shape}") from exc
                if src.shape != dst.shape:
                    raise ZagreusError(f"{path}: wrong tensor shape: its slice {_fmt_slices(local)} is "
                                       f"{tuple(src.shape)} but the global slice {_fmt_slices(glob)} needs "
                                       f"{tuple(dst.shape)} (tensor shape {tuple(shard.shape)})")
                dst.copy_(src)
                covered.extend(_extent(glob, shape))
        _check_coverage(covered, shape, param_folder(self.model_dir, name), name)
        return out

    def _open(self, path: Path, safe_open) -> tuple[torch.Tensor, dict]:
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                keys = set(f.keys())
                if "data" not in keys:
                    found = ", ".join(sorted(keys)) or "none"
                    raise ZagreusError(f"{path}: no tensor under the key 'data' (found: {found})")
                return f.get_tensor("data"), (f.metadata() or {})
        except ZagreusError:
            raise
        except Exception as exc:  # safetensors raises its own error types for damaged files
            raise unreadable(path, exc) from exc

    def _check_shape(self, path: Path, found: tuple, expected: tuple, name: str, what: str = "tensor shape"):
        if tuple(found) != tuple(expected):
            a = self.arch
            raise ZagreusError(
                f"{path}: wrong {what} for {name}: expected {tuple(expected)} from {self.config_file.name} "
                f"(hidden_size={a.hidden_size}, intermediate_size={a.intermediate_size}, "
                f"heads={a.num_heads}/{a.num_kv_heads} kv, vocab_size={a.vocab_size}), found {tuple(found)}: "
                "the config and the weights do not match")

    def tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        for name in self.shapes:
            yield name, self.read(name)


def _fmt_slices(slices: tuple[slice, ...]) -> str:
    return "[" + ", ".join(f"{'' if s.start is None else s.start}:{'' if s.stop is None else s.stop}"
                           for s in slices) + "]"


def _extent(glob: tuple[slice, ...], shape: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """The dims a global slice restricts, as (dim, start, stop); (-1, 0, 0) for the whole tensor."""
    cut = []
    for d, s in enumerate(glob):
        start, stop, step = s.indices(shape[d]) if d < len(shape) else (0, 0, 1)
        if step != 1:
            raise ZagreusError(f"strided tp slices are not supported ({s})")
        if (start, stop) != (0, shape[d]):
            cut.append((d, start, stop))
    if len(cut) > 1:
        raise ZagreusError(f"tp slices cutting several dims are not supported ({glob})")
    return cut or [(-1, 0, 0)]


def _check_coverage(covered: list[tuple[int, int, int]], shape: tuple[int, ...], folder: Path, name: str) -> None:
    if any(d == -1 for d, _, _ in covered):
        return
    dims = {d for d, _, _ in covered}
    if len(dims) != 1:
        raise ZagreusError(f"{folder}: shards of {name} split several dims; cannot merge")
    dim = dims.pop()
    end = 0
    for _, start, stop in sorted(covered, key=lambda c: c[1]):
        if start > end:
            break
        end = max(end, stop)
    if end < shape[dim]:
        raise ZagreusError(f"{folder}: the shards of {name} leave rows {end}: of dim {dim} (size {shape[dim]}) "
                           "uncovered; a shard is missing or its slices are wrong")


# --------------------------------------------------------------------------------------------
# Hugging Face folders


class HFWeights:
    """The safetensors weights of a transformers model folder (single file or sharded with an index)."""

    def __init__(self, folder: Path):
        from safetensors import safe_open

        self.folder = folder
        index = folder / "model.safetensors.index.json"
        single = folder / "model.safetensors"
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text()).get("weight_map", {})
            except (json.JSONDecodeError, AttributeError) as exc:
                raise ZagreusError(f"{index}: not a valid safetensors index ({exc}); copy it again") from exc
            self.where = {k: folder / v for k, v in weight_map.items()}
        elif single.is_file():
            self.where = dict.fromkeys(self._keys(single, safe_open), single)
        else:
            bins = sorted(p.name for p in folder.glob("pytorch_model*.bin"))
            raise ZagreusError(f"{folder}: no model.safetensors or model.safetensors.index.json"
                               + (f" ({bins[0]} found: convert it to safetensors first)" if bins else ""))
        for path in sorted(set(self.where.values())):
            if not path.is_file():
                raise ZagreusError(f"missing shard: {path} (listed in {index.name})")
            if path != single:
                self._keys(path, safe_open)  # a damaged or truncated shard is named before any work
        self._safe_open = safe_open

    @staticmethod
    def _keys(path: Path, safe_open) -> list[str]:
        """The tensor names in a weight file (reads its header; a truncated file fails here)."""
        try:
            with safe_open(str(path), framework="pt") as f:
                return list(f.keys())
        except Exception as exc:  # safetensors raises its own error types for damaged files
            raise unreadable(path, exc) from exc

    def get(self, name: str) -> torch.Tensor:
        if name not in self.where:
            raise ZagreusError(f"{self.folder}: missing tensor {name}")
        # opened per tensor: a mapping kept open would keep every page read so far resident
        try:
            with self._safe_open(str(self.where[name]), framework="pt", device="cpu") as f:
                return f.get_tensor(name)
        except Exception as exc:
            raise unreadable(self.where[name], exc) from exc

    def close(self) -> None:
        pass


class HFShardWriter:
    """Writes transformers weights as they stream in, into files of at most ``max_bytes`` each."""

    def __init__(self, folder: Path, plan: list[tuple[str, int]], max_bytes: int = MAX_SHARD_BYTES):
        self.folder = folder
        shards: list[list[str]] = [[]]
        size = 0
        for name, nbytes in plan:
            if shards[-1] and size + nbytes > max_bytes:
                shards.append([])
                size = 0
            shards[-1].append(name)
            size += nbytes
        n = len(shards)
        self.file_of = {}
        for i, names in enumerate(shards):
            fname = "model.safetensors" if n == 1 else f"model-{i + 1:05d}-of-{n:05d}.safetensors"
            self.file_of.update(dict.fromkeys(names, fname))
        self.remaining = {f: sum(1 for v in self.file_of.values() if v == f) for f in set(self.file_of.values())}
        self.total = sum(b for _, b in plan)
        self.buffers: dict[str, dict[str, torch.Tensor]] = {}
        self.bytes_written = 0
        self.tensors_written = 0

    def add(self, name: str, tensor: torch.Tensor) -> None:
        fname = self.file_of[name]
        buf = self.buffers.setdefault(fname, {})
        buf[name] = tensor.contiguous()
        self.remaining[fname] -= 1
        if self.remaining[fname] == 0:
            path = self.folder / fname
            _save_safetensors(buf, path, {"format": "pt"})
            self.bytes_written += path.stat().st_size
            self.tensors_written += len(buf)
            del self.buffers[fname]

    def finish(self) -> None:
        if any(self.remaining.values()):
            raise RuntimeError(f"tensors never written: {[f for f, n in self.remaining.items() if n]}")
        if len(set(self.file_of.values())) > 1:
            index = {"metadata": {"total_size": self.total}, "weight_map": dict(sorted(self.file_of.items()))}
            path = self.folder / "model.safetensors.index.json"
            path.write_text(json.dumps(index, indent=2) + "\n")
            self.bytes_written += path.stat().st_size


# --------------------------------------------------------------------------------------------
# Independent reference forward over nanotron's fused tensors


def rope_inv_freq(arch: Arch) -> torch.Tensor:
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
    ``rope_interleaved``, rotate-half pairs (j, j + d/2) otherwise; GQA shares kv head
    ``h // (heads / kv_heads)`` with query head ``h``.
    """

    def __init__(self, arch: Arch, input_ids: torch.Tensor):
        self.arch, self.ids = arch, input_ids
        self.h: torch.Tensor | None = None
        self.embedding: torch.Tensor | None = None
        self.layer: dict[str, torch.Tensor] = {}
        self.logits: torch.Tensor | None = None
        self.final_norm: torch.Tensor | None = None
        pos = torch.arange(input_ids.shape[1], dtype=torch.float32)
        ang = pos[:, None] * rope_inv_freq(arch)[None, :]  # [T, d/2]
        self.cos, self.sin = ang.cos(), ang.sin()

    def feed(self, name: str, t: torch.Tensor) -> None:
        if name == NT_EMBED:
            self.h = t[self.ids].float()
            if self.arch.tied:
                self.embedding = t
            return
        if name == NT_FINAL_NORM:
            self.final_norm = t.float()
            if self.arch.tied:
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
        q = self._rope(q.view(B, T, a.num_heads, a.head_dim)).transpose(1, 2)
        k = self._rope(k.view(B, T, a.num_kv_heads, a.head_dim)).transpose(1, 2)
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
    """Logits of the transformers model in ``folder`` (float32, eager attention, on CPU)."""
    from transformers import LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:  # weights stay in their stored dtype, memory-mapped: no float32 copy of the whole model
        model = LlamaForCausalLM.from_pretrained(str(folder), dtype="auto", attn_implementation="eager")
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


def _compare(report: ConversionReport, ref: torch.Tensor | None, hf: torch.Tensor, lossy: bool) -> None:
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


# --------------------------------------------------------------------------------------------
# Folders: sources, targets, tokenizer


def resolve_nanotron_checkpoint(src: Path) -> tuple[Path, str | None]:
    """The step folder to convert: ``src`` itself, or the latest step of a checkpoints root."""
    src = Path(src)
    if not src.exists():
        raise ZagreusError(f"{src} does not exist")
    if (src / "model").is_dir():
        return src, None
    latest = src / "latest.txt"
    if latest.is_file():
        step = latest.read_text().strip()
        folder = src / step
        if not (folder / "model").is_dir():
            raise ZagreusError(f"{latest} names step {step!r} but {folder}/model is missing")
        return folder, f"picked step {step} from {latest}"
    steps = [p for p in src.iterdir() if p.name.isdigit() and (p / "model").is_dir()] if src.is_dir() else []
    if steps:
        folder = max(steps, key=lambda p: int(p.name))
        return folder, f"no latest.txt in {src}: picked the highest step folder {folder.name}"
    raise ZagreusError(f"{src} is not a nanotron checkpoint: expected model/ and model_config.json in it, "
                       "or a checkpoints folder with latest.txt")


_HF_MODEL_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def _existing_model(dst: Path) -> Path | None:
    for name in _HF_MODEL_FILES + ("model_config.json", "checkpoint_metadata.json"):
        if (dst / name).exists():
            return dst / name
    for pattern in ("model-*.safetensors", "pytorch_model-*.bin"):
        hit = next(iter(sorted(dst.glob(pattern))), None)
        if hit:
            return hit
    if (dst / "model").is_dir() and next((dst / "model").rglob("*.safetensors"), None):
        return dst / "model"
    return None


def _check_target(dst: Path, src: Path | None, overwrite: bool) -> None:
    """Refuse a target that is a file, is the source, or holds a model (unless ``overwrite``)."""
    if dst.exists() and not dst.is_dir():
        raise ZagreusError(f"{dst} exists and is not a folder")
    if src is not None and dst.resolve() == src.resolve():
        raise ZagreusError(f"{dst}: the target is the source folder")
    if dst.is_dir() and not overwrite and (held := _existing_model(dst)) is not None:
        raise ZagreusError(f"{dst} already holds a model ({held.name}); pass --overwrite to replace it")


def staging_folder(dst: Path) -> Path:
    """The temporary sibling a conversion to ``dst`` writes into (``DST.tmp-<pid>``)."""
    return dst.parent / f"{dst.name}.tmp-{os.getpid()}"


@contextlib.contextmanager
def staged_target(dst: Path, src: Path | None = None, overwrite: bool = False) -> Iterator[Path]:
    """Write into a fresh temporary sibling of ``dst``; it becomes ``dst`` only if the block ends
    without an error (a failed verification included). On any error the temporary folder is
    removed and ``dst`` is left exactly as it was. With ``overwrite`` a model already in ``dst``
    is replaced as a whole folder; into an existing folder without a model the files are moved.
    Disk faults (read-only, full, permissions) become one :class:`ZagreusError` naming the path."""
    _check_target(Path(dst), src, overwrite)
    dst = Path(os.path.realpath(dst))  # "." or a symlink: the folder itself, beside its siblings
    work = staging_folder(dst)
    try:
        if work.exists():  # left by an earlier process with the same pid that was killed
            shutil.rmtree(work)
        dst.parent.mkdir(parents=True, exist_ok=True)
        work.mkdir()
        yield work
        _commit(work, dst)
    except OSError as exc:
        raise disk_error(exc, dst) from exc
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def _commit(work: Path, dst: Path) -> None:
    if not dst.exists():
        work.rename(dst)
    elif _existing_model(dst) is not None:  # overwrite (checked before writing): swap folders
        old = dst.parent / f"{dst.name}.replaced-{os.getpid()}"
        if old.exists():
            shutil.rmtree(old)
        dst.rename(old)
        try:
            work.rename(dst)
        except OSError:
            old.rename(dst)
            raise
        for p in sorted(old.iterdir()):  # the user's own files (notes ...) stay; the old model goes
            if not _belongs_to_model(p) and not (dst / p.name).exists():
                os.replace(p, dst / p.name)
        shutil.rmtree(old)
    else:  # a folder without a model (empty, or other files): add the new files to it
        for p in sorted(work.iterdir()):
            target = dst / p.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(p, target)
        work.rmdir()


def _belongs_to_model(p: Path) -> bool:
    """A file of a model folder that a replacing model must not inherit: weights, configs, tokenizer."""
    name = p.name
    return (name in _HF_MODEL_FILES or name in ("model", "model_config.json", "checkpoint_metadata.json",
                                                 "config.yaml", "generation_config.json", "README.md",
                                                 CHECKPOINT_INFO)
            or name.startswith("tokenizer") or name in TOKENIZER_FILES
            or re.fullmatch(r"(model|pytorch_model)-\d+-of-\d+\.(safetensors|bin)", name) is not None)


_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}


def disk_error(exc: OSError, dst: Path) -> ZagreusError:
    """One line for a file-system fault while converting to ``dst``: the path, the cause, the fix."""
    path = exc.filename or dst
    reason = exc.strerror or str(exc)
    if exc.errno in _FULL:
        fix = f"free space there or choose another destination; {dst} was left as it was"
    elif exc.errno in _NOT_WRITABLE:
        fix = f"make it writable or choose a writable destination; {dst} was left as it was"
    else:
        fix = f"{dst} was left as it was"
    return ZagreusError(f"{path}: {reason} ({fix})")


def _save_safetensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict | None) -> None:
    """``safetensors.torch.save_file``, with its I/O failures raised as :class:`OSError` on ``path``."""
    from safetensors.torch import save_file

    try:
        save_file(tensors, str(path), metadata=metadata)
    except OSError:
        raise
    except Exception as exc:  # safetensors wraps I/O errors in its own type: "... (os error 28)"
        code = re.search(r"os error (\d+)", str(exc))
        if code is None:
            raise
        raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(path)) from exc


def unreadable(path: Path, exc: Exception) -> ZagreusError:
    """A damaged or truncated weight file: one line naming it and what to do."""
    return ZagreusError(f"{path}: not a readable safetensors file ({exc}); it is damaged or truncated "
                        "(an interrupted copy or download?): copy it again from its source")


def _tokenizer_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file()
                  and (p.name.startswith("tokenizer") or p.name in TOKENIZER_FILES))


def attach_tokenizer(tokenizer: Path, dst: Path, vocab_size: int) -> list[str]:
    """Copy a local tokenizer folder's tokenizer files into ``dst``; refuse one larger than the model."""
    tok = Path(tokenizer)
    if not tok.exists():
        raise ZagreusError(f"tokenizer {tok} does not exist (a local folder is needed; hub names are not fetched)")
    files = [tok] if tok.is_file() else _tokenizer_files(tok)
    if not files:
        raise ZagreusError(f"{tok}: no tokenizer files (tokenizer.json, tokenizer_config.json, tokenizer.model ...)")
    tj = next((f for f in files if f.name == "tokenizer.json"), None)
    if tj is not None:
        try:
            data = json.loads(tj.read_text())
        except json.JSONDecodeError as exc:
            raise ZagreusError(f"{tj}: not valid JSON ({exc})") from exc
        ids = list(((data.get("model") or {}).get("vocab") or {}).values()) if isinstance(
            (data.get("model") or {}).get("vocab"), dict) else []
        ids += [t.get("id", -1) for t in data.get("added_tokens") or []]
        top = max((i for i in ids if isinstance(i, int)), default=-1)
        if top >= vocab_size:
            raise ZagreusError(f"{tj}: token id {top} does not fit the model's vocab_size={vocab_size}")
    for f in files:
        shutil.copy2(f, dst / f.name)
    return [f.name for f in files]


def _write_generation_config(cfg: dict, dst: Path) -> None:
    from transformers import GenerationConfig

    GenerationConfig(bos_token_id=cfg.get("bos_token_id"), eos_token_id=cfg.get("eos_token_id"),
                     pad_token_id=cfg.get("pad_token_id")).save_pretrained(str(dst))


def _dtype(value) -> torch.dtype | None:
    if value is None or isinstance(value, torch.dtype):
        return value
    if str(value) not in DTYPES:
        raise ZagreusError(f"dtype {value!r}: use one of {', '.join(DTYPES)}")
    return DTYPES[str(value)]


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _folder_bytes(paths: Iterable[Path]) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file())


# --------------------------------------------------------------------------------------------
# nanotron -> Hugging Face


def nanotron_to_hf(src, dst, tokenizer=None, overwrite: bool = False, dtype=None, verify: bool = True,
                   max_shard_bytes: int = MAX_SHARD_BYTES, extra_files: dict[str, str] | None = None
                   ) -> ConversionReport:
    """Convert a nanotron checkpoint (a step folder, or a checkpoints root with latest.txt) to a
    transformers Llama folder at ``dst``, verified by logits and a bit-exact round trip.

    Written into a temporary sibling (:func:`staged_target`) that replaces ``dst`` only once verified;
    ``extra_files`` (name -> text) are written into it too, so they appear together with the model."""
    t0 = time.perf_counter()
    src, dst = Path(src), Path(dst)
    want_dtype = _dtype(dtype)
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
    report.dtype = _dtype_name(out_dtype)
    lossy = torch.finfo(out_dtype).bits < torch.finfo(src_dtype).bits or (
        out_dtype != src_dtype and torch.finfo(out_dtype).bits == torch.finfo(src_dtype).bits)

    plan = []
    for name, shape in ckpt.shapes.items():
        pieces = split_to_hf(name, torch.empty(shape, dtype=torch.int8, device="meta"), arch)
        plan += [(n, p.numel() * (torch.finfo(out_dtype).bits // 8)) for n, p in pieces]
    writer = HFShardWriter(work, plan, max_shard_bytes)
    ids = reference_inputs(arch.vocab_size)
    ref = _reference(arch, ids, report) if verify else None
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
    _release_memory()
    report.parameters, report.tensors = params, writer.tensors_written

    hf_cfg = _hf_config_from_nanotron(ckpt.config, out_dtype)
    hf_cfg.save_pretrained(str(work))
    _write_generation_config(ckpt.config, work)
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
    report.bytes_written = writer.bytes_written + _folder_bytes(written)

    if verify:
        if ref is not None and ref.logits is not None:
            _compare(report, ref.logits, hf_logits(work, ids), lossy)
        del ref
        if digests is not None:
            hf = HFWeights(work)
            report.roundtrip_identical = all(tensor_digest(fuse_from_hf(n, hf.get, arch)) == d
                                             for n, d in digests.items())
            if not report.roundtrip_identical:
                raise ZagreusError(f"verification failed: the result read back and fused again differs from "
                                   f"{folder}; {dst} was left as it was")


def _release_memory() -> None:
    """Give freed heap back to the OS (glibc keeps many mid-sized tensor buffers otherwise)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def _reference(arch: Arch, ids: torch.Tensor, report: ConversionReport) -> FusedLlamaReference | None:
    try:
        return FusedLlamaReference(arch, ids)
    except NotImplementedError as exc:
        report.notes.append(f"logits not verified: the reference forward does not implement {exc}")
        return None


def tensor_digest(t: torch.Tensor) -> bytes:
    """A hash of a tensor's dtype, shape and bytes: equal digests mean bit-identical tensors."""
    import hashlib

    h = hashlib.blake2b(f"{t.dtype}{tuple(t.shape)}".encode(), digest_size=32)
    h.update(t.detach().contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.digest()


def _roundtrip_nt_hf(ckpt: NanotronCheckpoint, hf: HFWeights) -> bool:
    """Every nanotron tensor (read back, shards merged) split again equals the transformers source."""
    for name in ckpt.shapes:
        for hf_name, piece in split_to_hf(name, ckpt.read(name), ckpt.arch):
            source = hf.get(hf_name)
            if piece.dtype != source.dtype or not torch.equal(piece, source):
                return False
    return True


# --------------------------------------------------------------------------------------------
# Hugging Face -> nanotron


def _nanotron_yaml(model_config: dict, tp: int, dtype: torch.dtype, run: str, tokenizer: str | None) -> dict:
    return {
        "general": {"project": "zagreus-convert", "run": run, "seed": 42, "step": 0,
                    "consumed_train_samples": 0, "ignore_sanity_checks": True},
        "parallelism": {"dp": 1, "pp": 1, "tp": tp, "pp_engine": "1f1b", "tp_mode": "ALL_REDUCE",
                        "tp_linear_async_communication": False},
        "model": {"model_config": model_config,
                  "init_method": {"std": model_config.get("initializer_range") or 0.02},
                  "dtype": _dtype_name(dtype), "make_vocab_size_divisible_by": 1, "ddp_bucket_cap_mb": 25},
        "tokenizer": {"tokenizer_name_or_path": tokenizer, "tokenizer_revision": None,
                      "tokenizer_max_length": None},
    }


def _validate_yaml(cfg: dict, where: Path) -> None:
    try:
        from ..nanotron import schema
    except ImportError:  # written by another part of the kit; validate when it is there
        return
    problems = schema.check_keys(cfg, schema.NANOTRON_SCHEMA, schema.REQUIRED)
    if problems:
        text = ", ".join(f"{p.kind} {schema.dotted(p.path + (p.key,))}" for p in problems)
        raise ZagreusError(f"{where}: not a valid nanotron config: {text}")


def _check_tp(arch: Arch, tp: int) -> None:
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
    arch, _ = _arch_from_nanotron(model_config, "model_config")
    _check_tp(arch, tp)
    with staged_target(Path(dst), src, overwrite) as work:
        return _write_nanotron(work, arch, model_config, tensors, tp, tokenizer, run, src)


def _write_nanotron(dst: Path, arch: Arch, model_config: dict, tensors: Iterable[tuple[str, torch.Tensor]],
                    tp: int, tokenizer: str | None, run: str, src: Path | None) -> tuple[int, int, int]:
    shapes = arch.nanotron_shapes()
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
        spec = arch.split_spec(name)
        if spec is None:
            outs = [(folder / "model_weight.safetensors", t.contiguous(), None)]
        else:
            outs = [(folder / shard_file_name(r, tp), local, {
                "version": CHECKPOINT_VERSION, "local_global_slices_pairs": pairs,
                "unsharded_shape": str(tuple(int(x) for x in t.shape))})
                for r, (local, pairs) in enumerate(shard_tensor(t, tp, spec))]
        for path, local, meta in outs:
            _save_safetensors({"data": local}, path, meta)
            files += 1
            nbytes += path.stat().st_size
    missing = [n for n in shapes if n not in seen]
    if missing:
        raise ZagreusError(f"parameters never given to the writer: {', '.join(missing[:5])}")

    import yaml

    (dst / "model_config.json").write_text(json.dumps(model_config, indent=2) + "\n")
    cfg = _nanotron_yaml(model_config, tp, dtype or torch.float32, run, tokenizer)
    _validate_yaml(cfg, dst / "config.yaml")
    (dst / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    meta = {"version": CHECKPOINT_VERSION, "tp": tp, "dp": 1, "cp": 1,
            "metas": {"consumed_train_samples": 0, "last_train_step": 0, "consumed_tokens_total": 0,
                      "last_stage_idx": 0,
                      "data_stages": [{"name": "converted", "start_training_step": 1, "consumed_train_samples": 0,
                                       "sequence_length": model_config.get("max_position_embeddings"),
                                       "consumed_tokens_per_dataset_folder": {}}]},
            "custom_metas": {"converted_from": str(src)} if src else None}
    (dst / "checkpoint_metadata.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    nbytes += _folder_bytes([dst / "model_config.json", dst / "config.yaml", dst / "checkpoint_metadata.json"])
    return params, files, nbytes


def hf_to_nanotron(src, dst, tp: int = 1, overwrite: bool = False, verify: bool = True,
                   rope_interleaved: bool = False) -> ConversionReport:
    """Export a transformers Llama folder as a nanotron checkpoint folder (``tp`` shards per
    parameter), verified by logits and a bit-exact round trip.

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
    nt_cfg = _nanotron_config_from_hf(hf_cfg, str(src / "config.json"), rope_interleaved)
    arch, _ = _arch_from_nanotron(nt_cfg, str(src / "config.json"))
    weights = HFWeights(src)
    shapes = arch.nanotron_shapes()
    expected = {n for name in shapes for n in hf_names(name)}
    ignorable = {k for k in weights.where if k.endswith("rotary_emb.inv_freq")}
    if arch.tied:
        ignorable.add("lm_head.weight")  # some writers store the tied copy anyway
    unknown = sorted(set(weights.where) - expected - ignorable)
    if unknown:
        raise ZagreusError(f"{src}: unknown tensors for a Llama with this config.json: {', '.join(unknown[:8])}")
    missing = sorted(expected - set(weights.where))
    if missing:
        raise ZagreusError(f"{src}: missing tensors: {', '.join(missing[:8])}"
                           + (f" and {len(missing) - 8} more" if len(missing) > 8 else ""))
    report = ConversionReport(src=src, dst=dst, direction="hf-to-nanotron", tp=tp)
    _check_tp(arch, tp)
    _check_target(dst, src, overwrite)
    if arch.tied and "lm_head.weight" in weights.where and not torch.equal(
            weights.get("lm_head.weight"), weights.get("model.embed_tokens.weight")):
        raise ZagreusError(f"{src}: tie_word_embeddings is true but lm_head.weight differs from the embedding")

    dtypes: set[str] = set()

    def stream() -> Iterator[tuple[str, torch.Tensor]]:
        for name in shapes:
            parts = {n: weights.get(n) for n in hf_names(name)}
            for hf_name, hf_t in parts.items():
                want = _hf_shape(hf_name, arch)
                if tuple(hf_t.shape) != want:
                    raise ZagreusError(f"{weights.where[hf_name]}: wrong tensor shape for {hf_name}: expected "
                                       f"{want} from config.json, found {tuple(hf_t.shape)}: the config and "
                                       "the weights do not match")
            t = fuse_from_hf(name, parts.__getitem__, arch)
            del parts
            dtypes.add(_dtype_name(t.dtype))
            if ref is not None:
                ref.feed(name, t)
            yield name, t

    tokenizer = str(src.resolve()) if any(_tokenizer_files(src)) else None
    with staged_target(dst, src, overwrite) as work:  # first: an unwritable DST fails before any work
        ids = reference_inputs(arch.vocab_size)
        src_logits = hf_logits(src, ids) if verify else None
        ref = _reference(arch, ids, report) if verify else None
        if ref is None:
            src_logits = None
        try:
            params, files, nbytes = _write_nanotron(work, arch, nt_cfg, stream(), tp, tokenizer, src.name, src)
        finally:
            weights.close()
        report.parameters, report.tensors, report.bytes_written = params, files, nbytes
        report.dtype = "/".join(sorted(dtypes))
        report.tokenizer = tokenizer
        if verify:
            if src_logits is not None:
                _compare(report, ref.logits, src_logits, lossy=False)
            report.roundtrip_identical = _roundtrip_nt_hf(NanotronCheckpoint(work), HFWeights(src))
            if not report.roundtrip_identical:
                raise ZagreusError(f"verification failed: the result read back and split again differs from "
                                   f"{src}; {dst} was left as it was")
    report.seconds = time.perf_counter() - t0
    return report


def _hf_shape(hf_name: str, arch: Arch) -> tuple[int, ...]:
    h, i, d = arch.hidden_size, arch.intermediate_size, arch.head_dim
    last = hf_name.rsplit(".", 2)[-2]
    return {"embed_tokens": (arch.vocab_size, h), "lm_head": (arch.vocab_size, h), "norm": (h,),
            "input_layernorm": (h,), "post_attention_layernorm": (h,), "q_proj": (arch.num_heads * d, h),
            "k_proj": (arch.num_kv_heads * d, h), "v_proj": (arch.num_kv_heads * d, h),
            "o_proj": (h, arch.num_heads * d), "gate_proj": (i, h), "up_proj": (i, h),
            "down_proj": (h, i)}[last]


# --------------------------------------------------------------------------------------------
# CLI


def build_parser(prog: str = "zagreus convert") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Convert between nanotron checkpoints and "
                                "Hugging Face Llama folders (CPU only; verified by logits and a round trip).")
    sub = p.add_subparsers(dest="direction", required=True)
    a = sub.add_parser("nanotron-to-hf", help="a nanotron checkpoint (step folder or checkpoints root) to transformers")
    a.add_argument("src", type=Path)
    a.add_argument("dst", type=Path)
    a.add_argument("--tokenizer", type=Path, default=None, help="local tokenizer folder to copy into DST")
    a.add_argument("--overwrite", action="store_true", help="replace a model already in DST (the whole folder, once the new one is verified)")
    a.add_argument("--dtype", choices=["bfloat16", "float32"], default=None,
                   help="dtype of the written weights (default: the checkpoint's)")
    a.add_argument("--no-verify", action="store_true", help="skip the logits check and the round trip")
    a.add_argument("--json", action="store_true", help="print the report as JSON")
    b = sub.add_parser("hf-to-nanotron", help="a transformers Llama folder to a nanotron checkpoint folder")
    b.add_argument("src", type=Path)
    b.add_argument("dst", type=Path)
    b.add_argument("--tp", type=int, default=1, help="tensor-parallel shards to write (default 1)")
    b.add_argument("--overwrite", action="store_true", help="replace a model already in DST (the whole folder, once the new one is verified)")
    b.add_argument("--no-verify", action="store_true", help="skip the logits check and the round trip")
    b.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def run_args(args: argparse.Namespace) -> int:
    if args.direction == "nanotron-to-hf":
        report = nanotron_to_hf(args.src, args.dst, tokenizer=args.tokenizer, overwrite=args.overwrite,
                                dtype=args.dtype, verify=not args.no_verify)
    else:
        report = hf_to_nanotron(args.src, args.dst, tp=args.tp, overwrite=args.overwrite, verify=not args.no_verify)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``zagreus convert ...``: ``argv`` is what follows ``convert``. Exit 2 on a user error."""
    args = build_parser().parse_args(argv)
    try:
        return run_args(args)
    except OSError as exc:  # outside the staged writes, e.g. reading the source
        print(f"error: {disk_error(exc, args.dst)}", file=sys.stderr)
        return 2
    except ZagreusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
