"""Pre-flight of a continual pretraining run (zagreus_utils.model.start_checks): every mismatch
between the start model (training.init_from) and the spec or the token folders is refused before
any compute, naming the file, the key and the fix.

Start models are real (tests/continual_helpers.py): small Hugging Face folders written by
transformers with the stage-02 tokenizer of a small corpus, and nanotron checkpoint folders written
from them by the project's converter.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import stage_ctx
from continual_helpers import build_world

from zagreus_utils.model import preflight, start_checks
from zagreus_utils.nanotron import config as ncfg
from zagreus_utils.pipeline import runplan
from zagreus_utils.pipeline.errors import ZagreusError
from zagreus_utils.pipeline.spec import load_spec
from zagreus_utils.stages import pretraining


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("continual"))


def checks_for(world, init_from, **more):
    """(spec, config, {check name: Check}) of the smoke run of ``world`` started from ``init_from``."""
    run_dir, overrides, _ = world
    overrides = {**overrides, "training.init_from": str(init_from), **more}
    spec = load_spec("ita", "smoke", overrides)
    tok = str((run_dir / "02_tokenization" / "tokenizer").resolve())
    config = ncfg.render(spec, run_dir=run_dir, tokenizer_name_or_path=tok)
    return spec, config, {c.name: c for c in start_checks.check_start(spec, config, overrides=overrides)}


@pytest.mark.parametrize("model", ["good", "nt"])
def test_a_fitting_start_model_passes_every_check(world, model):
    _, _, checks = checks_for(world, world[2][model])
    assert set(checks) == {"start model (training.init_from)", "start model: reset", "start model: shape vs spec",
                           "start model: sequence length", "start model: tensor parallelism",
                           "start model: tokenizer vs token folders"}
    assert all(c.ok for c in checks.values()), [c for c in checks.values() if not c.ok]
    assert "same vocabulary" in checks["start model: tokenizer vs token folders"].detail


@pytest.mark.parametrize("model", ["other_tok", "nt_other_tok"])
def test_another_tokenizer_is_refused(world, model):
    _, _, checks = checks_for(world, world[2][model])
    c = checks["start model: tokenizer vs token folders"]
    assert c.ok is False
    assert "differs from the token folders' tokenizer" in c.detail and "vocabulary sha256" in c.detail
    assert "tokenizer.name_or_path" in c.fix and "configs/profiles/smoke.yaml" in c.fix


def test_another_shape_is_refused_naming_the_keys(world):
    _, _, checks = checks_for(world, world[2]["wide"])
    c = checks["start model: shape vs spec"]
    assert c.ok is False and str(world[2]["wide"] / "config.json") in c.detail
    assert "model.hidden_size is 64 (--set model.hidden_size=64) but the start model has 128" in c.detail
    assert "model.intermediate_size" in c.detail and "model.num_hidden_layers" not in c.detail


def test_a_sequence_longer_than_its_positions_is_refused(world):
    _, _, checks = checks_for(world, world[2]["short"])
    c = checks["start model: sequence length"]
    assert c.ok is False
    assert "training.sequence_length 64" in c.detail and "max_position_embeddings 32" in c.detail
    assert "at most 32" in c.fix


def test_keeping_states_a_model_does_not_hold_is_refused(world):
    _, _, checks = checks_for(world, world[2]["good"], **{"training.init_reset": ["optimizer"]})
    c = checks["start model: reset"]
    assert c.ok is False and "is a Hugging Face model: it holds weights only" in c.detail
    _, _, checks = checks_for(world, world[2]["nt"], **{"training.init_reset": []})
    c = checks["start model: reset"]
    assert c.ok is False
    assert "keeps the optimizer but" in c.detail and "lr_scheduler is missing" in c.detail


def test_keeping_a_step_at_or_past_the_last_is_refused(world, tmp_path):
    nt = shutil.copytree(world[2]["nt"], tmp_path / "nt")
    meta = json.loads((nt / "checkpoint_metadata.json").read_text())
    meta["metas"]["last_train_step"] = 16  # as nanotron records a checkpoint saved at step 16
    (nt / "checkpoint_metadata.json").write_text(json.dumps(meta))
    for state in ("optimizer", "lr_scheduler"):  # what nanotron saves beside the weights
        (nt / state).mkdir()
        (nt / state / "state.pt").write_bytes(b"0")
    _, _, checks = checks_for(world, nt, **{"training.init_reset": []})
    c = checks["start model: reset"]
    assert c.ok is False and "at 16" in c.detail and "training.train_steps (16)" in c.detail
    _, _, checks = checks_for(world, nt, **{"training.init_reset": [], "training.train_steps": 24})
    assert checks["start model: reset"].ok, checks["start model: reset"]
    assert "continues from step 16" in checks["start model: reset"].detail


def test_a_tp_that_does_not_divide_the_model_is_refused(world):
    _, _, checks = checks_for(world, world[2]["good"], **{"parallelism.tp": 3, "parallelism.dp": 1})
    c = checks["start model: tensor parallelism"]
    assert c.ok is False and "tp=3 does not divide num_attention_heads=4" in c.detail and "parallelism.tp" in c.fix


def test_a_missing_start_model_is_refused(world, tmp_path):
    _, _, checks = checks_for(world, tmp_path / "nowhere")
    c = checks["start model (training.init_from)"]
    assert c.ok is False and "does not exist" in c.detail and "training.init_from" in c.fix
    (tmp_path / "empty").mkdir()
    _, _, checks = checks_for(world, tmp_path / "empty")
    assert "neither a Hugging Face model folder" in checks["start model (training.init_from)"].detail


def test_a_data_stage_after_the_last_step_is_refused(world):
    spec, config, _ = checks_for(world, world[2]["good"], data_stages=[
        {"name": "ita", "start_step": 0}, {"name": "more", "start_step": 8, "mixture": {"fineweb": 1}}])
    assert start_checks.check_stages(config).ok
    config["data_stages"][1]["start_training_step"] = 17  # a config edited by hand (the spec refuses it)
    c = start_checks.check_stages(config)
    assert c.ok is False and "data_stages[1] ('more') starts at step 17" in c.detail
    assert "tokens.train_steps=16" in c.detail and "start_step" in c.fix


def test_stage_03_stops_before_training_with_every_refusal(world, tmp_path):
    """Through the stage: prepare's pre-flight (check_all) lists the refusals; nothing is trained."""
    run_dir, overrides, models = world
    ctx = stage_ctx("pretraining", run_dir, {**overrides, "training.init_from": str(models["wide"])},
                    out_dir=tmp_path / "03")
    with pytest.raises(ZagreusError) as exc:
        pretraining.prepare(ctx)
    text = str(exc.value)
    assert "start model: shape vs spec" in text and "model.hidden_size" in text and "nothing was submitted" in text
    assert not (tmp_path / "03" / "checkpoints").exists()
    records = json.loads((tmp_path / "03" / "preflight.json").read_text())
    assert {r["check"]: r["status"] for r in records}["start model: shape vs spec"] == "FAILED"


def test_zagreus_run_refuses_before_the_first_stage(world):
    _, overrides, models = world
    with pytest.raises(ZagreusError, match=r"start model: sequence length: training.sequence_length 64 "
                                           r"\(--set training.sequence_length=64\)"):
        runplan.plan("smoke", ["ita"], None, overrides={**overrides, "training.init_from": str(models["short"])})
    # a run that does not pretrain is not held up by the start model
    runplan.plan("smoke", ["ita"], ["plots"], overrides={**overrides, "training.init_from": str(models["short"])})


def test_check_all_passes_a_fitting_start(world):
    spec, config, _ = checks_for(world, world[2]["good"])
    checks = preflight.check_all(spec, config, base=Path("/"), raise_on_failure=False)
    names = {c.name: c for c in checks}
    assert names["resume checkpoint"].ok and "converted there before training" in names["resume checkpoint"].detail
    assert names["data stages (start steps)"].ok
    assert all(names[n].ok for n in names if n.startswith("start model"))


def test_data_volume_is_counted_per_stage(world):
    """nanotron reads a stage's folders for its own steps only: a stage short of data is named."""
    stages = [{"name": "ita", "start_step": 0}, {"name": "more code", "start_step": 8,
                                                 "mixture": {"starcoderdata": 3, "fineweb": 1}}]
    _, config, _ = checks_for(world, world[2]["good"], data_stages=stages)
    ok = preflight.check_data_volume(config, Path("/"), repeats=False)
    assert ok.ok and ok.detail.startswith("64 samples from")  # 16 steps x 4 sequences, over both stages
    _, config, _ = checks_for(world, world[2]["good"], data_stages=stages, **{"training.train_steps": 2000})
    c = preflight.check_data_volume(config, Path("/"), repeats=False)
    assert c.ok is False and "stage 'more code': starcoderdata" in c.detail and "stage 'ita'" not in c.detail


def test_the_start_model_and_other_languages_data_are_inputs_of_stage_03(world, tmp_path):
    """A changed start model at the same path, or re-tokenized data of a language a stage names,
    makes stage 03 out of date (its fingerprint), as a change upstream does."""
    from zagreus_utils.pipeline import continual_inputs, manifest, runner, stages

    _, overrides, models = world
    start = shutil.copytree(models["good"], tmp_path / "start")
    all_stages = stages.discover()
    pretrain = next(s for s in all_stages if s.key == "pretraining")
    ov = {**overrides, "training.init_from": str(start), "data_stages": [
        {"name": "ita", "start_step": 0}, {"name": "spa", "start_step": 8, "mixture": {"spa/fineweb2": 1}}]}

    def fingerprint():
        extra = continual_inputs.stage_inputs(pretrain, "smoke", "ita", ov, all_stages, tmp_path / "runs")
        return runner._fingerprint(pretrain, {}, "spec", {}, "smoke", ["ita"], extra)

    first, inputs = fingerprint()
    assert "model.safetensors" in inputs["start_model"] and set(inputs["other_languages"]) == {"spa"}
    assert fingerprint()[0] == first
    weights = start / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")  # other weights, same path and size
    second, _ = fingerprint()
    assert second != first
    spa = tmp_path / "runs" / "smoke" / "spa" / "02_tokenization"
    spa.mkdir(parents=True)
    manifest.write(spa, {"status": "ok", "fingerprint": "x"})
    assert fingerprint()[0] != second
    assert "start_model" not in continual_inputs.stage_inputs(pretrain, "smoke", "ita", overrides, all_stages)
