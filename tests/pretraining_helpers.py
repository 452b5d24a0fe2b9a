"""A stage-02 output of our own for the pretraining tests and benchmark (no notebook, no runner):

    <run_dir>/02_tokenization/tokenizer/            byte-level BPE (tokenizer.json + transformers files)
    <run_dir>/02_tokenization/tokenized/<source>/   datatrove DocumentTokenizer folders
    <run_dir>/02_tokenization/tokenized/summary.json, manifest.json

The token files are written as stage 02 writes them (:class:`zagreus_utils.stages.nanoset.NanosetDocumentTokenizer`):
each document framed ``<bos> text <eos>``, and the ``.metadata`` files recording the tokenizer
*folder* (the string the pretraining config carries and nanotron's Nanoset loads with AutoTokenizer).
"""

import json
import random
from pathlib import Path

LLAMA_VOCAB = 128_256  # Llama-3.2: 128,000 BPE tokens + 256 special tokens
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
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([t for docs in texts.values() for t in docs],
                            trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[bos, eos],
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    stage = run_dir / "02_tokenization"
    tdir = (stage / "tokenizer").resolve()
    tdir.mkdir(parents=True, exist_ok=True)
    tok.save(str(tdir / "tokenizer.json"))
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos).save_pretrained(tdir)
    tok_string = str(tdir)  # as tokenization.nanoset_tokenizer_name gives it for a trained tokenizer
    for name, docs in texts.items():
        tokenize_texts(stage / "tokenized" / name, docs, tdir / "tokenizer.json", tok_string, name,
                       run_dir / "logs" / name, bos=bos, eos=eos)
    vocab = tok.get_vocab_size(with_added_tokens=True)
    (stage / "tokenized" / "summary.json").write_text(json.dumps({"tokenizer": tok_string, "vocab_size": vocab,
                                                                   "token_size": 2}))
    (stage / "manifest.json").write_text(json.dumps({"stage": "02_tokenization", "status": "ok"}))
    return vocab


def tokenize_texts(folder: Path, docs: list[str], tokenizer_file: Path, tokenizer_name: str, save_filename: str,
                   logging_dir: Path, bos: str = "<|begin_of_text|>", eos: str = "<|end_of_text|>") -> Path:
    """One token folder as stage 02's tokenize job writes it (one task, documents in order)."""
    from datatrove.data import Document
    from datatrove.executor import LocalPipelineExecutor

    from zagreus_utils.stages.nanoset import NanosetDocumentTokenizer

    def reader(data, rank=0, world_size=1):
        for i, text in enumerate(docs):
            yield Document(text=text, id=f"{save_filename}-{i}")

    LocalPipelineExecutor([reader, NanosetDocumentTokenizer(str(folder), tokenizer_file=str(tokenizer_file),
                                                            tokenizer_name=tokenizer_name, bos=bos, eos=eos,
                                                            save_filename=save_filename, shuffle_documents=False)],
                          tasks=1, logging_dir=str(logging_dir)).run()
    return folder


def write_llama_stand_in(hub_cache: Path, repo: str = "meta-llama/Llama-3.2-1B") -> Path:
    """A tokenizer with Llama-3.2's vocabulary size and special-token ids (``<|begin_of_text|>``
    128000, ``<|end_of_text|>`` 128001), in the Hugging Face hub cache layout under ``repo``, so that
    ``AutoTokenizer.from_pretrained(repo)`` loads it offline (HF_HUB_CACHE / HF_HOME/hub = ``hub_cache``).
    Its words are ``w0 .. w127999``, split on whitespace. The snapshot keeps only the files the kit
    tells users to download (``tokenization.HUB_TOKENIZER_FILES``). Returns the snapshot folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from zagreus_utils.stages.tokenizer import HUB_TOKENIZER_FILES

    vocab = {f"w{i}": i for i in range(128_000)}
    specials = ["<|begin_of_text|>", "<|end_of_text|>"] + [f"<|reserved_special_token_{i}|>" for i in range(254)]
    vocab.update({t: 128_000 + i for i, t in enumerate(specials)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<|reserved_special_token_0|>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(specials)
    repo_dir = Path(hub_cache) / ("models--" + repo.replace("/", "--"))
    revision = "0" * 40
    snapshot = repo_dir / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=specials[0], eos_token=specials[1]).save_pretrained(snapshot)
    (snapshot / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": LLAMA_VOCAB,
                                                      "bos_token_id": 128_000, "eos_token_id": 128_001}))
    for f in snapshot.iterdir():  # the cache holds what the kit tells users to download, no more
        if f.name not in HUB_TOKENIZER_FILES:
            f.unlink()
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(revision)
    assert len(tok.get_vocab()) == LLAMA_VOCAB
    return snapshot
