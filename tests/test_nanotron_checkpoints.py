"""nanotron's own code reads the kit's nanotron-layout checkpoints (``zagreus_utils.convert``'s exporter).

In the training venv (tests/cluster_env.py), on CPU:

* ``nanotron.serialize.metadata.load_meta`` reads ``checkpoint_metadata.json``;
* ``get_config_from_file(config.yaml, config_class=Config)`` and ``LlamaConfig(**model_config.json)``
  (``Qwen2Config`` for NoPE) load the config files;
* the model nanotron's config builds (``LlamaForTraining``, or ``Qwen2ForTraining`` for a NoPE
  export with ``no_rope_layer``, through ``build_model`` and ``mark_tied_parameters``, as its trainer does) is filled by nanotron's ``load_weights`` from the
  checkpoint, and its tensors must equal the ones exported;
* nanotron's ``save_weights`` of that model writes exactly the files, and the safetensors metadata,
  the exporter wrote (names, shard file names, slices, unsharded shapes, version), compared as
  nanotron's ``TensorMetadata`` parses them (nanotron itself writes some shapes as
  ``(np.int64(128), 64)``; the exporter writes ``(128, 64)``, which the same parser reads).

nanotron's ``ParallelContext`` asserts NCCL and selects a CUDA device, so a one-process gloo group
stands in for it (``CPU_CONTEXT``: the process groups and rank look-ups its functions ask for); its
``P2P`` pipeline buffers are placed on the meta device (the model's constructor allocates them on
CUDA; they hold no parameter). Only tp = 1 can be built in one process: the tp = 2 export is read
with nanotron's metadata parser and path scheme instead.
"""

from __future__ import annotations

import hashlib

import pytest
import torch
from cluster_env import requires_train_env, run_train_env

from zagreus_utils.convert import checkpoint_io, names, to_nanotron

pytestmark = requires_train_env

H, I, LAYERS, HEADS, KV, VOCAB = 64, 96, 2, 4, 2, 300

CPU_CONTEXT = """
import sys, tempfile
from types import SimpleNamespace
import torch, torch.distributed as tdist
tdist.init_process_group("gloo", init_method=f"file://{tempfile.mktemp()}", rank=0, world_size=1)
groups = {f"{n}_pg": tdist.new_group([0]) for n in ("tp", "pp", "dp", "cp", "ep", "dp_cp", "world")}
CTX = SimpleNamespace(**groups, tensor_parallel_size=1, pipeline_parallel_size=1, data_parallel_size=1,
                      context_parallel_size=1, expert_parallel_size=1, world_ranks_to_pg={},
                      get_global_rank=lambda *a, **k: 0,
                      get_local_ranks=lambda world_rank: dict(dp=0, pp=0, tp=0, cp=0, ep=0))
import nanotron.models.llama as llama
import nanotron.models.qwen as qwen
_P2P = llama.P2P
llama.P2P = qwen.P2P = lambda pg, device: _P2P(pg, device=torch.device("meta"))  # pipeline buffers, not parameters
from nanotron.trainer import mark_tied_parameters  # noqa: E402  (imports nanotron's model classes)
# the triton stand-in served nanotron's imports; torch must not take it for a real triton later
class _NoTriton:
    def find_spec(self, name, path=None, target=None):
        if name == "triton" or name.startswith("triton."):
            raise ImportError("no triton on this CPU machine")
for _m in [m for m in sys.modules if m == "triton" or m.startswith("triton.")]:
    del sys.modules[_m]
sys.meta_path.insert(0, _NoTriton())
"""

READ = CPU_CONTEXT + """
import dataclasses, hashlib, json, os
from pathlib import Path
from safetensors import safe_open
from nanotron.config import Config, LlamaConfig, Qwen2Config, get_config_from_file
from nanotron.models.base import build_model
from nanotron.random import RandomStates
from nanotron.serialize.metadata import TensorMetadata, load_meta
from nanotron.serialize.weights import load_weights, save_weights

def digest(t):
    return hashlib.sha256(t.detach().to(torch.float32).contiguous().numpy().tobytes()).hexdigest()

def files(root):
    out = {}
    for p in sorted(Path(root, "model").rglob("*.safetensors")):
        with safe_open(p, framework="pt") as f:
            meta = f.metadata() or {}
            parsed = TensorMetadata.from_str_dict(meta) if meta else None
            # compared as nanotron parses them: its own writer records some shapes as "(np.int64(128), 64)"
            out[str(p.relative_to(root))] = {"version": str(parsed.version) if parsed else None,
                "keys": sorted(meta), "shape": list(f.get_slice("data").get_shape()),
                "unsharded": list(parsed.unsharded_shape) if parsed else None,
                "slices": [str(pair) for pair in parsed.local_global_slices_pairs] if parsed else None}
    return out

out = {}
for ckpt in map(Path, sys.argv[1:]):
    meta = load_meta(None, ckpt)
    cfg = get_config_from_file(str(ckpt / "config.yaml"), config_class=Config)
    mc = json.loads((ckpt / "model_config.json").read_text())
    qwen2 = mc.get("is_qwen2_config", False)
    from_json = (Qwen2Config if qwen2 else LlamaConfig)(**mc)
    entry = {"version": str(meta.version), "tp": meta.tp, "dp": meta.dp,
             "last_train_step": meta.metas.last_train_step, "stages": [s.name for s in meta.metas.data_stages],
             "config_class": type(cfg.model.model_config).__name__,
             "model_config_equal": dataclasses.asdict(cfg.model.model_config) == dataclasses.asdict(from_json),
             "files": files(ckpt)}
    if meta.tp == 1:
        model_class = qwen.Qwen2ForTraining if qwen2 else llama.LlamaForTraining
        model = build_model(lambda: model_class(config=cfg.model.model_config, parallel_context=CTX,
                                                parallel_config=cfg.parallelism, random_states=RandomStates({})),
                            parallel_context=CTX, dtype=torch.float32, device=torch.device("cpu"))
        mark_tied_parameters(model=model, parallel_context=CTX, parallel_config=cfg.parallelism)
        load_weights(model, CTX, ckpt)
        entry["state"] = {n: {"shape": list(t.shape), "sha": digest(t)} for n, t in model.state_dict().items()}
        again = Path(tempfile.mkdtemp())
        save_weights(model, CTX, again)
        entry["saved_files"] = files(again)
    out[str(ckpt)] = entry
print(json.dumps(out))
"""


def nanotron_model_config(tied: bool) -> dict:
    return {"bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "hidden_size": H,
            "initializer_range": 0.02, "intermediate_size": I, "is_llama_config": True,
            "max_position_embeddings": 128, "num_attention_heads": HEADS, "num_hidden_layers": LAYERS,
            "num_key_value_heads": KV, "pad_token_id": None, "pretraining_tp": 1, "rms_norm_eps": 1e-5,
            "rope_scaling": None, "rope_theta": 10000.0, "rope_interleaved": False,
            "tie_word_embeddings": tied, "use_cache": True, "vocab_size": VOCAB}


def digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().to(torch.float32).contiguous().numpy().tobytes()).hexdigest()


@pytest.fixture(scope="module")
def read(tmp_path_factory):
    """Exports (tied tp 1, untied tp 1, untied tp 2) and what nanotron's code made of each."""
    tmp = tmp_path_factory.mktemp("nt")
    made = {}
    for name, tied, tp in (("tied", True, 1), ("untied", False, 1), ("tp2", False, 2), ("nope", True, 1)):
        cfg = nanotron_model_config(tied)
        if name == "nope":  # nanotron's Qwen2 with NoPE layers, as the kit renders it for no_rope_layer
            del cfg["is_llama_config"]
            cfg.update(is_qwen2_config=True, no_rope_layer=2, _use_doc_masking=True)
        arch, _ = names.arch_from_model_config(cfg, name)
        g = torch.Generator().manual_seed(len(made))
        tensors = {n: torch.randn(shape, generator=g) for n, shape in names.nanotron_shapes(arch).items()}
        to_nanotron.write_nanotron_checkpoint(tmp / name, cfg, tensors.items(), tp=tp)
        made[name] = (tmp / name, tensors)
    got = run_train_env(READ, *(str(p) for p, _ in made.values()))
    return {name: (path, tensors, got[str(path)]) for name, (path, tensors) in made.items()}


@pytest.mark.parametrize("name", ["tied", "untied", "tp2", "nope"])
def test_metadata_and_config_files_load_with_nanotron(read, name):
    _, _, got = read[name]
    assert got["version"] == checkpoint_io.CHECKPOINT_VERSION and got["tp"] == (2 if name == "tp2" else 1) and got["dp"] == 1
    assert got["last_train_step"] == 0 and got["stages"] == ["converted"]
    assert got["config_class"] == ("Qwen2Config" if name == "nope" else "LlamaConfig") and got["model_config_equal"]


@pytest.mark.parametrize("name", ["tied", "untied", "nope"])
def test_nanotron_loads_the_exported_weights_into_the_model_its_config_builds(read, name):
    _, tensors, got = read[name]
    state = got["state"]
    expected = dict(tensors)
    if name in ("tied", "nope"):  # nanotron's state dict names the tied head too; the file is the embedding's
        assert names.NT_LM_HEAD not in tensors
        expected[names.NT_LM_HEAD] = tensors[names.NT_EMBED]
    assert set(state) == set(expected)
    for n, t in expected.items():
        assert state[n]["shape"] == list(t.shape), n
        assert state[n]["sha"] == digest(t), n


@pytest.mark.parametrize("name", ["tied", "untied", "nope"])
def test_exported_files_equal_what_nanotron_saves(read, name):
    _, _, got = read[name]
    assert got["files"] == got["saved_files"]


def test_tp2_shards_parse_with_nanotrons_metadata_and_cover_the_tp1_shapes(read):
    """Every header parses with nanotron's TensorMetadata; sharded parameters have one file per tp
    rank named by nanotron's scheme, and record the full parameter's shape."""
    _, tensors, got = read["tp2"]
    files = got["files"]
    for n, t in tensors.items():
        folder = "model/" + "/".join(n.split(".")[:-1])
        shards = {k: v for k, v in files.items() if k.rsplit("/", 1)[0] == folder}
        if names.split_spec(names.arch_from_model_config(nanotron_model_config(False), "tp2")[0], n) is None:
            assert list(shards) == [f"{folder}/model_weight.safetensors"], n
            continue
        assert sorted(shards) == [f"{folder}/model_weight_pp-rank-0-of-1_tp-rank-{r}-of-2.safetensors" for r in (0, 1)], n
        assert all(v["unsharded"] == list(t.shape) for v in shards.values()), n
        assert sum(v["shape"][0 if "o_proj" not in n and "down_proj" not in n else 1] for v in shards.values()) == \
            t.shape[0 if "o_proj" not in n and "down_proj" not in n else 1], n
