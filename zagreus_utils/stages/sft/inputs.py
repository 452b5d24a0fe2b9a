"""The SFT stage's inputs, checked before anything runs: the conversations, the base model, the template.

Each check refuses with one line naming the file (and line) and the fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ...pipeline.errors import ZagreusError
from .config import FIELD_MESSAGES, ROLES
from .validate import apply_offline_env

@dataclass
class DatasetStats:
    path: str
    rows: int
    messages: int
    assistant_turns: int
    by_language: dict[str, int]
    roles: dict[str, int]
    first: list[dict]  # the first conversation (for the label-mask example)


def check_dataset(path: str | Path, field_messages: str = FIELD_MESSAGES, roles: tuple[str, ...] = ROLES) -> DatasetStats:
    """Refuse SFT data axolotl would choke on or train nothing from; name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ZagreusError(f"SFT data {path} does not exist; the data stage writes it "
                           f"(zagreus run --stages data) or point datasets[0].path at your own file")
    rows = messages = assistant = 0
    by_lang: dict[str, int] = {}
    role_counts: dict[str, int] = {}
    first: list[dict] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ZagreusError(f"{where}: not valid JSON ({exc.msg}); each line must be one JSON object") from None
            if not isinstance(row, dict):
                raise ZagreusError(f"{where}: a row must be a JSON object with a {field_messages!r} list, "
                                   f"got {type(row).__name__}")
            if field_messages not in row:
                raise ZagreusError(f"{where}: no {field_messages!r} field (the config's field_messages); the row "
                                   f"has {sorted(row) or 'no keys'}. Each row needs "
                                   f'{{"{field_messages}": [{{"role": ..., "content": ...}}, ...]}}')
            conv = row[field_messages]
            if not isinstance(conv, list) or not conv:
                raise ZagreusError(f"{where}: {field_messages!r} must be a non-empty list of messages, got {conv!r:.80}")
            for k, msg in enumerate(conv):
                if not isinstance(msg, dict) or "role" not in msg or "content" not in msg:
                    raise ZagreusError(f"{where}: message {k} of {field_messages!r} must be an object with "
                                       f"'role' and 'content', got {msg!r:.80}")
                if msg["role"] not in roles:
                    raise ZagreusError(f"{where}: message {k} has unknown role {msg['role']!r}; valid roles: "
                                       f"{', '.join(roles)}")
                if not isinstance(msg["content"], str):
                    raise ZagreusError(f"{where}: message {k} content must be a string, got "
                                       f"{type(msg['content']).__name__}")
                role_counts[msg["role"]] = role_counts.get(msg["role"], 0) + 1
            messages += len(conv)
            assistant += sum(m["role"] == "assistant" for m in conv)
            rows += 1
            lang = str(row.get("lang", "?"))
            by_lang[lang] = by_lang.get(lang, 0) + 1
            if not first:
                first = conv
    if rows == 0:
        raise ZagreusError(f"SFT data {path} is empty: no conversations to train on. Rerun the data stage "
                           "(zagreus run --stages data --force) or fill the file")
    if assistant == 0:
        raise ZagreusError(f"SFT data {path}: no conversation has an assistant turn, so with "
                           "roles_to_train: [assistant] nothing would be trained")
    return DatasetStats(str(path), rows, messages, assistant, by_lang, role_counts, first)


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")  # any one: a tokenizer to load


def check_base_model(folder: str | Path):
    """The base model folder has a config and a tokenizer that loads; returns the tokenizer."""
    folder = Path(folder)
    fix = "the conversion stage writes it: zagreus run --stages conversion"
    if not folder.is_dir():
        raise ZagreusError(f"base model folder {folder} does not exist; {fix}")
    if not (folder / "config.json").is_file():
        raise ZagreusError(f"base model folder {folder} has no config.json: not a Hugging Face model; {fix}")
    if not any((folder / f).is_file() for f in TOKENIZER_FILES):
        raise ZagreusError(f"base model folder {folder} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}); "
                           f"axolotl loads the tokenizer from the base model. Attach it ({fix}, or "
                           "`zagreus convert nanotron-to-hf --tokenizer ...`)")
    apply_offline_env()
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except Exception as exc:  # noqa: BLE001 (any loading failure is the folder's)
        raise ZagreusError(f"the tokenizer in {folder} does not load: {type(exc).__name__}: {exc}") from None


def check_template(template: str, tokenizer, conversation: list[dict], eos_token: str | None = None) -> str:
    """Render one conversation through ``template``; refuse a template that fails or drops content."""
    try:
        text = tokenizer.apply_chat_template(conversation, chat_template=template, tokenize=False)
        prompt = tokenizer.apply_chat_template(conversation[:1], chat_template=template, tokenize=False,
                                               add_generation_prompt=True)
    except Exception as exc:  # jinja2 TemplateSyntaxError/UndefinedError, ValueError...
        raise ZagreusError(f"the chat template (chat_template_jinja) does not render: {type(exc).__name__}: "
                           f"{exc}. Fix the template in the SFT config") from None
    if not isinstance(text, str) or not text.strip():
        raise ZagreusError("the chat template (chat_template_jinja) renders an empty string; it must write "
                           "every message")
    missing = [m["role"] for m in conversation if m["content"] and m["content"] not in text]
    if missing:
        raise ZagreusError(f"the chat template (chat_template_jinja) drops the content of the {missing[0]!r} "
                           "message(s); it must write every message's content")
    if eos_token and eos_token not in text:
        raise ZagreusError(f"the chat template never writes the EOS override {eos_token!r} (special_tokens."
                           "eos_token): with train_on_eos: turn no turn end would be trained")
    if prompt == tokenizer.apply_chat_template(conversation[:1], chat_template=template, tokenize=False):
        raise ZagreusError("the chat template ignores add_generation_prompt: generation would not start an "
                           "assistant turn")
    return text

