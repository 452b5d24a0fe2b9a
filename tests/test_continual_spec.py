"""Continual pretraining in the spec: training.init_from / init_reset / init_rewarmup_steps and the
profile's data_stages (zagreus_utils.pipeline.data_stages), with their refusals."""

import shutil

import pytest

from zagreus_utils.pipeline import paths, runplan, spec
from zagreus_utils.pipeline.spec import parse_override
from zagreus_utils.pipeline.errors import ZagreusError

TWO_STAGES = [{"name": "italian", "start_step": 0, "mixture": None},
              {"name": "spanish", "start_step": 300, "mixture": {"spa/fineweb2": 3, "fineweb": 1}}]


@pytest.mark.parametrize("profile", ["smoke", "full"])
def test_defaults_are_one_stage_of_the_languages_mixture_and_no_start_model(profile):
    s = spec.load_spec("ita", profile)
    t = s.profile.training
    assert (t.init_from, t.init_reset, t.init_rewarmup_steps) == (None, ["optimizer", "lr_schedule", "step"], None)
    assert t.warmup_steps == t.lr_warmup_steps
    [stage] = spec.data_stages(s)
    assert (stage.name, stage.start_step, stage.start_training_step) == ("stable phase", 0, 1)
    assert [(x.language, x.source, x.weight) for x in stage.sources] == \
        [("ita", src.id, None) for src in s.language.mixture]


def test_a_stage_names_sources_of_another_language():
    s = spec.load_spec("ita", "smoke", {"data_stages": TWO_STAGES})
    first, second = spec.data_stages(s)
    assert [x.ref for x in first.sources] == ["ita/fineweb", "ita/fineweb2", "ita/finepdfs", "ita/starcoderdata"]
    assert [(x.ref, x.weight) for x in second.sources] == [("spa/fineweb2", 3.0), ("ita/fineweb", 1.0)]
    assert second.start_training_step == 301 and second.languages == ["ita", "spa"]


def test_init_from_and_rewarmup_from_the_command_line(tmp_path):
    ov = dict([parse_override(f"training.init_from={tmp_path}"), parse_override("training.init_rewarmup_steps=5")])
    t = spec.load_spec("ita", "smoke", ov).profile.training
    assert t.init_from == str(tmp_path) and t.warmup_steps == 5
    keep = spec.load_spec("ita", "smoke", {"training.init_from": "org/model", "training.init_reset": ["optimizer"]})
    assert keep.profile.training.init_reset == ["optimizer"]


@pytest.mark.parametrize("overrides, words", [
    ({"data_stages": [{"name": "a", "start_step": 5}]}, ["--set data_stages=", "first stage must start at step 0"]),
    ({"data_stages": [{"name": "a", "start_step": 0}, {"name": "b", "start_step": 200}, {"name": "c", "start_step": 100}]},
     ["data_stages[2].start_step (100) must be greater than data_stages[1].start_step (200)"]),
    ({"data_stages": [{"name": "a", "start_step": 0}, {"name": "a", "start_step": 10}]}, ["names must be unique"]),
    ({"data_stages": [{"name": "a", "start_step": 0}, {"name": "b", "start_step": 400}]},
     ["data_stages[1] ('b') starts at step 400, at or after the last step (training.train_steps=400)"]),
    ({"data_stages": [{"name": "a", "start_step": 0, "mixture": {"fineweb": 0}}]}, ["weights must be positive"]),
    ({"data_stages": [{"name": "a", "start_step": 0, "mixture": {}}]}, ["mixture is empty"]),
    ({"data_stages": []}, ["data_stages is empty"]),
    ({"data_stages": [{"name": "a", "start_step": 0, "mixture": {"spa/nope": 1}}]},
     ["'spa/nope' names no source of spa's mixture", "fineweb2"]),
    ({"data_stages": [{"name": "a", "start_step": 0, "mixture": {"deu/fineweb2": 1}}]}, ["unknown language 'deu'"]),
    ({"data_stages": [{"name": "a", "start_step": 0, "mixture": {"nope": 1}}]},
     ["'nope' names no source of ita's mixture", "<code>/<source>"]),
    ({"training.init_reset": ["optimizer", "step"]}, ["list both lr_schedule and step, or neither"]),
    ({"training.init_reset": ["optimiser"]}, ["init_reset"]),
    ({"training.init_rewarmup_steps": 10}, ["init_from is null"]),
    ({"training.init_from": "x", "training.init_reset": [], "training.init_rewarmup_steps": 10},
     ["init_rewarmup_steps needs lr_schedule in init_reset"]),
    ({"training.init_from": "x", "training.init_rewarmup_steps": 400}, ["within 0..train_steps-1"]),
])
def test_refusals_name_the_key_and_the_fix(overrides, words):
    with pytest.raises(ZagreusError) as exc:
        spec.load_spec("ita", "smoke", overrides)
    for w in words:
        assert w in str(exc.value)
    assert "(got {" not in str(exc.value)  # one line, not the whole section echoed back


def test_a_late_stage_in_the_file_names_the_file_and_line(tmp_path):
    root = tmp_path / "configs"
    shutil.copytree(paths.CONFIGS, root)
    path = root / "profiles" / "smoke.yaml"
    text = path.read_text().replace("  - {name: stable phase, start_step: 0, mixture: null}\n",
                                    "  - {name: stable phase, start_step: 0, mixture: null}\n"
                                    "  - {name: late, start_step: 999, mixture: null}\n")
    path.write_text(text)
    with pytest.raises(ZagreusError, match=r"smoke.yaml:\d+: data_stages\[1\] \('late'\) starts at step 999"):
        spec.load_spec("ita", "smoke", root=root)


def test_zagreus_run_checks_the_keys_before_any_stage():
    """``zagreus run --set ...`` (its parser and its plan) takes the keys and refuses a bad stage up front."""
    ok = [parse_override("training.init_from=org/model"),
          parse_override("data_stages=[{name: a, start_step: 0}, {name: b, start_step: 10, mixture: {spa/fineweb2: 1}}]")]
    plan = runplan.plan("smoke", ["ita"], ["plots"], overrides=dict(ok))  # no pretraining: no start model read
    assert plan.profile_spec.training.init_from == "org/model"
    assert plan.profile_spec.data_stages[1].mixture == {"spa/fineweb2": 1.0}
    bad = parse_override("data_stages=[{name: a, start_step: 0, mixture: {spa/nope: 1}}]")
    with pytest.raises(ZagreusError, match="--set data_stages=.*'spa/nope' names no source"):
        runplan.plan("smoke", ["ita"], ["plots"], overrides=dict([bad]))
    with pytest.raises(ZagreusError, match=r"training.init_from org/model: not a folder .* not in the local Hugging "
                                           r"Face cache.*--set training.init_from=org/model"):
        runplan.plan("smoke", ["ita"], ["pretraining"], overrides=dict(ok))
