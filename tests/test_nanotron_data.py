"""nanotron's own data path over the kit's token folders, against the local trainer's reader.

In the training venv (tests/cluster_env.py), nanotron main's ``run_train.py`` path for a Nanoset
stage is rebuilt on CPU: ``get_tb_datasets`` (TokenizedBytes folders on datatrove's
``DatatroveFolderDataset`` of the avoid-s3 branch, blended by ``BlendableDataset`` with Megatron's
compiled ``build_blending_indices``), with a one-process gloo group in place of nanotron's
NCCL-only ParallelContext (the function only asks it for ``world_pg``).

What nanotron main does, and how the local trainer (``zagreus_utils.model.token_data.TokenDataset``) relates:

* blend: the same greedy "furthest below its share" order of (source, window) pairs; nanotron
  reads it in order, the local trainer shuffles it with the data seed (a permutation applied to
  both index arrays), so item ``i`` of the local trainer is nanotron's item ``perm[i]``, token for token;
* weights: nanotron blends by ``dataset_weights`` and *equally* without them, so the pretraining
  stage writes each folder's share of the tokens (``nanotron_config.weigh_by_size``);
* no repetition: a source read past its last window raises IndexError in nanotron (the local
  trainer starts that source again).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from cluster_env import requires_train_env, run_train_env
from conftest import stage_ctx
from pretraining_helpers import write_stage02

from zagreus_utils.nanotron import config as ncfg
from zagreus_utils.model import preflight, token_data, trainer
from zagreus_utils.stages import pretraining
from zagreus_utils.pipeline.spec import load_spec

pytestmark = requires_train_env

SEQ = 32
WORDS = "il gatto cane casa mare sole luna pane vino strada città libro amico scuola lavoro tempo".split()

#: nanotron's TokenizedBytes datasets of each config given; indices and the tokens of every sample
#: that every source can still serve (``upto``), and what reading past a source's end does
BUILD = """
import json, sys, tempfile
from types import SimpleNamespace
import torch.distributed as tdist
tdist.init_process_group("gloo", init_method=f"file://{tempfile.mktemp()}", rank=0, world_size=1)
from nanotron.config import Config, get_config_from_file
from nanotron.data.tokenized_bytes import get_tb_datasets
from transformers import AutoTokenizer
out = {}
for path in sys.argv[1:]:
    cfg = get_config_from_file(path, config_class=Config)
    stage = cfg.data_stages[0]
    tok = AutoTokenizer.from_pretrained(cfg.tokenizer.tokenizer_name_or_path)  # as run_train.py does
    ds, _ = get_tb_datasets(
        config=stage.data.dataset, global_batch_size=cfg.global_batch_size,
        sequence_length=cfg.tokens.sequence_length, train_steps=cfg.tokens.train_steps, current_iteration=0,
        parallel_context=SimpleNamespace(world_pg=tdist.group.WORLD), shuffle=stage.data.dataset.shuffle_files,
        eos_token_id=tok.eos_token_id, seed=stage.data.seed, consumed_samples=0,
        consumed_tokens_per_dataset_folder={}, last_stages_consumed_tokens_per_dataset_folder={})
    lengths = [len(d) for d in ds.datasets]
    over = [i for i in range(len(ds)) if ds.dataset_sample_index[i] >= lengths[ds.dataset_index[i]]]
    upto = over[0] if over else len(ds)
    try:
        ds[upto]
        past = "read"
    except IndexError as exc:
        past = f"IndexError: {exc}"
    out[path] = {"type": type(ds).__name__, "size": len(ds), "lengths": lengths,
                 "folders": [d.folder_path for d in ds.datasets],
                 "dataset_index": ds.dataset_index.tolist(), "sample_index": ds.dataset_sample_index.tolist(),
                 "tokens": [ds[i]["input_ids"].tolist() for i in range(upto)], "upto": upto, "past_end": past}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A smoke-like stage-02 output (four sources of different sizes) and stage 03's config over it."""
    run_dir = tmp_path_factory.mktemp("runs") / "smoke" / "ita"
    rng = random.Random(3)
    spec = load_spec("ita", "smoke")
    texts = {s.id: [" ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 40))) for _ in range(12 * (k + 1))]
             for k, s in enumerate(spec.language.mixture)}
    vocab = write_stage02(run_dir, texts, vocab_size=400, bos="<|begin_of_text|>", eos="<|end_of_text|>")
    overrides = {"tokenizer.vocab_size": vocab, "model.hidden_size": 64, "model.intermediate_size": 128,
                 "model.num_hidden_layers": 2, "model.num_attention_heads": 4, "model.num_key_value_heads": 2,
                 "model.max_position_embeddings": SEQ, "training.sequence_length": SEQ,
                 "training.micro_batch_size": 4, "training.train_steps": 200, "training.checkpoint_interval": 50,
                 "training.lr_warmup_steps": 2, "training.lr_decay_starting_step": 100,
                 "training.lr_decay_steps": 50}
    prep = pretraining.prepare(stage_ctx("pretraining", run_dir, overrides))
    return prep


@pytest.fixture(scope="module")
def built(run, tmp_path_factory):
    """nanotron's datasets of stage 03's config, of the same without weights, and with chosen weights."""
    tmp = tmp_path_factory.mktemp("cfg")
    unweighted = ncfg.load(run.config_path)
    del unweighted["data_stages"][0]["data"]["dataset"]["dataset_weights"]
    chosen = ncfg.load(run.config_path)
    chosen["data_stages"][0]["data"]["dataset"]["dataset_weights"] = [0.5, 0.25, 0.15, 0.1]
    paths = {"stage": str(run.config_path), "unweighted": str(ncfg.write(unweighted, tmp / "unweighted.yaml")),
             "chosen": str(ncfg.write(chosen, tmp / "chosen.yaml"))}
    got = run_train_env(BUILD, *paths.values())
    return {name: got[path] for name, path in paths.items()}


def test_stage_config_weighs_folders_by_size(run, built):
    ds = run.config["data_stages"][0]["data"]["dataset"]
    folders = ds["dataset_folder"]
    sizes = [sum(p.stat().st_size for p in Path(f).glob("*.ds")) for f in folders]
    assert ds["dataset_weights"] == pytest.approx([s / sum(sizes) for s in sizes], rel=1e-5)
    assert len(set(sizes)) == len(sizes)  # the sources differ in size: an equal blend would show
    got = built["stage"]
    assert got["type"] == "BlendableDataset" and got["folders"] == folders
    n = got["upto"]
    counts = np.bincount(got["dataset_index"][:n], minlength=len(folders))
    assert np.abs(counts - np.asarray(ds["dataset_weights"]) / sum(ds["dataset_weights"]) * n).max() <= 1


def test_without_weights_nanotron_blends_folders_equally(built):
    """Why the stage writes dataset_weights: nanotron main ignores folder sizes (the old Nanoset did not)."""
    got = built["unweighted"]
    counts = np.bincount(got["dataset_index"], minlength=len(got["lengths"]))
    assert counts.max() - counts.min() <= 1
    assert len(set(got["lengths"])) == len(got["lengths"])


def test_blend_follows_the_configs_weights(built):
    got = built["chosen"]
    w = np.array([0.5, 0.25, 0.15, 0.1])
    for n in (10, 100, got["size"]):
        counts = np.bincount(got["dataset_index"][:n], minlength=4)
        assert np.abs(counts - w * n).max() <= 1, (n, counts)


def test_local_trainer_reads_nanotrons_samples_in_a_seeded_order(run, built):
    """Same windows per source, same blend; the local trainer permutes the order with the data seed."""
    got = built["stage"]
    s = trainer.Settings.from_nanotron(run.config)
    per_epoch = sum(got["lengths"])
    local = token_data.TokenDataset(list(s.dataset_folders), s.sequence_length, per_epoch, seed=s.data_seed,
                                 vocab_size=s.arch.vocab_size, weights=list(s.dataset_weights))
    assert local.lengths == got["lengths"]
    # the blend before the local shuffle is nanotron's, pair for pair (up to where a source runs out)
    ds_idx, s_idx = token_data.blend_index(local.lengths, local.weights, per_epoch)
    n = got["upto"]
    assert ds_idx[:n].tolist() == got["dataset_index"][:n]
    assert s_idx[:n].tolist() == got["sample_index"][:n]
    # the local order is that blend permuted by the data seed (both index arrays alike) ...
    perm = np.random.RandomState(s.data_seed).permutation(per_epoch)
    assert local.dataset_index.tolist() == ds_idx[perm].tolist()
    assert local.sample_index.tolist() == s_idx[perm].tolist()
    # ... so local item i holds nanotron's item perm[i], token for token
    checked = 0
    for i in range(per_epoch):
        if perm[i] < n:
            item = local[i]
            assert item["input_ids"].tolist() + item["labels"][-1:].tolist() == got["tokens"][perm[i]], i
            checked += 1
    assert checked == n > per_epoch // 2


def test_nanotron_does_not_repeat_a_source(built):
    """Past a folder's last window nanotron main fails (IndexError); the local trainer repeats instead."""
    got = built["stage"]
    assert got["upto"] < got["size"]  # the config asks for more samples than the smallest source's share holds
    assert got["past_end"].startswith("IndexError")



def test_preflight_refuses_a_nanotron_run_that_would_read_past_a_folder(run, built):
    """Pre-flight counts each folder's samples against its share, as nanotron main reads them."""
    got = built["stage"]
    mbs = run.config["tokens"]["micro_batch_size"]
    assert run.config["tokens"]["train_steps"] * mbs == got["size"] > got["upto"]
    refused = preflight.check_data_volume(run.config, repeats=False)
    assert refused.ok is False and "IndexError" in refused.detail and "train_steps" in refused.fix
    assert preflight.check_data_volume(run.config, repeats=True).ok  # the local trainer repeats folders
    fits = ncfg.load(run.config_path)
    fits["tokens"]["train_steps"] = got["upto"] // mbs - 1  # every sample nanotron can still read
    assert preflight.check_data_volume(fits, repeats=False).ok, preflight.check_data_volume(fits).detail
