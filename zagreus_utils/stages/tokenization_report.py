"""Stage 02's measurements, tables and figures: tokenizer fertility per language, and text in vs
token files out against the report's storage rules (1 GB of text -> ~3 GB of tokens; 3-5 TB for ~1T)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from ..results.formatting import integer as fmt_int, size_bytes as fmt_bytes, tokens as fmt_tokens
from .display import PALETTE, finish_figure, styled
from .tokenizer import LLAMA_TOKENIZER

REPORT_TEXT_TO_TOKENS = 3.0  # "for every 1 GB of text, approximately 3 GB of tokenized outputs"
REPORT_DISK_TB = (3.0, 5.0)  # "at least 3 to 5 terabytes of disk space" for ~1T tokens
PLAN_TOKENS = 1_000_000_000_000


def fertility(tokenizers: dict[str, Any], texts_by_group: dict[str, list[str]]) -> pd.DataFrame:
    """Tokens per word and bytes per token, per tokenizer and language group (no special tokens)."""
    rows = []
    for tname, tok in tokenizers.items():
        for group, texts in texts_by_group.items():
            if not texts:
                continue
            enc = tok.encode_batch(texts, add_special_tokens=False)
            tokens = sum(len(e.ids) for e in enc)
            words = sum(len(t.split()) for t in texts)
            nbytes = sum(len(t.encode("utf-8")) for t in texts)
            rows.append({"tokenizer": tname, "language": group, "documents": len(texts), "words": words,
                         "bytes": nbytes, "tokens": tokens,
                         "tokens_per_word": round(tokens / words, 3) if words else None,
                         "bytes_per_token": round(nbytes / tokens, 3) if tokens else None})
    return pd.DataFrame(rows)


def storage_table(per_source: pd.DataFrame, token_size: int, bytes_per_token: float | None,
                  tokenizer_label: str, llama_bytes_per_token: float | None) -> pd.DataFrame:
    """Text in vs tokens out, and what ~1T tokens need on disk (this tokenizer; Llama-3.2's 4-byte ids)."""
    text_in = int(per_source.text_bytes.sum())
    out = int(per_source.token_bytes.sum())
    tokens = int(per_source.tokens.sum())
    index_per_token = (int(per_source.index_bytes.sum()) / tokens) if tokens else 0.0
    rows = [{"what": "this run: text in -> token files out", "tokenizer": tokenizer_label,
             "text_bytes": text_in, "token_bytes": out, "tokens": tokens,
             "out_per_in": round(out / text_in, 3) if text_in else None, "report_rule": REPORT_TEXT_TO_TOKENS}]
    for label, size, bpt in ((tokenizer_label, token_size, bytes_per_token),
                             (f"{LLAMA_TOKENIZER} (report)", 4, llama_bytes_per_token)):
        text = PLAN_TOKENS * bpt if bpt else None
        tok_bytes = PLAN_TOKENS * (size + index_per_token)
        rows.append({"what": "plan: ~1T tokens", "tokenizer": label, "text_bytes": text, "token_bytes": tok_bytes,
                     "tokens": PLAN_TOKENS, "out_per_in": round(tok_bytes / text, 3) if text else None,
                     "report_rule": REPORT_TEXT_TO_TOKENS})
    return pd.DataFrame(rows)


def style_per_source(df: pd.DataFrame):
    return (styled(df)
            .format({c: fmt_int for c in ("documents", "tokens", "text_bytes", "token_bytes", "index_bytes",
                                            "samples", "max_token_id")})
            .set_caption("token_bytes: .ds + .index + .metadata of the merged folder; samples: "
                         "sequence_length + 1 windows DatatroveFolderDataset serves."))


def style_fertility(df: pd.DataFrame):
    return (styled(df).format({c: fmt_int for c in ("documents", "words", "bytes", "tokens")})
            .format({"tokens_per_word": "{:.2f}", "bytes_per_token": "{:.2f}"})
            .set_caption("Words: whitespace-separated; special tokens not counted."))

def style_storage(df: pd.DataFrame):
    return (styled(df)
            .format({"text_bytes": fmt_bytes, "token_bytes": fmt_bytes, "tokens": fmt_tokens,
                     "out_per_in": lambda v: "—" if v is None or pd.isna(v) else f"{v:.2f}x",
                     "report_rule": lambda v: f"{v:.0f}x"})
            .set_caption("Report: 1 GB of text -> ~3 GB tokenized; ~1T tokens need 3-5 TB. Plan rows: text needed "
                         "= 1T x bytes per token; token files = 1T x (id bytes + index bytes per token)."))


def fertility_figure(fert: pd.DataFrame):
    fig = Figure(figsize=(10, 3.8))
    left, right = fig.subplots(1, 2)
    langs = list(dict.fromkeys(fert.language))
    toks = list(dict.fromkeys(fert.tokenizer))
    width = 0.8 / max(1, len(toks))
    for k, tname in enumerate(toks):
        for ax, col, fmt in ((left, "tokens_per_word", "{:.2f}"), (right, "bytes_per_token", "{:.2f}")):
            sub = fert[fert.tokenizer == tname].set_index("language")
            xs = [i - 0.4 + width * (k + 0.5) for i, lang in enumerate(langs) if lang in sub.index]
            ys = [float(sub.loc[lang, col]) for lang in langs if lang in sub.index]
            bars = ax.bar(xs, ys, width=width * 0.9, color=PALETTE[k % len(PALETTE)], label=tname)
            for b, y in zip(bars, ys):
                ax.text(b.get_x() + b.get_width() / 2, y, fmt.format(y), ha="center", va="bottom", fontsize=8)
    for ax, label, title in ((left, "tokens per word", "Fertility (lower: fewer tokens per word)"),
                             (right, "bytes per token", "Compression (higher: more text per token)")):
        ax.set_xticks(range(len(langs)))
        ax.set_xticklabels(langs)
        ax.set_ylabel(label)
        ax.set_title(title, fontsize=11)
        ax.set_ylim(0, ax.get_ylim()[1] * 1.25)
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(fontsize=8, frameon=False, loc="upper left")
    fig.tight_layout()
    return fig


def storage_figure(per_source: pd.DataFrame, storage: pd.DataFrame):
    fig = Figure(figsize=(10, 4))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.4, 1]})
    x = range(len(per_source))
    text_mb = per_source.text_bytes / 1e6
    tok_mb = per_source.token_bytes / 1e6
    left.bar([i - 0.2 for i in x], text_mb, width=0.4, color=PALETTE[0], label="text in (clean)")
    left.bar([i + 0.2 for i in x], tok_mb, width=0.4, color=PALETTE[1], label="token files out")
    left.scatter([i + 0.2 for i in x], text_mb * REPORT_TEXT_TO_TOKENS, marker="_", s=500, color="black",
                 zorder=3, label="report's rule: 3 x text")
    for i, (t, n) in enumerate(zip(tok_mb, per_source.tokens)):
        left.text(i + 0.2, t, f"{n / 1e3:,.0f}k tok", ha="center", va="bottom", fontsize=7.5)
    left.set_xticks(list(x))
    left.set_xticklabels(per_source.source, fontsize=9)
    left.set_ylabel("MB")
    left.set_ylim(0, max(list(tok_mb) + list(text_mb * REPORT_TEXT_TO_TOKENS)) * 1.2)
    left.set_title("This run: text in vs token files out", fontsize=11)
    left.legend(fontsize=8, frameon=False, loc="upper right")

    plan = storage[storage.what.str.startswith("plan")].reset_index(drop=True)
    labels, values, colors = [], [], []
    for _, r in plan.iterrows():
        short = r.tokenizer if len(r.tokenizer) <= 22 else r.tokenizer.split("/")[-1]
        labels.append(f"token files\n{short}")
        values.append(r.token_bytes / 1e12)
        colors.append(PALETTE[1])
        if r.text_bytes is not None and not pd.isna(r.text_bytes):
            labels.append(f"text needed\n{short}")
            values.append(r.text_bytes / 1e12)
            colors.append(PALETTE[0])
    bars = right.bar(range(len(values)), values, color=colors, width=0.6, zorder=2)
    for b, v in zip(bars, values):
        right.text(b.get_x() + b.get_width() / 2, v, f"{v:.1f} TB", ha="center", va="bottom", fontsize=8)
    right.axhspan(*REPORT_DISK_TB, color="#dddddd", zorder=0, label="report: 3-5 TB for ~1T tokens")
    right.set_xticks(range(len(values)))
    right.set_xticklabels(labels, fontsize=7.5)
    right.set_ylabel("TB for ~1T tokens")
    right.set_ylim(0, max(values + [REPORT_DISK_TB[1]]) * 1.2)
    right.set_title("Extrapolated to the ~1T-token plan", fontsize=11)
    right.legend(fontsize=8, frameon=False, loc="upper left")
    return finish_figure(fig, left, right)
