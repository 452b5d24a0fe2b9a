"""The local trainer's continual pretraining: data stages switched at their start step (counted per
source, on the samples the trainer really consumed), a run crashed inside a stage resumed with
nothing repeated or skipped, and a run started from a checkpoint (the local trainer's, a
transformers folder, a nanotron checkpoint) whose step-0 logits are the checkpoint's.

Tiny model and data (pretraining_helpers); the nanotron configs are the renderer's, with their
``data_stages`` and ``checkpoints`` sections set as nanotron reads them.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from pretraining_helpers import SOURCES, make_stage02, tiny_overrides

from zagreus_utils.convert.to_nanotron import hf_to_nanotron
from zagreus_utils.model import init_weights, staged_data, trainer
from zagreus_utils.nanotron import config as ncfg
from zagreus_utils.pipeline.errors import ZagreusError
from zagreus_utils.pipeline.spec import load_spec

STEPS, INTERVAL, BATCH = 16, 4, 4
#: (name, nanotron start_training_step, sources and weights): three mixtures
STAGES = [("mixed", 1, {"fineweb": 1, "fineweb2": 1}), ("code", 6, {"starcoderdata": 1}),
          ("italian", 11, {"fineweb2": 3, "finepdfs": 1})]


def staged(cfg: dict, tokenized: Path, stages=STAGES) -> dict:
    cfg = copy.deepcopy(cfg)
    seed = cfg["data_stages"][0]["data"]["seed"]
    cfg["data_stages"] = [{"name": name, "start_training_step": start,
                           "data": {"dataset": {"dataset_folder": [str(tokenized / s) for s in mix],
                                                "dataset_weights": list(mix.values())},
                                    "num_loading_workers": 0, "seed": seed}} for name, start, mix in stages]
    return cfg


def at(cfg: dict, folder: Path, **checkpoints) -> Path:
    cfg = copy.deepcopy(cfg)
    cfg["checkpoints"] = {**cfg["checkpoints"], "checkpoints_path": str(folder / "checkpoints"), **checkpoints}
    return ncfg.write(cfg, folder / "config.yaml")


def rows(path) -> list[dict]:
    return [json.loads(x) for x in Path(path).read_text().splitlines()]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """(single-stage config, tokenized folder, vocab) of a tiny stage-02 output."""
    run_dir = tmp_path_factory.mktemp("runs") / "smoke" / "ita"
    vocab = make_stage02(run_dir, scale=0.5)
    spec = load_spec("ita", "smoke", tiny_overrides(vocab, STEPS, INTERVAL))
    cfg = ncfg.render(spec, run_dir=run_dir, checkpoints_path=run_dir / "unused")
    return cfg, run_dir / "02_tokenization" / "tokenized", vocab


@pytest.fixture(scope="module")
def reference(base, tmp_path_factory):
    """The uninterrupted three-stage run: (config, result)."""
    cfg, tokenized, _ = base
    cfg = staged(cfg, tokenized)
    path = at(cfg, tmp_path_factory.mktemp("reference"))
    return cfg, trainer.train(path, log_samples=True, progress=False)


def consumed_sources(config: dict, samples_path) -> list[list[tuple[str, str, int]]]:
    """Per step, (stage, token folder, window) of every sample the trainer logged as consumed."""
    s = trainer.Settings.from_nanotron(config)
    data = staged_data.build(s.data_stages, s.sequence_length, s.train_steps, BATCH, vocab_size=s.arch.vocab_size)
    return [[staged_data.source_of(data, i) for i in r["samples"]] for r in rows(samples_path)]


def test_mixture_switches_at_each_stage_start(reference):
    cfg, res = reference
    assert res.status == "trained" and res.steps == STEPS
    per_step = consumed_sources(cfg, res.samples_path)
    assert len(per_step) == STEPS and all(len(step) == BATCH for step in per_step)
    for step, samples in enumerate(per_step, start=1):
        stage = next(name for name, start, _ in reversed(STAGES) if step >= start)
        mix = dict((name, m) for name, _, m in STAGES)[stage]
        assert {st for st, _, _ in samples} == {stage}, step
        assert {folder for _, folder, _ in samples} <= set(mix), (step, samples)
    counts = {}
    for step, samples in enumerate(per_step, start=1):
        for st, folder, _ in samples:
            counts.setdefault(folder, []).append(step)
    # code appears exactly from step 6 to 10; English only before 6, finepdfs only from 11
    assert min(counts["starcoderdata"]) == 6 and max(counts["starcoderdata"]) == 10
    assert max(counts["fineweb"]) <= 5 and min(counts["finepdfs"]) >= 11
    assert len(counts["starcoderdata"]) == 5 * BATCH
    n_it = sum(1 for samples in per_step[10:] for _, f, _ in samples if f == "fineweb2")
    assert abs(n_it - 3 * (STEPS - 10) * BATCH / 4) <= 3  # weights 3:1 (shuffled like Nanoset's blend)
    assert res.samples_per_source == {"mixed: fineweb": len([1 for x in per_step[:5] for _, f, _ in x if f == "fineweb"]),
                                      "mixed: fineweb2": len([1 for x in per_step[:5] for _, f, _ in x if f == "fineweb2"]),
                                      "code: starcoderdata": 5 * BATCH, "italian: fineweb2": n_it,
                                      "italian: finepdfs": (STEPS - 10) * BATCH - n_it}
    assert set(SOURCES) == set(counts)


def test_stage_starting_after_the_last_step_is_refused(base, tmp_path):
    cfg, tokenized, _ = base
    late = staged(cfg, tokenized, STAGES[:2] + [("late", STEPS + 1, {"fineweb2": 1})])
    with pytest.raises(ZagreusError, match="'late' starts at step 17, after the last step"):
        trainer.train(at(late, tmp_path), progress=False)
    first = staged(cfg, tokenized, [("a", 2, {"fineweb2": 1})])
    with pytest.raises(ZagreusError, match="starts at step 1"):
        trainer.train(at(first, tmp_path), progress=False)


class Crash(RuntimeError):
    pass


@pytest.mark.parametrize("crash_step", [10, 14])  # inside stage "code" (last checkpoint 8), "italian" (12)
def test_crash_inside_a_stage_resumes_with_nothing_repeated_or_skipped(reference, tmp_path, monkeypatch,
                                                                       crash_step):
    cfg, ref = reference
    path = at(cfg, tmp_path)
    real = trainer.metrics_callback_class

    def crashing():
        class CrashingCallback(real()):
            def on_step_end(self, args, state, control, **kwargs):
                super().on_step_end(args, state, control, **kwargs)
                if state.global_step == crash_step:
                    raise Crash(f"killed at step {crash_step}")
        return CrashingCallback

    monkeypatch.setattr(trainer, "metrics_callback_class", crashing)
    with pytest.raises(Crash):
        trainer.train(path, log_samples=True, progress=False)
    monkeypatch.setattr(trainer, "metrics_callback_class", real)
    assert rows(tmp_path / "samples.jsonl")[-1]["step"] == crash_step  # the samples of the lost steps were logged
    res = trainer.train(path, log_samples=True, progress=False)
    last_ckpt = crash_step // INTERVAL * INTERVAL
    assert res.status == "resumed" and res.resumed_from.endswith(f"checkpoint-{last_ckpt}")
    got, want = rows(tmp_path / "samples.jsonl"), rows(ref.samples_path)
    assert [r["step"] for r in got] == list(range(1, STEPS + 1))
    assert got == want
    assert consumed_sources(cfg, tmp_path / "samples.jsonl") == consumed_sources(cfg, ref.samples_path)
    flat = [i for r in got for i in r["samples"]]
    assert sorted(flat) == flat == list(range(STEPS * BATCH))  # each sample once, in order
    assert rows(tmp_path / "metrics.jsonl")[-1]["loss"] == pytest.approx(rows(ref.metrics_path)[-1]["loss"], rel=1e-4)


# --- starting from given weights ------------------------------------------------------------

def first_batch_loss(model, config: dict) -> float:
    s = trainer.Settings.from_nanotron(config)
    data = staged_data.build(s.data_stages, s.sequence_length, s.train_steps, BATCH, vocab_size=s.arch.vocab_size)
    batch = [data[i] for i in range(BATCH)]
    ids, labels = torch.stack([b["input_ids"] for b in batch]), torch.stack([b["labels"] for b in batch])
    with torch.no_grad():
        logits = model(input_ids=ids, use_cache=False).logits
    return float(torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten()))


@pytest.fixture(scope="module")
def start_models(reference, tmp_path_factory):
    """The reference run's checkpoint 8 in three layouts: the trainer's, transformers', nanotron's."""
    from transformers import AutoModelForCausalLM

    _, ref = reference
    ckpt = Path(ref.output_dir) / "checkpoint-8"
    root = tmp_path_factory.mktemp("start")
    AutoModelForCausalLM.from_pretrained(ckpt).save_pretrained(root / "hf")
    hf_to_nanotron(root / "hf", root / "nanotron", tp=1)
    return {"trainer": ckpt, "hf": root / "hf", "nanotron": root / "nanotron"}


@pytest.mark.parametrize("layout", ["trainer", "hf", "nanotron"])
def test_start_from_a_checkpoint_gives_its_logits_at_step_0(base, start_models, tmp_path, layout):
    from transformers import AutoModelForCausalLM

    cfg, tokenized, _ = base
    cfg = copy.deepcopy(cfg)
    cfg["tokens"]["train_steps"] = 3
    cfg["optimizer"]["learning_rate_scheduler"].update(lr_warmup_steps=2, lr_decay_starting_step=None,
                                                       lr_decay_steps=None)
    path = at(cfg, tmp_path, resume_checkpoint_path=str(start_models[layout]), load_optimizer=False,
              load_lr_scheduler=False)
    s = trainer.Settings.from_nanotron(ncfg.load(path))
    assert s.init is not None and s.init.kind == layout and s.resume_checkpoint_path is None
    # the model train() starts from: built from the config, then given the checkpoint's weights
    model = trainer.build_model(s)
    init_weights.load_into(model, s.init, s.arch)
    want = AutoModelForCausalLM.from_pretrained(start_models["hf"])
    ids = torch.randint(0, s.arch.vocab_size, (2, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, want(input_ids=ids).logits, atol=1e-5, rtol=0)
    res = trainer.train(path, log_samples=True, progress=False)
    log = rows(res.metrics_path)
    assert res.status == "trained" and [r["step"] for r in log] == [1, 2, 3]  # step counter reset
    assert log[0]["loss"] == pytest.approx(first_batch_loss(want, cfg), rel=1e-4)  # step 1 saw step-0 = its weights
    peak = cfg["optimizer"]["learning_rate_scheduler"]["learning_rate"]
    assert [r["lr"] for r in log] == pytest.approx([0.0, peak / 2, peak])  # re-warmup from 0 over 2 steps
    assert rows(res.samples_path)[0]["samples"] == [0, 1, 2, 3]  # the data from its start
    assert any("started from the weights" in n for n in res.notes)


def test_taking_everything_over_continues_the_run(reference, start_models, tmp_path):
    """Optimizer, schedule and step kept (nanotron's load_optimizer and load_lr_scheduler): the run
    continues the reference from its step 8, in a new folder, and ends where the reference ended."""
    cfg, ref = reference
    path = at(cfg, tmp_path, resume_checkpoint_path=str(start_models["trainer"]))
    res = trainer.train(path, log_samples=True, progress=False)
    assert res.resumed_from == str(start_models["trainer"]) and res.steps == STEPS
    got = rows(res.samples_path)
    assert got == rows(ref.samples_path)[8:]
    assert rows(res.metrics_path)[-1]["loss"] == pytest.approx(rows(ref.metrics_path)[-1]["loss"], rel=1e-4)


def test_what_a_layout_cannot_give_is_refused(base, start_models, tmp_path):
    cfg, _, _ = base
    for layout in ("hf", "nanotron"):
        path = at(cfg, tmp_path / layout, resume_checkpoint_path=str(start_models[layout]), load_optimizer=True,
                  load_lr_scheduler=False)
        with pytest.raises(ZagreusError, match="carries weights only.*training.init_reset"):
            trainer.train(path, progress=False)
    wide = copy.deepcopy(cfg)
    wide["model"]["model_config"].update(hidden_size=128, intermediate_size=256)
    path = at(wide, tmp_path / "wide", resume_checkpoint_path=str(start_models["hf"]), load_optimizer=False,
              load_lr_scheduler=False)
    with pytest.raises(ZagreusError, match=r"does not fit the run's model: hidden_size 64 \(the run's config: 128\)"):
        trainer.train(path, progress=False)


def test_optimizer_taken_over_alone(base, start_models, tmp_path):
    """load_optimizer without load_lr_scheduler: Adam's moments from the checkpoint, schedule and step
    afresh; the reverse (schedule without optimizer) is refused for the local trainer."""
    cfg, _, _ = base
    path = at(cfg, tmp_path / "opt", resume_checkpoint_path=str(start_models["trainer"]), load_optimizer=True,
              load_lr_scheduler=False)
    s = trainer.Settings.from_nanotron(ncfg.load(path))
    model = trainer.build_model(s)
    opt = torch.optim.AdamW(model.parameters(), lr=s.learning_rate)
    assert init_weights.start_point(s.init, None, s.train_steps) is None  # not a resume: step 0
    notes = init_weights.prepare_start(s.init, None, model, opt, s.arch)
    saved = torch.load(start_models["trainer"] / "optimizer.pt", weights_only=True)
    assert torch.equal(opt.state_dict()["state"][0]["exp_avg"], saved["state"][0]["exp_avg"])
    assert "taking over its optimizer state" in notes[0]
    path = at(cfg, tmp_path / "sched", resume_checkpoint_path=str(start_models["trainer"]), load_optimizer=False,
              load_lr_scheduler=True)
    with pytest.raises(ZagreusError, match="takes over the LR schedule and step.*not its optimizer"):
        trainer.train(path, progress=False)
