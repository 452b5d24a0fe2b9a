"""What a trained ablation model is measured on, all over the held-out documents (:mod:`.heldout`):

- held-out bits per byte and next-token top-1 accuracy at the training length: each document
  alone, in windows of at most ``sequence_length`` predicted tokens (a document starts at its BOS),
  over the first ``tokens`` of the documents in a fixed shuffled order (a sample of every source);
- the long-context probe: the held-out documents (shuffled, framing kept) as one stream, the same
  first ``windows x max(lengths) x sequence_length + 1`` tokens cut into windows of each length
  (1x, 2x, 4x the training length), so every length predicts the same tokens and only the context
  the model sees differs. Plain causal attention with positions 0..L-1, for every variant.

Bits are counted on text tokens only (a target whose bytes are zero, BOS, EOS and other special
tokens, counts neither bits nor bytes); a token's bytes are its byte-level BPE string's length.
"""

from __future__ import annotations

import math

import numpy as np

from ...pipeline.errors import ZagreusError
from ...results.estimates import bits_per_byte
from .stats import probe_name

BATCH_TOKENS = 4096  # tokens per forward pass


def token_bytes(tokenizer, vocab_size: int) -> np.ndarray:
    """Bytes of UTF-8 text each token id stands for (0 for special and added tokens, and for ids
    the tokenizer does not have)."""
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = set(ByteLevel.alphabet())
    special = set(getattr(tokenizer, "added_tokens_decoder", {}) or {}) | set(tokenizer.all_special_ids)
    table = np.zeros(vocab_size, dtype=np.int64)
    for i in range(min(vocab_size, len(tokenizer))):
        if i in special:
            continue
        piece = tokenizer.convert_ids_to_tokens(i)
        if piece is None:
            continue
        table[i] = len(piece) if all(c in alphabet for c in piece) else \
            len(tokenizer.convert_tokens_to_string([piece]).encode("utf-8"))
    return table


def _score(model, windows: list[np.ndarray], table: np.ndarray) -> tuple[float, int, int, int]:
    """(nats, bytes, correct, predicted) over text-token targets of ``windows`` (each its own context)."""
    import torch
    import torch.nn.functional as F

    nats, nbytes, correct, predicted = 0.0, 0, 0, 0
    order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
    i = 0
    while i < len(order):
        group = [order[i]]
        while i + len(group) < len(order) and len(windows[order[i + len(group)]]) * (len(group) + 1) <= BATCH_TOKENS:
            group.append(order[i + len(group)])
        i += len(group)
        width = max(len(windows[g]) for g in group) - 1
        ids = np.zeros((len(group), width + 1), dtype=np.int64)
        valid = np.zeros((len(group), width), dtype=bool)
        for r, g in enumerate(group):
            w = windows[g]
            ids[r, :len(w)] = w
            valid[r, :len(w) - 1] = True  # right padding: causal attention never reads it
        targets = ids[:, 1:]
        valid &= table[targets] > 0
        with torch.inference_mode():
            logits = model(input_ids=torch.from_numpy(ids[:, :-1])).logits.float()
            t = torch.from_numpy(targets)
            nll = F.cross_entropy(logits.transpose(1, 2), t, reduction="none").numpy()
            hit = (logits.argmax(-1) == t).numpy()
        nats += float(nll[valid].sum())
        nbytes += int(table[targets][valid].sum())
        correct += int(hit[valid].sum())
        predicted += int(valid.sum())
    return nats, nbytes, correct, predicted


bpb = bits_per_byte  # nats summed over nbytes bytes -> bits per byte


def document_windows(documents: list[np.ndarray], seq_len: int) -> list[np.ndarray]:
    """Each document in windows of ``seq_len + 1`` tokens (``seq_len`` predictions), one token of overlap."""
    out = []
    for doc in documents:
        for start in range(0, max(1, len(doc) - 1), seq_len):
            w = doc[start:start + seq_len + 1]
            if len(w) >= 2:
                out.append(w)
    return out


def shuffled(documents: list[np.ndarray], seed: int = 0) -> list[np.ndarray]:
    return [documents[i] for i in np.random.RandomState(seed).permutation(len(documents))]


def first_tokens(documents: list[np.ndarray], tokens: int) -> list[np.ndarray]:
    """The documents in order until ``tokens`` tokens (the last one cut)."""
    out, left = [], tokens
    for doc in documents:
        if left < 2:
            break
        out.append(doc[:left])
        left -= len(out[-1])
    return out


def probe_stream(documents: list[np.ndarray], seq_len: int, windows: int, lengths: list[int]) -> np.ndarray:
    """The long-context probe's tokens: the documents (shuffled) as one stream, cut to
    ``windows x max(lengths) x seq_len + 1`` tokens (fewer windows when the held-out slice is short)."""
    stream = np.concatenate(documents)
    span = max(lengths) * seq_len
    n = min(windows, (len(stream) - 1) // span)
    if n < 1:
        raise ZagreusError(f"the held-out slice has {len(stream)} tokens, fewer than one probe window of "
                           f"{span + 1}; raise heldout_fraction or lower probe_lengths in the ablation plan")
    return stream[:n * span + 1]


def evaluate(model, documents: list[np.ndarray], table: np.ndarray, seq_len: int, lengths: list[int],
             windows: int, tokens: int) -> dict:
    """The metrics of one trained model (see the module docstring)."""
    model.eval()
    documents = shuffled(documents)
    sample = document_windows(first_tokens(documents, tokens), seq_len)
    nats, nbytes, correct, predicted = _score(model, sample, table)
    out = {"heldout_bpb": bpb(nats, nbytes), "heldout_accuracy": correct / predicted if predicted else math.nan,
           "heldout_predicted_tokens": predicted, "heldout_bytes": nbytes}
    stream = probe_stream(documents, seq_len, windows, lengths)
    for k in lengths:
        span = k * seq_len
        cuts = [stream[s:s + span + 1] for s in range(0, len(stream) - 1, span)]
        n, b, _, _ = _score(model, cuts, table)
        out[probe_name(k)] = bpb(n, b)
    out["probe_tokens"] = int(len(stream) - 1)
    return out
