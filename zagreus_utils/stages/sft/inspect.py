"""Reading an SFT run: the tokens it trains on, its loss curves, and chats through the chat template.

:func:`label_mask_example` tokenizes one conversation with axolotl's own ``chat_template`` prompt
strategy (the labels it trains on), :func:`loss_curves` reads the trainer state,
:func:`chat`/:func:`compare_chats` generate through the chat template, :func:`write_outputs` writes
the stage's tables and figure for the HTML report.
"""

from __future__ import annotations

import ast
import html
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from ...pipeline.errors import ZagreusError
from ...pipeline.outputs import StageOutputs
from ...pipeline.spec import ENGLISH
from .axolotl import SftPlan
from .config import CHATML_TEMPLATE, FIELD_MESSAGES
from .inputs import check_dataset
from .validate import _cpu_caps, _plain, apply_offline_env

def label_mask_example(cfg: dict, tokenizer=None, conversation: list[dict] | None = None):
    """One conversation tokenized by axolotl's own ``chat_template`` strategy (what it trains on).

    Returns a DataFrame: position, token_id, token (decoded), label, trained (label != -100).
    ``tokenizer``: default axolotl's own loader on the config (EOS/pad overrides applied).
    """
    apply_offline_env()
    from axolotl.prompt_strategies.chat_template import StrategyLoader
    from axolotl.utils.config import normalize_config, validate_config
    from axolotl.utils.dict import DictDefault

    caps = _cpu_caps()
    local = _plain(cfg)
    for key in ("fsdp_config", "flash_attention"):  # GPU-only settings play no part in tokenizing
        local.pop(key, None)
    acfg = validate_config(DictDefault(local), capabilities=caps[0], env_capabilities=caps[1])
    normalize_config(acfg)
    if tokenizer is None:
        from axolotl.loaders import load_tokenizer

        tokenizer = load_tokenizer(acfg)
    if conversation is None:
        conversation = check_dataset(cfg["datasets"][0]["path"]).first
    field_messages = cfg["datasets"][0].get("field_messages", "messages")
    strategy = StrategyLoader()(tokenizer, acfg, acfg.datasets[0])
    out = strategy.tokenize_prompt({field_messages: conversation})
    ids, labels = list(out["input_ids"]), list(out["labels"])
    return pd.DataFrame({"position": range(len(ids)), "token_id": ids,
                         "token": [tokenizer.decode([i]) for i in ids], "label": labels,
                         "trained": [lab != -100 for lab in labels]})


def trained_spans(mask_df) -> list[str]:
    """The decoded text of each run of consecutive trained tokens."""
    spans, current = [], []
    for token, trained in zip(mask_df["token"], mask_df["trained"]):
        if trained:
            current.append(token)
        elif current:
            spans.append("".join(current))
            current = []
    if current:
        spans.append("".join(current))
    return spans


def label_mask_html(mask_df) -> str:
    """The example as HTML: trained tokens highlighted, token boundaries visible on hover."""
    parts = ['<div style="font-family:monospace;white-space:pre-wrap;line-height:1.7;border:1px solid #ccc;'
             'padding:8px">']
    for pos, tid, token, trained in zip(mask_df["position"], mask_df["token_id"], mask_df["token"],
                                        mask_df["trained"]):
        style = ("background:#b7e4c7;border-bottom:2px solid #2d6a4f" if trained
                 else "color:#6c757d;background:#f1f3f5")
        parts.append(f'<span title="#{pos} id {tid}{" trained" if trained else ""}" style="{style};'
                     f'margin-right:1px">{html.escape(token)}</span>')
    n, t = len(mask_df), int(mask_df["trained"].sum())
    parts.append(f'</div><p style="font-size:90%">{t} of {n} tokens trained (green: label = token; '
                 'grey: label -100, ignored by the loss).</p>')
    return "".join(parts)


def _latest_trainer_state(model_dir: Path) -> Path | None:
    candidates = [model_dir / "trainer_state.json"] + sorted(
        model_dir.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[-1]))
    found = [p for p in candidates if p.is_file()]
    return found[-1] if found else None


_LOG_DICT = re.compile(r"\{'(?:loss|eval_loss)'[^{}]*\}")


def loss_curves(model_dir: str | Path, train_log: str | Path | None = None):
    """Train and eval loss per step (DataFrame: step, epoch, split, loss, learning_rate).

    From the last checkpoint's ``trainer_state.json``; else parsed from the train log's metric lines.
    """
    rows = []
    state = _latest_trainer_state(Path(model_dir))
    if state is not None:
        for entry in json.loads(state.read_text())["log_history"]:
            for key, split in (("loss", "train"), ("eval_loss", "eval")):
                if key in entry:
                    rows.append({"step": entry.get("step"), "epoch": entry.get("epoch"), "split": split,
                                 "loss": float(entry[key]), "learning_rate": entry.get("learning_rate")})
    elif train_log is not None and Path(train_log).is_file():
        step = 0
        for match in _LOG_DICT.finditer(Path(train_log).read_text(encoding="utf-8", errors="replace")):
            entry = ast.literal_eval(match.group(0))
            split = "eval" if "eval_loss" in entry else "train"
            step += split == "train"
            rows.append({"step": step, "epoch": float(entry.get("epoch", "nan")), "split": split,
                         "loss": float(entry.get("loss", entry.get("eval_loss"))),
                         "learning_rate": float(entry["learning_rate"]) if "learning_rate" in entry else None})
    if not rows:
        raise ZagreusError(f"no loss history in {model_dir} (no trainer_state.json) or in {train_log}")
    return pd.DataFrame(rows, columns=["step", "epoch", "split", "loss", "learning_rate"])


def plot_loss(df, title: str = "SFT loss"):
    fig = Figure(figsize=(6.4, 3.6), layout="tight")
    ax = fig.subplots()
    for split, style in (("train", "-"), ("eval", "o--")):
        part = df[df["split"] == split]
        if len(part):
            ax.plot(part["step"], part["loss"], style, label=f"{split} loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (trained tokens)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


_MODELS: dict[tuple[str, int], tuple[Any, Any]] = {}


def _load(model_dir: str | Path):
    apply_offline_env()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = Path(model_dir)
    key = (str(model_dir.resolve()), (model_dir / "config.json").stat().st_mtime_ns)
    if key not in _MODELS:
        tok = AutoTokenizer.from_pretrained(str(model_dir))
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
        model.eval()
        if len(_MODELS) >= 4:
            _MODELS.clear()
        _MODELS[key] = (tok, model)
    return _MODELS[key]


def chat(model_dir: str | Path, messages: list[dict], max_new_tokens: int = 48,
         chat_template: str | None = None) -> str:
    """Greedy generation through the chat template: the model's own, else ``chat_template``
    (default: the report's ChatML template, for a base model that has none)."""
    import torch

    tok, model = _load(model_dir)
    template = tok.chat_template or chat_template or CHATML_TEMPLATE
    prompt = tok.apply_chat_template(messages, chat_template=template, tokenize=False, add_generation_prompt=True)
    enc = tok(prompt, return_tensors="pt", add_special_tokens=False)
    stops = [i for i in {tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")}
             if isinstance(i, int) and i >= 0 and i != tok.unk_token_id]
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stops or None,
                             pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else (stops or [0])[0])
    return tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def sample_prompts(dataset: str | Path, language: str, per_language: int = 2) -> list[tuple[str, list[dict]]]:
    """``per_language`` prompts (system + first user message) in English and in ``language``."""
    picked: dict[str, list] = {ENGLISH[0]: [], language: []}
    with open(dataset, encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            lang = row.get("lang")
            if lang in picked and len(picked[lang]) < per_language:
                conv = row[FIELD_MESSAGES]
                head = [m for m in conv[: next(i for i, m in enumerate(conv) if m["role"] == "user") + 1]]
                picked[lang].append(head)
            if all(len(v) >= per_language for v in picked.values()):
                break
    return [(lang, msgs) for lang in (ENGLISH[0], language) for msgs in picked[lang]]


def compare_chats(base_dir: str | Path, sft_dir: str | Path, prompts: list[tuple[str, list[dict]]],
                  max_new_tokens: int = 48):
    """Base vs SFT answers to the same prompts through the chat template (DataFrame)."""
    rows = []
    for lang, messages in prompts:
        rows.append({"lang": lang, "prompt": messages[-1]["content"],
                     "base": chat(base_dir, messages, max_new_tokens),
                     "sft": chat(sft_dir, messages, max_new_tokens)})
    return pd.DataFrame(rows, columns=["lang", "prompt", "base", "sft"])


def write_outputs(plan: SftPlan, *, differences_df, findings_df, curves=None, figure=None, chats=None,
                  notes: list[str] = ()) -> Path:
    """The stage's figures and tables for the HTML report (``<out>/outputs.json``)."""
    out = StageOutputs(plan.out_dir)
    run = f"{plan.profile}/{plan.language}"
    if figure is not None:
        out.figure("sft_loss", figure, f"SFT loss ({run})",
                   "Train and eval loss per optimizer step of the axolotl SFT run (trained tokens only).")
    if curves is not None:
        out.table("sft_loss", curves, f"SFT loss history ({run})")
    if chats is not None:
        out.table("sft_chats", chats, f"Base vs SFT answers through the chat template ({run})")
    out.table("sft_config_differences", differences_df, f"SFT config: differences from the report's ({run})")
    out.table("sft_findings", findings_df, "SFT config: what axolotl's validation lets through (the report's config)")
    out.note(f"SFT {run}: {plan.dataset.rows} conversations {plan.dataset.by_language}; config "
             f"{plan.config_path.name}")
    for text in notes:
        out.note(text)
    return out.write()

