"""The SmolLM3 recipe switches in the local trainer, each checked by what it changes:

* NoPE: the trainer builds transformers' SmolLM3 with RoPE dropped in nanotron's layers, and the
  logits differ from the Llama with the same weights only because of those layers;
* document masking: position ids restart after each EOS, the target crossing a document boundary
  is ignored, and changing one document of a packed sequence leaves the others' logits unchanged
  (each equal to the document run alone); with masking off they change;
* weight decay exclusion: one AdamW step with zero gradients decays every parameter but the
  excluded embedding;
* WSD to zero: the rendered schedule and the trainer's scheduler reach exactly 0 at the last step.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from zagreus_utils.model import preflight, recipe, trainer
from zagreus_utils.model.arch import LlamaArch, nope_layers
from zagreus_utils.nanotron import config as ncfg
from zagreus_utils.nanotron.schedule import NanotronSchedule
from zagreus_utils.pipeline import paths
from zagreus_utils.pipeline.errors import ZagreusError
from zagreus_utils.pipeline.spec import load_spec

EMBED = ".*token_embedding.*"
TINY = {"model.hidden_size": 32, "model.intermediate_size": 64, "model.num_hidden_layers": 4,
        "model.num_attention_heads": 4, "model.num_key_value_heads": 2, "model.max_position_embeddings": 64,
        "tokenizer.vocab_size": 50, "training.sequence_length": 32}


def settings(**overrides) -> trainer.Settings:
    """The local trainer's settings of the smoke profile (a tiny model) with ``overrides``."""
    config = ncfg.render(load_spec("ita", "smoke", {**TINY, **overrides}))
    return trainer.Settings.from_nanotron(config, base=paths.REPO_ROOT)


# --- NoPE -----------------------------------------------------------------------------------

def test_nope_layers_are_nanotrons_and_transformers():
    assert nope_layers(8, 4) == [3, 7] and nope_layers(8, None) == []
    cfg = LlamaArch(50, 32, 64, 8, 4, 2, no_rope_layer=4).to_hf_config()
    assert [i for i, rope in enumerate(cfg.no_rope_layers) if not rope] == [3, 7]


def test_a_nope_interval_that_does_not_divide_the_layers_is_refused():
    with pytest.raises(ZagreusError, match="no_rope_layer=3 must be a positive divisor of num_hidden_layers"):
        LlamaArch(50, 32, 64, 4, 4, 2, no_rope_layer=3).check()
    with pytest.raises(ZagreusError, match="no_rope_layer"):
        load_spec("ita", "smoke", {"model.no_rope_layer": 3})
    with pytest.raises(ZagreusError, match="Qwen2Config"):
        LlamaArch(50, 32, 64, 4, 4, 2, no_rope_layer=2).to_nanotron(qwen2=False)


def test_trainer_builds_smollm3_whose_nope_layers_change_the_logits():
    s = settings(**{"model.no_rope_layer": 2})
    model = trainer.build_model(s).eval()
    assert type(model).__name__ == "SmolLM3ForCausalLM"
    assert [layer.self_attn.use_rope for layer in model.model.layers] == [1, 0, 1, 0]
    plain = settings()
    llama = trainer.build_model(plain).eval()
    assert type(llama).__name__ == "LlamaForCausalLM"
    llama.load_state_dict(model.state_dict())
    ids = torch.randint(2, 50, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        nope, rope = model(ids).logits, llama(ids).logits
        # the same SmolLM3 with RoPE in every layer is the Llama: the NoPE layers make the difference
        model.config.no_rope_layers = [1, 1, 1, 1]
        for layer in model.model.layers:
            layer.self_attn.use_rope = 1
        all_rope = model(ids).logits
    assert torch.allclose(all_rope, rope, atol=1e-5)
    assert torch.allclose(nope[:, 0], rope[:, 0], atol=1e-5)  # position 0: RoPE rotates by 0
    assert (nope[:, 1:] - rope[:, 1:]).abs().max() > 1e-3


# --- document masking -----------------------------------------------------------------------

def test_positions_restart_after_each_eos():
    eos = 1
    window = [5, 6, 1, 7, 1, 1, 8, 9]
    assert recipe.document_positions(window, eos).tolist() == [0, 1, 2, 0, 1, 0, 0, 1]
    batch = recipe.DocumentCollate(eos)([{"input_ids": torch.tensor(window[:-1]), "labels": torch.tensor(window[1:]),
                                         "sample_index": 0}])
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 0]]
    # the target after an EOS (the next document's first token) is not trained on, as nanotron's label_mask
    assert batch["labels"].tolist() == [[6, 1, -100, 1, -100, -100, 9]]
    assert batch["shift_labels"] is batch["labels"]


def _packed(docs: list[list[int]]) -> dict:
    flat = [t for d in docs for t in d]
    return {"input_ids": torch.tensor(flat[:-1]), "labels": torch.tensor(flat[1:]), "sample_index": 0}


@pytest.mark.parametrize("nope", [None, 2])
def test_changing_one_document_leaves_the_others_logits_unchanged(nope):
    s = settings(**{"training.document_masking": True, "model.no_rope_layer": nope})
    assert s.document_masking
    model = trainer.build_model(s).eval()
    eos = s.arch.eos_token_id
    rng = torch.Generator().manual_seed(1)

    def doc(n):
        return torch.randint(2, 50, (n,), generator=rng).tolist() + [eos]

    a, b, c = doc(7), doc(9), doc(10)
    b2 = torch.randint(2, 50, (len(b) - 1,), generator=rng).tolist() + [eos]
    spans = {"a": slice(0, len(a)), "c": slice(len(a) + len(b), len(a) + len(b) + len(c) - 1)}
    masked = recipe.collate_for(s.arch, True)
    plain = recipe.collate_for(s.arch, False)
    assert plain is not masked and settings().document_masking is False

    def logits(collate, docs):
        batch = collate([_packed(docs)])
        batch.pop("sample_index")
        with torch.no_grad():
            return model(**batch).logits[0]

    one, two = logits(masked, [a, b, c]), logits(masked, [a, b2, c])
    for name, span in spans.items():
        assert torch.allclose(one[span], two[span], atol=1e-5), name
    alone = logits(masked, [c, [eos]])  # document c on its own, from position 0
    assert torch.allclose(one[spans["c"]], alone[: len(c) - 1], atol=1e-5)
    # without masking, the third document sees the second one
    off1, off2 = logits(plain, [a, b, c]), logits(plain, [a, b2, c])
    assert torch.allclose(off1[spans["a"]], off2[spans["a"]], atol=1e-5)
    assert (off1[spans["c"]] - off2[spans["c"]]).abs().max() > 1e-3


@pytest.mark.parametrize("overrides", [{"training.document_masking": True}, {"model.no_rope_layer": 2}])
def test_switches_keep_the_fast_attention_kernel(overrides):
    """The block-diagonal mask (and NoPE) still run PyTorch's flash kernel, not the math fallback."""
    from torch.profiler import ProfilerActivity, profile

    s = settings(**overrides)
    model = trainer.build_model(s).eval()
    window = torch.randint(2, 50, (2, 33), generator=torch.Generator().manual_seed(2))
    window[:, ::10] = s.arch.eos_token_id
    batch = recipe.collate_for(s.arch, s.document_masking)(
        [{"input_ids": w[:-1], "labels": w[1:], "sample_index": 0} for w in window])
    batch.pop("sample_index")
    with profile(activities=[ProfilerActivity.CPU]) as prof, torch.no_grad():
        model(**batch)
    kernels = {e.key for e in prof.key_averages() if e.key.startswith("aten::_scaled_dot_product")}
    fast = "aten::_scaled_dot_product_flash_attention_for_cpu"
    assert kernels == {fast}, kernels


def test_document_masking_needs_an_eos_id():
    arch = LlamaArch(50, 32, 64, 2, 4, 2, eos_token_id=None)
    with pytest.raises(ZagreusError, match="eos_token_id"):
        recipe.collate_for(arch, True)


# --- weight decay exclusion -----------------------------------------------------------------

@pytest.mark.parametrize("tied", [True, False])
def test_one_optimizer_step_decays_all_but_the_excluded_embedding(tied):
    s = settings(**{"training.weight_decay_exclude": [EMBED], "training.weight_decay": 0.1,
                    "model.tie_word_embeddings": tied})
    assert s.weight_decay_exclude == (EMBED,)
    model = trainer.build_model(s)
    opt = trainer.build_optimizer(model, s)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # Adam's own step is 0: what changes is the decay alone
    opt.step()
    factor = 1 - s.learning_rate * s.weight_decay
    excluded = {"model.embed_tokens.weight"}  # untied, the LM head (model.lm_head.pp_block.weight) still decays
    for n, p in model.named_parameters():
        if n in excluded:
            assert torch.equal(p, before[n]), n
        else:
            assert torch.allclose(p, before[n] * factor, rtol=0, atol=1e-9), n
            assert not torch.equal(p, before[n]), n


def test_without_exclusion_every_parameter_decays():
    s = settings(**{"training.weight_decay": 0.1})
    model = trainer.build_model(s)
    opt = trainer.build_optimizer(model, s)
    emb = model.model.embed_tokens.weight.detach().clone()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    assert torch.allclose(model.model.embed_tokens.weight, emb * (1 - s.learning_rate * 0.1), atol=1e-9)


def test_a_pattern_matching_no_nanotron_name_is_refused():
    with pytest.raises(ZagreusError, match=r"'embed_tokens' matches no nanotron parameter name.*token_embedding"):
        settings(**{"training.weight_decay_exclude": ["embed_tokens"]})


def test_preflight_refuses_the_exclusion_for_a_nanotron_run_only():
    """nanotron main's optimizer builder misapplies the patterns (tests/test_nanotron_config.py)."""
    config = ncfg.render(load_spec("ita", "full", {"training.weight_decay_exclude": [EMBED]}))
    cluster = preflight.check_weight_decay_exclusion(config, nanotron=True)
    assert cluster.ok is False and "2411b022" in cluster.detail and "weight_decay_exclude" in cluster.fix
    assert preflight.check_weight_decay_exclusion(config, nanotron=False).ok
    assert preflight.check_weight_decay_exclusion(ncfg.render(load_spec("ita", "full")), nanotron=True).ok


# --- WSD with a decay to zero ---------------------------------------------------------------

def test_wsd_decays_linearly_to_zero_at_the_last_step():
    s = settings(**{"training.wsd_decay_fraction": 0.1})
    t = load_spec("ita", "smoke").profile.training
    T, peak = t.train_steps, t.learning_rate
    start = T - round(T * 0.1)
    config = ncfg.render(load_spec("ita", "smoke", {**TINY, "training.wsd_decay_fraction": 0.1}))
    sched = NanotronSchedule.from_config(config)  # what the audit and the planner read
    assert (sched.decay_start, sched.decay_steps, sched.min_lr) == (start, T - start, 0.0)
    assert sched.lr_at(start) == peak and sched.lr_at(T) == 0.0
    assert sched.lr_at(start + (T - start) // 2) == pytest.approx(peak * (1 - ((T - start) // 2) / (T - start)))
    assert sched.lr_at(T - 1) > 0
    # the trainer's scheduler gives the same learning rate at every step
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=peak)
    scheduler, _ = trainer.build_scheduler(opt, s)
    lrs = []
    for _ in range(T):
        opt.step()
        scheduler.step()
        lrs.append(scheduler.get_last_lr()[0])
    assert lrs == pytest.approx([sched.lr_at(step) for step in range(1, T + 1)], abs=1e-12)
    assert lrs[-1] == 0.0
    # without the switch, the profile's own decay (to min_decay_lr) is kept
    assert trainer.schedule_for(settings()).lr_at(T) == t.min_decay_lr > 0


def test_wsd_fraction_that_starts_in_the_warmup_is_refused():
    with pytest.raises(ZagreusError, match="wsd_decay_fraction"):
        load_spec("ita", "smoke", {"training.wsd_decay_fraction": 0.99})


# --- all together, through the trainer ------------------------------------------------------

def test_trainer_runs_with_every_switch_on(tmp_path):
    """A few steps of the stage with all four switches: the lr ends at 0, the batches carry
    per-document positions, and the run records the switches."""
    from conftest import stage_ctx
    from pretraining_helpers import make_stage02, tiny_overrides

    from zagreus_utils.stages import pretraining

    run_dir = tmp_path / "runs" / "smoke" / "ita"
    vocab = make_stage02(run_dir, scale=0.2)
    overrides = {**tiny_overrides(vocab, steps=6, interval=6), "model.num_hidden_layers": 2,
                 "model.no_rope_layer": 2, "training.document_masking": True,
                 "training.weight_decay_exclude": [EMBED], "training.wsd_decay_fraction": 0.5}
    prep = pretraining.prepare(stage_ctx("pretraining", run_dir, overrides))
    result = pretraining.execute(prep, progress=False)
    rows = [json.loads(line) for line in Path(result.metrics_path).read_text().splitlines()]
    sched = NanotronSchedule.from_config(prep.config)
    assert (sched.decay_start, sched.decay_steps, sched.lr_at(6)) == (3, 3, 0.0)
    # each row logs the lr its update used (the schedule at the step before): the last, 1/3 of the peak
    assert [r["step"] for r in rows] == list(range(1, 7))
    assert [r["lr"] for r in rows] == pytest.approx([sched.lr_at(step - 1) for step in range(1, 7)], abs=1e-12)
    assert all(math.isfinite(r["loss"]) for r in rows)
    settings = json.loads((Path(result.output_dir) / trainer.RUN_FILE).read_text())["settings"]
    assert settings["no_rope_layer"] == 2 and settings["document_masking"] is True
    assert settings["weight_decay_exclude"] == [EMBED]
    saved = json.loads((Path(result.checkpoints[-1]) / "config.json").read_text())
    assert saved["model_type"] == "smollm3" and saved["no_rope_layers"] == [1, 0]
