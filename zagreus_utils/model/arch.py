"""The one description of the kit's Llama: :class:`LlamaArch`.

Read from the profile (``from_spec``), a nanotron config (``from_nanotron``) or a transformers
config or folder (``from_hf``); checked once (:meth:`LlamaArch.check`, :func:`head_problems`);
written as transformers' ``LlamaConfig`` (``to_hf_config``; its ``SmolLM3Config`` when some
layers go without RoPE, ``no_rope_layer``) and as nanotron's ``model_config`` (``to_nanotron``:
its LlamaConfig, or its Qwen2Config, the one that holds ``no_rope_layer``). The planner, the local trainer, preflight, the converter, the nanotron
renderer and the audit's parameter count all ask this object.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..pipeline.errors import ZagreusError

#: activations the converter's reference forward and transformers' Llama both know
ACTIVATIONS = ("silu", "swish", "gelu", "gelu_pytorch_tanh", "relu")
#: nanotron model_config keys without which there is no model
REQUIRED_KEYS = ("hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers", "vocab_size")
#: transformers' model types this description reads (SmolLM3: a Llama with NoPE layers)
HF_MODEL_TYPES = ("llama", "smollm3")


def nope_layers(num_layers: int, interval: int | None) -> list[int]:
    """The 0-based layers without rotary embedding: every ``interval``-th one, counted from 1 (layers
    3, 7, ... for 4), as nanotron's Qwen2 (``(layer_idx + 1) % no_rope_layer == 0``) and
    transformers' ``SmolLM3Config.no_rope_layer_interval`` both mean it."""
    return [] if not interval else [i for i in range(num_layers) if (i + 1) % interval == 0]


def head_problems(hidden_size: int, num_heads: int, num_kv_heads: int) -> list[str]:
    """The one head check: heads divide the hidden size, kv heads divide the heads (GQA groups)."""
    problems = []
    if hidden_size % num_heads:
        problems.append(f"hidden_size ({hidden_size}) must be divisible by num_attention_heads ({num_heads})")
    if num_heads % num_kv_heads:
        problems.append(f"num_attention_heads ({num_heads}) must be divisible by num_key_value_heads "
                        f"({num_kv_heads}) (GQA groups)")
    return problems


@dataclass(frozen=True)
class LlamaArch:
    """A Llama-family decoder (GQA, SwiGLU, RMSNorm, RoPE, tied or untied embeddings)."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    tie_word_embeddings: bool = True
    attention_bias: bool = False  # biases on q, k, v and o (nanotron's ``attention_bias``)
    max_position_embeddings: int = 2048
    rope_theta: float = 10000.0
    rope_interleaved: bool = False  # nanotron's interleaved RoPE (transformers: rotate-half)
    rope_scaling: dict | None = None
    rms_norm_eps: float = 1e-6
    hidden_act: str = "silu"
    initializer_range: float = 0.02
    init_std: float | None = None  # nanotron's init_method.std (training only)
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None
    pretraining_tp: int = 1
    use_cache: bool = True
    no_rope_layer: int | None = None  # every Nth layer without RoPE (NoPE); None: RoPE everywhere

    # --- derived shapes ---------------------------------------------------------------------

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def q_rows(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    kv_rows = kv_dim

    # --- reading ----------------------------------------------------------------------------

    @classmethod
    def from_spec(cls, spec) -> "LlamaArch":
        """From a :class:`zagreus_utils.pipeline.spec.Spec` (or its profile)."""
        profile = getattr(spec, "profile", spec)
        m = profile.model
        return cls(profile.tokenizer.vocab_size, m.hidden_size, m.intermediate_size, m.num_hidden_layers,
                   m.num_attention_heads, m.num_key_value_heads, m.tie_word_embeddings,
                   max_position_embeddings=m.max_position_embeddings, rope_theta=m.rope_theta,
                   rope_interleaved=m.rope_interleaved, rms_norm_eps=m.rms_norm_eps, hidden_act=m.hidden_act,
                   initializer_range=m.initializer_range, init_std=m.init_std, bos_token_id=m.bos_token_id,
                   eos_token_id=m.eos_token_id, no_rope_layer=getattr(m, "no_rope_layer", None))

    @classmethod
    def from_nanotron(cls, config: Mapping[str, Any], where: str = "model_config") -> "LlamaArch":
        """From a nanotron config, its ``model`` section or its ``model_config`` mapping (the one
        place that reads nanotron's model keys). ZagreusError naming the key when a shape is missing
        or not a number; no consistency check (:meth:`check`)."""
        model = config.get("model", config) if isinstance(config, Mapping) else None
        mc = model.get("model_config", model) if isinstance(model, Mapping) else None
        if not isinstance(mc, Mapping):
            raise ZagreusError(f"{where}: no model.model_config mapping")
        missing = [k for k in REQUIRED_KEYS if mc.get(k) is None]
        if missing:
            raise ZagreusError(f"{where}: missing model config keys: {', '.join(missing)}")
        init = model.get("init_method") if model is not mc else None
        try:
            heads = int(mc["num_attention_heads"])
            return cls(int(mc["vocab_size"]), int(mc["hidden_size"]), int(mc["intermediate_size"]),
                       int(mc["num_hidden_layers"]), heads, int(mc.get("num_key_value_heads") or heads),
                       bool(mc.get("tie_word_embeddings", False)), bool(mc.get("attention_bias", False)),
                       max_position_embeddings=mc.get("max_position_embeddings", 2048),
                       rope_theta=float(mc.get("rope_theta") or 10000.0),
                       rope_interleaved=bool(mc.get("rope_interleaved", False)), rope_scaling=mc.get("rope_scaling"),
                       rms_norm_eps=float(mc.get("rms_norm_eps") or 1e-6),
                       hidden_act=str(mc.get("hidden_act") or "silu"),
                       initializer_range=mc.get("initializer_range", 0.02),
                       init_std=init.get("std") if isinstance(init, Mapping) else None,
                       bos_token_id=mc.get("bos_token_id"), eos_token_id=mc.get("eos_token_id"),
                       pad_token_id=mc.get("pad_token_id"), pretraining_tp=mc.get("pretraining_tp", 1),
                       use_cache=mc.get("use_cache", True),
                       no_rope_layer=None if mc.get("no_rope_layer") is None else int(mc["no_rope_layer"]))
        except (TypeError, ValueError) as exc:
            raise ZagreusError(f"{where}: a model shape is not a number ({exc})") from None

    @classmethod
    def from_hf(cls, config, where: str | None = None, rope_interleaved: bool = False) -> "LlamaArch":
        """From a transformers ``LlamaConfig`` or ``SmolLM3Config`` or a model folder; refuses what
        nanotron cannot hold (another model type, biases, a head_dim of its own, sliding windows,
        NoPE layers that are not every Nth one)."""
        if isinstance(config, (str, Path)):
            from transformers import AutoConfig

            folder = Path(config)
            where = where or str(folder / "config.json")
            try:
                config = AutoConfig.from_pretrained(str(folder))
            except (ValueError, OSError) as exc:
                raise ZagreusError(f"{where}: {exc}") from exc
        where = where or "config.json"
        cfg = config
        model_type = getattr(cfg, "model_type", "llama")
        if model_type not in HF_MODEL_TYPES:
            raise ZagreusError(f"{where}: model_type={model_type!r}; only Llama and SmolLM3 models convert to "
                               f"nanotron's Llama / Qwen2")
        no_rope = _hf_no_rope_layer(cfg, where) if model_type == "smollm3" else None
        for key in ("attention_bias", "mlp_bias"):
            if getattr(cfg, key, False):
                raise ZagreusError(f"{where}: {key}=true has no place in nanotron's Llama (no biases)")
        head_dim = getattr(cfg, "head_dim", None)
        if head_dim not in (None, cfg.hidden_size // cfg.num_attention_heads):
            raise ZagreusError(f"{where}: head_dim={head_dim} differs from hidden_size/num_attention_heads="
                               f"{cfg.hidden_size // cfg.num_attention_heads}; nanotron derives it from those")
        theta, scaling = _hf_rope(cfg)
        return cls(cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers,
                   cfg.num_attention_heads, cfg.num_key_value_heads or cfg.num_attention_heads,
                   bool(cfg.tie_word_embeddings), max_position_embeddings=cfg.max_position_embeddings,
                   rope_theta=theta, rope_interleaved=bool(rope_interleaved), rope_scaling=scaling,
                   rms_norm_eps=cfg.rms_norm_eps, hidden_act=cfg.hidden_act, initializer_range=cfg.initializer_range,
                   bos_token_id=cfg.bos_token_id, eos_token_id=cfg.eos_token_id, pad_token_id=cfg.pad_token_id,
                   pretraining_tp=getattr(cfg, "pretraining_tp", 1), use_cache=getattr(cfg, "use_cache", True),
                   no_rope_layer=no_rope)

    # --- checking ---------------------------------------------------------------------------

    def check(self, where: str = "model") -> "LlamaArch":
        """Raise a ZagreusError naming ``where`` and the keys unless the shapes make a Llama:
        positive sizes, heads dividing the hidden size, kv heads dividing the heads, an even head
        size (RoPE rotates pairs), a known activation. Returns self."""
        sizes = {"hidden_size": self.hidden_size, "intermediate_size": self.intermediate_size,
                 "num_hidden_layers": self.num_layers, "num_attention_heads": self.num_heads,
                 "num_key_value_heads": self.num_kv_heads, "vocab_size": self.vocab_size}
        bad = [f"{k}={v}" for k, v in sizes.items() if v <= 0]
        if bad:
            raise ZagreusError(f"{where}: sizes must be positive ({', '.join(bad)})")
        problems = head_problems(self.hidden_size, self.num_heads, self.num_kv_heads)
        if not problems and self.head_dim % 2:
            problems.append(f"hidden_size/num_attention_heads = {self.head_dim}: the head size must be even (RoPE)")
        if problems:
            raise ZagreusError(f"{where}: " + "; ".join(problems))
        if self.no_rope_layer is not None and (self.no_rope_layer < 1 or self.num_layers % self.no_rope_layer):
            raise ZagreusError(f"{where}: no_rope_layer={self.no_rope_layer} must be a positive divisor of "
                               f"num_hidden_layers ({self.num_layers}) (nanotron's Qwen2Config asserts it)")
        if self.hidden_act not in ACTIVATIONS:
            raise ZagreusError(f"{where}: hidden_act={self.hidden_act!r} is not supported "
                               f"(one of {', '.join(ACTIVATIONS)})")
        return self

    # --- writing ----------------------------------------------------------------------------

    @property
    def hf_architecture(self) -> str:
        """transformers' model class of this architecture (SmolLM3 when some layers skip RoPE)."""
        return "LlamaForCausalLM" if self.no_rope_layer is None else "SmolLM3ForCausalLM"

    def to_hf_config(self, **extra):
        """The transformers ``LlamaConfig``, or ``SmolLM3Config`` with ``no_rope_layers`` when
        ``no_rope_layer`` is set (``extra``: e.g. ``architectures``, ``dtype``)."""
        from transformers import LlamaConfig, SmolLM3Config

        kwargs = dict(
            vocab_size=self.vocab_size, hidden_size=self.hidden_size, intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_layers, num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_kv_heads, max_position_embeddings=self.max_position_embeddings,
            rms_norm_eps=self.rms_norm_eps, rope_theta=float(self.rope_theta),
            tie_word_embeddings=self.tie_word_embeddings, hidden_act=self.hidden_act,
            initializer_range=self.initializer_range, bos_token_id=self.bos_token_id,
            eos_token_id=self.eos_token_id, pad_token_id=self.pad_token_id, pretraining_tp=self.pretraining_tp,
            attention_bias=self.attention_bias, mlp_bias=False, use_cache=self.use_cache)
        if self.rope_scaling is not None:
            kwargs["rope_scaling"] = self.rope_scaling
        if self.no_rope_layer is None:
            return LlamaConfig(**extra, **kwargs)
        nope = nope_layers(self.num_layers, self.no_rope_layer)
        return SmolLM3Config(**extra, **kwargs, no_rope_layer_interval=self.no_rope_layer,
                             no_rope_layers=[int(i not in nope) for i in range(self.num_layers)],
                             use_sliding_window=False)

    def to_nanotron(self, qwen2: bool | None = None) -> dict:
        """nanotron's ``model.model_config`` mapping: its LlamaConfig (``is_llama_config``), or with
        ``qwen2`` (default: when ``no_rope_layer`` is set) its Qwen2Config (``is_qwen2_config``), the
        config of nanotron main that holds ``no_rope_layer`` and ``_use_doc_masking``; dacite picks
        the class whose fields fit (strict), so the two marker keys never appear together."""
        if qwen2 is None:
            qwen2 = self.no_rope_layer is not None
        if self.no_rope_layer is not None and not qwen2:
            raise ZagreusError("no_rope_layer is a field of nanotron's Qwen2Config only; its LlamaConfig cannot "
                               "hold it")
        mc = self._nanotron_llama()
        if qwen2:
            del mc["is_llama_config"]
            mc.update(is_qwen2_config=True, no_rope_layer=self.no_rope_layer)
        return mc

    def _nanotron_llama(self) -> dict:
        return {
            "bos_token_id": self.bos_token_id, "eos_token_id": self.eos_token_id,
            "hidden_act": self.hidden_act, "hidden_size": self.hidden_size,
            "initializer_range": self.initializer_range, "intermediate_size": self.intermediate_size,
            "is_llama_config": True, "max_position_embeddings": self.max_position_embeddings,
            "num_attention_heads": self.num_heads, "num_hidden_layers": self.num_layers,
            "num_key_value_heads": self.num_kv_heads, "pad_token_id": self.pad_token_id,
            "pretraining_tp": self.pretraining_tp, "rms_norm_eps": self.rms_norm_eps,
            "rope_scaling": self.rope_scaling, "rope_theta": self.rope_theta,
            "rope_interleaved": self.rope_interleaved, "tie_word_embeddings": self.tie_word_embeddings,
            "use_cache": self.use_cache, "vocab_size": self.vocab_size,
        }


def _hf_no_rope_layer(cfg, where: str) -> int | None:
    """The interval of a SmolLM3 config's NoPE layers; refused unless they are every Nth layer
    (nanotron's only pattern) and without sliding windows."""
    if getattr(cfg, "use_sliding_window", False):
        raise ZagreusError(f"{where}: use_sliding_window=true has no place in nanotron's Qwen2 NoPE model")
    flags = list(getattr(cfg, "no_rope_layers", None) or [])[:cfg.num_hidden_layers]
    nope = [i for i, use_rope in enumerate(flags) if not use_rope]
    if not nope:
        return None
    interval = nope[0] + 1
    if nope != nope_layers(cfg.num_hidden_layers, interval) or cfg.num_hidden_layers % interval:
        raise ZagreusError(f"{where}: no_rope_layers puts NoPE in layers {nope}; nanotron only drops RoPE in "
                           f"every Nth layer (e.g. {nope_layers(cfg.num_hidden_layers, interval)})")
    return interval


def _hf_rope(cfg) -> tuple[float, dict | None]:
    """(rope_theta, rope_scaling) from a transformers config, old (4.x) or new (rope_parameters)."""
    params = getattr(cfg, "rope_parameters", None)
    if isinstance(params, dict) and "rope_theta" in params:
        scaling = {k: v for k, v in params.items() if k != "rope_theta"}
        if scaling.get("rope_type", scaling.get("type", "default")) == "default":
            scaling = None
        return float(params["rope_theta"]), scaling
    return float(getattr(cfg, "rope_theta", 10000.0)), getattr(cfg, "rope_scaling", None)
