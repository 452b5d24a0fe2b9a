"""The ablation stage (08): its statistics and verdict rule on known numbers, the plan and its quoted
claims, the held-out split through datatrove's own reader, the probe, and the stage end to end
through the real local trainer on a tiny stage-02 fixture (with the report's section)."""

import json
import math
import re

import numpy as np
import pytest
import yaml

from conftest import finish, stage_ctx
from pretraining_helpers import make_stage02, tiny_overrides
from zagreus_utils.model.preflight import token_file_problems
from zagreus_utils.pipeline import paths
from zagreus_utils.pipeline.errors import ZagreusError
from zagreus_utils.pipeline.spec import load_profile, load_spec
from zagreus_utils.stages.ablations import heldout, plan as plan_mod, probe, stats

NOTES = paths.REPO_ROOT.parent / "shared" / "reference" / "smollm-pretraining.md"


# --- statistics -----------------------------------------------------------------------------

def test_mean_and_standard_error_on_known_numbers():
    assert stats.mean_se([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1 / math.sqrt(3)))  # sd 1, n 3
    assert stats.mean_se([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]) == pytest.approx((5.0, math.sqrt(32 / 7) / math.sqrt(8)))
    m, se = stats.mean_se([3.5])
    assert m == 3.5 and math.isnan(se)
    assert all(math.isnan(x) for x in stats.mean_se([None, float("nan")]))


def test_difference_is_paired_by_seed_when_every_seed_ran():
    variant, base = {1: 2.0, 2: 3.0, 3: 4.5}, {1: 1.0, 2: 2.5, 3: 3.0}
    d, se, paired = stats.difference(variant, base)  # per-seed differences 1, 0.5, 1.5: sd 0.5
    assert paired and d == pytest.approx(1.0) and se == pytest.approx(0.5 / math.sqrt(3))
    d, se, paired = stats.difference({1: 2.0, 2: 3.0, 4: 4.5}, base)  # other seeds: unpaired
    sv, sb = stats.mean_se([2.0, 3.0, 4.5])[1], stats.mean_se(base.values())[1]
    assert not paired and d == pytest.approx(3.1666667 - 2.1666667) and se == pytest.approx(math.hypot(sv, sb))


@pytest.mark.parametrize("diff, se, lower, want", [
    (-0.5, 0.2, True, "agrees"),        # bits per byte down by 2.5 s.e.
    (0.5, 0.2, True, "disagrees"),      # up by 2.5 s.e.
    (-0.3, 0.2, True, "cannot tell"),   # 1.5 s.e.: within noise
    (0.39, 0.2, True, "cannot tell"),
    (0.5, 0.2, False, "agrees"),        # accuracy up
    (-0.5, 0.2, False, "disagrees"),
    (0.0, 0.0, True, "cannot tell"),    # a switch that changed nothing
    (-0.5, float("nan"), True, "cannot tell"),  # one seed: no standard error
])
def test_verdict_rule(diff, se, lower, want):
    assert stats.verdict(diff, se, lower) == want


def test_verdict_words_are_plain():
    assert "consistent with 'no harm'" in stats.explain("cannot tell", "not_worse", "heldout_bpb")
    assert stats.explain("disagrees", "better", "probe_bpb_4x").startswith("worse bits per byte at 4x")


# --- the plan -------------------------------------------------------------------------------

def test_plan_quotes_the_notes_verbatim():
    if not NOTES.is_file():
        pytest.skip(f"the SmolLM notes are not present at {NOTES}")
    text = " ".join(NOTES.read_text(encoding="utf-8").split())
    plan = plan_mod.load_plan()
    assert {c.variant for c in plan.claims} == set(plan.variants) - {"baseline"}
    for claim in plan.claims:
        for part in claim.quote.split("[...]"):
            assert " ".join(part.split()) in text, part


def test_plan_refuses_a_bad_value_naming_file_and_line(tmp_path):
    data = yaml.safe_load(plan_mod.plan_path().read_text())
    data["claims"][0]["variant"] = "rope_everywhere"
    data["seeds"] = [1, 1]
    bad = tmp_path / "plan.yaml"
    bad.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ZagreusError) as err:
        plan_mod.load_plan(bad)
    assert str(bad) in str(err.value) and "rope_everywhere" in str(err.value) and "repeat a seed" in str(err.value)


def test_run_overrides_scale_the_schedule_and_layer_in_order():
    training = load_profile("smoke").training  # 400 steps: warmup 40, decay from 320 over 80
    plan = plan_mod.load_plan().model_copy(update={"steps": 60})
    o = plan_mod.run_overrides(plan, training, "all", 7, {"training.weight_decay": 0.5, "data.min_doc_chars": 9})
    assert (o["training.train_steps"], o["training.lr_warmup_steps"], o["training.lr_decay_starting_step"],
            o["training.lr_decay_steps"], o["training.checkpoint_interval"]) == (60, 6, 48, 12, 60)
    assert o["training.weight_decay"] == 0.1 and o["data.min_doc_chars"] == 9  # the plan's base wins
    assert o["training.seed"] == 7 and o["model.no_rope_layer"] == 4  # model.recipe.SWITCHES' values
    spec = load_spec("ita", "smoke", o)  # every variant is a valid spec of the smoke profile
    t = spec.profile.training
    assert t.document_masking and t.weight_decay_exclude == [".*token_embedding.*"] and t.wsd_decay_fraction == 0.1
    for variant in plan.variants:
        load_spec("ita", "smoke", plan_mod.run_overrides(plan, training, variant, 1))


# --- held-out split and probe ---------------------------------------------------------------

@pytest.fixture(scope="module")
def stage02(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("abl") / "smoke" / "ita"
    vocab = make_stage02(run_dir, scale=0.5)
    return run_dir, vocab


def test_heldout_split_is_read_by_datatrove_and_never_trained_on(stage02, tmp_path):
    from datatrove.utils.dataset import DatatroveFolderDataset

    run_dir, vocab = stage02
    folders = sorted((run_dir / "02_tokenization" / "tokenized").glob("*/"))
    held = heldout.split(folders, tmp_path, 0.1, vocab)
    for src, dst in zip(folders, held.train_folders):
        assert token_file_problems(dst) == []
        (ds,) = src.glob("*.ds")
        full = np.fromfile(ds, dtype=np.uint16)
        train = np.fromfile(dst / ds.name, dtype=np.uint16)
        mine = [d for d, s in zip(held.documents, held.sources) if s == src.name]
        info = held.per_source[src.name]
        assert info["heldout_documents"] == len(mine) == max(1, round(0.1 * info["documents"]))
        # the training copy is the folder's start, the held-out documents exactly its end
        assert np.array_equal(np.concatenate([train, *mine]), full)
        assert all(d[0] == 0 and d[-1] == 1 for d in mine)  # whole documents, <bos> ... <eos>
        assert len(DatatroveFolderDataset(str(dst), 32, filename_pattern="*.ds", recursive=False, token_size=2)) == \
            (len(train) - 1) // 33
    saved = np.load(tmp_path / heldout.HELDOUT_FILE)
    assert int(saved["ends"][-1]) == held.tokens == len(saved["tokens"])


def test_token_bytes_are_the_texts_utf8_bytes(stage02):
    from transformers import PreTrainedTokenizerFast

    run_dir, vocab = stage02
    tok = PreTrainedTokenizerFast.from_pretrained(run_dir / "02_tokenization" / "tokenizer")
    table = probe.token_bytes(tok, vocab)
    for text in ("il gatto città mare.", "def return self print range"):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert int(table[ids].sum()) == len(text.encode("utf-8"))
    assert table[tok.convert_tokens_to_ids("<eos>")] == 0 and table[tok.convert_tokens_to_ids("<bos>")] == 0


def test_probe_batches_exactly_and_predicts_the_same_tokens_at_every_length(stage02):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    run_dir, vocab = stage02
    model = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32))
    model.eval()
    rng = np.random.RandomState(0)
    docs = [np.concatenate([[0], rng.randint(2, vocab, size=n), [1]]) for n in (5, 40, 13, 70)]
    table = np.ones(vocab, dtype=np.int64)
    table[:2] = 0
    windows = probe.document_windows(docs, 16)
    assert sum(len(w) - 1 for w in windows) == sum(len(d) - 1 for d in docs)  # every next token, once
    together = probe._score(model, windows, table)
    alone = [probe._score(model, [w], table) for w in windows]  # right padding changes nothing
    assert together[0] == pytest.approx(sum(a[0] for a in alone), rel=1e-5)
    assert together[1:] == tuple(sum(a[i] for a in alone) for i in (1, 2, 3))
    stream = probe.probe_stream(docs, 8, windows=3, lengths=[1, 2, 4])
    assert len(stream) == 3 * 4 * 8 + 1
    out = probe.evaluate(model, docs, table, 8, [1, 2, 4], windows=3, tokens=60)
    assert out["probe_tokens"] == 96 and all(math.isfinite(out[f"probe_bpb_{k}x"]) for k in (1, 2, 4))
    with pytest.raises(ZagreusError, match="fewer than one probe window"):
        probe.probe_stream(docs, 64, windows=1, lengths=[4])


# --- the stage, end to end ------------------------------------------------------------------

def tiny_plan(steps: int = 3) -> "plan_mod.Plan":
    """Two variants (the baseline and every switch at once), 2 seeds, a few steps."""
    plan = plan_mod.load_plan()
    claim = next(c for c in plan.claims if c.variant == "all")
    return plan.model_copy(update={"steps": steps, "seeds": [1, 2], "heldout_fraction": 0.1, "heldout_tokens": 256,
                                   "probe_windows": 1, "probe_lengths": [1, 2], "embed_norm_points": 3,
                                   "variants": {"baseline": [], "all": plan.variants["all"]},
                                   "claims": [claim.model_copy(update={"checks": claim.checks[:2]})]})


@pytest.mark.smoke
def test_stage_end_to_end_through_the_trainer_and_into_the_report(tmp_path, monkeypatch):
    from zagreus_utils.pipeline import manifest
    from zagreus_utils.results import report
    from zagreus_utils.stages import ablations

    run_dir = tmp_path / "smoke" / "ita"
    vocab = make_stage02(run_dir, scale=0.5)
    ctx = stage_ctx("ablations", run_dir, {**tiny_overrides(vocab, steps=8), "model.num_hidden_layers": 4})
    result = ablations.run(ctx, plan=tiny_plan(), progress=False)
    out = run_dir / "08_ablations"
    rows = json.loads((out / "results.json").read_text())
    assert [(r["variant"], r["seed"], r["steps"], r["tokens"]) for r in rows] == \
        [(v, s, 3, 3 * 4 * 64) for v in ("baseline", "all") for s in (1, 2)]  # the same token budget
    for r in rows:
        curve = [json.loads(line) for line in (out / "runs" / r["variant"] / f"seed{r['seed']}" /
                                                "embed_norms.jsonl").read_text().splitlines()]
        assert [c["step"] for c in curve] == [0, 1, 2, 3] and r["embed_norm_final"] == curve[-1]["embed_norm"]
        assert all(math.isfinite(r[k]) for k in ("final_loss", "heldout_bpb", "heldout_accuracy", "probe_bpb_1x",
                                                 "probe_bpb_2x", "tokens_per_sec"))
    # the seeds really differ (init and data order), so the standard errors are not zero; the switches
    # really change the training (same seed, other result), and the NoPE model is transformers' SmolLM3
    assert rows[0]["final_loss"] != rows[1]["final_loss"]
    for base, every in zip(rows[:2], rows[2:]):
        assert every["final_loss"] != base["final_loss"] and every["heldout_bpb"] != base["heldout_bpb"]
    assert [r["model_class"] for r in rows] == ["LlamaForCausalLM"] * 2 + ["SmolLM3ForCausalLM"] * 2
    assert result.extra["identical_to_baseline"] == [] and not any("WITHOUT EFFECT" in n for n in result.notes)
    index = json.loads((out / "outputs.json").read_text())
    assert [f["id"] for f in index["figures"]] == ["embed_norms", "probe", "bars"]
    assert [t["id"] for t in index["tables"]] == ["summary", "claims"]
    assert all((out / f["png"]).is_file() for f in index["figures"])
    claims = json.loads((out / "claims.json").read_text())["claims"]
    assert claims[0]["variant"] == "all" and claims[0]["checks"][0]["verdict"] in ("agrees", "disagrees", "cannot tell")
    summary = result.frames["summary"]
    assert list(summary["variant"]) == ["baseline", "all"] and "Δ held-out bits per byte" in summary
    assert re.fullmatch(r"-?\d+\.\d{4} ± \d+\.\d{4}", summary.loc[1, "Δ held-out bits per byte"])

    # the report: a section with each quoted claim beside its verdicts, only once the stage has run
    finish(run_dir / "02_tokenization")
    plots = tmp_path / "smoke" / "07_plots"
    plots.mkdir(parents=True)
    (plots / "outputs.json").write_text(json.dumps({"figures": [], "tables": [], "notes": []}))
    finish(plots, language=None)
    monkeypatch.setenv("ZAGREUS_REPORT_DIR", str(tmp_path / "report"))
    page = report.build("smoke", root=tmp_path).read_text()
    assert 'id="ablations-ita"' not in page  # the stage has no ok manifest yet
    finish(out)
    page = report.build("smoke", root=tmp_path).read_text()
    assert 'id="ablations-ita"' in page and claims[0]["quote"].split(",")[0] in page
    section = page[page.index('id="ablations-ita"'):page.index('id="audit"')]
    assert section.split(">", 1)[1].lstrip().startswith('<details class="section">')  # folded, as every stage
    assert claims[0]["figures"] == ["bars"] and 'alt="Held-out bits per byte and accuracy"' in section
    assert "data:image/png;base64" in section and "Δ vs baseline" in section
    assert manifest.read(out)["status"] == "ok"


def test_each_variant_changes_what_the_trainer_builds(stage02, tmp_path):
    """The configs each variant renders, read back by the trainer: NoPE's model has no rotary embedding in
    its NoPE layers, document masking and the embedding's zero weight decay are on, the schedule ends at
    zero; the baseline has none of it (a switch the trainer ignored fails here)."""
    from transformers import LlamaForCausalLM, SmolLM3ForCausalLM

    from zagreus_utils.model import trainer
    from zagreus_utils.stages.ablations import runs

    run_dir, vocab = stage02
    ctx = stage_ctx("ablations", run_dir, {**tiny_overrides(vocab, steps=40), "model.num_hidden_layers": 4})
    plan = plan_mod.load_plan()
    folders = sorted((run_dir / "02_tokenization" / "tokenized").glob("*/"))
    train = heldout.split(folders, tmp_path, plan.heldout_fraction, vocab).train_folders
    seen = {}
    for variant in plan.variants:
        config = runs.render(ctx, plan, variant, 1, train, str(run_dir / "02_tokenization" / "tokenizer"),
                             tmp_path / variant)
        s = trainer.Settings.from_nanotron(config)
        model = trainer.build_model(s)
        groups = trainer.build_optimizer(model, s).param_groups
        embed = model.get_input_embeddings().weight
        sched = trainer.schedule_for(s)
        seen[variant] = {
            "model": type(model), "rope": getattr(model.config, "no_rope_layers", None),
            "doc_masking": s.document_masking,
            "embed_decay": next(g["weight_decay"] for g in groups if any(p is embed for p in g["params"])),
            "last_lr": sched.lr_at(plan.steps), "lr_at_90": sched.lr_at(int(plan.steps * 0.9))}
    base = seen["baseline"]
    assert base == {"model": LlamaForCausalLM, "rope": None, "doc_masking": False, "embed_decay": 0.1,
                    "last_lr": pytest.approx(1e-5), "lr_at_90": base["lr_at_90"]} and base["lr_at_90"] < 0.003
    assert seen["nope"]["model"] is SmolLM3ForCausalLM and seen["nope"]["rope"] == [1, 1, 1, 0]  # RoPE off in layer 4
    assert seen["doc_masking"]["doc_masking"] and seen["no_embedding_decay"]["embed_decay"] == 0.0
    assert seen["wsd_to_zero"]["last_lr"] == 0.0 and seen["wsd_to_zero"]["lr_at_90"] == pytest.approx(0.003)
    everything = seen["all"]
    assert (everything["model"], everything["doc_masking"], everything["embed_decay"], everything["last_lr"]) == \
        (SmolLM3ForCausalLM, True, 0.0, 0.0)
    for variant in ("nope", "doc_masking", "no_embedding_decay", "wsd_to_zero"):  # each switch alone
        assert [k for k in base if seen[variant][k] != base[k]], variant
