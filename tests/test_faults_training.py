"""Fault injection for the local pretraining path: a run is reused only when trained on the same
settings, tokenizer and token files; corrupt token files are refused; an earlier run is moved
aside, never deleted; a checkpoint counts only when complete.

Each test makes its own stage-02 output (a tiny BPE, datatrove token files) and trains a tiny
Llama for a few steps with the real trainer (``pretraining.prepare`` / ``execute``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from conftest import stage_ctx
from pretraining_helpers import make_stage02, tiny_overrides

from zagreus_utils.stages import conversion, pretraining
from zagreus_utils.pipeline import paths, runner
from zagreus_utils.model import checkpoints, trainer
from zagreus_utils.pipeline.errors import ZagreusError
from zagreus_utils.pipeline.stages import Stage

STEPS, INTERVAL = 8, 4


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def weights(folder: Path) -> dict[str, str]:
    """checkpoint name -> sha256 of its model.safetensors."""
    return {p.name: sha(p / "model.safetensors") for p in sorted(Path(folder).glob("checkpoint-*"))}


@pytest.fixture
def trained(tmp_path):
    """(run_dir, overrides, prep, result): a stage-02 output and a finished tiny run on it."""
    run_dir = tmp_path / "smoke" / "ita"
    vocab = make_stage02(run_dir)
    ov = tiny_overrides(vocab, STEPS, INTERVAL)
    prep = pretraining.prepare(stage_ctx("pretraining", run_dir, ov))
    result = pretraining.execute(prep, progress=False)
    assert result.status == "trained" and [Path(c).name for c in result.checkpoints] == ["checkpoint-4", "checkpoint-8"]
    return run_dir, ov, prep, result


def _moved(result, prep) -> Path:
    """The one folder the earlier run was moved to, checked to be named in the notes and pretraining.json."""
    assert len(result.moved_aside) == 1, result.moved_aside
    moved = Path(result.moved_aside[0])
    assert moved.parent == prep.out_dir / checkpoints.PREVIOUS and moved.is_dir()
    assert any(str(moved) in note for note in result.notes), result.notes
    summary = json.loads((prep.out_dir / pretraining.SUMMARY_FILE).read_text())
    assert summary["moved_aside"] == [pretraining.relative(moved, prep.out_dir)]
    return moved


def test_finding1_new_tokenizer_retrains_not_reuses(trained):
    """Stages 01-02 rerun with another sample (a new tokenizer and token files, same vocabulary
    size, so the same settings): the earlier checkpoints must not be reused with the new tokenizer."""
    run_dir, ov, prep, first = trained
    before = weights(prep.out_dir / "checkpoints")
    stage02 = run_dir / "02_tokenization"
    old_vocab = json.loads((stage02 / "tokenizer" / "tokenizer.json").read_text())["model"]["vocab"]
    shutil.rmtree(stage02)
    shutil.rmtree(run_dir / "logs")  # datatrove's completion marks: tokenize again
    assert make_stage02(run_dir, seed=1, scale=0.8) == ov["tokenizer.vocab_size"]  # same settings
    new_vocab = json.loads((stage02 / "tokenizer" / "tokenizer.json").read_text())["model"]["vocab"]
    assert new_vocab != old_vocab

    prep = pretraining.prepare(stage_ctx("pretraining", run_dir, ov))
    result = pretraining.execute(prep, progress=False)
    assert result.status == "trained" and result.steps == STEPS and result.resumed_from is None
    assert result.fingerprint != first.fingerprint
    moved = _moved(result, prep)
    assert any("tokenizer" in n and "token files" in n for n in result.notes), result.notes
    assert weights(moved / "checkpoints") == before  # the earlier run is kept, whole
    assert weights(prep.out_dir / "checkpoints").keys() == before.keys()
    for ckpt in result.checkpoints:  # the new checkpoints carry the new tokenizer
        assert json.loads((Path(ckpt) / "tokenizer.json").read_text())["model"]["vocab"] == new_vocab
    again = pretraining.execute(prep, progress=False)  # same inputs now: reused
    assert again.status == "already complete" and again.moved_aside == []


def test_finding1_force_retrains(trained, tmp_path):
    run_dir, ov, prep, first = trained
    before = weights(prep.out_dir / "checkpoints")
    result = pretraining.execute(prep, progress=False, force=True)
    assert result.status == "trained" and result.steps == STEPS and result.fingerprint == first.fingerprint
    moved = _moved(result, prep)
    assert "force" in json.loads((moved / "moved.json").read_text())["reason"]
    assert weights(moved / "checkpoints") == before
    rows = [json.loads(x) for x in (prep.out_dir / trainer.METRICS).read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))  # the retrained run's log only

    # `zagreus run --force` reaches a stage notebook that takes `force` (and only through that
    # parameter: a forced run leaves the stage up to date for the next, unforced one)
    nb = tmp_path / "nb" / "03_probe.ipynb"
    nb.parent.mkdir()
    import nbformat

    cell = nbformat.v4.new_code_cell('profile = "smoke"\nlanguage = "ita"\nout_dir = ""\nforce = False')
    cell.metadata["tags"] = ["parameters"]
    body = nbformat.v4.new_code_cell("from pathlib import Path\n(Path(out_dir) / 'force.txt').write_text(str(force))")
    nbformat.write(nbformat.v4.new_notebook(cells=[cell, body], metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}}), nb)
    probe = Stage("03_probe", 3, "probe", nb, ("profile", "language", "out_dir", "force"))
    root = tmp_path / "runs"
    res = runner.execute_stage(probe, "smoke", "ita", ["ita"], [probe], spec_digest="x", force=True, root=root,
                               progress=False)
    assert res.status == "ok", res.error
    assert (res.folder / "force.txt").read_text() == "True"
    again = runner.execute_stage(probe, "smoke", "ita", ["ita"], [probe], spec_digest="x", root=root,
                                 progress=False)
    assert again.status == "skipped"
    assert "force" in pretraining.paths.NOTEBOOKS.joinpath("03_pretraining.ipynb").read_text()


def test_finding2_truncated_ds_is_refused(tmp_path):
    run_dir = tmp_path / "smoke" / "ita"
    vocab = make_stage02(run_dir)
    ds = next((run_dir / "02_tokenization" / "tokenized" / "finepdfs").glob("*.ds"))
    with open(ds, "r+b") as fh:
        fh.truncate(1000)
    ov = tiny_overrides(vocab, STEPS, INTERVAL)
    with pytest.raises(ZagreusError) as err:
        pretraining.prepare(stage_ctx("pretraining", run_dir, ov))
    text = str(err.value)
    assert "token files (.ds vs .ds.index)" in text and str(ds) in text and "1,000 bytes" in text
    assert "truncated" in text and "rerun the tokenization stage" in text
    # the trainer itself (what each Slurm rank runs, without the pre-flight) refuses too, before training
    prep = pretraining.prepare(stage_ctx("pretraining", run_dir, ov), raise_on_failure=False)
    with pytest.raises(ZagreusError, match=f"{ds}.*truncated or corrupt.*rerun the tokenization stage"):
        trainer.train(prep.config, base=paths.REPO_ROOT, progress=False)
    assert trainer.checkpoints(prep.out_dir / "checkpoints", complete_only=False) == []


def test_finding3_other_settings_move_earlier_checkpoints_aside(trained):
    run_dir, ov, prep, first = trained
    before = weights(prep.out_dir / "checkpoints")
    first_log = (prep.out_dir / trainer.METRICS).read_text()
    other = pretraining.prepare(stage_ctx("pretraining", run_dir, {**ov, "training.learning_rate": 0.002}))
    result = pretraining.execute(other, progress=False)  # a one-off --set training.learning_rate=0.002
    assert result.status == "trained" and result.steps == STEPS
    moved = _moved(result, other)
    assert any("settings (learning_rate)" in n for n in result.notes), result.notes
    assert weights(moved / "checkpoints") == before  # nothing computed was deleted
    assert (moved / trainer.METRICS).read_text() == first_log
    assert (moved / "checkpoints" / trainer.RUN_FILE).is_file()

    # asked to keep the folder as it is, the trainer refuses and says where the run would go
    with pytest.raises(ZagreusError, match=r"trained on other settings \(learning_rate\).*--restart-on-mismatch"):
        trainer.train(prep.config, base=paths.REPO_ROOT, progress=False, on_mismatch="error")
    assert len(trainer.checkpoints(other.out_dir / "checkpoints")) == 2
    # the Slurm launcher's step before the ranks start moves it aside as well
    second = weights(other.out_dir / "checkpoints")
    dest = trainer.set_aside_other_run(prep.config, base=paths.REPO_ROOT)
    assert dest is not None and dest.parent == moved.parent and dest != moved
    assert weights(dest / "checkpoints") == second and weights(moved / "checkpoints") == before
    assert trainer.set_aside_other_run(prep.config, base=paths.REPO_ROOT) is None  # now it matches: nothing moved


def test_finding6_checkpoint_without_weights_is_incomplete(trained):
    run_dir, ov, prep, first = trained
    ckpts = prep.out_dir / "checkpoints"
    (ckpts / "checkpoint-8" / "model.safetensors").unlink()
    assert trainer.checkpoints(ckpts) == [ckpts / "checkpoint-4"]
    out = run_dir / "04_conversion"
    out.mkdir()
    conversion.convert_all(prep.spec, run_dir, out, progress=False)
    assert [m.name for m in conversion.hf_models(out)] == ["step-4"]  # the weightless checkpoint is not converted

    result = pretraining.execute(prep, progress=False)
    assert result.status == "resumed" and result.resumed_from.endswith("checkpoint-4") and result.steps == STEPS
    assert checkpoints.is_complete(ckpts / "checkpoint-8")
    moved = Path(result.moved_aside[0])
    assert (moved / "checkpoint-8" / "optimizer.pt").is_file()  # set aside, not deleted
    assert not (moved / "checkpoint-8" / "model.safetensors").exists()

    # same size, other bytes: the recorded hash refuses it as a resume point, naming the file
    weights_8 = ckpts / "checkpoint-8" / "model.safetensors"
    data = bytearray(weights_8.read_bytes())
    data[-1] ^= 0xFF
    weights_8.write_bytes(bytes(data))
    with pytest.raises(ZagreusError, match=f"{weights_8} differs from the sha256 recorded"):
        pretraining.execute(prep, progress=False)
    # a checkpoint without its completion record does not count
    (ckpts / "checkpoint-4" / checkpoints.COMPLETE_RECORD).unlink()
    assert not checkpoints.is_complete(ckpts / "checkpoint-4")
    assert trainer.checkpoints(ckpts) == [ckpts / "checkpoint-8"]
