"""The smoke profile's embedded sample corpus (zagreus_utils.sample_corpus.corpus, zagreus_utils.sample_corpus.knowledge)."""

import hashlib
import json
import re
import sysconfig
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from zagreus_utils.sample_corpus import corpus
from zagreus_utils.sample_corpus import knowledge as kb
from zagreus_utils.pipeline.errors import ZagreusError

SCALE = 0.1
TRAIN_SOURCES = ("fineweb", "fineweb2", "finepdfs")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One small corpus per run language: {lang: (out_dir, summary)}."""
    out = {}
    for lang in corpus.LANGUAGES:
        folder = tmp_path_factory.mktemp(f"corpus_{lang}")
        out[lang] = (folder, corpus.generate(folder, lang, seed=0, scale=SCALE))
    return out


def _rows(folder: Path, source: str) -> list[dict]:
    files = sorted((folder / "sources" / source).glob("part-*.parquet"))
    assert files, f"no shards for {source}"
    return [r for f in files for r in pq.read_table(f).to_pylist()]


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _training_text(folder: Path) -> str:
    """Everything a model is trained on: pretraining documents and SFT conversations."""
    texts = [r["text"] for s in TRAIN_SOURCES for r in _rows(folder, s)]
    for row in _jsonl(folder / "sft" / "conversations.jsonl"):
        texts += [m["content"] for m in row["conversation"]]
    return "\n\x00\n".join(texts)


# --- layout, determinism ----------------------------------------------------------------------
def test_every_language_writes_every_source_with_text(runs):
    for lang, (folder, summary) in runs.items():
        for source in corpus.SOURCES:
            rows = _rows(folder, source)
            assert rows and all(isinstance(r["text"], str) and r["text"].strip() for r in rows), source
            assert len({r["id"] for r in rows}) == len(rows), f"{lang}/{source}: duplicate ids"
            expected = {"fineweb": "eng", "starcoderdata": "python"}.get(source, lang)
            assert {r["lang"] for r in rows} == {expected}
            assert summary["sources"][source]["documents"] == len(rows)
            assert summary["sources"][source]["bytes"] == sum(len(r["text"].encode()) for r in rows)
            schema = pq.read_schema(next((folder / "sources" / source).glob("part-*.parquet")))
            assert str(schema.field("text").type) == "string"
        assert json.loads((folder / "summary.json").read_text(encoding="utf-8")) == summary
        for name in (f"mc_{lang}", "mc_eng", f"text_{lang}", "text_eng"):
            assert (folder / "heldout" / f"{name}.jsonl").is_file(), name
        assert (folder / "sft" / "conversations.jsonl").is_file()


def test_same_seed_same_bytes_other_seed_other_documents(tmp_path):
    a = corpus.generate(tmp_path / "a", "por", seed=7, scale=SCALE)
    b = corpus.generate(tmp_path / "b", "por", seed=7, scale=SCALE)
    c = corpus.generate(tmp_path / "c", "por", seed=8, scale=SCALE)
    assert a == b
    da, db, dc = (_digest(tmp_path / x) for x in "abc")
    assert da == db
    assert any(k.endswith(".parquet") for k in da)
    for source in TRAIN_SOURCES:
        shard = f"sources/{source}/part-00000.parquet"
        assert da[shard] != dc[shard], f"{source}: seed 8 wrote the same documents as seed 7"
    texts_a = {r["text"] for r in _rows(tmp_path / "a", "fineweb2")}
    texts_c = {r["text"] for r in _rows(tmp_path / "c", "fineweb2")}
    assert texts_a != texts_c
    assert da["heldout/mc_por.jsonl"] != dc["heldout/mc_por.jsonl"]


def test_parquet_metadata_holds_no_timestamps(runs):
    folder, _ = runs["ita"]
    for path in sorted((folder / "sources").rglob("*.parquet")):
        meta = pq.ParquetFile(path).metadata
        keys = set((meta.metadata or {}).keys())
        assert keys <= {b"ARROW:schema"}, keys
        assert not re.search(r"\d{4}-\d\d-\d\d", meta.created_by or "")


def test_rewriting_a_smaller_corpus_leaves_no_stale_shards(tmp_path):
    corpus.generate(tmp_path, "spa", seed=0, scale=0.3)
    before = len(list((tmp_path / "sources" / "fineweb").glob("part-*.parquet")))
    summary = corpus.generate(tmp_path, "spa", seed=0, scale=0.05)
    after = sorted((tmp_path / "sources" / "fineweb").glob("part-*.parquet"))
    assert before > len(after) == summary["sources"]["fineweb"]["shards"]


# --- mixture ----------------------------------------------------------------------------------
def test_byte_shares_follow_the_40_40_20_plan(runs, tmp_path):
    summaries = [s for _, s in runs.values()] + [corpus.generate(tmp_path, "fra", seed=3, scale=0.5)]
    for summary in summaries:
        src = summary["sources"]
        total = sum(s["bytes"] for s in src.values())
        eng = src["fineweb"]["bytes"] / total
        target = (src["fineweb2"]["bytes"] + src["finepdfs"]["bytes"]) / total
        code = src["starcoderdata"]["bytes"] / total
        assert abs(eng - 0.40) <= 0.10 and abs(target - 0.40) <= 0.10 and abs(code - 0.20) <= 0.10, \
            (summary["language"], summary["scale"], eng, target, code)


def test_scale_multiplies_the_amount_of_text(tmp_path):
    small = corpus.generate(tmp_path / "s", "ita", seed=0, scale=0.2)
    large = corpus.generate(tmp_path / "l", "ita", seed=0, scale=0.6)
    for source in TRAIN_SOURCES:
        ratio = large["sources"][source]["documents"] / small["sources"][source]["documents"]
        assert ratio > 2.0, (source, ratio)


def test_code_documents_are_stdlib_files_verbatim(runs):
    folder, _ = runs["fra"]
    root = Path(sysconfig.get_paths()["stdlib"])
    rows = _rows(folder, "starcoderdata")
    for row in rows:
        rel = row["id"].removeprefix("stdlib/")
        assert rel.endswith(".py") and "site-packages" not in rel
        raw = (root / rel).read_bytes()
        assert len(raw) <= corpus.MAX_CODE_FILE_BYTES
        assert row["text"] == raw.decode("utf-8")


def test_target_language_documents_are_in_the_target_language(runs):
    folder, _ = runs["spa"]
    text = " ".join(r["text"] for r in _rows(folder, "fineweb2"))
    assert "La capital de" in text and "The capital of" not in text
    pdf = _rows(folder, "finepdfs")
    assert all(r["text"].startswith("Lección ") for r in pdf)
    assert all(r["text"].count("\n\n") >= 2 for r in pdf)  # a title and several paragraphs


# --- held-out evaluation ----------------------------------------------------------------------
def _sentences(text: str) -> set[str]:
    return {x for x in re.split(r"(?<=[.?!])\s+|\n+", text) if x}


def test_heldout_strings_never_appear_in_training(runs):
    for lang, (folder, _) in runs.items():
        training = _training_text(folder)
        seen = _sentences(training)
        for name in (lang, "eng"):
            for item in _jsonl(folder / "heldout" / f"mc_{name}.jsonl"):
                if item["style"] == "hellaswag":  # the completed sentence is new, its prefix is not
                    sentence = item["context"] + " " + item["endings"][item["answer"]]
                    assert sentence not in seen, (lang, item["id"], sentence)
                else:
                    assert item["question"] not in training, (lang, item["id"], item["question"])
            docs = _jsonl(folder / "heldout" / f"text_{name}.jsonl")
            assert docs
            for doc in docs:
                assert doc["text"] not in training
                for sentence in _sentences(doc["text"]):
                    assert sentence not in seen, (lang, doc["id"], sentence)


def test_each_fact_keeps_one_pattern_out_and_quizzes_ask_another_question(runs):
    folder, _ = runs["ita"]
    facts = corpus.facts("ita")
    held = [f for f in facts if corpus.reserved_template(f) is not None]
    assert len(held) > 0.9 * len([f for f in facts if f["answer"]])
    for f in held:  # never the answer first: the words before it are the HellaSwag context
        template = kb.TEMPLATES[f["type"]]["ita"]["train"][corpus.reserved_template(f)]
        assert not template.startswith("{" + f["answer"])
    text = " ".join(r["text"] for r in _rows(folder, "fineweb2"))
    q_label, a_label = kb.QA_LABELS["ita"]
    asked = re.findall(rf"^{q_label}: (.+)$", text.replace("\n\n", "\n"), flags=re.M)
    assert asked and text.count(f"\n{a_label}: ") == len(asked)
    sft_questions = {kb.render(kb.TEMPLATES[f["type"]]["ita"]["sft"], f) for f in facts if f["answer"]}
    assert set(asked) <= sft_questions
    held_out = [i["question"] for i in _jsonl(folder / "heldout" / "mc_ita.jsonl") if i["style"] != "hellaswag"]
    assert held_out and not set(held_out) & set(asked)


def test_quiz_layout_matches_the_lm_eval_tasks():
    import yaml
    for lang, (q_label, a_label) in kb.QA_LABELS.items():
        for style in ("mmlu", "arc"):
            cfg = yaml.safe_load((Path(__file__).parents[1] / "configs" / "lm_eval" / f"{style}_{lang}.yaml").read_text())
            assert cfg["doc_to_text"] == f"{q_label}: {{{{question}}}}\n{a_label}:", (style, lang)


def test_heldout_text_docs_are_disjoint_from_training_docs(runs):
    folder, _ = runs["ita"]
    training_docs = {r["text"] for s in TRAIN_SOURCES for r in _rows(folder, s)}
    heldout_docs = {d["text"] for name in ("ita", "eng") for d in _jsonl(folder / "heldout" / f"text_{name}.jsonl")}
    assert heldout_docs and not heldout_docs & training_docs


def test_heldout_items_ask_about_facts_stated_in_training(runs):
    for lang, (folder, _) in runs.items():
        stated = {"eng": set(), lang: set()}
        for source in TRAIN_SOURCES:
            for row in _rows(folder, source):
                stated[row["lang"]].update(row["facts"].split())
        for name in (lang, "eng"):
            asked = {item["fact_id"] for item in _jsonl(folder / "heldout" / f"mc_{name}.jsonl")}
            assert asked and asked <= stated[name], sorted(asked - stated[name])[:5]


def test_multiple_choice_items_are_valid_and_match_the_knowledge_base(runs):
    capitals = {cid: dict(zip(kb.ALL_LANGUAGES, caps)) for cid, *_, caps in kb.COUNTRIES}
    for lang, (folder, _) in runs.items():
        for name in (lang, "eng"):
            items = _jsonl(folder / "heldout" / f"mc_{name}.jsonl")
            by_id = {f["id"]: f for f in corpus.facts(name)}
            assert {i["style"] for i in items} == {"mmlu", "arc", "hellaswag"}
            answers = set()
            for item in items:
                assert item["lang"] == name
                choices = item["choices"]
                assert len(choices) == 4 and len(set(choices)) == 4 and all(choices), item
                assert isinstance(item["answer"], int) and 0 <= item["answer"] < 4
                answers.add(item["answer"])
                fact = by_id[item["fact_id"]]
                assert choices[item["answer"]] == fact["slots"][fact["answer"]], item
                if fact["type"] == "capital":
                    assert choices[item["answer"]] == capitals[item["fact_id"].split(":")[1]][name]
                if item["style"] == "hellaswag":
                    assert "context" in item and "question" not in item
                    assert all(c.lower() in e.lower() for c, e in zip(choices, item["endings"])), item
                else:
                    assert "question" in item and "context" not in item
            assert answers == {0, 1, 2, 3}, "the correct answer should not always sit in one place"


def test_capital_distractors_are_other_capitals(runs):
    folder, _ = runs["fra"]
    all_capitals = {caps[kb.ALL_LANGUAGES.index("fra")] for *_, caps in kb.COUNTRIES}
    items = [i for i in _jsonl(folder / "heldout" / "mc_fra.jsonl") if i["type"] == "capital"]
    assert items
    for item in items:
        assert set(item["choices"]) <= all_capitals


def test_facts_per_type_keeps_a_few_countries_and_facts_stated_more_often(tmp_path):
    full = corpus.generate(tmp_path / "all", "por", seed=3, scale=SCALE)
    few = corpus.generate(tmp_path / "few", "por", seed=3, scale=SCALE, facts_per_type=8)
    assert few["facts"]["por"] < full["facts"]["por"] / 2
    keep = corpus.select_facts(3, 8)
    assert keep == corpus.select_facts(3, 8) != corpus.select_facts(4, 8)
    countries = {i.split(":", 1)[1] for i in keep if i.split(":")[0] in ("capital", "currency", "continent")}
    assert len(countries) == 8
    counts = {}
    for i in keep:
        counts[i.split(":")[0]] = counts.get(i.split(":")[0], 0) + 1
    assert max(counts.values()) <= 8
    stated = {f for s in TRAIN_SOURCES for r in _rows(tmp_path / "few", s) for f in r["facts"].split()}
    assert stated <= keep
    for item in _jsonl(tmp_path / "few" / "heldout" / "mc_eng.jsonl"):
        assert item["fact_id"] in keep


@pytest.mark.parametrize("bad", [0, 3, 2.5, "8"])
def test_bad_facts_per_type_is_refused(tmp_path, bad):
    with pytest.raises(ZagreusError, match="sample_facts_per_type"):
        corpus.generate(tmp_path, "ita", facts_per_type=bad)


# --- SFT ----------------------------------------------------------------------------------------
def test_sft_conversations_are_valid_and_bilingual(runs):
    for lang, (folder, summary) in runs.items():
        rows = _jsonl(folder / "sft" / "conversations.jsonl")
        assert len(rows) == summary["sft"]["conversations"] > 0
        assert {r["lang"] for r in rows} == {lang, "eng"}
        multi = 0
        for row in rows:
            messages = row["conversation"]
            roles = [m["role"] for m in messages]
            assert set(roles) <= {"system", "user", "assistant"}
            assert all(isinstance(m["content"], str) and m["content"].strip() for m in messages)
            if roles[0] == "system":
                roles = roles[1:]
            assert roles and len(roles) % 2 == 0
            assert roles == ["user", "assistant"] * (len(roles) // 2)
            multi += len(roles) > 2
        assert multi > 0, "some conversations should be multi-turn"


# --- errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["xx", "eng", "it", "ITA"])
def test_unknown_language_is_refused_with_the_valid_choices(tmp_path, bad):
    with pytest.raises(ZagreusError) as err:
        corpus.generate(tmp_path, bad)
    message = str(err.value)
    assert repr(bad) in message and all(lang in message for lang in corpus.LANGUAGES)
    assert not any(tmp_path.iterdir()), "nothing is written for a refused language"


def test_facts_accepts_eng_and_run_languages_only():
    assert corpus.facts("eng") and all(corpus.facts(lang) for lang in corpus.LANGUAGES)
    with pytest.raises(ZagreusError, match="'deu'"):
        corpus.facts("deu")


def test_bad_scale_is_refused(tmp_path):
    with pytest.raises(ZagreusError, match="scale"):
        corpus.generate(tmp_path, "ita", scale=0)


# --- knowledge base -------------------------------------------------------------------------
def test_knowledge_base_size_and_translations():
    assert len(kb.COUNTRIES) >= 60
    names = {cid: names for cid, _, _, _, names, _ in kb.COUNTRIES}
    assert dict(zip(kb.ALL_LANGUAGES, names["germany"])) == dict(zip(
        ("eng", "ita", "spa", "fra", "por"), ("Germany", "Germania:f", "Alemania", "Allemagne:f", "Alemanha:f")))
    assert corpus.LANGUAGES == ("fra", "ita", "por", "spa")  # one data file each, configs/sample_corpus/
    words = {lang: [kb.number_word(n, lang) for n in range(101)] for lang in kb.ALL_LANGUAGES}
    assert all(len(set(w)) == 101 for w in words.values())
    assert words["eng"][42] == "forty-two" and words["eng"][100] == "one hundred"
    assert (words["ita"][21], words["ita"][23], words["ita"][38]) == ("ventuno", "ventitré", "trentotto")
    assert (words["spa"][16], words["spa"][22], words["spa"][45], words["spa"][100]) == \
        ("dieciséis", "veintidós", "cuarenta y cinco", "cien")
    assert (words["fra"][21], words["fra"][71], words["fra"][80], words["fra"][81], words["fra"][91]) == \
        ("vingt et un", "soixante et onze", "quatre-vingts", "quatre-vingt-un", "quatre-vingt-onze")
    assert (words["por"][16], words["por"][22], words["por"][100]) == ("dezesseis", "vinte e dois", "cem")
    assert kb.number_word(2, "por", feminine=True) == "duas"


def test_country_phrases_use_the_right_articles():
    def slots(lang, cid, ftype="capital"):
        return next(f["slots"] for f in corpus.facts(lang) if f["id"] == f"{ftype}:{cid}")
    assert slots("ita", "italy")["of_country"] == "dell'Italia"
    assert slots("ita", "united_states")["in_country"] == "negli Stati Uniti"
    assert slots("ita", "united_kingdom")["in_country"] == "nel Regno Unito"
    assert slots("spa", "united_kingdom")["of_country"] == "del Reino Unido"
    assert slots("fra", "japan")["in_country"] == "au Japon"
    assert slots("fra", "iran")["in_country"] == "en Iran"
    assert slots("fra", "hungary")["the_country"] == "la Hongrie"
    assert slots("por", "brazil")["in_country"] == "no Brasil"
    assert slots("por", "portugal")["of_country"] == "de Portugal"
    assert kb.render("{the_country} [si trova|si trovano] {in_continent}.",
                     next(f for f in corpus.facts("ita") if f["id"] == "continent:united_states")) == \
        "Gli Stati Uniti si trovano in America del Nord."


def test_templates_are_complete_and_render_every_fact():
    for ftype in kb.MC_TYPES:
        answer = kb.TEMPLATES[ftype]["answer"]
        for lang in kb.ALL_LANGUAGES:
            tpl = kb.TEMPLATES[ftype][lang]
            assert len(tpl["train"]) >= 4 and len(set(tpl["train"])) == len(tpl["train"]), (ftype, lang)
            assert tpl["question"] and tpl["sft"] and tpl["question"] != tpl["sft"]
    for lang in kb.ALL_LANGUAGES:
        for fact in corpus.facts(lang):
            tpl = kb.TEMPLATES[fact["type"]][lang]
            for t in tpl["train"] + tuple(x for x in (tpl["question"], tpl["sft"]) if x):
                text = kb.render(t, fact)
                assert not re.search(r"[{}\[\]|]", text), (lang, fact["id"], text)
                first = text.lstrip("¿")[0]
                assert first.isupper() or first.isdigit(), text


# --- the facts are data files; the corpus they give is the one the Python tables gave ---------
# sha256 of the generated texts (pretraining sources but code, which is this Python's stdlib, then
# the held-out and SFT jsonl files) at seed 0, scale 0.1, and of every language's facts, computed
# on the kit before the facts moved from Python tuples to configs/sample_corpus/*.yaml.
TEXT_SHA256 = {
    "ita": "7b991c642ff1098951d8168a06772c50f3f3cb5337acba3afa8bf474d63772a9",
    "spa": "51d16fa198b1b14d4fb6c2e6160a63f27b0cb95096eaff41c7aac6a6c06a6722",
    "fra": "4f8fa96b5cdbd3bf94cf45db4109fac0bbe992fa9e8fd889bfd1a11ab088cd9b",
    "por": "251b4f13cff0fcb093714e3a928005730c25caa0c8e4f7654da47405dc02210e",
}
FACTS_SHA256 = {
    "eng": "d1bb9ea8ce42d2479c55a0ce189efceef6ec07b714276556df0af1619931afb3",
    "ita": "a29bcdac8cff6e44c09c51001047d194d03bdde871f52dc8cb26e76c245ed62d",
    "spa": "cdb0a1cca0e92845e4d4a9bf0a62fda7a01aba7e9f4e6bad1cbd4a0085f872bb",
    "fra": "1774747e3f2cfb81b0660c7e56990e34e38016b7f68c90a3cb446193968f9a80",
    "por": "68962ab37b89c36eaaafbc49f9fc67be01099bc5a75a9e3816a884a275cf5a90",
}


def test_generated_texts_are_byte_identical_to_the_python_tables(runs):
    assert SCALE == 0.1
    for lang, (folder, _) in runs.items():
        digest = hashlib.sha256()
        for source in TRAIN_SOURCES:
            for row in _rows(folder, source):
                digest.update(row["text"].encode() + b"\0")
        for path in sorted(folder.rglob("*.jsonl")):
            digest.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
        assert digest.hexdigest() == TEXT_SHA256[lang], lang
    for lang, expected in FACTS_SHA256.items():
        text = json.dumps(corpus.facts(lang), ensure_ascii=False, sort_keys=True)
        assert hashlib.sha256(text.encode()).hexdigest() == expected, lang
