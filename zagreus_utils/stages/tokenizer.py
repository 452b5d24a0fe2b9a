"""The run's tokenizer: the Llama-3-style special tokens, the report's tokenizer found offline in
the local Hugging Face cache, the smoke profile's byte-level BPE, and the tokenizer that frames each
document as ``<|begin_of_text|> text <|end_of_text|>`` for datatrove."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from huggingface_hub import constants, try_to_load_from_cache

from ..pipeline.errors import ZagreusError
from ..pipeline.spec import Spec

BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"
IM_START, IM_END, PAD = "<|im_start|>", "<|im_end|>", "<|pad|>"
SPECIAL_TOKENS = [BOS, EOS, IM_START, IM_END, PAD]  # ids 0..4 in the smoke BPE
LLAMA_TOKENIZER = "meta-llama/Llama-3.2-1B"  # the report's tokenizer (section 3)
# What a hub tokenizer needs in the local cache: nanotron loads it with AutoTokenizer, which in
# transformers 5 also reads the repo's config.json (offline, without it: "couldn't connect").
HUB_TOKENIZER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
CHATML_TEMPLATE = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content']"
                   " + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}"
                   "{{ '<|im_start|>assistant\\n' }}{% endif %}")


def cached_tokenizer_file(name_or_path: str) -> Path | None:
    """``tokenizer.json`` of a local folder or of a hub tokenizer in the local HF cache (offline)."""
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        return p / "tokenizer.json" if (p / "tokenizer.json").is_file() else None
    if p.is_file():
        return p if p.name.endswith(".json") else None
    if name_or_path.count("/") != 1 or name_or_path.startswith(("/", ".")):
        return None
    seen = []
    for cache in (constants.HF_HUB_CACHE, str(Path.home() / ".cache" / "huggingface" / "hub")):
        if cache in seen:
            continue
        seen.append(cache)
        try:
            found = try_to_load_from_cache(name_or_path, "tokenizer.json", cache_dir=cache)
        except Exception:  # a malformed repo id, an unreadable cache
            found = None
        if isinstance(found, str) and Path(found).is_file():
            return Path(found)
    return None


def pretrained_tokenizer_file(spec: Spec) -> Path:
    """The profile's pretrained tokenizer, offline, or a clear error saying how to get it."""
    name = spec.profile.tokenizer.name_or_path
    found = cached_tokenizer_file(name)
    if found is None:
        raise ZagreusError(
            f"tokenizer {name!r} (configs/profiles/{spec.profile.name}.yaml tokenizer.name_or_path) cannot be "
            f"loaded offline: it is not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) nor a local "
            f"folder with a tokenizer.json. Pre-fill the cache on a machine with network access (the repo is "
            f"gated: accept its licence, then `huggingface-cli login` and `huggingface-cli download {name} "
            f"{' '.join(HUB_TOKENIZER_FILES)}`) and point HF_HOME at that cache, "
            f"or run the embedded profile instead (--profile smoke)")
    return found


def train_bpe(texts: Iterable[str], vocab_size: int, folder: str | os.PathLike, *, model_max_length: int = 4096):
    """Train a byte-level BPE and save it as a transformers tokenizer folder; returns the tokenizer.

    Special tokens: ``SPECIAL_TOKENS`` at ids 0..4 (bos, eos, ChatML, pad); reserved tokens fill the
    vocabulary up to exactly ``vocab_size`` when the text has too few merges. Like Llama-3, encoding
    with special tokens prepends ``<|begin_of_text|>``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < len(SPECIAL_TOKENS) + 256:
        raise ZagreusError(f"tokenizer.vocab_size {vocab_size} is too small for a byte-level BPE "
                           f"(256 bytes + {len(SPECIAL_TOKENS)} special tokens at least)")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    missing = vocab_size - tok.get_vocab_size()
    if missing > 0:
        tok.add_special_tokens([f"<|reserved_special_token_{i}|>" for i in range(missing)])
    for i, t in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(t) == i, (t, tok.token_to_id(t))
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, 0)]),
    ])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   model_max_length=model_max_length,
                                   additional_special_tokens=[IM_START, IM_END])
    fast.chat_template = CHATML_TEMPLATE
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(folder))
    return fast


_FRAMED: dict[tuple, Any] = {}


def framed_tokenizer(tokenizer_file: str | os.PathLike, bos: str = BOS, eos: str = EOS):
    """The ``tokenizers.Tokenizer`` of ``tokenizer_file`` framing each text as ``<bos> text <eos>``,
    loaded once per process (and inherited, not reloaded, by forked datatrove workers)."""
    from tokenizers import Tokenizer
    from tokenizers.processors import TemplateProcessing

    st = Path(tokenizer_file).stat()
    key = (str(tokenizer_file), st.st_mtime_ns, st.st_size, bos, eos)
    if key not in _FRAMED:
        tok = Tokenizer.from_file(str(tokenizer_file))
        ids = {t: tok.token_to_id(t) for t in (bos, eos)}
        if None in ids.values():
            raise ZagreusError(f"{tokenizer_file} has no {[t for t, i in ids.items() if i is None]} token; "
                               "use a Llama-3-style tokenizer or retrain the smoke tokenizer")
        tok.post_processor = TemplateProcessing(single=f"{bos} $A {eos}", pair=None, special_tokens=list(ids.items()))
        _FRAMED[key] = tok
    return _FRAMED[key]
