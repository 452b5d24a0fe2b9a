"""Stage 04 over local trainer checkpoints: round trip through the nanotron layout, card, errors."""
import json

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from conftest import finish, full_run_naming, stage_ctx
from zagreus_utils.stages import conversion
from zagreus_utils.pipeline import spec
from zagreus_utils.model import checkpoints
from zagreus_utils.pipeline.errors import ZagreusError


def _checkpoint(folder, step, seed, vocab_size=128):
    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=vocab_size, max_position_embeddings=64, tie_word_embeddings=True)
    path = folder / f"{checkpoints.CHECKPOINT_PREFIX}{step}"
    LlamaForCausalLM(cfg).save_pretrained(path)
    for name in ("optimizer.pt", "scheduler.pt"):
        torch.save({}, path / name)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    checkpoints.record_complete(path)  # what the trainer's on_save writes: a complete checkpoint
    return path


@pytest.fixture
def run_dir(tmp_path):
    rd = tmp_path / "smoke" / "ita"
    ckpts = rd / "03_pretraining" / "checkpoints"
    ckpts.mkdir(parents=True)
    for i, step in enumerate((10, 20)):
        _checkpoint(ckpts, step, i)
    (rd / "03_pretraining" / "metrics.jsonl").write_text(
        "\n".join(json.dumps({"step": s, "tokens_seen": s * 100}) for s in (10, 20)))
    return rd


def test_every_checkpoint_round_trips_bit_identically(run_dir):
    s = spec.load_spec("ita", "smoke")
    out = run_dir / "04_conversion"
    out.mkdir()
    frame = conversion.convert_all(s, run_dir, out, progress=False)
    assert list(frame["direction"]) == ["hf-to-nanotron", "nanotron-to-hf"] * 2
    assert frame["roundtrip_identical"].all() and (frame["max_logits_diff"] < 1e-4).all()
    assert frame.dropna(subset=["bit_identical_to_checkpoint"])["bit_identical_to_checkpoint"].all()
    models = conversion.hf_models(out)
    assert [m.name for m in models] == ["step-10", "step-20"]
    assert conversion.final_model(run_dir) == models[-1]
    info = json.loads((models[-1] / conversion.CHECKPOINT_INFO).read_text())
    assert info["step"] == 20 and info["tokens_seen"] == 2000
    card = conversion.model_card(s, models[-1], run_dir, frame)
    assert "training step 20" in card and "round trip identical: True" in card
    sizes = conversion.sizes(models[-1])
    assert sizes["bytes"].iloc[1] == 2 * sizes["bytes"].iloc[2]  # fp32 is twice bf16


def test_no_checkpoints_is_a_clear_error(tmp_path):
    rd = tmp_path / "smoke" / "ita"
    (rd / "03_pretraining" / "checkpoints").mkdir(parents=True)
    with pytest.raises(ZagreusError, match="no complete checkpoint"):
        conversion.convert_all(spec.load_spec("ita", "smoke"), rd, rd / "04_conversion", progress=False)
    with pytest.raises(ZagreusError, match="run the conversion stage first"):
        conversion.final_model(rd)


def test_stage_refuses_to_run_before_pretraining(tmp_path):
    with pytest.raises(ZagreusError, match="03_pretraining has not run"):
        conversion.run(stage_ctx("conversion", tmp_path / "r", out_dir=tmp_path / "o"))


def test_full_profile_converts_the_cluster_checkpoints_named_by_the_nanotron_config(tmp_path):
    """full: <run>/03_pretraining/*.yaml names checkpoints_path; its <step>/ folders (nanotron layout,
    tp=2 here, written by the project's exporter) become hf/step-N with the tokens they had seen."""
    from zagreus_utils import convert

    cluster = tmp_path / "cluster_checkpoints"
    for i, step in enumerate((1000, 2000)):
        hf = _checkpoint(tmp_path / "hf", step, i)
        convert.hf_to_nanotron(hf, cluster / str(step), tp=2)
        meta_path = cluster / str(step) / "checkpoint_metadata.json"
        meta = json.loads(meta_path.read_text())
        meta["metas"]["consumed_tokens_total"] = step * 4096
        meta_path.write_text(json.dumps(meta))
    rd, out = full_run_naming(tmp_path, cluster)
    frame = conversion.convert_all(spec.load_spec("ita", "full"), rd, out, progress=False)
    assert list(frame["direction"]) == ["nanotron-to-hf"] * 2 and (frame["tp"] == 2).all()
    assert (frame["max_logits_diff"] < 1e-4).all()
    models = conversion.hf_models(out)
    assert [m.name for m in models] == ["step-1000", "step-2000"]
    info = json.loads((models[-1] / conversion.CHECKPOINT_INFO).read_text())
    assert info == {"step": 2000, "tokens_seen": 2000 * 4096, "source": str(cluster / "2000"), "kind": "nanotron"}
    reloaded = LlamaForCausalLM.from_pretrained(models[0])
    original = LlamaForCausalLM.from_pretrained(tmp_path / "hf" / f"{checkpoints.CHECKPOINT_PREFIX}1000")
    ids = torch.tensor([[1, 5, 7, 9]])
    assert torch.equal(reloaded(ids).logits, original(ids).logits)


def test_full_profile_without_cluster_checkpoints_names_the_config_path(tmp_path):
    rd, out = full_run_naming(tmp_path, tmp_path / "nowhere")
    with pytest.raises(ZagreusError, match="nowhere"):
        conversion.convert_all(spec.load_spec("ita", "full"), rd, out, progress=False)


def test_notebook_runs_on_the_stage(tmp_path):
    """Notebook 04 headless: parameters, StageContext, conversion.run(ctx), display; its tables in outputs.json."""
    import nbformat
    import papermill as pm

    from zagreus_utils.pipeline import paths
    from zagreus_utils.stages.tokenizer import train_bpe

    rd = tmp_path / "smoke" / "ita"
    ckpts = rd / "03_pretraining" / "checkpoints"
    ckpts.mkdir(parents=True)
    _checkpoint(ckpts, 10, 0, vocab_size=300)
    finish(rd / "03_pretraining")
    texts = ["La capitale della Francia è Parigi. Due più tre fa cinque."] * 50
    train_bpe(texts, 300, rd / "02_tokenization" / "tokenizer")
    nb_path = paths.NOTEBOOKS / "04_conversion.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    out = tmp_path / "04.ipynb"
    pm.execute_notebook(str(nb_path), str(out), kernel_name="python3", progress_bar=False, cwd=str(tmp_path),
                        parameters={"run_dir": str(rd)})
    assert "final model:" in out.read_text() and (rd / "04_conversion" / "hf" / "step-10" / conversion.CARD).is_file()
    index = json.loads((rd / "04_conversion" / "outputs.json").read_text())
    assert {t["id"] for t in index["tables"]} == {"conversions", "sizes", "generations"}
