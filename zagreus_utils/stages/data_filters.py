"""Stage 01's filters: small picklable pieces of its datatrove pipelines (word tokenizer,
filter rules, shard tagging) and the MinHash settings."""

from __future__ import annotations

import re
from dataclasses import dataclass

from datatrove.pipeline.dedup.minhash import MinhashConfig
from datatrove.utils.hashing import HashConfig
from datatrove.utils.word_tokenizers import WordTokenizer

class RegexWordTokenizer(WordTokenizer):
    """Words are runs of letters/digits (``\\w+``): no spacy/nltk models needed, any Latin language."""

    _word = re.compile(r"\w+")
    _sentence_end = re.compile(r"(?<=[.!?])\s+")

    def __init__(self):
        super().__init__("regex")

    def word_tokenize(self, text: str) -> list[str]:
        return self._word.findall(text)

    def sent_tokenize(self, text: str) -> list[str]:
        return [s for s in self._sentence_end.split(text) if s.strip()]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        spans, start = [], 0
        for sentence in self.sent_tokenize(text):
            start = text.index(sentence, start)
            spans.append((start, start + len(sentence)))
            start += len(sentence)
        return spans


@dataclass(frozen=True)
class MinChars:
    """Keep documents with at least ``n`` characters (after stripping surrounding blanks)."""

    n: int

    def __call__(self, doc) -> bool | tuple[bool, str]:
        return True if len(doc.text.strip()) >= self.n else (False, f"fewer than {self.n} characters")


@dataclass(frozen=True)
class ProseQuality:
    """Gopher's prose rules: >= ``min_alpha_words`` of the words hold a letter, and a mean word
    length within ``word_length`` (drops tables of numbers, symbol soup, concatenated junk)."""

    min_alpha_words: float = 0.8
    word_length: tuple[float, float] = (3.0, 10.0)

    def __call__(self, doc) -> bool | tuple[bool, str]:
        words = doc.text.split()
        if not words:
            return False, "no words"
        alpha = sum(any(ch.isalpha() for ch in w) for w in words) / len(words)
        if alpha < self.min_alpha_words:
            return False, f"only {alpha:.0%} of words hold a letter (< {self.min_alpha_words:.0%})"
        mean = sum(len(w) for w in words) / len(words)
        low, high = self.word_length
        if not low <= mean <= high:
            return False, f"mean word length {mean:.1f} outside [{low:g}, {high:g}]"
        return True


@dataclass(frozen=True)
class CodeQuality:
    """StarCoder-style code rules: no line over ``max_line`` characters, mean line length at most
    ``mean_line``, and at least ``min_alnum`` of the characters alphanumeric (drops minified or
    generated files and embedded data blobs)."""

    max_line: int = 1000
    mean_line: float = 100.0
    min_alnum: float = 0.25

    def __call__(self, doc) -> bool | tuple[bool, str]:
        text = doc.text
        lines = text.splitlines() or [""]
        longest = max(len(line) for line in lines)
        if longest > self.max_line:
            return False, f"a line of {longest} characters (> {self.max_line})"
        mean = sum(len(line) for line in lines) / len(lines)
        if mean > self.mean_line:
            return False, f"mean line length {mean:.0f} (> {self.mean_line:g})"
        alnum = sum(ch.isalnum() for ch in text) / max(1, len(text))
        if alnum < self.min_alnum:
            return False, f"only {alnum:.0%} alphanumeric characters (< {self.min_alnum:.0%})"
        return True


@dataclass(frozen=True)
class TagShards:
    """Pipeline step: tag each document with ``clean_shard`` = its position modulo ``n`` so that the
    writer spreads a task's output over ``n`` files (balanced tokenization tasks downstream)."""

    n: int

    def __call__(self, data, rank: int = 0, world_size: int = 1):
        for i, doc in enumerate(data):
            doc.metadata["clean_shard"] = i % self.n
            yield doc


def minhash_config(seed: int):
    # 14 buckets x 8 hashes over word 5-grams (datatrove's defaults: pairs above ~0.72 Jaccard
    # similarity are caught with high probability); sha1 hashes (xxhash 4.x rejects str input).
    return MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8, seed=seed,
                         hash_config=HashConfig(precision=64, hash_fc="sha1"))
