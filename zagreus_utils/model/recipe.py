"""The SmolLM3 recipe switches in the local trainer, each as nanotron main does it.

- NoPE (``model_config.no_rope_layer``): transformers' ``SmolLM3ForCausalLM``, whose
  ``no_rope_layers`` drop the rotary embedding in the same layers as nanotron's Qwen2
  (:func:`zagreus_utils.model.arch.nope_layers`); Llama otherwise (:func:`causal_lm_class`).
- document masking (``model_config._use_doc_masking``): position ids restart after every EOS
  token (the EOS closes its document, as nanotron's TokenizedBytes positions do), the target that
  crosses into the next document is not trained on (nanotron's ``label_mask``), and attention is
  block-diagonal causal: transformers' mask builder reads the packed documents from the position
  ids (``masking_utils.find_packed_sequence_indices``) when no attention mask is given
  (:func:`document_positions`, :class:`DocumentCollate`).
- weight decay exclusion (``optimizer.weight_decay_exclude_named_params``): regular expressions
  matched with ``re.match`` against nanotron's parameter names (a tied parameter by each of its
  names), as nanotron's optimizer builder does; the parameters they match get weight decay 0
  (:func:`param_groups`).
- the decay to zero: nothing here; the rendered config's schedule keys say it
  (:func:`zagreus_utils.nanotron.schedule.scheduler_section`).
"""

from __future__ import annotations

import numpy as np
import torch

from ..pipeline.errors import ZagreusError
from .arch import LlamaArch
from .param_names import param_groups, pattern_problems
from .token_data import collate

__all__ = ["SWITCHES", "DocumentCollate", "causal_lm_class", "collate_for", "document_positions", "param_groups",
           "pattern_problems"]

IGNORE_INDEX = -100  # transformers' cross-entropy ignore_index

#: each SmolLM3 recipe switch as the profile overrides that turn it on (``--set KEY=VALUE``), with
#: the SmolLM3 values: NoPE in every 4th layer, no weight decay on the embedding, the last 10 % a
#: linear decay to zero
SWITCHES: dict[str, dict] = {
    "nope": {"model.no_rope_layer": 4},
    "doc_masking": {"training.document_masking": True},
    "no_embedding_decay": {"training.weight_decay_exclude": [".*token_embedding.*"]},
    "wsd_to_zero": {"training.wsd_decay_fraction": 0.1},
}


# --- NoPE -----------------------------------------------------------------------------------

def causal_lm_class(arch: LlamaArch):
    """transformers' model class of ``arch``: SmolLM3 (NoPE layers) or Llama."""
    from transformers import LlamaForCausalLM, SmolLM3ForCausalLM

    return LlamaForCausalLM if arch.no_rope_layer is None else SmolLM3ForCausalLM


# --- document masking -----------------------------------------------------------------------

def document_positions(tokens, eos_token_id: int) -> np.ndarray:
    """Position ids that restart at 0 after every ``eos_token_id`` (the EOS ends its document);
    ``tokens``: one window or a batch of them (the last axis is the sequence)."""
    t = np.asarray(tokens)
    idx = np.broadcast_to(np.arange(t.shape[-1]), t.shape)
    starts = np.zeros(t.shape, dtype=bool)
    starts[..., 1:] = t[..., :-1] == eos_token_id
    starts[..., 0] = True
    begin = np.maximum.accumulate(np.where(starts, idx, 0), axis=-1)
    return (idx - begin).astype(np.int64)


class DocumentCollate:
    """The trainer's batch with ``position_ids`` restarting per document and the targets that
    cross a document boundary set to the ignore index (a picklable collate function)."""

    def __init__(self, eos_token_id: int):
        self.eos_token_id = int(eos_token_id)

    def __call__(self, samples: list[dict]) -> dict:
        batch = collate(samples)
        window = torch.cat([batch["input_ids"], batch["labels"][:, -1:]], dim=1)
        pos = torch.from_numpy(document_positions(window.numpy(), self.eos_token_id))
        labels = batch["labels"].clone()
        labels[pos[:, 1:] == 0] = IGNORE_INDEX
        batch.update(position_ids=pos[:, :-1].contiguous(), labels=labels, shift_labels=labels)
        return batch


def collate_for(arch: LlamaArch, document_masking: bool, eos_token_id: int | None = None):
    """The collate function of a run: :class:`DocumentCollate` with document masking, else plain.
    The documents end at ``eos_token_id`` (the tokenizer's, as nanotron's run_train.py takes it;
    default: the model's)."""
    if not document_masking:
        return collate
    eos = arch.eos_token_id if eos_token_id is None else eos_token_id
    if eos is None:
        raise ZagreusError("document masking needs the model's eos_token_id (model.eos_token_id in the profile)")
    return DocumentCollate(eos)
