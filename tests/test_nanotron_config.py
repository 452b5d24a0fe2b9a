"""nanotron's own config loader judges every config the kit renders.

The vendored nanotron (main, 2411b022) runs in the training venv (tests/cluster_env.py) and loads,
with ``nanotron.config.get_config_from_file(path, config_class=Config)``:

* the smoke run's config, as stage 03 writes it over a stage-02 output (tests/pretraining_helpers.py);
* the full profile's four committed configs (configs/nanotron/*.yaml), unchanged, run from a folder
  where their relative dataset paths hold token folders as stage 02 writes them for Llama-3.2
  (metadata ``meta-llama/Llama-3.2-1B|4``; a stand-in tokenizer of 128,256 tokens in a hub cache).

nanotron's loader is strict (dacite ``strict=True``), reads each folder's first ``*.metadata``,
loads the tokenizer named there with AutoTokenizer and asserts that its vocabulary and name equal
the model's. The kit's own schema (``zagreus_utils.nanotron.schema``), which validates where nanotron
is not installed (pre-flight on a login node, the local launcher, the converter), is compared with
nanotron's dataclasses field by field so that it cannot drift.
"""

from __future__ import annotations

import random
import shutil

import pytest
from cluster_env import requires_train_env, run_train_env
from conftest import stage_ctx
from pretraining_helpers import LLAMA_VOCAB, tokenize_texts, write_llama_stand_in, write_stage02

from zagreus_utils.model.recipe import SWITCHES
from zagreus_utils.nanotron import config as ncfg
from zagreus_utils.nanotron import schema as nanotron_schema
from zagreus_utils.stages import pretraining
from zagreus_utils.pipeline.spec import available, load_spec

pytestmark = requires_train_env

LANGS = available("languages")

#: loads each config given on the command line; prints what nanotron made of it
LOAD = """
import json, sys
from nanotron.config import Config, get_config_from_file
out = {}
for path in sys.argv[1:]:
    cfg = get_config_from_file(path, config_class=Config)
    ds = cfg.data_stages[0].data.dataset
    mc = cfg.model.model_config
    out[path] = {"model_config": type(mc).__name__, "vocab_size": mc.vocab_size,
                 "dataset_vocab_size": ds.vocab_size, "dataset_tokenizer": ds.tokenizer_name,
                 "token_size_in_bytes": ds.token_size_in_bytes, "folders": list(ds.dataset_folder),
                 "weights": ds.dataset_weights, "tokenizer": cfg.tokenizer.tokenizer_name_or_path,
                 "global_batch_size": cfg.global_batch_size, "sequence_length": cfg.data_stages[0].sequence_length,
                 "lr_decay_steps": cfg.optimizer.learning_rate_scheduler.lr_decay_steps,
                 "resume": None if cfg.checkpoints.resume_checkpoint_path is None else str(cfg.checkpoints.resume_checkpoint_path)}
print(json.dumps(out))
"""


# --- fixtures -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smoke_config(tmp_path_factory):
    """The smoke run's nanotron config, written by stage 03's ``prepare`` over a stage-02 output."""
    run_dir = tmp_path_factory.mktemp("runs") / "smoke" / "ita"
    rng = random.Random(0)
    words = "il gatto cane casa mare sole luna pane vino strada città libro amico scuola lavoro tempo".split()
    spec = load_spec("ita", "smoke")
    texts = {s.id: [" ".join(rng.choice(words) for _ in range(rng.randint(20, 60))) for _ in range(40)]
             for s in spec.language.mixture}
    vocab = write_stage02(run_dir, texts, vocab_size=400, bos="<|begin_of_text|>", eos="<|end_of_text|>")
    # the smoke profile as it is, but for the vocabulary of this small corpus's tokenizer
    prep = pretraining.prepare(stage_ctx("pretraining", run_dir, {"tokenizer.vocab_size": vocab}))
    return prep, vocab


@pytest.fixture(scope="module")
def llama_runs(tmp_path_factory):
    """``(root, hf_home)``: ``root/runs/full/<lang>/02_tokenization/tokenized/<source>`` for every
    committed config's folders, tokenized as stage 02 does with a Llama-3.2 stand-in in ``hf_home``."""
    tmp = tmp_path_factory.mktemp("full")
    hf_home = tmp / "hf"
    snapshot = write_llama_stand_in(hf_home / "hub")
    rng = random.Random(1)
    docs = [" ".join(f"w{rng.randrange(128_000)}" for _ in range(rng.randint(5, 30))) for _ in range(20)]
    one = tokenize_texts(tmp / "one", docs, snapshot / "tokenizer.json", "meta-llama/Llama-3.2-1B", "src",
                         tmp / "logs")
    root = tmp / "root"
    for lang in LANGS:
        for folder in ncfg.load(ncfg.committed_path(lang))["data_stages"][0]["data"]["dataset"]["dataset_folder"]:
            shutil.copytree(one, root / folder)
    return root, hf_home


# --- the configs load in nanotron ------------------------------------------------------------

def test_smoke_config_loads_in_nanotron(smoke_config):
    prep, vocab = smoke_config
    got = run_train_env(LOAD, prep.config_path)[str(prep.config_path)]
    tokenizer_folder = str((prep.run_dir / "02_tokenization" / "tokenizer").resolve())
    assert got["model_config"] == "LlamaConfig"
    assert got["tokenizer"] == got["dataset_tokenizer"] == tokenizer_folder
    assert got["vocab_size"] == got["dataset_vocab_size"] == vocab
    assert got["token_size_in_bytes"] == 2
    assert got["folders"] == prep.config["data_stages"][0]["data"]["dataset"]["dataset_folder"]
    assert got["sequence_length"] == prep.spec.profile.training.sequence_length


def test_full_profile_configs_load_in_nanotron(llama_runs):
    root, hf_home = llama_runs
    paths = [str(ncfg.committed_path(lang)) for lang in LANGS]
    got = run_train_env(LOAD, *paths, cwd=root, env={"HF_HOME": str(hf_home)})
    for lang, path in zip(LANGS, paths):
        g = got[path]
        spec = load_spec(lang, "full")
        assert g["model_config"] == "LlamaConfig", lang
        assert g["tokenizer"] == g["dataset_tokenizer"] == "meta-llama/Llama-3.2-1B"
        assert g["vocab_size"] == g["dataset_vocab_size"] == LLAMA_VOCAB
        assert g["token_size_in_bytes"] == 4
        assert g["weights"] is None  # folders mix in proportion to their sizes, as in the report
        assert g["folders"] == [f"runs/full/{lang}/02_tokenization/tokenized/{s.id}" for s in spec.language.mixture]
        t = spec.profile.training
        assert g["global_batch_size"] == t.micro_batch_size * t.batch_accumulation_per_replica * spec.profile.parallelism.dp
        assert g["lr_decay_steps"] == t.lr_decay_steps


#: what nanotron made of the recipe switches of each config given on the command line
LOAD_RECIPE = """
import json, sys
from nanotron.config import Config, get_config_from_file
out = {}
for path in sys.argv[1:]:
    cfg = get_config_from_file(path, config_class=Config)
    mc, opt = cfg.model.model_config, cfg.optimizer
    lr = opt.learning_rate_scheduler
    out[path] = {"model_config": type(mc).__name__, "no_rope_layer": getattr(mc, "no_rope_layer", None),
                 "doc_masking": getattr(mc, "_use_doc_masking", None),
                 "attn": mc._attn_implementation, "exclude": opt.weight_decay_exclude_named_params,
                 "decay": [lr.lr_decay_starting_step, lr.lr_decay_steps, lr.lr_decay_style, lr.min_decay_lr],
                 "return_positions": cfg.data_stages[0].data.dataset.return_positions,
                 "layers": mc.num_hidden_layers, "vocab_size": mc.vocab_size}
print(json.dumps(out))
"""

RECIPE_SWITCHES = dict(SWITCHES)
RECIPE_SWITCHES["all"] = {k: v for switch in RECIPE_SWITCHES.values() for k, v in switch.items()}


def test_full_profile_with_each_recipe_switch_loads_in_nanotron(llama_runs):
    """Each SmolLM3 switch (and all of them) turned on in the full profile with one override
    renders a config nanotron's own loader takes, under nanotron main's own names."""
    root, hf_home = llama_runs
    paths = {}
    for name, overrides in RECIPE_SWITCHES.items():
        config = ncfg.render(load_spec("ita", "full", overrides))
        ncfg.check(config, source=name)  # the kit's own schema agrees
        paths[name] = str(ncfg.write(config, root / f"recipe_{name}.yaml"))
    got = run_train_env(LOAD_RECIPE, *paths.values(), cwd=root, env={"HF_HOME": str(hf_home)})
    t = load_spec("ita", "full").profile.training
    for name, path in paths.items():
        g, on = got[path], RECIPE_SWITCHES[name]
        qwen2 = "model.no_rope_layer" in on or "training.document_masking" in on
        assert g["model_config"] == ("Qwen2Config" if qwen2 else "LlamaConfig"), name
        assert g["no_rope_layer"] == on.get("model.no_rope_layer"), name
        assert g["doc_masking"] == (True if "training.document_masking" in on else (False if qwen2 else None)), name
        assert g["exclude"] == on.get("training.weight_decay_exclude", []), name
        assert g["return_positions"] is True  # nanotron's default: the collator gets the positions
        assert g["vocab_size"] == LLAMA_VOCAB
        if "training.wsd_decay_fraction" in on:
            start = t.train_steps - round(t.train_steps * 0.1)
            assert g["decay"] == [start, t.train_steps - start, "linear", 0.0], name
        else:
            assert g["decay"] == [t.lr_decay_starting_step, t.lr_decay_steps, t.lr_decay_style, t.min_decay_lr]
    # nanotron's Qwen2 attention is flash-attn's varlen kernel (cu_seqlens from the position ids)
    assert got[paths["doc_masking"]]["attn"] == "flash_attention_2"


#: nanotron's data path (the train env's datatrove) reading positions: from the EOS tokens, as
#: nanotron's run_train.py passes the tokenizer's eos_token_id, and from the ``.index`` document ends
POSITIONS = """
import json, sys
from datatrove.utils.dataset import DatatroveFolderDataset
folder, seq_len, eos = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = {}
for key, eos_id in (("eos", eos), ("index", None)):
    ds = DatatroveFolderDataset(folder, seq_len, filename_pattern="*.ds", recursive=False, token_size=2,
                                return_positions=True, eos_token_id=eos_id)
    items = [ds[i] for i in range(min(len(ds), 8))]
    out[key] = {"tokens": [it["input_ids"].tolist() for it in items],
                "positions": [it["positions"].tolist() for it in items]}
print(json.dumps(out))
"""


def test_local_document_positions_equal_nanotrons(smoke_config):
    """The local trainer's document positions are those nanotron's data path gives the same windows."""
    import numpy as np
    from transformers import AutoTokenizer

    from zagreus_utils.model.recipe import document_positions

    prep, _ = smoke_config
    folder = prep.config["data_stages"][0]["data"]["dataset"]["dataset_folder"][0]
    eos = AutoTokenizer.from_pretrained(prep.config["tokenizer"]["tokenizer_name_or_path"]).eos_token_id
    got = run_train_env(POSITIONS, folder, "64", str(eos))
    tokens = np.array(got["eos"]["tokens"])
    assert (tokens == eos).sum() >= 8  # several documents end inside the windows
    ours = document_positions(tokens, eos).tolist()
    assert ours == got["eos"]["positions"] == got["index"]["positions"]


#: nanotron's own optimizer helper on its parameter names (tied embedding first, as its models list them)
WEIGHT_DECAY = """
import json, os, sys
import torch
import torch.distributed as dist
from torch import nn
from nanotron.helpers import get_custom_weight_decay_for_named_parameters
from nanotron.parallel.parameters import NanotronParameter
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[1])
dist.init_process_group("gloo", rank=0, world_size=1)
root = nn.Module()
names = ["model.token_position_embeddings.pp_block.token_embedding.weight",
         "model.decoder.0.pp_block.attn.qkv_proj.weight", "model.final_layer_norm.pp_block.weight"]
out = {}
for tied in (True, False):
    params = [(n, NanotronParameter(torch.zeros(2, 2))) for n in names]
    if tied:
        params[0][1].mark_as_tied(name=names[0], global_ranks=(0,), reduce_op=None, root_module=root)
    try:
        groups = get_custom_weight_decay_for_named_parameters(
            named_parameters=params, model=None, module_id_to_prefix={id(root): ""}, weight_decay=0.1,
            exclude_named_params=[".*token_embedding.*"])
        out[str(tied)] = {g["named_params"][0][0]: g["weight_decay"] for g in groups}
    except Exception as exc:
        out[str(tied)] = type(exc).__name__
print(json.dumps(out))
"""


def test_nanotrons_weight_decay_exclusion_is_misapplied_so_preflight_refuses_it():
    """nanotron main 2411b022 excludes every parameter after a tied embedding the pattern matches
    (and stops with NameError when untied): why pre-flight refuses the switch for nanotron runs.
    When a new pin fixes it, this fails: then drop preflight.check_weight_decay_exclusion's refusal."""
    got = run_train_env(WEIGHT_DECAY, str(random.Random().randrange(20000, 40000)))
    assert set(got["True"].values()) == {0.0}  # the layers and the final norm lose their weight decay too
    assert got["False"] == "NameError"


def test_nanotron_refuses_what_the_kit_must_not_write(smoke_config, tmp_path):
    """The loader is the judge: the faults the kit guards against are refused by nanotron too."""
    prep, _ = smoke_config
    refused = """
import json, sys
from nanotron.config import Config, get_config_from_file
out = {}
for path in sys.argv[1:]:
    try:
        get_config_from_file(path, config_class=Config)
        out[path] = "loaded"
    except Exception as exc:
        out[path] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""
    base = ncfg.load(prep.config_path)
    cases = {}

    def case(name, edit):
        cfg = ncfg.load(prep.config_path)
        edit(cfg)
        cases[name] = str(ncfg.write(cfg, tmp_path / f"{name}.yaml"))

    case("top_level_checkpoint_key", lambda c: c.update(save_final_state=False))
    case("tokenizer_json_file", lambda c: c["tokenizer"].update(
        tokenizer_name_or_path=c["tokenizer"]["tokenizer_name_or_path"] + "/tokenizer.json"))
    case("vocab_mismatch", lambda c: c["model"]["model_config"].update(vocab_size=base["model"]["model_config"]["vocab_size"] + 1))
    got = run_train_env(refused, *cases.values())
    assert "UnexpectedDataError" in got[cases["top_level_checkpoint_key"]]
    assert "does not match dataset" in got[cases["tokenizer_json_file"]]
    assert "vocab_size" in got[cases["vocab_mismatch"]]
    # ... and the kit's own check, where nanotron is not installed, refuses the same files
    assert ncfg.validate(ncfg.load(cases["top_level_checkpoint_key"]))


# --- the kit's schema equals nanotron's dataclasses -------------------------------------------

INTROSPECT = """
import dataclasses, json, typing
from nanotron.config import Config
from nanotron.config import config as C, models_config as M

def shape(tp):
    origin = typing.get_origin(tp)
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if origin is typing.Union:
        if len(args) == 1:
            return shape(args[0])
        classes = [a for a in args if dataclasses.is_dataclass(a)]
        if classes and len(classes) == len(args):
            return {"variants": {a.__name__: shape(a) for a in classes}}
        return None
    if origin in (list, typing.List) and args and dataclasses.is_dataclass(args[0]):
        return [shape(args[0])]
    if dataclasses.is_dataclass(tp):
        return {"fields": {f.name: shape(f.type) for f in dataclasses.fields(tp)},
                "required": [f.name for f in dataclasses.fields(tp)
                             if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]}
    return None

seen = set()
def resolve(cls):  # the fields' types as real types (some modules use string annotations), recursively
    types = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        f.type = types[f.name]
        for a in [f.type, *typing.get_args(f.type), *[x for y in typing.get_args(f.type) for x in typing.get_args(y)]]:
            if dataclasses.is_dataclass(a) and a not in seen:
                seen.add(a)
                resolve(a)
resolve(Config)
tree = shape(Config)
# model_config is a Union with Any: dacite takes LlamaConfig for the kit's configs (is_llama_config),
# or Qwen2Config when a recipe switch needs it (no_rope_layer, _use_doc_masking)
tree["fields"]["model"]["fields"]["model_config"] = {"variants": {"LlamaConfig": shape(M.LlamaConfig),
                                                                  "Qwen2Config": shape(M.Qwen2Config)}}
print(json.dumps(tree))
"""


def _kit_tree(node, required: dict, where: str = ""):
    """The kit's schema in the introspection's shape."""
    if isinstance(node, list):
        return [_kit_tree(node[0], required, where + "[]")]
    if isinstance(node, nanotron_schema.Variants):
        return {"variants": {name: _kit_tree(option, required, where) for name, option in node.options.items()}}
    if isinstance(node, dict):
        return {"fields": {k: _kit_tree(v, required, f"{where}.{k}" if where else k) for k, v in node.items()},
                "required": sorted(required.get(where, ()))}
    return None


def _diff(kit, ours, where="", variant=False) -> list[str]:
    out = []
    if kit is None or ours is None:
        return out  # a leaf on either side: the kit does not check inside free-form values
    if isinstance(kit, list) or isinstance(ours, list):
        if not (isinstance(kit, list) and isinstance(ours, list)):
            return [f"{where or '<top>'}: list on one side only"]
        return _diff(kit[0], ours[0], where + "[]")
    if "variants" in kit or "variants" in ours:
        kv, nv = kit.get("variants", {}), ours.get("variants", {})
        if set(kv) != set(nv):
            out.append(f"{where}: union members kit {sorted(kv)} vs nanotron {sorted(nv)}")
        for name in set(kv) & set(nv):
            out += _diff(kv[name], nv[name], f"{where}<{name}>", variant=True)
        return out
    kf, nf = kit["fields"], ours["fields"]
    for k in sorted(set(nf) - set(kf)):
        out.append(f"{where}.{k}: nanotron accepts it, the kit's schema does not")
    for k in sorted(set(kf) - set(nf)):
        out.append(f"{where}.{k}: in the kit's schema, not a field of nanotron's dataclass")
    # the kit's REQUIRED is one list per place, so it cannot say what each member of a union needs
    if not variant and sorted(kit["required"]) != sorted(ours["required"]):
        out.append(f"{where}: required kit {sorted(kit['required'])} vs nanotron {sorted(ours['required'])}")
    for k in sorted(set(kf) & set(nf)):
        out += _diff(kf[k], nf[k], f"{where}.{k}" if where else k)
    return out


def test_kit_schema_equals_nanotrons_dataclasses():
    theirs = run_train_env(INTROSPECT)
    ours = _kit_tree(nanotron_schema.NANOTRON_SCHEMA, nanotron_schema.REQUIRED)
    assert _diff(ours, theirs) == []
