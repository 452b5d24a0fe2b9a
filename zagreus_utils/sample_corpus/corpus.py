"""The smoke profile's embedded sample corpus, generated offline and deterministically by seed.

:func:`generate` writes, for one run language, the same on-disk layout as the real sources so that
the data stage reads it exactly like the real thing::

    <out_dir>/sources/fineweb/part-0000N.parquet        English web (stands for fineweb sample-350BT)
    <out_dir>/sources/fineweb2/part-0000N.parquet       target-language web (fineweb-2 <lang>_Latn)
    <out_dir>/sources/finepdfs/part-0000N.parquet       target-language longer documents (finepdfs)
    <out_dir>/sources/starcoderdata/part-0000N.parquet  Python standard library files (the code slice)
    <out_dir>/heldout/mc_<lang>.jsonl, mc_eng.jsonl     multiple-choice items (mmlu, arc, hellaswag styles)
    <out_dir>/heldout/text_<lang>.jsonl, text_eng.jsonl held-out documents (bits per byte)
    <out_dir>/sft/conversations.jsonl                   chat conversations in the report's SFT format
    <out_dir>/summary.json                              documents, bytes and words per source

Text comes from the knowledge base in :mod:`zagreus_utils.sample_corpus.knowledge`. Every fact is stated in
training through its ``train`` templates but one, :func:`reserved_template`; the held-out split
uses exactly that one, so no held-out sentence appears in training while its fact and its pattern
both do (the HellaSwag-style items and the bits-per-byte documents). Quiz pages in the web sources
ask each fact's ``sft`` question in the same "Question: ... Answer: ..." layout as the lm-eval
tasks; the MMLU/ARC-style items ask its ``question`` one, a phrasing never seen in training.
Byte shares follow the report's plan (400B English, 400B target language,
200B code): about 40/40/20.
"""

from __future__ import annotations

import json
import os
import random
import sysconfig
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from . import knowledge as kb
from ..pipeline.errors import ZagreusError
from .knowledge import LANGUAGES, facts  # noqa: F401  (re-exported: the run languages, the facts)

SOURCES = ("fineweb", "fineweb2", "finepdfs", "starcoderdata")
# bytes of text per source at scale 1.0; code is sized from the text actually written
TEXT_BUDGET = {"fineweb": 1_200_000, "fineweb2": 720_000, "finepdfs": 480_000}
CODE_SHARE = 0.20
MAX_CODE_FILE_BYTES = 64 * 1024
SHARD_BYTES = 256 * 1024
MAX_SHARDS = 8
TOPIC_WEIGHTS = {"country": 0.40, "numbers": 0.25, "calendar": 0.10, "nature": 0.25}
MC_STYLES = {
    "mmlu": ("capital", "continent", "language", "currency", "river", "mountain", "number"),
    "arc": ("colour", "animal_legs", "animal_sound", "count", "addition", "subtraction",
            "weekday", "month_next", "month_order"),
    "hellaswag": kb.MC_TYPES,
}
QUIZ_SHARE = 0.15  # of the web documents: quiz pages (question/answer pairs)
MC_ITEMS_PER_STYLE = 100
HELDOUT_TEXT_DOCS = 100  # per language at scale 1.0
SFT_CONVERSATIONS = 400  # at scale 1.0, half English, half target language
_SKIP_STDLIB_DIRS = {"site-packages", "dist-packages", "__pycache__"}


def generate(out_dir: str | os.PathLike, language: str, seed: int = 0, scale: float = 1.0,
             facts_per_type: int | None = None) -> dict:
    """Write the sample corpus of ``language`` under ``out_dir``; return (and write) its summary.

    The same ``seed`` gives byte-identical files; ``scale`` multiplies the amount of text (at 1.0
    about 3 MB in all); ``facts_per_type`` keeps at most that many facts of each type (the same
    countries for every country fact; None: the whole knowledge base), so that each is stated more
    often. English documents and English held-out items depend on the seed only, so they are the
    same for every run language; the code slice is sized to 20% of the bytes.
    """
    kb.check_language(language)
    if not isinstance(scale, (int, float)) or not scale > 0:
        raise ZagreusError(f"corpus scale must be a positive number, not {scale!r}")
    if facts_per_type is not None and (not isinstance(facts_per_type, int) or facts_per_type < 4):
        raise ZagreusError(f"facts_per_type (data.sample_facts_per_type) must be an integer of at least 4 "
                           f"(a multiple-choice item needs three other answers) or null, not {facts_per_type!r}")
    out = Path(out_dir)
    keep = select_facts(seed, facts_per_type)
    pools = {lang: _Pools(lang, keep) for lang in ("eng", language)}

    rows = {
        "fineweb": _web_rows("fineweb", pools["eng"], _rng(seed, "eng", "fineweb"), TEXT_BUDGET["fineweb"] * scale),
        "fineweb2": _web_rows("fineweb2", pools[language], _rng(seed, language, "fineweb2"), TEXT_BUDGET["fineweb2"] * scale),
        "finepdfs": _pdf_rows(pools[language], _rng(seed, language, "finepdfs"), TEXT_BUDGET["finepdfs"] * scale),
    }
    text_bytes = sum(_nbytes(r["text"]) for rs in rows.values() for r in rs)
    code_root = Path(sysconfig.get_paths()["stdlib"])
    rows["starcoderdata"] = _code_rows(code_root, _rng(seed, "code", "starcoderdata"),
                                       text_bytes * CODE_SHARE / (1 - CODE_SHARE))

    summary = {"language": language, "seed": seed, "scale": scale, "facts_per_type": facts_per_type,
               "facts": {lang: len(p.facts) for lang, p in pools.items()}, "sources": {}}
    for source in SOURCES:
        shards = _write_source(out / "sources" / source, rows[source])
        summary["sources"][source] = {
            "language": {"fineweb": "eng", "starcoderdata": "code"}.get(source, language),
            "documents": len(rows[source]),
            "bytes": sum(_nbytes(r["text"]) for r in rows[source]),
            "words": sum(len(r["text"].split()) for r in rows[source]),
            "shards": shards,
        }
    total = sum(s["bytes"] for s in summary["sources"].values())
    by_part = {"eng": summary["sources"]["fineweb"]["bytes"],
               "target": summary["sources"]["fineweb2"]["bytes"] + summary["sources"]["finepdfs"]["bytes"],
               "code": summary["sources"]["starcoderdata"]["bytes"]}
    summary["shares"] = {k: round(v / total, 4) for k, v in by_part.items()}
    summary["code_root"] = str(code_root)

    heldout = out / "heldout"
    counts = {}
    for lang in (language, "eng"):
        items = _mc_items(pools[lang], _rng(seed, lang, "mc"))
        docs = _heldout_docs(pools[lang], _rng(seed, lang, "heldout_text"),
                             max(20, round(HELDOUT_TEXT_DOCS * scale)))
        counts[f"mc_{lang}"] = _write_jsonl(heldout / f"mc_{lang}.jsonl", items)
        counts[f"text_{lang}"] = _write_jsonl(heldout / f"text_{lang}.jsonl", docs)
    summary["heldout"] = counts

    conversations = _sft_rows(pools, language, _rng(seed, language, "sft"),
                              max(40, round(SFT_CONVERSATIONS * scale)))
    summary["sft"] = {"conversations": _write_jsonl(out / "sft" / "conversations.jsonl", conversations),
                      "by_language": {lang: sum(c["lang"] == lang for c in conversations)
                                      for lang in (language, "eng")}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n",
                                      encoding="utf-8")
    return summary


# --- plumbing ---------------------------------------------------------------------------------
def _rng(seed: int, lang: str, purpose: str) -> random.Random:
    """One independent random stream per (seed, language, purpose)."""
    return random.Random(f"zagreus-corpus:{seed}:{lang}:{purpose}")


def _nbytes(text: str) -> int:
    return len(text.encode("utf-8"))


def select_facts(seed: int, per_type: int | None) -> set[str] | None:
    """The ids of the facts a corpus uses: at most ``per_type`` of each type, chosen by the seed,
    with the same ``per_type`` countries behind every country fact (None: every fact)."""
    if per_type is None:
        return None
    rng = _rng(seed, "any", "facts")
    countries = sorted(cid for cid, *_ in kb.COUNTRIES)
    chosen = set(rng.sample(countries, min(per_type, len(countries))))
    keep, by_type = set(), {}
    for f in kb.facts("eng"):
        if f["topic"] == "country":
            if f["id"].split(":", 1)[1] in chosen:
                keep.add(f["id"])
        else:
            by_type.setdefault(f["type"], []).append(f["id"])
    for ids in by_type.values():
        keep.update(rng.sample(ids, min(per_type, len(ids))))
    return keep


class _Pools:
    """The facts of one language (those in ``keep``, else all) grouped the way documents use them."""

    def __init__(self, lang: str, keep: set[str] | None = None):
        self.lang = lang
        self.i = kb.ALL_LANGUAGES.index(lang)
        self.facts = [f for f in kb.facts(lang) if keep is None or f["id"] in keep]
        self.by_type: dict[str, list[dict]] = {}
        self.by_topic: dict[str, list[dict]] = {t: [] for t in kb.TOPICS if t != "country"}
        self.by_country: dict[str, list[dict]] = {}
        for f in self.facts:
            self.by_type.setdefault(f["type"], []).append(f)
            if f["topic"] == "country":
                self.by_country.setdefault(f["id"].split(":", 1)[1], []).append(f)
            else:
                self.by_topic[f["topic"]].append(f)
        self.by_answer = {}
        for f in self.facts:
            if f["answer"]:
                self.by_answer.setdefault((f["type"], f["slots"][f["answer"]]), f)
        self.countries = list(self.by_country)
        self.continents: dict[str, list[str]] = {}
        for cid, continent, *_ in kb.COUNTRIES:
            if cid in self.by_country:
                self.continents.setdefault(continent, []).append(cid)

    def of_continent(self, continent: str) -> str:
        return kb.CONTINENTS[continent][self.i][2]


def _answer_slots(fact: dict) -> set[str]:
    """The slots that carry the answer: the answer slot and its forms with an article or a
    preposition (``in_continent``, ``the_language`` ...)."""
    a = fact["answer"]
    return {a} | {f"{p}_{a}" for p in ("in", "of", "the")} & set(fact["slots"])


def reserved_template(fact: dict) -> int | None:
    """Index of the ``train`` template that training never uses for this fact (held out), chosen by
    a stable hash among those that do not start with the answer (so that the words before it are a
    context); None when the fact has no such template (it is then used whole in training)."""
    if not fact["answer"]:
        return None
    slots = _answer_slots(fact)
    candidates = [k for k, t in enumerate(kb.TEMPLATES[fact["type"]][fact["lang"]]["train"])
                  if any("{" + s + "}" in t for s in slots)
                  and not any(t.startswith("{" + s + "}") for s in slots)]
    if not candidates:
        return None
    return candidates[zlib.crc32(f"{fact['lang']}:{fact['id']}".encode()) % len(candidates)]


def _sentence(fact: dict, kind: str, rng: random.Random) -> str:
    """A ``train`` sentence (any template but the fact's reserved one) or the ``heldout`` one."""
    train = kb.TEMPLATES[fact["type"]][fact["lang"]]["train"]
    held = reserved_template(fact)
    if kind == "heldout":
        return kb.render(train[held], fact)
    return kb.render(rng.choice([t for k, t in enumerate(train) if k != held]), fact)


def _paragraph(chosen: list[dict], kind: str, rng: random.Random) -> str:
    return " ".join(_sentence(f, kind, rng) for f in chosen)


def _pick(pools: _Pools, topic: str, kind: str, rng: random.Random, country: str | None = None) -> list[dict]:
    """3-8 facts of one topic (one country's facts for ``country``), for one paragraph; for
    ``heldout`` only facts that have a held-out template."""
    ok = (lambda f: True) if kind == "train" else (lambda f: reserved_template(f) is not None)
    if topic == "country":
        fs = [f for f in pools.by_country[country or rng.choice(pools.countries)] if ok(f)]
        rng.shuffle(fs)
        return fs[:rng.randint(min(3, len(fs)), len(fs))]
    fs = [f for f in pools.by_topic[topic] if ok(f)]
    return rng.sample(fs, rng.randint(3, 8))


def _topic(rng: random.Random) -> str:
    return rng.choices(list(TOPIC_WEIGHTS), weights=list(TOPIC_WEIGHTS.values()))[0]


def _coverage(pools: _Pools, rng: random.Random) -> list[list[dict]]:
    """Paragraphs that together state every fact once, so every held-out item has its fact in training."""
    groups = []
    for cid in pools.countries:
        fs = list(pools.by_country[cid])
        rng.shuffle(fs)
        groups.append(fs)
    for topic in ("numbers", "calendar", "nature"):
        fs = list(pools.by_topic[topic])
        rng.shuffle(fs)
        while fs:
            k = rng.randint(3, 8)
            chunk, fs = fs[:k], fs[k:]
            if len(chunk) < 3 and groups:
                groups[-1].extend(chunk)
            else:
                groups.append(chunk)
    return groups


def _row(source: str, lang: str, k: int, text: str, topic: str, chosen: list[dict]) -> dict:
    return {"text": text, "id": f"{source}-{lang}-{k:06d}", "lang": lang, "topic": topic,
            "facts": " ".join(dict.fromkeys(f["id"] for f in chosen))}


def _web_rows(source: str, pools: _Pools, rng: random.Random, budget: float) -> list[dict]:
    """Web-like documents of 1-3 paragraphs: first a coverage pass over every fact, then random
    ones, about QUIZ_SHARE of them quiz pages."""
    docs = [(g[0]["topic"], _paragraph(g, "train", rng), g) for g in _coverage(pools, rng)]
    size = sum(_nbytes(text) for _, text, _ in docs)
    quiz = {t: fs for t, fs in pools.by_type.items() if t in kb.MC_TYPES}
    while size < budget:
        topic = _topic(rng)
        if rng.random() < QUIZ_SHARE:
            text, chosen = _quiz_page(pools, quiz, topic, rng)
        else:
            paragraphs, chosen = [], []
            for _ in range(rng.choice((1, 1, 2, 2, 3))):
                group = _pick(pools, topic, "train", rng)
                paragraphs.append(_paragraph(group, "train", rng))
                chosen += group
            text = "\n\n".join(paragraphs)
        docs.append((topic, text, chosen))
        size += _nbytes(text)
    rng.shuffle(docs)
    return [_row(source, pools.lang, k, text, topic, chosen) for k, (topic, text, chosen) in enumerate(docs)]


def _quiz_page(pools: _Pools, quiz: dict[str, list[dict]], topic: str, rng: random.Random) -> tuple[str, list[dict]]:
    """A quiz page: a title and 3-6 question/answer pairs on one topic (``sft`` questions: the
    held-out items ask the ``question`` phrasing)."""
    types = [t for t, fs in quiz.items() if fs and kb.TEMPLATES[t]["topic"] == topic]
    q_label, a_label = kb.QA_LABELS[pools.lang]
    facts = [f for t in types for f in quiz[t]]
    chosen = rng.sample(facts, min(len(facts), rng.randint(3, 6)))  # distinct questions, mixed types
    pairs = [f"{q_label}: {kb.render(kb.TEMPLATES[f['type']][pools.lang]['sft'], f)}\n"
             f"{a_label}: {f['slots'][f['answer']]}" for f in chosen]
    return "\n\n".join([f"{kb.QUIZ_TITLES[pools.i]} {rng.randint(1, 99)}"] + pairs), chosen


def _pdf_rows(pools: _Pools, rng: random.Random, budget: float) -> list[dict]:
    """Longer document-style texts: a lesson title and 4-8 paragraphs on one topic."""
    rows, size = [], 0
    while size < budget or not rows:
        topic = _topic(rng)
        n = rng.randint(4, 8)
        if topic == "country":
            continent = rng.choice(sorted(pools.continents))
            title = kb.TITLES["country"][pools.i].format(of_continent=pools.of_continent(continent))
            members = pools.continents[continent]
            paragraphs = [_pick(pools, topic, "train", rng, c) for c in rng.sample(members, min(n, len(members)))]
        else:
            title = kb.TITLES[topic][pools.i]
            paragraphs = [_pick(pools, topic, "train", rng) for _ in range(n)]
        heading = f"{kb.LESSON[pools.i]} {rng.randint(1, 40)}: {title}"
        text = "\n\n".join([heading] + [_paragraph(g, "train", rng) for g in paragraphs])
        rows.append(_row("finepdfs", pools.lang, len(rows), text, topic, [f for g in paragraphs for f in g]))
        size += _nbytes(text)
    return rows


def _stdlib_files(root: Path) -> list[str]:
    if not root.is_dir():
        raise ZagreusError(f"the Python standard library was not found at {root} "
                           "(sysconfig.get_paths()['stdlib']); the code slice is read from there")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_STDLIB_DIRS)
        for name in filenames:
            if name.endswith(".py"):
                found.append(Path(dirpath, name).relative_to(root).as_posix())
    return sorted(found)


def _code_rows(root: Path, rng: random.Random, budget: float) -> list[dict]:
    """Standard-library ``.py`` files, verbatim, in a seed-shuffled order, until ``budget`` bytes."""
    candidates = _stdlib_files(root)
    rng.shuffle(candidates)
    rows, size = [], 0
    for rel in candidates:
        if size >= budget * 0.98:
            break
        path = root / rel
        nbytes = path.stat().st_size
        if nbytes == 0 or nbytes > MAX_CODE_FILE_BYTES or size + nbytes > budget * 1.02:
            continue
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            continue
        rows.append({"text": text, "id": f"stdlib/{rel}", "lang": "python", "topic": "code", "facts": ""})
        size += nbytes
    if not rows:
        raise ZagreusError(f"no usable Python files (UTF-8, at most {MAX_CODE_FILE_BYTES} bytes) under {root}")
    return rows


def _write_source(folder: Path, rows: list[dict]) -> int:
    """Write ``rows`` as a few parquet shards of about SHARD_BYTES; return the number of shards."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("part-*.parquet"):
        stale.unlink()
    total = sum(_nbytes(r["text"]) for r in rows)
    n_shards = max(1, min(MAX_SHARDS, -(-total // SHARD_BYTES), len(rows)))
    target = total / n_shards
    shards: list[list[dict]] = [[]]
    size = 0
    for r in rows:
        if size >= target * len(shards) and len(shards) < n_shards:
            shards.append([])
        shards[-1].append(r)
        size += _nbytes(r["text"])
    for k, shard in enumerate(shards):
        table = pa.table({col: pa.array([r[col] for r in shard], type=pa.string())
                          for col in ("text", "id", "lang", "topic", "facts")})
        pq.write_table(table, folder / f"part-{k:05d}.parquet", compression="zstd")
    return len(shards)


def _write_jsonl(path: Path, rows: list[dict]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return len(rows)


# --- held-out evaluation ----------------------------------------------------------------------
def _distractors(fact: dict, pools: _Pools, rng: random.Random) -> list[str] | None:
    correct = fact["slots"][fact["answer"]]
    if fact["pool"]:
        candidates = [c for c in dict.fromkeys(fact["pool"]) if c != correct]
        if fact["type"] in kb.NUMERIC_TYPES:
            candidates = candidates[:6]  # the nearest numbers
        rng.shuffle(candidates)
    else:
        same, other = [], []
        for f in pools.by_type[fact["type"]]:
            value = f["slots"][f["answer"]]
            if value != correct:
                (same if f["group"] is not None and f["group"] == fact["group"] else other).append(value)
        same, other = list(dict.fromkeys(same)), [v for v in dict.fromkeys(other) if v not in same]
        rng.shuffle(same)
        rng.shuffle(other)
        candidates = same[:2] + other + same[2:]  # mostly neighbours, one from elsewhere
        candidates = list(dict.fromkeys(candidates))
    return candidates[:3] if len(candidates) >= 3 else None


def _with_answer(fact: dict, value: str, pools: _Pools) -> dict:
    """``fact`` with ``value`` in place of its answer (and of the answer's article/preposition forms,
    taken from a fact of the same type whose answer is ``value``)."""
    slots = dict(fact["slots"])
    other = pools.by_answer.get((fact["type"], value))
    for name in _answer_slots(fact):
        slots[name] = other["slots"][name] if other is not None else value
    if other is None and _answer_slots(fact) != {fact["answer"]}:
        raise AssertionError(f"no fact of type {fact['type']} answers {value!r}")
    return dict(fact, slots=slots)


def _cloze(fact: dict, choices: list[str], pools: _Pools) -> tuple[str, list[str]]:
    """The fact's held-out sentence as a context and one ending per choice: the sentences for the
    choices differ from the answer on, the context is their common words before it."""
    template = kb.TEMPLATES[fact["type"]][fact["lang"]]["train"][reserved_template(fact)]
    sentences = [kb.render(template, _with_answer(fact, c, pools)) for c in choices]
    start = min(template.index("{" + s + "}") for s in _answer_slots(fact) if "{" + s + "}" in template)
    head = kb.render(template[:start], fact).rstrip()
    if all(s.startswith(head + " ") for s in sentences):  # cut where the answer starts ...
        cut = len(head)
    else:  # ... unless rendering joined words across it (French elision): the common words
        cut = os.path.commonprefix(sentences).rfind(" ")
    if cut <= 0:
        raise AssertionError(f"no context before the answer in {template!r} for {fact['id']}")
    return sentences[0][:cut], [s[cut + 1:] for s in sentences]


def _mc_items(pools: _Pools, rng: random.Random, per_style: int = MC_ITEMS_PER_STYLE) -> list[dict]:
    """Multiple-choice items in three styles about facts stated in training, in sentences never
    there: MMLU/ARC-style ``question`` phrasings, HellaSwag-style completions of each fact's
    held-out sentence."""
    items = []
    for style, types in MC_STYLES.items():
        def eligible(f):
            return style != "hellaswag" or reserved_template(f) is not None
        queues = {}
        for t in types:
            q = [f for f in pools.by_type.get(t, ()) if eligible(f)]
            rng.shuffle(q)
            queues[t] = q
        order = list(types)
        rng.shuffle(order)
        made = 0
        while made < per_style and order:
            for t in list(order):
                if made >= per_style:
                    break
                if not queues[t]:
                    order.remove(t)
                    continue
                fact = queues[t].pop()
                wrong = _distractors(fact, pools, rng)
                if wrong is None:
                    continue
                choices = wrong + [fact["slots"][fact["answer"]]]
                rng.shuffle(choices)
                item = {"id": f"{style}-{pools.lang}-{made:04d}", "style": style, "lang": pools.lang}
                if style == "hellaswag":
                    item["context"], item["endings"] = _cloze(fact, choices, pools)
                else:
                    item["question"] = kb.render(kb.TEMPLATES[t][pools.lang]["question"], fact)
                item.update(choices=choices, answer=choices.index(fact["slots"][fact["answer"]]),
                            fact_id=fact["id"], type=t)
                items.append(item)
                made += 1
    return items


def _heldout_docs(pools: _Pools, rng: random.Random, n: int) -> list[dict]:
    """Documents of held-out sentences only (each fact in its reserved template), for bits per byte."""
    docs = []
    for k in range(n):
        topic = _topic(rng)
        paragraphs = [_pick(pools, topic, "heldout", rng) for _ in range(rng.choice((1, 2)))]
        text = "\n\n".join(_paragraph(g, "heldout", rng) for g in paragraphs if g)
        docs.append({"id": f"heldout-{pools.lang}-{k:04d}", "text": text})
    return docs


# --- SFT --------------------------------------------------------------------------------------
def _sft_rows(pools: dict[str, _Pools], language: str, rng: random.Random, n: int) -> list[dict]:
    """Conversations ``{"conversation": [{"role", "content"}...], "lang"}``: short factual Q&A."""
    rows = []
    for k in range(n):
        lang = language if k % 2 == 0 else "eng"
        p = pools[lang]
        messages = []
        if rng.random() < 0.5:
            messages.append({"role": "system", "content": rng.choice(kb.SYSTEM_PROMPTS[p.i])})
        types = [t for t in kb.MC_TYPES if p.by_type.get(t)]
        ftype = rng.choice(types)  # every kind of question equally often
        for _ in range(rng.choices((1, 2, 3), weights=(6, 3, 1))[0]):
            fact = rng.choice(p.by_type[ftype])
            tpl = kb.TEMPLATES[ftype][lang]
            messages.append({"role": "user", "content": kb.render(tpl["sft"], fact)})
            messages.append({"role": "assistant", "content": _sentence(fact, "train", rng)})
            ftype = rng.choice([t for t in types if kb.TEMPLATES[t]["topic"] == fact["topic"]])
        rows.append({"conversation": messages, "lang": lang})
    return rows
