"""A stage-02 output of our own for the pretraining tests and benchmark (no notebook, no runner):

    <run_dir>/02_tokenization/tokenizer/            byte-level BPE (tokenizer.json + transformers files)
    <run_dir>/02_tokenization/tokenized/<source>/   datatrove DocumentTokenizer folders
    <run_dir>/02_tokenization/tokenized/summary.json, manifest.json
"""

import json
from pathlib import Path


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
