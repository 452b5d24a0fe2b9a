import shutil

import pytest

from zagreus_utils.pipeline import paths, spec
from zagreus_utils.pipeline.errors import ZagreusError


@pytest.fixture
def configs(tmp_path):
    root = tmp_path / "configs"
    shutil.copytree(paths.CONFIGS, root)
    return root


@pytest.mark.parametrize("language", ["ita", "spa", "fra", "por"])
@pytest.mark.parametrize("profile", ["smoke", "full"])
def test_every_language_and_profile_loads(language, profile):
    s = spec.load_spec(language, profile)
    assert s.language.code == language
    assert s.profile.name == profile
    assert [src.id for src in s.language.mixture] == ["fineweb", "fineweb2", "finepdfs", "starcoderdata"]
    assert s.language.budget.total == 1_000_000_000_000


def test_full_profile_carries_the_reports_values():
    p = spec.load_profile("full")
    m, t = p.model, p.training
    assert (m.hidden_size, m.intermediate_size, m.num_hidden_layers) == (960, 2560, 32)
    assert (m.num_attention_heads, m.num_key_value_heads, m.vocab_size if hasattr(m, "vocab_size") else p.tokenizer.vocab_size) == (15, 5, 128256)
    assert (t.learning_rate, t.lr_warmup_steps, t.lr_decay_starting_step, t.lr_decay_steps) == (0.003, 4000, 750000, 50000)
    assert (t.micro_batch_size, t.sequence_length, t.train_steps) == (4, 4096, 2_000_000)
    assert p.parallelism.world_size == 64 == p.hardware.nodes * p.hardware.gpus_per_node
    assert p.tokenizer.name_or_path == "meta-llama/Llama-3.2-1B"
    assert p.slurm.tokenization.mem_per_cpu_gb == 16 and p.slurm.tokenization.gres == "gpu:0"


def test_languages_name_their_sources_and_eval_suites():
    por = spec.load_language("por")
    assert [s.subset for s in por.mixture][1:3] == ["por_Latn", "por_Latn"]
    assert por.mixture[0].tokens == 350_000_000_000 and por.mixture[3].tokens == 250_000_000_000
    assert [(e.task, e.num_fewshot, e.metric) for e in por.evaluation.base] == [
        ("m_mmlu_pt", 5, "acc"), ("hellaswag_pt", 0, "acc_norm"), ("arc_pt", 0, "acc_norm")]
    assert "por_leaderboard" in por.published_tables
    ita = spec.load_language("ita")
    assert {"ifeval", "ifeval-ita", "mmlu"} <= {e.task for e in ita.evaluation.instruct}


def test_digest_changes_with_overrides():
    a = spec.load_spec("ita", "smoke")
    b = spec.load_spec("ita", "smoke", {"training.train_steps": 7})
    assert b.profile.training.train_steps == 7
    assert a.digest() != b.digest()
    assert a.digest() == spec.load_spec("ita", "smoke").digest()


def test_unknown_language_lists_choices():
    with pytest.raises(ZagreusError, match=r"unknown language 'deu'.*Valid languages: fra, ita, por, spa"):
        spec.load_spec("deu", "smoke")


def test_unknown_profile_lists_choices():
    with pytest.raises(ZagreusError, match=r"unknown profile 'huge'.*full, smoke"):
        spec.load_spec("ita", "huge")


def test_unknown_key_names_file_line_and_valid_keys(configs):
    f = configs / "profiles" / "smoke.yaml"
    text = f.read_text().replace("  train_steps: 400\n", "  train_steps: 400\n  train_stepz: 3\n")
    f.write_text(text)
    line = text.splitlines().index("  train_stepz: 3") + 1
    with pytest.raises(ZagreusError) as err:
        spec.load_spec("ita", "smoke", root=configs)
    msg = str(err.value)
    assert f"smoke.yaml:{line}" in msg and "'training.train_stepz'" in msg and "train_steps" in msg


def test_malformed_yaml_names_line(configs):
    f = configs / "languages" / "spa.yaml"
    lines = f.read_text().splitlines()
    lines[5] = "model_name: [unclosed"
    f.write_text("\n".join(lines))
    with pytest.raises(ZagreusError, match=r"malformed YAML in .*spa\.yaml:\d+"):
        spec.load_language("spa", root=configs)


def test_wrong_type_and_missing_key(configs):
    f = configs / "profiles" / "smoke.yaml"
    f.write_text(f.read_text().replace("  dp: 1\n", "  dp: many\n"))
    with pytest.raises(ZagreusError, match=r"parallelism\.dp"):
        spec.load_profile("smoke", root=configs)
    f = configs / "languages" / "fra.yaml"
    f.write_text(f.read_text().replace("iso639_1: fr\n", ""))
    with pytest.raises(ZagreusError, match=r"missing key 'iso639_1'"):
        spec.load_language("fra", root=configs)


def test_bad_overrides():
    with pytest.raises(ZagreusError, match="Valid keys"):
        spec.load_spec("ita", "smoke", {"training.nope": 1})
    with pytest.raises(ZagreusError, match="section.key=value"):
        spec.parse_override("training.train_steps")
    assert spec.parse_override("training.learning_rate=1e-3") == ("training.learning_rate", 1e-3)


def test_inconsistent_heads_are_refused():
    with pytest.raises(ZagreusError, match="num_key_value_heads"):
        spec.load_profile("smoke", {"model.num_key_value_heads": 3})


def test_language_names_are_read_from_the_language_files(configs):
    assert spec.language_names() == {"fra": "French", "ita": "Italian", "por": "Portuguese", "spa": "Spanish",
                                     "eng": "English"}
    text = (configs / "languages" / "ita.yaml").read_text(encoding="utf-8")
    text = text.replace("code: ita", "code: deu").replace("name: Italian", "name: German")
    (configs / "languages" / "deu.yaml").write_text(text, encoding="utf-8")
    assert spec.language_names(root=configs)["deu"] == "German"
