"""Checkpoint conversion between nanotron's layout and Hugging Face Llama folders (CPU only, verified).

names: parameter names and shapes on both sides; checkpoint_io: reading and writing the two
layouts; folders: source and target folders, staged writes, tokenizer; verify: the reference
forward, logits and round-trip checks, the report; to_hf / to_nanotron: the two directions;
cli: ``zagreus convert`` (``python -m zagreus_utils.convert``).
"""

from .checkpoint_io import HFWeights, NanotronCheckpoint
from .folders import CHECKPOINT_INFO
from .to_hf import nanotron_to_hf
from .to_nanotron import hf_to_nanotron, write_nanotron_checkpoint
from .verify import ConversionReport

__all__ = ["CHECKPOINT_INFO", "ConversionReport", "HFWeights", "NanotronCheckpoint", "hf_to_nanotron",
           "nanotron_to_hf", "write_nanotron_checkpoint"]
