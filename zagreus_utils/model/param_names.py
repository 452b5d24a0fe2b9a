"""Which parameters nanotron's ``weight_decay_exclude_named_params`` exclude from weight decay.

nanotron's optimizer builder ``re.match``-es each pattern against a parameter's name (and, for
a tied parameter, its tied name); its names are those of its own layout (fused qkv and gate_up,
``model.token_position_embeddings.pp_block.token_embedding.weight``). The local trainer maps
each transformers parameter to those names (:mod:`zagreus_utils.convert.names`) and applies the
same rule; the config renderer refuses a pattern that matches nothing.

nanotron main 2411b022 itself gets it wrong (:data:`NANOTRON_EXCLUDE_FAULT`; shown by
tests/test_nanotron_config.py on its own function), so pre-flight refuses the switch for a
nanotron run and only the local trainer applies it.
"""

from __future__ import annotations

import re

from ..convert.names import NT_EMBED, NT_LM_HEAD, hf_names, nanotron_shapes
from ..pipeline.errors import ZagreusError
from .arch import LlamaArch


#: what nanotron main 2411b022's optimizer builder does with weight_decay_exclude_named_params
NANOTRON_EXCLUDE_FAULT = (
    "nanotron main 2411b022 (helpers.get_custom_weight_decay_for_named_parameters) matches each untied "
    "parameter also against the tied name left from the last tied parameter before it: with tied "
    "embeddings a pattern that matches the embedding exempts every later parameter from weight decay, and "
    "with untied ones it stops with NameError")


def nanotron_names(arch: LlamaArch) -> dict[str, list[str]]:
    """transformers parameter name -> the nanotron names it is part of (a fused qkv or gate_up
    tensor holds several transformers tensors; the tied embedding is also the LM head)."""
    out: dict[str, list[str]] = {}
    for nt in nanotron_shapes(arch):
        for hf in hf_names(nt):
            out.setdefault(hf, []).append(nt)
    if arch.tie_word_embeddings:
        out["model.embed_tokens.weight"].append(NT_LM_HEAD)
        out["lm_head.weight"] = [NT_LM_HEAD, NT_EMBED]
    return out


def excluded(patterns, names: list[str]) -> bool:
    """nanotron's rule: a parameter is excluded when a pattern ``re.match``-es one of its names."""
    return any(re.match(p, n) for p in patterns for n in names)


def pattern_problems(arch: LlamaArch, patterns) -> list[str]:
    """Patterns that match no nanotron parameter name (a typo, or a transformers name)."""
    names = [n for ns in nanotron_names(arch).values() for n in ns]
    return [f"weight_decay_exclude pattern {p!r} matches no nanotron parameter name (they look like "
            f"{NT_EMBED!r}; nanotron applies re.match from the start: e.g. '.*token_embedding.*')"
            for p in patterns if not any(re.match(p, n) for n in names)]


def param_groups(model, arch: LlamaArch, weight_decay: float, patterns) -> list[dict]:
    """AdamW parameter groups: ``weight_decay`` for all, 0 for the parameters ``patterns`` exclude."""
    patterns = list(patterns or ())
    if not patterns:
        return [{"params": list(model.parameters()), "weight_decay": weight_decay}]
    names = nanotron_names(arch)
    decay, keep = [], []
    for name, p in model.named_parameters():
        if name not in names:
            raise ZagreusError(f"parameter {name} has no nanotron name: cannot apply weight_decay_exclude")
        (keep if excluded(patterns, names[name]) else decay).append(p)
    return [g for g in ({"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0})
            if g["params"]]
