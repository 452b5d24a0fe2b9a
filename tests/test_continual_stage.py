"""The continual demonstration stage (09) on a tiny run of our own: stages 01-03 made here (the
project's sample corpus, a byte-level BPE, datatrove token folders, a 16-step local run of a tiny
Llama), then the stage with a budget of 8 steps. Its held-out scoring is checked against a direct
computation, and its outputs are what the report embeds."""

from __future__ import annotations

import glob
import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import finish, stage_ctx
from pretraining_helpers import tiny_overrides, write_stage02

from zagreus_utils.model import checkpoints
from zagreus_utils.pipeline.errors import ZagreusError
from zagreus_utils.sample_corpus import corpus
from zagreus_utils.stages import pretraining
from zagreus_utils.stages.continual import heldout, stage

SCALE = 0.15


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """runs/smoke/ita with 01_data (raw corpus, held-out text), 02_tokenization and 03_pretraining."""
    run_dir = tmp_path_factory.mktemp("runs") / "smoke" / "ita"
    raw = run_dir / "01_data" / "raw"
    corpus.generate(raw, "ita", seed=8, scale=SCALE, facts_per_type=16)
    texts = {s: [t for f in sorted(glob.glob(str(raw / "sources" / s / "*.parquet")))
                 for t in pq.read_table(f)["text"].to_pylist()] for s in corpus.SOURCES}
    vocab = write_stage02(run_dir, texts, 1024, bos="<|begin_of_text|>", eos="<|end_of_text|>")
    overrides = {**tiny_overrides(vocab, steps=16, interval=8), "data.sample_scale": SCALE}
    pre = pretraining.prepare(stage_ctx("pretraining", run_dir, overrides))
    pretraining.execute(pre, progress=False)
    for name in ("01_data", "02_tokenization", "03_pretraining"):
        finish(run_dir / name)
    return run_dir, overrides


@pytest.fixture(scope="module")
def demo(base_run):
    run_dir, overrides = base_run
    patch = pytest.MonkeyPatch()
    for name, value in (("STEPS", 8), ("EVERY", 4), ("REWARMUP", 2), ("SHIFT_AT", 3)):
        patch.setattr(stage, name, value)
    try:
        yield stage.run(stage_ctx("continual", run_dir, overrides), progress=False)
    finally:
        patch.undo()


@pytest.mark.smoke  # stages 01-03 and the stage itself, tiny: ~35 s on a loaded 2-core machine
def test_stage_compares_continued_and_scratch_on_both_languages(demo, base_run):
    run_dir, _ = base_run
    scores = demo.frames["scores"]
    assert set(zip(scores["run"], scores["language"], scores["step"])) == {
        (r, lang, s) for r in stage.RUNS for lang in ("ita", "spa") for s in (0, 4, 8)}
    assert (scores["bpb_se"] > 0).all() and (scores["acc_se"] > 0).all()
    per_source = demo.summary["samples_per_source"]["continued"]
    assert set(per_source) == {"shift: 02_tokenization/tokenized/fineweb2", "shift: spa/tokenized/fineweb2",
                               "new language: fineweb2", "new language: finepdfs"}
    assert per_source["shift: 02_tokenization/tokenized/fineweb2"] + \
        per_source["shift: spa/tokenized/fineweb2"] == 3 * 4  # steps 1-3, batch 4
    # the Spanish token files carry the run's tokenizer string (what nanotron asserts)
    meta = next((demo.out_dir / "spa" / "tokenized" / "fineweb2").glob("*.metadata")).read_text()
    assert meta.splitlines()[0] == f"{run_dir / '02_tokenization' / 'tokenizer'}|2"  # name|token size
    index = json.loads((demo.out_dir / "outputs.json").read_text())
    assert {f["id"] for f in index["figures"]} == {"continual-curves-ita", "continual-gain-forgetting-ita"}
    assert all((demo.out_dir / f["png"]).is_file() for f in index["figures"])
    assert [t["id"] for t in index["tables"]] == ["continual-scores-ita"]
    assert any("forgetting" in n for n in index["notes"])


@pytest.mark.smoke
def test_step_0_of_the_continued_run_is_the_base_checkpoint(demo, base_run):
    """Its held-out scores at step 0 are those of stage 03's last checkpoint, computed here directly."""
    from transformers import AutoModelForCausalLM

    run_dir, _ = base_run
    last = checkpoints.checkpoints(run_dir / "03_pretraining" / "checkpoints")[-1]
    model = AutoModelForCausalLM.from_pretrained(last).eval()
    tok_file = run_dir / "02_tokenization" / "tokenizer" / "tokenizer.json"
    docs = heldout.load_docs(run_dir / "01_data" / "raw" / "heldout" / "text_ita.jsonl", tok_file, 64)
    nll = bytes_ = 0.0
    with torch.no_grad():
        for d in docs:
            logits = model(input_ids=d.ids[None]).logits[0, :-1]
            nll += float(torch.nn.functional.cross_entropy(logits, d.ids[1:], reduction="sum"))
            bytes_ += d.n_bytes
    scores = demo.frames["scores"]
    row = scores[(scores["run"] == "continued") & (scores["step"] == 0) & (scores["language"] == "ita")].iloc[0]
    assert row["bpb"] == pytest.approx(nll / math.log(2) / bytes_, rel=1e-4)
    scratch = scores[(scores["run"] == "scratch") & (scores["step"] == 0) & (scores["language"] == "ita")].iloc[0]
    assert row["bpb"] < scratch["bpb"]  # the base model has learnt Italian, a fresh one has not


def test_scores_and_paired_errors():
    per_doc = np.array([[10.0, 3, 5, 20]] * 10 + [[20.0, 1, 5, 20]] * 10)
    s = heldout.summarise(per_doc, groups=4)
    assert s["bpb"] == pytest.approx(300 / math.log(2) / 400) and s["acc"] == pytest.approx(40 / 100)
    assert s["bpb_se"] > 0 and len(s["bpb_groups"]) == 4
    assert heldout.paired_se([1.0, 2.0, 3.0], [0.0, 1.0, 2.0]) == 0.0  # a constant difference has no error


def test_without_a_base_checkpoint_the_stage_refuses(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(ZagreusError, match="holds no complete checkpoint to continue.*--stages pretraining"):
        stage.base_checkpoint(tmp_path)


def test_the_second_language_comes_from_the_language_file(tmp_path, monkeypatch):
    """Each report language names the language it continues into (configs/languages/<code>.yaml);
    one that names none is refused with the file to edit, before any work."""
    from zagreus_utils.pipeline.spec import language_names, load_spec

    seconds = {code: load_spec(code, "smoke").language.second_language for code in ("ita", "spa", "fra", "por")}
    assert seconds == {"ita": "spa", "spa": "ita", "fra": "por", "por": "fra"}
    assert all(second in language_names() for second in seconds.values())
    from zagreus_utils.pipeline import context

    def without_second(*args, **kwargs):
        spec = load_spec(*args, **kwargs)
        return spec.model_copy(update={"language": spec.language.model_copy(update={"second_language": None})})

    monkeypatch.setattr(context, "load_spec", without_second)
    ctx = stage_ctx("continual", tmp_path / "runs" / "smoke" / "ita")
    with pytest.raises(ZagreusError, match=r"no second language for 'ita'.*second_language: <code>.*ita\.yaml"):
        stage.run(ctx, progress=False)


def test_report_shows_the_demonstration_only_when_it_has_run(tmp_path):
    import pandas as pd
    from matplotlib.figure import Figure

    from zagreus_utils.pipeline.outputs import StageOutputs
    from zagreus_utils.results.report_sections import SECTIONS, ReportContext, continual_section, stage_section

    folder = tmp_path / "09_continual"
    entry = {"folder": folder, "manifest": {"status": "ok"}, "language": "ita", "stage": "09_continual"}
    assert continual_section(ReportContext("smoke", [entry])) == []  # not run: no section
    out = StageOutputs(folder)
    fig = Figure()
    fig.subplots().plot([0, 1], [1, 0])
    out.figure("continual-curves-ita", fig, "curves", "caption")
    out.table("continual-scores-ita", pd.DataFrame({"run": ["continued"], "step": [0]}), "scores")
    out.write()
    (section,) = continual_section(ReportContext("smoke", [entry]))
    assert section.title == "Continual pretraining" and len(section.children) == 1
    assert len(section.children[0].blocks) >= 2 and section.children[0].folded  # opened by a click
    failed = {**entry, "manifest": {"status": "failed"}}
    assert continual_section(ReportContext("smoke", [failed])) == []
    assert continual_section in SECTIONS
    # "This run" links to that section instead of showing the same figures a second time
    repeated = stage_section(ReportContext("smoke", [entry]), entry)
    assert [type(b).__name__ for b in repeated.blocks] == ["Html"]
    assert f'href="#{section.children[0].id}"' in str(repeated.blocks[0].body)
