"""The full profile's path of a continual run: stage 03 (entry nanotron) converts a Hugging Face start
model to nanotron's layout with the project's converter, sharded over the config's tp, and renders a
config with several data stages that loads it (checkpoints.resume_checkpoint_path, load_optimizer,
load_lr_scheduler); nanotron's own loader (the vendored main, in the training venv) accepts it,
finds the checkpoint, reads its metadata and builds the re-warmed schedule from it.

The profile is the smoke one made a GPU profile (2 GPUs, tp 2) at the tiny scale, so that stage 03
takes the nanotron entry on a CPU machine; the start models come from tests/continual_helpers.py.
"""

from __future__ import annotations

import json
import shutil

import pytest
from cluster_env import requires_train_env, run_train_env
from conftest import stage_ctx
from continual_helpers import build_world

from zagreus_utils.cluster import prefetch
from zagreus_utils.nanotron.continual import START_FOLDER
from zagreus_utils.pipeline import paths
from zagreus_utils.stages import continual_start, pretraining

TWO_GPUS = {"hardware.gpus_per_node": 2, "hardware.gpu": "A100", "hardware.gpu_memory_gb": 80,
            "parallelism.tp": 2, "slurm.pretraining.gpus_per_node": 2, "slurm.pretraining.nodes": 1}
STAGES = [{"name": "italian", "start_step": 0, "mixture": None},
          {"name": "more code", "start_step": 8, "mixture": {"starcoderdata": 3, "fineweb": 1}}]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("continual"))


@pytest.fixture(scope="module")
def prepared(world, tmp_path_factory):
    """Stage 03 prepared (Slurm launcher, nanotron entry) for a run from the ``good`` HF model,
    re-warmed over 4 steps, with two data stages; the start model converted as ``execute`` does."""
    run_dir, overrides, models = world
    ov = {**overrides, **TWO_GPUS, "training.init_from": str(models["good"]), "training.init_rewarmup_steps": 4,
          "data_stages": STAGES}
    prep = pretraining.prepare(stage_ctx("pretraining", run_dir, ov, launcher="slurm",
                                         out_dir=tmp_path_factory.mktemp("stage") / "03_pretraining"))
    note = continual_start.convert_start(prep.spec, prep.config, paths.REPO_ROOT)
    return prep, note


def test_stage_03_renders_the_start_and_the_data_stages(prepared):
    prep, _ = prepared
    assert prep.entry == "nanotron"
    ck = prep.config["checkpoints"]
    assert ck["resume_checkpoint_path"] == str(prep.out_dir / START_FOLDER)
    assert (ck["load_optimizer"], ck["load_lr_scheduler"]) == (False, False)
    stages = prep.config["data_stages"]
    assert [(s["name"], s["start_training_step"]) for s in stages] == [("italian", 1), ("more code", 9)]
    tokenized = prep.run_dir / "02_tokenization" / "tokenized"
    assert stages[1]["data"]["dataset"] == {"dataset_folder": [str(tokenized / "starcoderdata"),
                                                               str(tokenized / "fineweb")],
                                            "dataset_weights": [0.75, 0.25]}
    assert len(stages[0]["data"]["dataset"]["dataset_weights"]) == 4  # the language's mixture, by size
    assert prep.config["optimizer"]["learning_rate_scheduler"]["lr_warmup_steps"] == 4
    checks = {c.name: c for c in prep.checks}
    assert all(c.ok is not False for c in prep.checks), [c for c in prep.checks if c.ok is False]
    assert "converted there before training" in checks["resume checkpoint"].detail
    assert checks["start model: tokenizer vs token folders"].ok


def test_the_hf_start_model_is_converted_once_with_the_configs_tp(prepared, world):
    prep, note = prepared
    target = prep.out_dir / START_FOLDER
    assert note.startswith("converted the start model") and "tp 2" in note and "round trip identical: True" in note
    meta = json.loads((target / "checkpoint_metadata.json").read_text())
    assert meta["tp"] == 2 and meta["metas"]["last_train_step"] == 0
    qkv = target / "model" / "model" / "decoder" / "0" / "pp_block" / "attn" / "qkv_proj"
    assert sorted(p.name for p in qkv.iterdir()) == [f"model_weight_pp-rank-0-of-1_tp-rank-{r}-of-2.safetensors"
                                                     for r in range(2)]
    stamp = (target / "model_config.json").stat().st_mtime_ns
    again = continual_start.convert_start(prep.spec, prep.config, paths.REPO_ROOT)
    assert again.endswith("reused") and (target / "model_config.json").stat().st_mtime_ns == stamp


def test_a_nanotron_start_is_loaded_where_it_is_and_a_stopped_run_resumes_its_own(world, tmp_path):
    run_dir, overrides, models = world
    ov = {**overrides, **TWO_GPUS, "training.init_from": str(models["nt"])}
    out = tmp_path / "03_pretraining"
    prep = pretraining.prepare(stage_ctx("pretraining", run_dir, ov, launcher="slurm", out_dir=out))
    assert prep.config["checkpoints"]["resume_checkpoint_path"] == str(models["nt"])
    assert "loads" in continual_start.convert_start(prep.spec, prep.config, paths.REPO_ROOT)
    assert not (out / START_FOLDER).exists()
    (out / "checkpoints").mkdir()
    (out / "checkpoints" / "latest.txt").write_text("8")  # nanotron stopped after its step-8 checkpoint
    prep = pretraining.prepare(stage_ctx("pretraining", run_dir, ov, launcher="slurm", out_dir=out),
                               raise_on_failure=False)
    ck = prep.config["checkpoints"]
    assert (ck["resume_checkpoint_path"], ck["load_optimizer"], ck["load_lr_scheduler"]) == \
        (str(out / "checkpoints"), True, True)


#: nanotron loads the config, finds the checkpoint it names, reads its metadata and builds its schedule
LOAD_START = """
import json, sys, tempfile
import torch
import torch.distributed as dist
dist.init_process_group("gloo", init_method="file://" + tempfile.mktemp(), rank=0, world_size=1)
from nanotron.config import Config, get_config_from_file
from nanotron.helpers import lr_scheduler_builder
from nanotron.serialize.main import parse_ckpt_path
from nanotron.serialize.metadata import load_meta
cfg = get_config_from_file(sys.argv[1], config_class=Config)
ck = cfg.checkpoints
path = parse_ckpt_path(config=cfg, parallel_context=None)
meta = load_meta(parallel_context=None, root_folder=path)
class Optimizer(torch.optim.SGD):  # the one method of nanotron's optimizer wrappers the builder calls
    def get_base_optimizer(self):
        return self
opt = Optimizer([torch.nn.Parameter(torch.zeros(1))], lr=cfg.optimizer.learning_rate_scheduler.learning_rate)
sched = lr_scheduler_builder(opt, cfg.optimizer.learning_rate_scheduler, cfg.tokens.train_steps)
lrs = []
for _ in range(cfg.tokens.train_steps):
    lrs.append(opt.param_groups[0]["lr"])
    opt.step()
    sched.step()
print(json.dumps({"resume": str(ck.resume_checkpoint_path), "load_optimizer": ck.load_optimizer,
                  "load_lr_scheduler": ck.load_lr_scheduler, "checkpoint": str(path),
                  "last_train_step": meta.metas.last_train_step, "tp": meta.tp,
                  "stages": [[s.name, s.start_training_step, [str(f) for f in s.data.dataset.dataset_folder],
                              s.data.dataset.dataset_weights] for s in cfg.data_stages],
                  "lrs": lrs}))
"""


@requires_train_env
def test_nanotron_loads_the_config_and_the_converted_start(prepared):
    prep, _ = prepared
    got = run_train_env(LOAD_START, prep.config_path)
    start = str(prep.out_dir / START_FOLDER)
    assert got["resume"] == got["checkpoint"] == start  # parse_ckpt_path: a checkpoint folder (model_config.json)
    assert (got["load_optimizer"], got["load_lr_scheduler"]) == (False, False)
    assert (got["last_train_step"], got["tp"]) == (0, 2)
    assert [s[:2] for s in got["stages"]] == [["italian", 1], ["more code", 9]]
    assert got["stages"][1][3] == [0.75, 0.25]
    peak = prep.spec.profile.training.learning_rate
    assert got["lrs"][:5] == pytest.approx([0.0, peak / 4, peak / 2, 3 * peak / 4, peak])  # re-warmed over 4 steps


def test_a_hub_id_is_read_from_the_cache_converted_and_prefetched(world, tmp_path, monkeypatch):
    """``training.init_from: org/name``: the pre-flight reads it from the Hugging Face cache (nothing
    fetched), stage 03 converts the cached snapshot, and ``zagreus prefetch`` lists it."""
    run_dir, overrides, models = world
    repo = tmp_path / "hub" / "models--zagreus-test--tiny-llama"
    snap = repo / "snapshots" / ("1" * 40)
    shutil.copytree(models["good"], snap)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("1" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ov = {**overrides, **TWO_GPUS, "training.init_from": "zagreus-test/tiny-llama"}
    prep = pretraining.prepare(stage_ctx("pretraining", run_dir, ov, launcher="slurm", out_dir=tmp_path / "03"))
    checks = {c.name: c for c in prep.checks}
    assert "Hub id read from the local cache" in checks["start model (training.init_from)"].detail
    assert checks["start model: tokenizer vs token folders"].ok
    note = continual_start.convert_start(prep.spec, prep.config, paths.REPO_ROOT)
    assert note.startswith(f"converted the start model {snap}") and "tp 2" in note
    assert (tmp_path / "03" / START_FOLDER / "model_config.json").is_file()
    profile = tmp_path / "configs"
    shutil.copytree(paths.CONFIGS, profile)
    text = (profile / "profiles" / "full.yaml").read_text().replace(
        "  init_from: null ", "  init_from: zagreus-test/tiny-llama ")
    (profile / "profiles" / "full.yaml").write_text(text)
    monkeypatch.setattr(paths, "CONFIGS", profile)
    listed = [it for it in prefetch.items("full", ["ita"]) if it.kind == "model"]
    assert [(it.name, it.patterns) for it in listed] == [("zagreus-test/tiny-llama", ())]
    assert prefetch.cached(listed[0])
