"""A stage-02 output of our own for the pretraining tests and benchmark (no notebook, no runner):

    <run_dir>/02_tokenization/tokenizer/            byte-level BPE (tokenizer.json + transformers files)
    <run_dir>/02_tokenization/tokenized/<source>/   datatrove DocumentTokenizer folders
    <run_dir>/02_tokenization/tokenized/summary.json, manifest.json
"""

import json
import random
from pathlib import Path

SOURCES = {"fineweb": "eng", "fineweb2": "ita", "finepdfs": "ita", "starcoderdata": "code"}
WORDS = {"ita": "il gatto cane casa mare sole luna pane vino strada città libro amico scuola lavoro tempo".split(),
         "eng": "the cat dog house sea sun moon bread wine road city book friend school work time".split(),
         "code": "def return if else for while import class self print range len list dict".split()}
DOCS = {"fineweb": 300, "fineweb2": 300, "finepdfs": 100, "starcoderdata": 150}


def tiny_overrides(vocab: int, steps: int = 16, interval: int = 4) -> dict:
    """A tiny Llama (2 layers, width 64) and a short schedule, as profile overrides."""
    return {"model.hidden_size": 64, "model.intermediate_size": 128, "model.num_hidden_layers": 2,
            "model.num_attention_heads": 4, "model.num_key_value_heads": 2, "model.max_position_embeddings": 64,
            "tokenizer.vocab_size": vocab, "training.sequence_length": 64, "training.micro_batch_size": 4,
            "training.train_steps": steps, "training.checkpoint_interval": interval,
            "training.lr_warmup_steps": steps // 8, "training.lr_decay_starting_step": steps * 5 // 8,
            "training.lr_decay_steps": steps - steps * 5 // 8}


def make_stage02(run_dir: Path, seed: int = 0, scale: float = 1.0) -> int:
    """A random word corpus per source (``scale`` x the document counts), tokenized by :func:`write_stage02`."""
    rng = random.Random(seed)
    corpus = {src: [" ".join(rng.choice(WORDS[kind]) for _ in range(rng.randint(20, 80))) + "."
                    for _ in range(max(1, int(DOCS[src] * scale)))] for src, kind in SOURCES.items()}
    return write_stage02(run_dir, corpus, vocab_size=512)


def write_stage02(run_dir: Path, texts: dict[str, list[str]], vocab_size: int,
                  bos: str = "<bos>", eos: str = "<eos>") -> int:
    """Train a BPE of ``vocab_size`` on ``texts`` (source -> documents) and tokenize each source
    with datatrove; returns the tokenizer's vocabulary size (special tokens included)."""
    from datatrove.data import Document
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.tokens import DocumentTokenizer
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([t for docs in texts.values() for t in docs],
                            trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[bos, eos],
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    stage = run_dir / "02_tokenization"
    tdir = stage / "tokenizer"
    tdir.mkdir(parents=True, exist_ok=True)
    tok.save(str(tdir / "tokenizer.json"))
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos).save_pretrained(tdir)
    tok_string = str(tdir / "tokenizer.json")
    for name, docs in texts.items():
        def reader(data, rank=0, world_size=1, docs=docs, name=name):
            for i, text in enumerate(docs):
                yield Document(text=text, id=f"{name}-{i}")
        LocalPipelineExecutor([reader, DocumentTokenizer(str(stage / "tokenized" / name), tokenizer_name_or_path=tok_string,
                                                         eos_token=eos, save_filename=name)],
                              tasks=1, logging_dir=str(run_dir / "logs" / name)).run()
    vocab = tok.get_vocab_size(with_added_tokens=True)
    (stage / "tokenized" / "summary.json").write_text(json.dumps({"tokenizer": tok_string, "vocab_size": vocab,
                                                                   "token_size": 2}))
    (stage / "manifest.json").write_text(json.dumps({"stage": "02_tokenization", "status": "ok"}))
    return vocab
