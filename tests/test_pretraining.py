"""Stage 03 (pretraining): nanotron config rendering and schema, pre-flight, sbatch, log parsing,
planning, the local trainer (schedule, init, data order) and a kill-and-resume run.

The data is made here: a few hundred short texts, a tiny byte-level BPE trained with `tokenizers`,
tokenized with datatrove's DocumentTokenizer into per-source folders laid out like stage 02's.
"""

from __future__ import annotations

import json
import math
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import stage_ctx
from pretraining_helpers import SOURCES, make_stage02, tiny_overrides

from zagreus_utils.nanotron import config as ncfg
from zagreus_utils.nanotron import logs as nanotron_logs
from zagreus_utils.nanotron import report_config
from zagreus_utils.pipeline import paths
from zagreus_utils.model import planning, preflight
from zagreus_utils.model.arch import LlamaArch
from zagreus_utils.stages import pretraining
from zagreus_utils.cluster import sbatch
from zagreus_utils.pipeline.errors import ZagreusError
from zagreus_utils.pipeline.spec import load_spec

LANGS = ["ita", "spa", "fra", "por"]
STEPS, INTERVAL = 16, 4


@pytest.fixture(scope="module")
def stage02(tmp_path_factory):
    """``(run_dir, vocab)`` with 02_tokenization/{tokenizer, tokenized/<source>, manifest.json}."""
    run_dir = tmp_path_factory.mktemp("runs") / "smoke" / "ita"
    vocab = make_stage02(run_dir)
    return run_dir, vocab


@pytest.fixture(scope="module")
def reference(stage02):
    """The stage run end to end (local launcher, tiny model): the uninterrupted reference run."""
    run_dir, vocab = stage02
    prep = pretraining.prepare(stage_ctx("pretraining", run_dir, tiny_overrides(vocab)))
    result = pretraining.execute(prep, progress=False, log_samples=True)
    return prep, result


# --- rendering ------------------------------------------------------------------------------

@pytest.mark.parametrize("lang", LANGS)
def test_committed_nanotron_configs_equal_the_renderer(lang):
    path = ncfg.committed_path(lang)
    assert path.is_file(), f"{path} missing: run python -c 'from zagreus_utils.nanotron import config as n; n.write_committed()'"
    assert path.read_text(encoding="utf-8") == ncfg.render_committed(lang)
    assert ncfg.validate(ncfg.load(path)) == []


def test_ita_config_carries_every_report_value_except_documented_corrections(report_source):
    report = report_config.report_config(report_source)
    rendered = ncfg.load(ncfg.committed_path("ita"))
    rows = report_config.corrections_table(rendered, report)
    assert not [r for r in rows if r["kind"] == "UNDOCUMENTED"], rows
    documented = {c.key for c in report_config.CORRECTIONS + report_config.ADAPTATIONS}
    diffs = {d["key"] for d in report_config.differences(report.normalized, rendered)}
    assert diffs <= documented
    # the report's config, as printed, is invalid YAML and has checkpoint keys at the top level
    assert report.yaml_error and "mapping values are not allowed" in report.yaml_error
    assert set(report.moved) == {"resume_checkpoint_path", "save_final_state", "save_initial_state"}
    problems = ncfg.validate(report.raw)
    assert any("resume_checkpoint_path" in p and "checkpoints.resume_checkpoint_path" in p for p in problems)
    # ... and once corrected it validates
    assert ncfg.validate(report.normalized) == []
    flat = report_config.flatten(rendered)
    assert flat["optimizer.learning_rate_scheduler.learning_rate"] == 0.003
    assert flat["model.init_method.std"] == 0.03227 and flat["parallelism.dp"] == 64


def test_language_configs_differ_only_in_their_paths():
    base = report_config.flatten(ncfg.load(ncfg.committed_path("ita")))
    for lang in LANGS[1:]:
        other = report_config.flatten(ncfg.load(ncfg.committed_path(lang)))
        diff = {k for k in base if base[k] != other.get(k)}
        assert diff <= {"checkpoints.checkpoints_path", "data_stages[0].data.dataset.dataset_folder"}, (lang, diff)
        assert all(f"/{lang}/" in f for f in other["data_stages[0].data.dataset.dataset_folder"])


# --- strict schema --------------------------------------------------------------------------

def test_schema_refuses_unknown_misplaced_and_mistyped_keys():
    cfg = ncfg.render(load_spec("ita", "full"))
    cfg["optimizer"]["learning_rate_scheduler"]["learning_rat"] = 0.1
    cfg["save_final_state"] = False
    cfg["optimizer"]["optimizer_factory"]["adam_eps"] = "1e-8"
    cfg["optimizer"]["learning_rate_scheduler"]["lr_decay_style"] = "exponential"
    cfg["parallelism"]["tp"] = 2  # 15 heads are not divisible by 2
    problems = "\n".join(ncfg.validate(cfg))
    assert "unknown key 'learning_rat'" in problems and "no such key" in problems
    assert "unknown key 'save_final_state' at the top level" in problems and "checkpoints.save_final_state" in problems
    assert "adam_eps must be a number" in problems
    assert "lr_decay_style" in problems
    assert "num_attention_heads (15) must be divisible by tp (2)" in problems
    with pytest.raises(ZagreusError, match="refused by nanotron"):
        ncfg.check(cfg)
    del cfg["model"]["model_config"]
    assert any("missing required key 'model_config'" in p for p in ncfg.validate(cfg))


def test_invalid_yaml_is_refused_with_its_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("checkpoints:\n  checkpoint_interval: 5\nsave_final_state: false\n  save_initial_state: false\n")
    with pytest.raises(ZagreusError, match=r"invalid YAML in nanotron config .*bad.yaml:4:"):
        ncfg.load(bad)
    with pytest.raises(ZagreusError, match="invalid YAML"):
        ncfg.loads("a: [1, 2\n")
    import importlib.util

    if importlib.util.find_spec("nanotron") is None:
        assert "not importable" in ncfg.validate_with_nanotron(ncfg.committed_path("ita"))


# --- pre-flight -----------------------------------------------------------------------------

def _prep(stage02, **extra):
    run_dir, vocab = stage02
    ov = {**tiny_overrides(vocab), **extra}
    return load_spec("ita", "smoke", ov), run_dir, ov


def _config(spec, run_dir):
    return ncfg.render(spec, run_dir=run_dir, checkpoints_path=run_dir / "pt-checks",
                       tokenizer_name_or_path=str(run_dir / "02_tokenization" / "tokenizer"))


def test_preflight_passes_on_good_input(stage02):
    spec, run_dir, _ = _prep(stage02)
    checks = preflight.check_all(spec, _config(spec, run_dir))
    assert all(c.ok for c in checks), preflight.as_records(checks)


@pytest.mark.parametrize("extra, needle", [
    ({"parallelism.dp": 2}, "parallelism (world size)"),
    ({"hardware.nodes": 2}, "parallelism (world size)"),
    ({"training.lr_decay_starting_step": 14}, "schedule"),       # 14 + 6 > 16 steps
    ({"training.lr_warmup_steps": 40}, "schedule"),
    ({"training.lr_decay_starting_step": 1}, "schedule"),         # decay before warmup ends
    ({"training.sequence_length": 128}, "sequence length"),
    ({"tokenizer.vocab_size": 1000}, "vocabulary"),
])
def test_preflight_refuses_bad_input_with_the_fix(stage02, extra, needle):
    spec, run_dir, _ = _prep(stage02, **extra)
    with pytest.raises(ZagreusError) as err:
        preflight.check_all(spec, _config(spec, run_dir))
    text = str(err.value)
    assert needle in text and "Fix:" in text


def test_preflight_refuses_missing_folders_tokenizer_mismatch_and_resume(stage02, tmp_path):
    spec, run_dir, _ = _prep(stage02)
    cfg = _config(spec, run_dir)
    cfg["data_stages"][0]["data"]["dataset"]["dataset_folder"][1] = str(tmp_path / "nowhere")
    with pytest.raises(ZagreusError, match="missing: .*nowhere.*Fix: run the tokenization stage"):
        preflight.check_all(spec, cfg)
    cfg = _config(spec, run_dir)
    cfg["tokenizer"]["tokenizer_name_or_path"] = "meta-llama/Llama-3.2-1B"
    with pytest.raises(ZagreusError, match=r"tokenizer string .*nanotron asserts they are equal"):
        preflight.check_all(spec, cfg)
    cfg = _config(spec, run_dir)
    cfg["checkpoints"]["resume_checkpoint_path"] = str(tmp_path / "checkpoint-630000")
    with pytest.raises(ZagreusError, match="resume checkpoint.*does not exist"):
        preflight.check_all(spec, cfg)


def test_preflight_memory_against_the_declared_gpu():
    spec = load_spec("ita", "full")
    cfg = ncfg.render(spec)
    assert preflight.check_memory(spec, cfg).ok  # ~38 GiB on an 80 GiB A100
    small = load_spec("ita", "full", {"hardware.gpu_memory_gb": 24})
    check = preflight.check_memory(small, cfg)
    assert check.ok is False and "micro_batch_size" in check.fix
    assert preflight.check_parallelism(spec, cfg).ok


def test_stage_refuses_before_training(stage02, tmp_path):
    run_dir, vocab = stage02
    out = tmp_path / "refused"
    with pytest.raises(ZagreusError, match="pre-flight failed"):
        pretraining.prepare(stage_ctx("pretraining", run_dir, {**tiny_overrides(vocab), "parallelism.dp": 4},
                                      out_dir=out))
    assert not (out / "checkpoints").exists()
    with pytest.raises(ZagreusError, match="stage 02_tokenization has not run"):
        pretraining.prepare(stage_ctx("pretraining", tmp_path / "empty-run", tiny_overrides(vocab)))


# --- sbatch ---------------------------------------------------------------------------------

def test_sbatch_renders_the_launch_from_the_spec():
    spec = load_spec("ita", "full")
    text = sbatch.render(spec, "configs/nanotron/zagreus_350M_ita.yaml").text
    for needle in ["#SBATCH --nodes=8", "#SBATCH --gres=gpu:8", "#SBATCH --ntasks-per-node=1", "#SBATCH --time=4-00:00:00",
                   "#SBATCH --cpus-per-task=32", "#SBATCH --account=YOUR_ACCOUNT",
                   "GPUS_PER_NODE=8", "--rdzv_backend c10d", '--rdzv_endpoint "$MASTER_ADDR:$MASTER_PORT"',
                   "export HF_HUB_OFFLINE=1", "export TRANSFORMERS_OFFLINE=1", "export HF_DATASETS_OFFLINE=1",
                   "NCCL_IB_DISABLE=0", "CUDA_DEVICE_MAX_CONNECTIONS=1", "srun --kill-on-bad-exit=1 torchrun",
                   '"$NANOTRON_DIR/run_train.py" --config-file configs/nanotron/zagreus_350M_ita.yaml']:
        assert needle in text, needle
    # the #SBATCH block comes first (sbatch stops reading directives at the first command)
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash" and all(l.startswith("#SBATCH") for l in lines[1:9])


def _stubs(folder: Path, names: list[str]) -> Path:
    """Executables that print their argv as JSON (one line) and succeed."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        p = folder / name
        p.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps([{name!r}] + sys.argv[1:]))\n")
        p.chmod(p.stat().st_mode | stat.S_IEXEC)
    return folder


def test_sbatch_is_shell_safe_against_any_value(tmp_path):
    spec = load_spec("ita", "smoke", {"slurm.partition": "p;rm -rf / #x"})
    canary = tmp_path / "pwned"
    evil = f"/tmp/a b/$(touch {canary});`touch {canary}`'\"\n; touch {canary}"
    rendered = sbatch.render(spec, evil, entry="local", workdir=tmp_path, hf_home=evil, modules=[],
                             extra_args=("--output-dir", evil))
    script = sbatch.write(rendered, tmp_path / "job.sbatch")
    assert '#SBATCH --partition="p;rm -rf / #x"' in script.read_text()  # sbatch's quoting, not a shell's
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    bin_dir = _stubs(tmp_path / "bin", ["srun"])
    (bin_dir / "scontrol").write_text("#!/bin/sh\necho node0\n")
    (bin_dir / "scontrol").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_NUM_NODES": "1",
           "SLURM_JOB_NODELIST": "node0", "SLURM_JOB_ID": "42"}
    out = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    argv = json.loads(out.stdout.strip().splitlines()[-1])
    assert argv[:3] == ["srun", "--kill-on-bad-exit=1", "torchrun"]
    assert argv[-4:] == ["--config-file", evil, "--output-dir", evil]
    assert argv[argv.index("--rdzv_endpoint") + 1] == "node0:29400" and argv[argv.index("--nproc_per_node") + 1] == "2"  # smoke: slurm.pretraining.procs_per_node
    assert not canary.exists()
    bad = load_spec("ita", "smoke", {"slurm.account": "acct\n#SBATCH --uid=0"})
    with pytest.raises(ZagreusError, match="line break"):
        sbatch.render(bad, "c.yaml")


def test_slurm_calls_without_slurm_and_dry_run(tmp_path, monkeypatch):
    spec = load_spec("ita", "full")
    script = sbatch.write(sbatch.render(spec, "configs/nanotron/zagreus_350M_ita.yaml"), tmp_path / "job.sbatch")
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    for call in (lambda: sbatch.submit(script), lambda: sbatch.cancel("1")):
        with pytest.raises(ZagreusError, match="not installed here"):
            call()
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    dr = sbatch.dry_run(script)
    if not dr.slurm_answers:
        assert dr.syntax_ok and dr.test_only_ok is None and "bash -n" in dr.notes[0]
    broken = tmp_path / "broken.sbatch"
    broken.write_text("#!/bin/bash\nif then fi\n")
    assert not sbatch.dry_run(broken).syntax_ok


# --- logs -----------------------------------------------------------------------------------

def test_parse_nanotron_logs_in_every_format(report_source, tmp_path):
    lines = nanotron_logs.report_log_lines(Path(report_source).read_text(encoding="utf-8"))
    df = nanotron_logs.parse_nanotron_log(lines)
    assert list(df["step"]) == [211364, 211365]
    r = df.iloc[0]
    assert r["consumed_tokens"] == 480e9 and r["time_per_iteration_ms"] == 8790 and r["tokens_per_sec"] == 182e3
    assert r["global_batch_tokens"] == 1.6e6 and r["loss"] == 2.04 and r["lr"] == 1e-4 and r["grad_norm"] == 0.112
    assert r["eta_seconds"] == 131 * 86400 + 1 * 3600 + 45 * 60 + 39 and r["host"] == "lrdn0007"
    recent = ("\x1b[2;3m06/21 01:39:51 [INFO]\x1b[0m: iteration: 12 / 100 | consumed_tokens: 1.2G | "
              "time_per_iteration_ms: 879 | tokens_per_sec: 3.5M | tokens_per_sec_per_gpu: 54.7K | global_batch_size: 2.1M | "
              "lm_loss: 9.87 | z_loss: 0.0123 | lr: 3.2e-05 | model_tflops_per_gpu: 201 | "
              "dataloader/consumed_tokens/fineweb: 120M | eta: 1:02:03")
    v05 = ("01/02/2024 10:11:12 [INFO|DP=0|PP=0|TP=0|nid1]: iteration: 5 / 10 | consumed_samples:          320 | "
           "elapsed_time_per_iteration_ms: 1234.5 | tokens_per_sec: 1.234567E+04 | tokens_per_sec_per_gpu: 1.543210E+03 | "
           "global_batch_size:    64 | lm_loss: 9.876543E+00 | lr: 3.000E-04 | model_tflops_per_gpu: 12.34 | "
           "hardware_tflops_per_gpu: 12.34 | grad_norm: 1.234")
    log = tmp_path / "slurm-1.out"
    log.write_text("\n".join(["some other line", recent, v05, "[INFO] no iteration here"]) + "\n")
    df = nanotron_logs.parse_nanotron_log(log, sequence_length=2048)
    a, b = df.iloc[0], df.iloc[1]
    assert a["format"] == "nanotron" and a["consumed_tokens"] == 1.2e9 and a["tokens_per_sec"] == 3.5e6
    assert a["global_batch_tokens"] == 2.1e6 and a["dataloader/consumed_tokens/fineweb"] == 120e6 and a["eta_seconds"] == 3723
    assert b["format"] == "nanotron v0.5" and b["time_per_iteration_ms"] == 1234.5 and b["tokens_per_sec"] == 12345.67
    assert b["global_batch_tokens"] == 64 * 2048 and b["consumed_tokens"] == 320 * 2048 and b["rank_pp"] == 0
    assert b["hardware_tflops_per_gpu"] == 12.34 and abs(b["loss"] - 9.876543) < 1e-9
    local = tmp_path / "metrics.jsonl"
    local.write_text("".join(json.dumps({"step": s, "loss": 5 - s / 10, "lr": 1e-3, "grad_norm": 1.0,
                                         "tokens_seen": s * 1024, "tokens_per_sec": 2000.0, "step_time_s": 0.5}) + "\n"
                             for s in range(1, 4)))
    table = nanotron_logs.metrics_table(df, nanotron_logs.read_local_metrics(local))
    assert len(table) == 5 and set(table["format"]) == {"nanotron", "nanotron v0.5", "local jsonl"}
    assert list(table["consumed_tokens"].tail(3)) == [1024, 2048, 3072]
    with pytest.raises(ValueError):
        nanotron_logs.parse_number("12 apples")


# --- planning -------------------------------------------------------------------------------

@pytest.mark.parametrize("tied, kv", [(True, 2), (False, 2), (True, 4)])
def test_parameter_count_matches_the_model(tied, kv):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=kv, tie_word_embeddings=tied)
    model = LlamaForCausalLM(cfg)
    counts = planning.parameter_counts(LlamaArch.from_hf(cfg))
    assert counts["total"] == sum(p.numel() for p in model.parameters())


def test_planning_numbers_for_the_report():
    arch = LlamaArch.from_spec(load_spec("ita", "full"))
    counts = planning.parameter_counts(arch)
    assert counts["total"] == 437_760_960 and counts["non_embedding"] == 314_635_200
    assert abs(counts["embedding_share"] - 0.2813) < 1e-3
    f = planning.flops_per_token(arch, 4096)
    assert f["dense"] == 6 * 437_698_560 and f["attention"] == 12 * 32 * 15 * 64 * 4096
    assert abs(planning.mfu(699, f["total"], 312) - 699 * f["total"] / 312e12) < 1e-12
    p = planning.plan(1e12, gpus=64, tokens_per_sec=182e3)
    assert abs(p.days - 1e12 / 182e3 / 86400) < 1e-9 and abs(p.gpu_hours - p.days * 24 * 64) < 1e-6
    base = planning.MemorySettings(micro_batch_size=4, seq_len=4096, dp=64)
    m = planning.training_memory(arch, base)
    assert 30 * 2**30 < m["total"] < 45 * 2**30
    assert planning.training_memory(arch, planning.MemorySettings(8, 4096, 64))["total"] > m["total"]
    assert planning.training_memory(arch, planning.MemorySettings(4, 4096, 64, zero_stage=1))["total"] < m["total"]
    row = nanotron_logs.parse_line("iteration: 211364 / 1500000 | consumed_tokens: 480B | time_per_iteration_ms: 8.79K | "
                                   "tokens_per_sec: 182K | tokens_per_sec_per_gpu: 699 | global_batch_size: 1.6M | "
                                   "model_tflops_per_gpu: 15.4 | eta: 131 days, 1:45:39")
    row["lr"] = 1e-4
    checks = {c["quantity"]: c for c in planning.log_line_check(row, arch, 4096, declared_gpus=64, peak_tflops=312,
                                                                  micro_batch_size=4, dp=64,
                                                                  config=ncfg.render(load_spec("ita", "full")))}
    assert checks["train_steps"]["logged"] == 1_500_000 and checks["train_steps"]["derived"] == 2_000_000
    assert checks["learning rate at this step"]["derived"] == 0.003  # the config's stable phase
    assert round(checks["GPUs (tokens_per_sec / tokens_per_sec_per_gpu)"]["logged"]) == 260
    assert abs(checks["eta (days)"]["ratio"] - 1) < 0.01
    assert checks["global batch (tokens)"]["derived"] == 4 * 64 * 4096


# --- the local trainer ----------------------------------------------------------------------

def test_schedule_is_nanotrons_and_uses_transformers_where_it_matches():
    import torch

    from zagreus_utils.model import trainer

    spec = load_spec("ita", "smoke")
    s = trainer.Settings.from_nanotron(ncfg.render(spec), base=paths.REPO_ROOT)
    sched = trainer.schedule_for(s)
    t = spec.profile.training
    assert sched.lr_at(0) == 0 and sched.lr_at(t.lr_warmup_steps // 2) == pytest.approx(t.learning_rate / 2)
    assert sched.lr_at(t.lr_warmup_steps) == t.learning_rate == sched.lr_at(t.lr_decay_starting_step - 1)
    mid = t.lr_decay_starting_step + t.lr_decay_steps // 2
    assert sched.lr_at(mid) == pytest.approx((t.learning_rate + t.min_decay_lr) / 2)
    assert sched.lr_at(t.train_steps) == t.min_decay_lr
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=t.learning_rate)
    assert "nanotron" in trainer.build_scheduler(opt, s)[1]  # min lr > 0: transformers' warmup would differ
    for style in ("linear", "cosine", "1-sqrt"):
        s0 = trainer.Settings(**{**s.__dict__, "min_decay_lr": 0.0, "lr_decay_style": style})
        opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=t.learning_rate)
        hf, how = trainer.build_scheduler(opt, s0)
        assert how == "transformers.get_wsd_schedule"
        ref = trainer.schedule_for(s0)
        for step in range(t.train_steps + 5):
            assert hf.lr_lambdas[0](step) == pytest.approx(ref(step), abs=1e-12), (style, step)


def test_model_init_gqa_and_tied_embeddings():
    from zagreus_utils.model import trainer

    spec = load_spec("ita", "smoke")
    s = trainer.Settings.from_nanotron(ncfg.render(spec), base=paths.REPO_ROOT)
    model = trainer.build_model(s)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    layer = model.model.layers[0]
    m = spec.profile.model
    assert layer.self_attn.k_proj.weight.shape[0] == m.num_key_value_heads * m.hidden_size // m.num_attention_heads
    std = m.init_std
    assert abs(float(model.model.embed_tokens.weight.std()) - std) < 0.1 * std
    assert abs(float(layer.mlp.down_proj.weight.std()) - std / math.sqrt(2 * m.num_hidden_layers)) < 0.15 * std
    assert float(layer.input_layernorm.weight.min()) == 1.0
    assert sum(p.numel() for p in model.parameters()) == planning.parameter_counts(LlamaArch.from_spec(spec))["total"]


def test_data_blend_follows_folder_sizes_and_is_deterministic(stage02):
    from zagreus_utils.model import token_data

    run_dir, vocab = stage02
    folders = [str(run_dir / "02_tokenization" / "tokenized" / s) for s in SOURCES]
    a = token_data.TokenDataset(folders, 64, 5000, seed=8, vocab_size=vocab)
    b = token_data.TokenDataset(folders, 64, 5000, seed=8, vocab_size=vocab)
    assert (a.dataset_index == b.dataset_index).all() and a.epochs > 1
    share = a.samples_per_source()
    for src, n in zip(SOURCES, a.lengths):
        assert abs(share[src] / 5000 - n / sum(a.lengths)) < 0.01
    item = a[3]
    assert item["input_ids"].shape == (64,) and (item["labels"][:-1] == item["input_ids"][1:]).all()


def test_stage_trains_end_to_end(reference):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    prep, result = reference
    assert result.status == "trained" and result.steps == STEPS
    assert len(result.checkpoints) == STEPS // INTERVAL
    rows = [json.loads(line) for line in Path(result.metrics_path).read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert rows[-1]["tokens_seen"] == STEPS * 4 * 64 and all(r["tokens_per_sec"] > 0 for r in rows)
    assert result.final_loss < result.initial_loss - 0.5
    last = Path(result.checkpoints[-1])
    model = AutoModelForCausalLM.from_pretrained(last)
    tok = AutoTokenizer.from_pretrained(last)
    assert model.config.tie_word_embeddings and model.config.num_key_value_heads == 2 and len(tok) == model.config.vocab_size
    out = pretraining.write_outputs(prep, result)
    index = json.loads(out.read_text())
    assert {t["id"].split("-")[1] for t in index["tables"]} >= {"corrections", "preflight", "plans", "architecture"}
    for fig in index["figures"]:
        assert (prep.out_dir / fig["png"]).is_file()
    df = pretraining.metrics(prep, result)
    assert {"local jsonl"} <= set(df["format"])
    again = pretraining.execute(prep, progress=False)
    assert again.status == "already complete" and again.steps == STEPS


def test_killed_run_resumes_with_the_same_data_order(reference, tmp_path):
    prep, ref = reference
    cfg = dict(prep.config)
    cfg["checkpoints"] = {**cfg["checkpoints"], "checkpoints_path": str(tmp_path / "checkpoints")}
    cfg_path = ncfg.write(cfg, tmp_path / "config.yaml")
    cmd = [sys.executable, "-m", "zagreus_utils.model.trainer", "--config-file", str(cfg_path), "--log-samples", "--no-progress"]
    env = {**os.environ, "ZAGREUS_STEP_DELAY": "0.25"}  # a throttle, so that the kill lands mid-run
    metrics = tmp_path / "metrics.jsonl"
    proc = subprocess.Popen(cmd, env=env, cwd=paths.REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            steps = [json.loads(x)["step"] for x in metrics.read_text().splitlines()] if metrics.is_file() else []
            if steps and steps[-1] >= INTERVAL + 1:
                break
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.05)
        else:
            pytest.fail("the training subprocess did not reach the kill point in time")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (tmp_path / "checkpoints" / f"checkpoint-{STEPS}").exists()
    assert (tmp_path / "checkpoints" / f"checkpoint-{INTERVAL}" / "trainer_state.json").is_file()
    # restart (in this process: same code path as the CLI, without a second interpreter start-up)
    from zagreus_utils.model import trainer

    res = trainer.train(cfg_path, base=paths.REPO_ROOT, log_samples=True, progress=False)
    assert res.status == "resumed" and res.steps == STEPS and res.resumed_from.endswith(f"checkpoint-{INTERVAL}")

    def consumed(path):
        return [json.loads(x) for x in Path(path).read_text().splitlines()]

    got, want = consumed(tmp_path / "samples.jsonl"), consumed(ref.samples_path)
    assert [r["step"] for r in got] == list(range(1, STEPS + 1))
    assert got == want  # same samples, same steps: nothing repeated or skipped
    flat = [i for r in got for i in r["samples"]]
    assert flat == list(range(STEPS * 4))
    rows = [json.loads(x) for x in metrics.read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    ref_rows = [json.loads(x) for x in Path(ref.metrics_path).read_text().splitlines()]
    assert rows[-1]["loss"] == pytest.approx(ref_rows[-1]["loss"], rel=1e-3)
    assert len(list((tmp_path / "checkpoints").glob("checkpoint-*"))) == STEPS // INTERVAL


def test_notebook_runs_on_the_stage(reference, tmp_path):
    """The stage notebook, headless, on the reference run (already complete: it reuses it)."""
    import nbformat
    import papermill as pm

    prep, _ = reference
    nb_path = paths.NOTEBOOKS / "03_pretraining.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    assert params[0].source.splitlines() == ['profile = "smoke"', 'language = "ita"', 'run_dir = ""', 'out_dir = ""',
                                             'launcher = "local"', "overrides = {}", "force = False"]
    out = tmp_path / "03.ipynb"
    pm.execute_notebook(str(nb_path), str(out), kernel_name="python3", progress_bar=False, cwd=str(tmp_path),
                        parameters={"run_dir": str(prep.run_dir), "launcher": "local",
                                    "overrides": tiny_overrides(prep.spec.profile.tokenizer.vocab_size)})
    text = out.read_text()
    assert "srun --kill-on-bad-exit=1 torchrun" in text and "image/png" in text  # the sbatch script is shown
    assert json.loads((prep.out_dir / "launch.json").read_text())["launcher"] == "local"
