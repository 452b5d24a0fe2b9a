"""Held-out scores of a model along training: bits per byte and next-token top-1 accuracy on
held-out documents, with standard errors over held-out batches.

Each document is framed as in training (``<bos> text <eos>``, the stage-02 tokenizer) and cut to
the model's sequence length; its text tokens are scored given everything before them (the
``<bos>`` included, the ``<eos>`` not scored). Bits per byte: the summed negative log-likelihood
of those tokens, in bits, over the UTF-8 bytes of the text they cover. Accuracy: the share of those
tokens that are the model's top-1 prediction. The documents are split into ``GROUPS`` held-out
batches in file order; a score is pooled over all documents and its standard error is the
standard deviation of the per-batch scores over the square root of their number (per-batch values
are kept, so that differences between two models are paired batch by batch).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...pipeline.errors import ZagreusError
from ...results.estimates import bits_per_byte, mean_se
from ..tokenizer import framed_tokenizer

GROUPS = 10  # held-out batches: the standard errors are over these
MAX_DOCS = 60  # the first documents of each held-out file (enough for the stage to stay within minutes)


@dataclass
class Doc:
    ids: torch.Tensor  # <bos> + text tokens (cut to the sequence length + 1)
    n_bytes: int       # UTF-8 bytes of the text the scored tokens cover


def load_docs(path: Path, tokenizer_file: Path, seq_len: int, max_docs: int = MAX_DOCS) -> list[Doc]:
    """The first ``max_docs`` held-out documents of ``path`` (JSON lines with ``text``) as the model reads them."""
    if not Path(path).is_file():
        raise ZagreusError(f"held-out text {path} is missing; rerun the stage that writes it (zagreus run --stages data)")
    tok = framed_tokenizer(tokenizer_file)
    docs = []
    for line in Path(path).read_text(encoding="utf-8").splitlines()[:max_docs]:
        text = json.loads(line)["text"]
        enc = tok.encode(text)
        ids = enc.ids[:-1][: seq_len + 1]  # drop <eos>; keep at most seq_len targets
        end = enc.offsets[len(ids) - 1][1]  # where the last kept token ends in the text
        docs.append(Doc(torch.tensor(ids), len(text[:end].encode("utf-8"))))
    if len(docs) < GROUPS:
        raise ZagreusError(f"{path} holds {len(docs)} documents; the scores need at least {GROUPS}")
    return docs


@torch.no_grad()
def doc_scores(model, docs: list[Doc], batch_size: int = 8) -> np.ndarray:
    """Per document: (nll in nats, tokens correct, tokens scored, bytes)."""
    model.eval()
    out = np.zeros((len(docs), 4))
    order = sorted(range(len(docs)), key=lambda i: len(docs[i].ids))  # batches of similar lengths: little padding
    for start in range(0, len(docs), batch_size):
        rows = order[start:start + batch_size]
        chunk = [docs[i] for i in rows]
        width = max(len(d.ids) for d in chunk)
        ids = torch.zeros((len(chunk), width), dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for r, d in enumerate(chunk):
            ids[r, :len(d.ids)] = d.ids
            mask[r, :len(d.ids)] = 1
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1].float()
        targets, valid = ids[:, 1:], mask[:, 1:].bool()
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
        hit = logits.argmax(-1) == targets
        for r, d in enumerate(chunk):
            v = valid[r]
            out[rows[r]] = (float(nll[r][v].sum()), float(hit[r][v].sum()), float(v.sum()), d.n_bytes)
    return out


def summarise(per_doc: np.ndarray, groups: int = GROUPS) -> dict:
    """Pooled bits per byte and accuracy, their per-batch values and standard errors."""
    parts = np.array_split(per_doc, groups)
    bpb_g = [bits_per_byte(p[:, 0].sum(), p[:, 3].sum()) for p in parts]
    acc_g = [p[:, 1].sum() / p[:, 2].sum() for p in parts]
    total = per_doc.sum(axis=0)
    return {"bpb": float(bits_per_byte(total[0], total[3])), "bpb_se": mean_se(bpb_g)[1],
            "acc": float(total[1] / total[2]), "acc_se": mean_se(acc_g)[1],
            "tokens": int(total[2]), "bytes": int(total[3]), "documents": len(per_doc),
            "bpb_groups": [float(x) for x in bpb_g], "acc_groups": [float(x) for x in acc_g]}


def paired_se(a: list[float], b: list[float]) -> float:
    """Standard error of mean(a - b) over the held-out batches both were scored on."""
    return mean_se(np.asarray(a) - np.asarray(b))[1]
