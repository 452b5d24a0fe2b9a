"""Start models for the continual pretraining tests: a stage-02 output of a small corpus
(tests/pretraining_helpers.py), the tiny profile overrides that fit it, real Hugging Face folders
written by transformers (with that tokenizer's files) and nanotron checkpoints written from them by
the project's converter."""

from __future__ import annotations

import json
import random
import shutil
import string
from pathlib import Path

from pretraining_helpers import SOURCES, tiny_overrides, write_stage02

from zagreus_utils.convert import hf_to_nanotron
from zagreus_utils.model.arch import LlamaArch
from zagreus_utils.pipeline.spec import load_spec


def hf_model(folder: Path, arch: LlamaArch, tokenizer: Path, seed: int = 0) -> Path:
    """A transformers Llama of ``arch`` (random weights) with ``tokenizer``'s files beside it."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    LlamaForCausalLM(arch.to_hf_config()).save_pretrained(folder)
    for f in tokenizer.iterdir():
        if f.is_file():
            shutil.copy2(f, folder / f.name)
    return folder


def swap_two_tokens(folder: Path) -> None:
    """Another tokenizer of the same size: two tokens of ``tokenizer.json`` trade ids."""
    path = folder / "tokenizer.json"
    data = json.loads(path.read_text())
    vocab = data["model"]["vocab"]
    a, b = [k for k, v in vocab.items() if v in (300, 301)]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    path.write_text(json.dumps(data))
    (folder / "vocab.json").unlink(missing_ok=True)


def build_world(tmp: Path) -> tuple[Path, dict, dict[str, Path]]:
    """``(run_dir, overrides, models)``: runs/smoke/ita with stage 02 done, the tiny profile that
    fits its tokenizer, and start models: ``good`` (the profile's shape and tokenizer), ``wide``
    (another width), ``short`` (32 positions), ``other_tok`` (two token ids swapped), and ``nt`` /
    ``nt_other_tok`` (``good`` / ``other_tok`` converted to nanotron's layout, tp 1)."""
    run_dir = tmp / "runs" / "smoke" / "ita"
    rng = random.Random(0)  # random letter words: the BPE fills all 512 ids (an even vocabulary shards over tp 2)
    texts = {src: [" ".join("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 7)))
                            for _ in range(rng.randint(20, 60))) for _ in range(60)] for src in SOURCES}
    vocab = write_stage02(run_dir, texts, vocab_size=512)
    overrides = tiny_overrides(vocab)
    tok = run_dir / "02_tokenization" / "tokenizer"
    arch = LlamaArch.from_spec(load_spec("ita", "smoke", overrides))
    models = {"good": hf_model(tmp / "good", arch, tok)}
    models["wide"] = hf_model(tmp / "wide", LlamaArch(**{**arch.__dict__, "hidden_size": 128,
                                                           "intermediate_size": 256}), tok)
    models["short"] = hf_model(tmp / "short", LlamaArch(**{**arch.__dict__, "max_position_embeddings": 32}), tok)
    models["other_tok"] = hf_model(tmp / "other_tok", arch, tok)
    swap_two_tokens(models["other_tok"])
    for name, src in (("nt", "good"), ("nt_other_tok", "other_tok")):
        models[name] = tmp / name
        hf_to_nanotron(models[src], models[name], tp=1)
    return run_dir, overrides, models
