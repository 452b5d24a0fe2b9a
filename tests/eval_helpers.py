"""Tiny stand-ins for the eval stage's inputs: held-out items, a BPE tokenizer, random Llamas.

Builds what the upstream stages would leave in a run folder, at a size that evaluates in seconds:

    <run_dir>/01_data/raw/heldout/{mc,text}_{<lang>,eng}.jsonl   (zagreus_utils.sample_corpus.corpus)
    <run_dir>/04_conversion/hf/step-<N>/                          (random LlamaForCausalLM + tokenizer)
    <run_dir>/05_sft/model/                                       (the same, with a chat template)

Used by tests/test_eval.py and benchmarks/bench_eval.py.
"""

from __future__ import annotations

import json
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIAL = ["<s>", "</s>", "<pad>", "<unk>"]


def write_heldout(run_dir: Path, language: str, seed: int = 0, scale: float = 0.05) -> Path:
    """The corpus generator's held-out items under ``<run_dir>/01_data/raw/heldout`` (~2 s).

    100 multiple-choice items per style and language whatever the scale; ``max(20, 100 * scale)``
    held-out documents per language (the pipeline's smoke profile uses scale 1.0: 100).
    """
    from zagreus_utils.sample_corpus import corpus

    raw = Path(run_dir) / "01_data" / "raw"
    corpus.generate(raw, language, seed=seed, scale=scale)
    return raw / "heldout"


def _texts(heldout: Path) -> list[str]:
    """Training text for the tokenizer: the generated training sources (as the tokenization stage
    trains it), so held-out text is tokenized as in a real run, not unrealistically well."""
    import pyarrow.parquet as pq

    sources = Path(heldout).parent / "sources"
    texts = [t for f in sorted(sources.glob("*/*.parquet")) for t in pq.read_table(f, columns=["text"])["text"].to_pylist()]
    if texts:
        return texts
    for path in sorted(Path(heldout).glob("*.jsonl")):  # no sources: the held-out files themselves
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            texts.append(row["text"] if "text" in row else
                         " ".join([row.get("question") or row.get("context", "")] + row["choices"]))
    return texts


def train_tokenizer(texts: list[str], vocab_size: int = 1024):
    """A byte-level BPE with <s> </s> <pad> <unk>, as a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", unk_token="<unk>")


def write_model(folder: Path, tokenizer, *, hidden: int = 64, layers: int = 2, heads: int = 4, kv_heads: int = 2,
                seq: int = 256, seed: int = 0, chat_template: str | None = None, step: int | None = None) -> Path:
    """A random LlamaForCausalLM (+ tokenizer) saved with save_pretrained into ``folder``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=hidden, intermediate_size=hidden * 3, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=kv_heads, vocab_size=len(tokenizer),
                      max_position_embeddings=seq, tie_word_embeddings=True,
                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    folder = Path(folder)
    model.save_pretrained(folder)
    if chat_template:
        tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(folder)
    tokenizer.chat_template = None
    if step is not None:
        (folder / "zagreus_checkpoint.json").write_text(json.dumps({"step": step}) + "\n")
    return folder


def make_run(run_dir: Path, language: str = "ita", steps=(100, 200), sft: bool = True, *,
             vocab_size: int = 1024, hidden: int = 64, layers: int = 2, seq: int = 256,
             heldout_scale: float = 0.05) -> dict:
    """A run folder with held-out items, base checkpoints ``step-<N>`` and (optionally) an SFT model."""
    run_dir = Path(run_dir)
    heldout = write_heldout(run_dir, language, scale=heldout_scale)
    tokenizer = train_tokenizer(_texts(heldout), vocab_size)
    checkpoints = {}
    for i, step in enumerate(steps):
        checkpoints[step] = write_model(run_dir / "04_conversion" / "hf" / f"step-{step}", tokenizer,
                                        hidden=hidden, layers=layers, seq=seq, seed=i, step=step)
    out = {"run_dir": run_dir, "heldout": heldout, "checkpoints": checkpoints}
    if sft:
        out["sft"] = write_model(run_dir / "05_sft" / "model", tokenizer, hidden=hidden, layers=layers,
                                 seq=seq, seed=99, chat_template=CHAT_TEMPLATE)
    return out
