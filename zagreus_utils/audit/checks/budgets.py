"""Checks of sizes and budgets: parameter counts, token budgets, dataset sources."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..markdown import Document
from ...model.planning import parameter_counts
from ...pipeline.spec import language_names
from ...results.formatting import human, params as fmt_params
from .common import Finding, close, code_lines, document_arch, finding, get, size_tolerance, size_value, yaml_blocks
from .eval_models import _LANG, _MODEL_NAME, _name_size

_PROSE_SIZE = re.compile(r"(?i)(~|approximately|about|around|roughly|sub|under|below|less than)\s*"
                         r"(\d+(?:\.\d+)?)\s*(million|billion|M|B)\s*-?\s*param\w*")


def check_param_count(doc: Document) -> list[Finding]:
    """Sizes named in the text and in model names against the count from the architecture."""
    arch, config = document_arch(doc)
    if arch is None:
        return []
    counts = parameter_counts(arch)
    total, non_embedding = counts["total"], counts["non_embedding"]
    mentions: dict[str, list[tuple[int, str, str, str, str]]] = {}
    for i, line in enumerate(doc.lines, 1):
        for m in _PROSE_SIZE.finditer(line):
            number, unit = m.group(2), m.group(3)
            key = f"{number}{'B' if unit.lower() in ('b', 'billion') else 'M'}"
            mentions.setdefault(key, []).append((i, m.group(0), number, unit, m.group(1).lower()))
        for m in _MODEL_NAME.finditer(line):
            if size := _name_size(m.group(0)):
                mentions.setdefault(size[0] + size[1], []).append((i, m.group(0), size[0], size[1], "name"))
    out = []
    for key, found in mentions.items():
        line, quote, number, unit, kind = found[0]
        stated = size_value(number, unit)
        if kind in ("sub", "under", "below", "less than"):
            ok = total < stated
        else:
            ok = abs(total - stated) <= size_tolerance(number, unit)
        if ok:
            continue
        others = sorted({ln for ln, *_ in found[1:]} - {line})
        says = f"'{quote}'" + (f" (also on lines {', '.join(map(str, others))})" if others else "")
        ratio = max(total, stated) / min(total, stated)
        out.append(finding(doc, "param_count", line, says,
                           f"the architecture in the config (line {config.block.line}) has {total:,} parameters"
                           f" ({fmt_params(total)}; {fmt_params(non_embedding)} without embeddings)",
                           "error" if ratio > 2 else "warning"))
    return out


# The configured languages (configs/languages/*.yaml, and English) and German, which the report
# also names in its data plans.
_LANGS = {**{code: name.lower() for code, name in language_names().items()}, "deu": "german"}
_SPLIT_ITEM = re.compile(r"(\d+(?:\.\d+)?)\s*([BT])\s+("
                         + "|".join(name.title() for name in _LANGS.values()) + "|Code)", re.I)
_TOTAL = re.compile(r"(?i)(?:~|approximately|about|around|roughly)\s*(\d+(?:\.\d+)?|one|a)\s*"
                    r"(trillion|billion|[TB])\s+tokens")
_DATASET_URL = re.compile(r"https?://huggingface\.co/datasets/([^\s)\]]+)")
_COUNT = re.compile(r"\((\d+(?:\.\d+)?)\s*(billion|trillion|[BT])\s+tokens\)", re.I)


@dataclass
class Source:
    line: int
    name: str
    category: str
    tokens: float | None
    group: str


def listed_sources(doc: Document) -> list[Source]:
    """Dataset links in the text, with the token counts written next to them."""
    sources, group, in_code = [], "", code_lines(doc)
    for i, line in enumerate(doc.lines, 1):
        if i in in_code:
            continue
        if re.match(r"^\s*\*\*[^*]+\*\*:?\s*$", line):
            group = line.strip(" *:")
            continue
        m = _DATASET_URL.search(line)
        if not m or not line.lstrip().startswith(("*", "-")):
            continue
        name = m.group(1)
        lang = _LANG.search(name)
        if re.search(r"(?i)star ?coder|stack|code", name):
            category = "code"
        else:
            category = _LANGS.get(lang.group(1).lower(), "") if lang else "english"
        count = _COUNT.search(line)
        tokens = size_value(count.group(1), "b") * (1000 if count.group(2).lower()[0] == "t" else 1) if count else None
        sources.append(Source(i, name, category, tokens, group))
    return sources


def check_token_budget(doc: Document) -> list[Finding]:
    """A stated token split against the total, the listed sources and the training config."""
    out, in_code = [], code_lines(doc)
    total_stated = None
    for i, line in enumerate(doc.lines, 1):
        if i not in in_code and (m := _TOTAL.search(line)) and total_stated is None:
            number = {"one": "1", "a": "1"}.get(m.group(1).lower(), m.group(1))
            scale = 1e12 if m.group(2).lower()[0] == "t" else 1e9
            total_stated = (float(number) * scale, i, m.group(0))
    sources = listed_sources(doc)
    for i, line in enumerate(doc.lines, 1):
        items = _SPLIT_ITEM.findall(line) if i not in in_code else []
        if len(items) < 2:
            continue
        split = {cat.lower(): float(n) * (1e12 if u.upper() == "T" else 1e9) for n, u, cat in items}
        says = ", ".join(f"{n}{u} {cat}" for n, u, cat in items)
        said = {cat.lower(): f"{n}{u} {cat}" for n, u, cat in items}
        if total_stated and not close(sum(split.values()), total_stated[0], 0.05):
            out.append(finding(doc, "token_budget", i, says,
                               f"sums to {human(sum(split.values()))}, but line {total_stated[1]} says"
                               f" '{total_stated[2]}'", "warning"))
        langs = [c for c in split if c not in ("english", "code")]
        codes = [k for k, v in _LANGS.items() if v in langs]
        pool = [s for s in sources if any(c in s.group.lower() for c in codes)] or sources
        for category, stated in split.items():
            mine = {s.name: s for s in pool if s.category == category}
            if not mine:
                out.append(finding(doc, "token_budget", i, said[category],
                                   f"no listed source is {category}", "warning"))
                continue
            counted = [s for s in mine.values() if s.tokens]
            if len(counted) < len(mine):
                missing = ", ".join(s.name for s in mine.values() if not s.tokens)
                out.append(finding(doc, "token_budget", i, f"{said[category]} (of '{says}')",
                                   f"not checkable: no token count is given for {missing}", "info"))
                continue
            available = sum(s.tokens for s in counted)
            if stated > available * 1.02:
                names = ", ".join(f"{s.name} (line {s.line})" for s in counted)
                out.append(finding(doc, "token_budget", i, f"{said[category]} (of '{says}')",
                                   f"the listed {category} source{'s' if len(counted) > 1 else ''} {names}"
                                   f" hold{'' if len(counted) > 1 else 's'} only {human(available)} tokens", "warning"))
    if total_stated:
        for y in yaml_blocks(doc):
            if y.tool != "nanotron":
                continue
            tok, par = y.data.get("tokens") or {}, y.data.get("parallelism") or {}
            try:
                per_step = (int(tok["micro_batch_size"]) * int(tok["batch_accumulation_per_replica"])
                            * int(par["dp"]) * int(tok["sequence_length"]))
                planned = per_step * int(tok["train_steps"])
            except (KeyError, TypeError, ValueError):
                continue
            if not close(planned, total_stated[0], 0.2):
                out.append(finding(doc, "token_budget", y.line_of(("tokens", "train_steps")),
                                   f"train_steps {tok['train_steps']} × {human(per_step)} tokens per step",
                                   f"= {human(planned)} tokens, but line {total_stated[1]} says the model is trained"
                                   f" on '{total_stated[2]}'", "warning"))
    return out


_GENERIC = {"training", "pretraining", "tokenized", "output", "data", "datasets", "dataset", "viewer",
            "huggingfacefw", "huggingface", "https", "co", "sample", "latn"}


def _words(text: str) -> set[str]:
    return {w for w in re.split(r"[^a-z0-9]+", text.lower()) if w and w not in _GENERIC and not w.isdigit()}


def _matches(folder: set[str], source: set[str]) -> bool:
    return all(any(a.startswith(b) or b.startswith(a) for b in source) for a in folder)


def check_dataset_sources(doc: Document) -> list[Finding]:
    """Dataset folders in the config name sources the text lists."""
    sources = listed_sources(doc)
    if not sources:
        return []
    out = []
    source_words = list(dict.fromkeys(frozenset(_words(s.name)) for s in sources))  # distinct ones
    listed = ", ".join(sorted({s.name.split("/viewer/")[0] for s in sources}))
    known: dict[str, bool] = {}  # folder name -> matches a listed source
    for y in yaml_blocks(doc):
        if y.tool != "nanotron":
            continue
        for s_idx, stage in enumerate(y.data.get("data_stages") or []):
            folders = get(stage, "data.dataset.dataset_folder") if isinstance(stage, dict) else None
            folders = [folders] if isinstance(folders, str) else folders or []
            reported: set[str] = set()
            for f_idx, folder in enumerate(folders):
                parts = [p for p in str(folder).split("/") if _words(p)]
                name = parts[0] if parts else str(folder)
                if name not in known:
                    known[name] = any(_matches(_words(name), words) for words in source_words)
                if name in reported or known[name]:
                    continue
                reported.add(name)
                at = ("data_stages", s_idx, "data", "dataset", "dataset_folder", f_idx)
                out.append(finding(doc, "dataset_sources", y.line_of(at),
                                   f"dataset folder {folder}",
                                   f"'{name}' matches none of the listed sources ({listed})", "warning"))
    return out
