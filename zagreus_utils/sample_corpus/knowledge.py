"""The built-in multilingual knowledge base behind the smoke profile's sample corpus.

The facts are data: ``configs/sample_corpus/facts.yaml`` holds what is language-independent (the
ids and their order, each country's continent, language and currency, the animals' legs, the
counting facts' numbers, each fact type's answer slot and topic); ``configs/sample_corpus/<code>.yaml``
holds one language's words for them (country names and capitals, number words, calendar,
colours, animals, everyday statements, document furniture) and its sentence templates. The
languages are the files there: ``eng`` plus every run language (docs/extending.md). Each
language file names its ``grammar``, the rule family (``eng``, ``ita``, ``spa``, ``fra``,
``por``) that adds articles, contractions and number words; a new language reuses one of them.
Every fact type has, per language:

- ``train``: at least four phrasings used in the pretraining documents and in SFT answers. The
  corpus holds one of them out per fact (:func:`zagreus_utils.sample_corpus.corpus.reserved_template`): that
  fact is never written with it in training, other facts are, so the held-out sentence is new
  while its pattern and its fact are both known;
- ``question``: the held-out question (MMLU/ARC-style items), never used in training or SFT;
- ``sft``: the question users ask in the SFT conversations; quiz pages in the pretraining
  documents ask it too, so the answers of the held-out questions follow a question in training.

Names carry their article where the language needs one (``"il Po"``, ``"la Senna"``); country
names carry an article code after a colon (``"Italia:f"``: feminine, takes ``la``/``l'``; ``m``,
``mp``, ``fp``; no code: no article; a trailing ``*`` makes Italian use the article after ``in``,
as in *nel Regno Unito*). In templates, ``[a|b]`` picks ``b`` when the fact's ``alt`` flag is set
(a plural country, a feminine unit).

The tables below (:data:`COUNTRIES`, :data:`TEMPLATES`...) are built from those files, each
per-language tuple ordered like :data:`ALL_LANGUAGES`. :func:`facts` turns them into a flat list
of facts, one dict per fact, with every slot rendered in the requested language; :func:`render`
turns a template and a fact into a sentence.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from pathlib import Path

import yaml

from ..pipeline import paths
from ..pipeline.errors import ZagreusError

DATA = paths.CONFIGS / "sample_corpus"
STRUCTURE = "facts"  # DATA/facts.yaml: the language-independent part
GRAMMARS = ("eng", "ita", "spa", "fra", "por")


def _read(path: Path) -> dict:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, yaml.YAMLError) as err:
        raise ZagreusError(f"{path}: cannot read the sample corpus' facts ({err}); restore it from git") from None
    if not isinstance(data, dict):
        raise ZagreusError(f"{path}: expected a mapping of the sample corpus' facts; restore it from git")
    return data


def _load() -> tuple[dict, dict[str, dict]]:
    if not (DATA / f"{STRUCTURE}.yaml").is_file():
        raise ZagreusError(f"{DATA / (STRUCTURE + '.yaml')}: not found; the sample corpus needs its facts "
                           "(restore configs/sample_corpus/ from git, or point ZAGREUS_CONFIGS at a full configs folder)")
    structure = _read(DATA / f"{STRUCTURE}.yaml")
    codes = sorted(p.stem for p in DATA.glob("*.yaml") if p.stem != STRUCTURE)
    if "eng" not in codes:
        raise ZagreusError(f"{DATA / 'eng.yaml'}: not found; English is the second language of every run "
                           "(restore it from git)")
    words = {code: _read(DATA / f"{code}.yaml") for code in ["eng"] + [c for c in codes if c != "eng"]}
    for code, data in words.items():
        if data.get("grammar") not in GRAMMARS:
            raise ZagreusError(f"{DATA / (code + '.yaml')}: grammar must be one of {', '.join(GRAMMARS)} "
                               f"(the rule family for articles and number words), not {data.get('grammar')!r}")
    return structure, words


_S, _W = _load()
ALL_LANGUAGES = tuple(_W)  # eng first, then the run languages (one data file each)
LANGUAGES = ALL_LANGUAGES[1:]  # run languages; eng is the second language of every run
_IDX = {lang: i for i, lang in enumerate(ALL_LANGUAGES)}
GRAMMAR = {lang: _W[lang]["grammar"] for lang in ALL_LANGUAGES}


def _per_lang(get) -> tuple:
    """One value per language (ordered like ALL_LANGUAGES): ``get(words of the language)``; a word
    missing from a language's file is named with the file."""
    out = []
    for lang in ALL_LANGUAGES:
        try:
            out.append(get(_W[lang]))
        except (KeyError, IndexError, TypeError) as err:
            raise ZagreusError(f"{DATA / (lang + '.yaml')}: missing or malformed entry {err}; every language "
                               f"file needs the same keys as eng.yaml (see {DATA / (STRUCTURE + '.yaml')})") from None
    return tuple(out)


def _table(section: str, ids, convert=lambda v: v) -> dict:
    return {k: _per_lang(lambda w: convert(w[section][k])) for k in ids}


# --- countries, numbers, calendar, colours, animals, counts, everyday facts ----------------------
# id, continent, main language, currency, names, capitals (per language)
COUNTRIES = tuple((c["id"], c["continent"], c["language"], c["currency"],
                   _per_lang(lambda w: w["countries"][c["id"]]["name"]),
                   _per_lang(lambda w: w["countries"][c["id"]]["capital"])) for c in _S["countries"])
CONTINENTS = _table("continents", _S["continents"], tuple)  # name, "in <continent>", "of <continent>"
LANGUAGE_NAMES = _table("languages", _S["languages"])  # lower case where the language writes them so
CURRENCIES = _table("currencies", _S["currencies"])  # with their article
RIVERS = _table("rivers", _S["rivers"])  # a major river of the country, with its article
MOUNTAINS = _table("mountains", _S["mountains"])  # a famous mountain of the country, with its article
_ONES = dict(zip(ALL_LANGUAGES, _per_lang(lambda w: tuple(w["numbers"]["ones"]))))
_TENS = dict(zip(ALL_LANGUAGES, _per_lang(lambda w: tuple(w["numbers"]["tens"]))))
_HUNDRED = dict(zip(ALL_LANGUAGES, _per_lang(lambda w: w["numbers"]["hundred"])))
DAY_IDS, MONTH_IDS = tuple(_S["days"]), tuple(_S["months"])
DAYS = _per_lang(lambda w: tuple(w["days"]))
MONTHS = _per_lang(lambda w: tuple(w["months"]))
ORDINALS = _per_lang(lambda w: tuple(w["ordinals"]))  # 1-12 before a masculine noun ("the third month")
COLOURS = _table("colours", _S["colours"], tuple)  # colour: (masculine, feminine) per language
# thing, its colour, the thing per language (":f" feminine)
COLOUR_FACTS = tuple((f["id"], f["colour"], _per_lang(lambda w: w["colour_facts"][f["id"]])) for f in _S["colour_facts"])
# animal, legs (None: not a fact), the animal per language, the sound it makes (None: none)
ANIMALS = tuple((a["id"], a["legs"], _per_lang(lambda w: w["animals"][a["id"]]),
                 _per_lang(lambda w: w["animal_sounds"][a["id"]]) if a["sound"] else None) for a in _S["animals"])
UNITS = _table("units", _S["units"])  # units for counting facts, plural (":f" feminine)
# thing, how many, unit, topic, the thing per language
COUNT_FACTS = tuple((f["id"], f["n"], f["unit"], f["topic"], _per_lang(lambda w: w["count_facts"][f["id"]]))
                    for f in _S["count_facts"])
# fixed everyday statements (training text only): topic, sentence per language
STATEMENTS = tuple((topic, _per_lang(lambda w: w["statements"][k])) for k, topic in enumerate(_S["statements"]))

# --- document furniture -----------------------------------------------------------------------
TOPICS = tuple(_S["topics"])
LESSON = _per_lang(lambda w: w["lesson"])  # finepdfs-like documents: "<lesson> <n>: <title>"
TITLES = _table("titles", TOPICS)
# quiz pages and the MMLU/ARC-style tasks (configs/lm_eval/{mmlu,arc}_<lang>.yaml) share this layout:
# "<question label>: <question>\n<answer label>: <answer>"
QA_LABELS = dict(zip(ALL_LANGUAGES, _per_lang(lambda w: tuple(w["qa_labels"]))))
QUIZ_TITLES = _per_lang(lambda w: w["quiz_title"])
SYSTEM_PROMPTS = _per_lang(lambda w: tuple(w["system_prompts"]))
# what stage 04 asks the converted model to continue, per language
PROMPTS = dict(zip(ALL_LANGUAGES, _per_lang(lambda w: tuple(w["prompts"]))))

# --- templates --------------------------------------------------------------------------------
# type -> {"answer": slot, "topic": topic, lang: {"train", "question", "sft"}}
TEMPLATES = {ftype: {**kind, **dict(zip(ALL_LANGUAGES, _per_lang(
    lambda w: {**w["templates"][ftype], "train": tuple(w["templates"][ftype]["train"])})))}
    for ftype, kind in _S["fact_types"].items()}

# fixed sentences: training text only, never held out or asked about
TEMPLATES["statement"] = {"answer": None, "topic": "nature",
                          **{lang: {"train": ("{text}",), "question": None, "sft": None}
                             for lang in ALL_LANGUAGES}}

FACT_TYPES = tuple(TEMPLATES)
MC_TYPES = tuple(t for t in FACT_TYPES if t != "statement")  # types asked about in held-out items
NUMERIC_TYPES = ("number", "addition", "subtraction", "animal_legs", "count")


# --- helpers ----------------------------------------------------------------------------------
def data_digest(language: str) -> str:
    """One hash over the data files a corpus of ``language`` reads (facts, eng, the language)."""
    h = hashlib.sha256()
    for name in (STRUCTURE, "eng", check_language(language)):
        h.update((DATA / f"{name}.yaml").read_bytes())
    return h.hexdigest()[:16]


def check_language(language: str, allow_eng: bool = False) -> str:
    """Return ``language`` if it is a run language (or ``eng`` where allowed); raise otherwise."""
    valid = (("eng",) if allow_eng else ()) + LANGUAGES
    if language not in valid:
        note = "" if allow_eng else " (eng is the second language of every run, not a run language)"
        raise ZagreusError(
            f"unknown language {language!r}: valid choices are {', '.join(valid)}{note}")
    return language


def number_word(n: int, lang: str, feminine: bool = False) -> str:
    """``n`` (0-100) in words: ``42`` -> ``forty-two``, ``quarantadue``, ``cuarenta y dos``..."""
    if not 0 <= n <= 100:
        raise ValueError(f"number_word covers 0-100, not {n}")
    if n == 100:
        return _HUNDRED[lang]
    ones, grammar = _ONES[lang], GRAMMAR[lang]
    if grammar == "fra":
        return _fra_number(n, lang)
    if n < len(ones):
        word = ones[n]
    else:
        tens, unit = divmod(n, 10)
        tens_word = _TENS[lang][tens - 2]
        if unit == 0:
            word = tens_word
        elif grammar == "eng":
            word = f"{tens_word}-{ones[unit]}"
        elif grammar == "ita":
            if unit in (1, 8):  # ventuno, ventotto
                tens_word = tens_word[:-1]
            word = tens_word + ("tré" if unit == 3 else ones[unit])
        else:  # spa "treinta y dos", por "vinte e dois"
            word = f"{tens_word} {'y' if grammar == 'spa' else 'e'} {ones[unit]}"
    if feminine and grammar == "por":
        word = re.sub(r"\bum$", "uma", re.sub(r"\bdois$", "duas", word))
    return word


def _fra_number(n: int, lang: str) -> str:
    ones = _ONES[lang]
    if n <= 16:
        return ones[n]
    if n < 20:
        return "dix-" + ones[n - 10]
    tens, unit = divmod(n, 10)
    if tens == 7:
        return "soixante et onze" if unit == 1 else "soixante-" + _fra_number(n - 60, lang)
    if tens == 8:
        return "quatre-vingts" if unit == 0 else "quatre-vingt-" + ones[unit]
    if tens == 9:
        return "quatre-vingt-" + _fra_number(n - 80, lang)
    tens_word = _TENS[lang][tens - 2]
    if unit == 0:
        return tens_word
    return f"{tens_word} et un" if unit == 1 else f"{tens_word}-{ones[unit]}"


_VOWELS = "aeiouàáâãäèéêëìíîïòóôõöùúûüœ"


def _italian_article(name: str, code: str) -> str:
    low = name.lower()
    vowel = low[0] in _VOWELS
    impure = bool(re.match(r"s[^aeiou]|z|gn|ps|x|y", low))
    if code == "f":
        return f"l'{name}" if vowel else f"la {name}"
    if code == "m":
        return f"l'{name}" if vowel else f"{'lo' if impure else 'il'} {name}"
    if code == "mp":
        return f"{'gli' if vowel or impure else 'i'} {name}"
    if code == "fp":
        return f"le {name}"
    return name


_ITA_DI = {"il ": "del ", "lo ": "dello ", "la ": "della ", "l'": "dell'", "i ": "dei ", "gli ": "degli ", "le ": "delle "}
_ITA_IN = {"il ": "nel ", "lo ": "nello ", "la ": "nella ", "l'": "nell'", "i ": "nei ", "gli ": "negli ", "le ": "nelle "}


def _contract(with_article: str, table: dict[str, str]) -> str:
    for article, contracted in table.items():
        if with_article.startswith(article):
            return contracted + with_article[len(article):]
    raise AssertionError(with_article)


def _country_slots(raw: str, lang: str) -> dict:
    """``country``, ``the_country``, ``of_country``, ``in_country`` and the plural flag."""
    name, _, code = raw.partition(":")
    in_article = code.endswith("*")
    code = code.rstrip("*") or "0"
    plural = code in ("mp", "fp")
    grammar = GRAMMAR[lang]
    if grammar == "eng":
        return {"country": name, "the_country": name, "of_country": f"of {name}",
                "in_country": f"in {name}", "_alt": False}
    if grammar == "ita":
        the = _italian_article(name, code)
        of = f"di {name}" if code == "0" else _contract(the, _ITA_DI)
        if code == "0":
            where = f"a {name}"
        elif plural or in_article:
            where = _contract(the, _ITA_IN)
        else:
            where = f"in {name}"
    elif grammar == "spa":
        article = {"0": "", "m": "el ", "f": "la ", "mp": "los ", "fp": "las "}[code]
        the = article + name
        of = "del " + name if code == "m" else "de " + the
        where = "en " + the
    elif grammar == "fra":
        vowel = name[0].lower() in _VOWELS
        if code in ("f", "m"):
            the = f"l'{name}" if vowel else f"{'la' if code == 'f' else 'le'} {name}"
            of = f"de l'{name}" if vowel else (f"de la {name}" if code == "f" else f"du {name}")
            where = f"en {name}" if code == "f" or vowel else f"au {name}"
        elif plural:
            the, of, where = f"les {name}", f"des {name}", f"aux {name}"
        else:
            the, of, where = name, (f"d'{name}" if vowel else f"de {name}"), f"à {name}"
    else:  # por
        article = {"0": "", "m": "o", "f": "a", "mp": "os", "fp": "as"}[code]
        the = f"{article} {name}".strip()
        of = f"d{article} {name}" if article else f"de {name}"
        where = f"n{article} {name}" if article else f"em {name}"
    return {"country": name, "the_country": the, "of_country": of, "in_country": where, "_alt": plural}


def _with_article_language(name: str, lang: str) -> str:
    lang = GRAMMAR[lang]
    if lang == "ita":
        return f"l'{name}" if name[0] == "h" else _italian_article(name, "m")
    if lang == "spa":
        return f"el {name}"
    if lang == "fra":
        return f"l'{name}" if name[0] in _VOWELS or name[0] == "h" else f"le {name}"
    if lang == "por":
        return f"o {name}"
    return name


def _with_article_ordinal(ordinal: str, lang: str) -> str:
    lang = GRAMMAR[lang]
    if lang == "ita":
        return f"l'{ordinal}" if ordinal[0] in _VOWELS else f"il {ordinal}"
    return {"eng": "the", "spa": "el", "fra": "le", "por": "o"}[lang] + " " + ordinal


def _gendered(raw: str) -> tuple[str, bool]:
    name, _, code = raw.partition(":")
    return name, code == "f"


# --- facts ------------------------------------------------------------------------------------
def _fact(fid: str, ftype: str, lang: str, slots: dict, alt: bool = False, group: str | None = None,
          value: int | None = None, pool: list[str] | None = None, topic: str | None = None) -> dict:
    return {"id": fid, "type": ftype, "lang": lang, "topic": topic or TEMPLATES[ftype]["topic"],
            "answer": TEMPLATES[ftype]["answer"], "slots": slots, "alt": alt, "group": group,
            "value": value, "pool": pool}


def _near_numbers(value: int, lang: str, feminine: bool = False) -> list[str]:
    """Plausible wrong numbers (words) around ``value``, nearest first."""
    near = [value + d for d in (1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 10, -10)]
    return [number_word(n, lang, feminine) for n in near if 0 <= n <= 100]


@lru_cache(maxsize=None)
def _facts(lang: str) -> tuple[dict, ...]:
    i = _IDX[lang]
    out: list[dict] = []
    for cid, continent, language, currency, names, capitals in COUNTRIES:
        base = _country_slots(names[i], lang)
        alt = base.pop("_alt")
        cont_name, cont_in, cont_of = CONTINENTS[continent][i]
        lang_name = LANGUAGE_NAMES[language][i]
        slots = dict(base, capital=capitals[i], continent=cont_name, in_continent=cont_in,
                     of_continent=cont_of, language=lang_name,
                     the_language=_with_article_language(lang_name, lang),
                     currency=CURRENCIES[currency][i])
        if cid in RIVERS:
            slots["river"] = RIVERS[cid][i]
        if cid in MOUNTAINS:
            slots["mountain"] = MOUNTAINS[cid][i]
        for ftype in ("capital", "continent", "language", "currency", "river", "mountain"):
            if ftype in ("river", "mountain") and ftype not in slots:
                continue
            out.append(_fact(f"{ftype}:{cid}", ftype, lang, slots, alt=alt, group=continent))
    for n in range(101):
        out.append(_fact(f"number:{n}", "number", lang, {"digits": str(n), "word": number_word(n, lang)},
                         value=n, pool=_near_numbers(n, lang)))
    for a in range(11):
        for b in range(11):
            out.append(_fact(f"addition:{a}+{b}", "addition", lang,
                             {"a": number_word(a, lang), "b": number_word(b, lang),
                              "result": number_word(a + b, lang)},
                             value=a + b, pool=_near_numbers(a + b, lang)))
    for a in range(21):
        for b in range(min(a, 10) + 1):
            out.append(_fact(f"subtraction:{a}-{b}", "subtraction", lang,
                             {"a": number_word(a, lang), "b": number_word(b, lang),
                              "result": number_word(a - b, lang)},
                             value=a - b, pool=_near_numbers(a - b, lang)))
    days, months, ordinals = DAYS[i], MONTHS[i], ORDINALS[i]
    for k, day in enumerate(days):
        out.append(_fact(f"weekday:{DAY_IDS[k]}", "weekday", lang,
                         {"day": day, "next": days[(k + 1) % 7]}))
    for k, month in enumerate(months):
        key = MONTH_IDS[k]
        out.append(_fact(f"month_next:{key}", "month_next", lang,
                         {"month": month, "next": months[(k + 1) % 12]}))
        out.append(_fact(f"month_order:{key}", "month_order", lang,
                         {"month": month, "ordinal": ordinals[k],
                          "the_ordinal": _with_article_ordinal(ordinals[k], lang)}))
    for key, colour, things in COLOUR_FACTS:
        obj, feminine = _gendered(things[i])
        forms = {c: v[i][int(feminine)] for c, v in COLOURS.items()}
        out.append(_fact(f"colour:{key}", "colour", lang, {"obj": obj, "colour": forms[colour]},
                         pool=[w for c, w in forms.items() if c != colour]))
    for key, legs, animal, sound in ANIMALS:
        if legs is not None:
            feminine = GRAMMAR[lang] == "por"  # "patas" is feminine: duas patas
            out.append(_fact(f"animal_legs:{key}", "animal_legs", lang,
                             {"animal": animal[i], "legs": number_word(legs, lang, feminine)},
                             value=legs, pool=[number_word(n, lang, feminine) for n in (4, 2, 6, 8, 3, 5, 10) if n != legs]))
        if sound is not None:
            out.append(_fact(f"animal_sound:{key}", "animal_sound", lang,
                             {"animal": animal[i], "sound": sound[i]}))
    for key, n, unit, topic, things in COUNT_FACTS:
        unit_name, feminine = _gendered(UNITS[unit][i])
        out.append(_fact(f"count:{key}", "count", lang,
                         {"subj": things[i], "n": number_word(n, lang), "unit": unit_name},
                         alt=feminine, value=n, pool=_near_numbers(n, lang), topic=topic))
    for k, (topic, sentences) in enumerate(STATEMENTS):
        out.append(_fact(f"statement:{k}", "statement", lang, {"text": sentences[i]}, topic=topic))
    return tuple(out)


def facts(language: str) -> list[dict]:
    """Every fact of the knowledge base rendered in ``language`` (``eng`` or a run language).

    Each fact is a dict: ``id`` (the same across languages, e.g. ``capital:italy``), ``type``,
    ``lang``, ``topic``, ``slots`` (the words that fill the templates), ``answer`` (the slot that
    holds the answer of the fact's questions), ``alt`` (template variant flag), ``group``,
    ``value`` (the number, for numeric facts) and ``pool`` (plausible wrong answers, or None).
    """
    check_language(language, allow_eng=True)
    return [dict(f, slots=dict(f["slots"]), pool=list(f["pool"]) if f["pool"] else None)
            for f in _facts(language)]


_ALT = re.compile(r"\[([^\[\]|]*)\|([^\[\]|]*)\]")
_FRA_QUE = re.compile(r"\bque (?=[aeiouéèêàâîôûAEIOUÉÈÊÀÂÎÔÛ])(?!onz)")
_FRA_DE_UN = re.compile(r"\bde (?=une?\b)")


def render(template: str, fact: dict) -> str:
    """Fill ``template`` with the fact's slots, pick ``[a|b]`` variants, capitalize the start."""
    text = _ALT.sub(lambda m: m.group(2) if fact["alt"] else m.group(1), template)
    text = text.format(**fact["slots"])
    if GRAMMAR[fact["lang"]] == "fra":  # elision: "que une heure" -> "qu'une heure", "de un" -> "d'un"
        text = _FRA_DE_UN.sub("d'", _FRA_QUE.sub("qu'", text))
    return capitalize(text)


def capitalize(text: str) -> str:
    """Upper-case the first letter, also after an opening ``¿`` or ``¡``; leave digits alone."""
    k = 1 if text[:1] in "¿¡" else 0
    if text[k:k + 1].isalpha():
        return text[:k] + text[k].upper() + text[k + 1:]
    return text


def templates(ftype: str, lang: str) -> dict:
    """The templates of one fact type in one language (``train``, ``question``, ``sft``)."""
    return TEMPLATES[ftype][lang]
