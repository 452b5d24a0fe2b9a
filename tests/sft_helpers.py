"""Test helpers for the SFT stage: a tiny base model shaped like the conversion stage's output.

``<run_dir>/04_conversion/hf/step-<N>/`` is a Hugging Face LlamaForCausalLM folder with the smoke
tokenizer (a byte-level BPE with ``<|begin_of_text|>`` (id 0), ``<|end_of_text|>`` (id 1),
``<|im_start|>``, ``<|im_end|>``, ``<|pad|>``). Until that stage runs, tests and benchmarks build
the same kind of folder here: a BPE trained on the generated corpus and a random tiny Llama.
"""

from __future__ import annotations

import json
from pathlib import Path

SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]


def make_corpus(root: Path, language: str = "ita", seed: int = 0) -> Path:
    """The generated sample corpus (01_data/raw layout); returns its folder."""
    from zagreus_utils.sample_corpus import corpus

    out = Path(root)
    if not (out / "sft" / "conversations.jsonl").is_file():
        corpus.generate(out, language, seed)
    return out


def _texts(corpus_dir: Path, limit_bytes: int = 600_000):
    """Training text for the BPE: the SFT conversations and some web text."""
    import pyarrow.parquet as pq

    n = 0
    for line in (corpus_dir / "sft" / "conversations.jsonl").read_text(encoding="utf-8").splitlines():
        for m in json.loads(line)["conversation"]:
            yield m["content"]
    for source in ("fineweb", "fineweb2"):
        for shard in sorted((corpus_dir / "sources" / source).glob("*.parquet")):
            for text in pq.read_table(shard, columns=["text"]).column("text").to_pylist():
                n += len(text)
                yield text
                if n > limit_bytes:
                    return


def build_tiny_base(folder: Path, corpus_dir: Path, vocab_size: int = 2000, seed: int = 0,
                    hidden: int = 64, layers: int = 2, heads: int = 4, kv_heads: int = 2,
                    max_positions: int = 512, tokenizer: bool = True) -> Path:
    """A random tiny LlamaForCausalLM with a byte-level BPE tokenizer, saved as HF folders."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_texts(Path(corpus_dir)), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>",
                                   eos_token="<|end_of_text|>", pad_token="<|pad|>",
                                   additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    assert fast.convert_tokens_to_ids("<|begin_of_text|>") == 0
    assert fast.convert_tokens_to_ids("<|end_of_text|>") == 1
    cfg = LlamaConfig(hidden_size=hidden, intermediate_size=hidden * 3, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=kv_heads, vocab_size=len(fast),
                      max_position_embeddings=max_positions, tie_word_embeddings=True,
                      bos_token_id=0, eos_token_id=1, pad_token_id=fast.pad_token_id)
    torch.manual_seed(seed)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    if tokenizer:
        fast.save_pretrained(folder)
    return folder


def make_run_dir(root: Path, language: str = "ita", seed: int = 0, step: int = 400) -> Path:
    """A run folder with the SFT's inputs: 01_data/raw (corpus) and 04_conversion/hf/step-<step>
    (+ an ok manifest), as the data and conversion stages leave them (smoke: train_steps 400)."""
    run = Path(root)
    raw = make_corpus(run / "01_data" / "raw", language, seed)
    final = run / "04_conversion" / "hf" / f"step-{step}"
    if not (final / "config.json").is_file():
        build_tiny_base(final, raw)
    (run / "04_conversion" / "manifest.json").write_text(json.dumps({"status": "ok", "stage": "04_conversion"}))
    return run
