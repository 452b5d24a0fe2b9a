"""nanotron <-> Hugging Face conversion (zagreus_utils.convert): tiny random Llamas, CPU only."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from zagreus_utils.convert import checkpoint_io, cli, names, to_hf, to_nanotron, verify
from zagreus_utils.pipeline.errors import ZagreusError

H, I, LAYERS, HEADS, KV, VOCAB = 64, 96, 2, 4, 2, 300


def nanotron_config(tied: bool, interleaved: bool = False, **extra) -> dict:
    """A model_config.json as nanotron writes it (nanotron-only keys included)."""
    return {"bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "hidden_size": H,
            "initializer_range": 0.02, "intermediate_size": I, "is_llama_config": True,
            "max_position_embeddings": 128, "num_attention_heads": HEADS, "num_hidden_layers": LAYERS,
            "num_key_value_heads": KV, "pad_token_id": None, "pretraining_tp": 1, "rms_norm_eps": 1e-5,
            "rope_scaling": None, "rope_theta": 10000.0, "rope_interleaved": interleaved,
            "tie_word_embeddings": tied, "use_cache": True, "vocab_size": VOCAB,
            "_attn_implementation": "flash_attention_2", "z_loss_enabled": False, **extra}


def random_fused(cfg: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random nanotron (fused) tensors, large enough that attention and RoPE matter."""
    arch, _ = names.arch_from_model_config(cfg, "test")
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in names.nanotron_shapes(arch).items():
        if len(shape) == 1:
            out[name] = 0.5 + torch.rand(shape, generator=g)
        else:
            out[name] = torch.randn(shape, generator=g) * (1.5 / shape[-1] ** 0.5)
    return out


def write_nt(folder: Path, cfg: dict, tensors: dict, tp: int = 1) -> Path:
    to_nanotron.write_nanotron_checkpoint(folder, cfg, tensors.items(), tp=tp)
    return folder


def tiny_hf(folder: Path, tied: bool, seed: int = 0, **cfg_extra) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=H, intermediate_size=I, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                      num_key_value_heads=KV, vocab_size=VOCAB, tie_word_embeddings=tied,
                      max_position_embeddings=128, **cfg_extra)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * (1.5 / p.shape[-1] ** 0.5) if p.dim() > 1 else 0.5 + torch.rand_like(p))
    model.save_pretrained(folder)
    return folder


def hf_state(folder: Path) -> dict[str, torch.Tensor]:
    w = checkpoint_io.HFWeights(folder)
    try:
        return {k: w.get(k) for k in w.where}
    finally:
        w.close()


def reference_logits(cfg: dict, tensors: dict, ids: torch.Tensor, **override) -> torch.Tensor:
    arch, _ = names.arch_from_model_config(cfg, "test")
    ref = verify.FusedLlamaReference(dataclasses.replace(arch, **override), ids)
    for name in names.nanotron_shapes(arch):
        ref.feed(name, tensors[name])
    return ref.logits


def shard_path(ckpt: Path, name: str, rank: int, tp: int) -> Path:
    return checkpoint_io.param_folder(ckpt / "model", name) / checkpoint_io.shard_file_name(rank, tp)


QKV0 = "model.decoder.0.pp_block.attn.qkv_proj.weight"


@pytest.fixture(scope="module")
def nt_tp2(tmp_path_factory) -> tuple[Path, dict, dict]:
    """An untied, interleaved-RoPE nanotron checkpoint in 2 tp shards, and its full tensors."""
    cfg = nanotron_config(tied=False, interleaved=True)
    tensors = random_fused(cfg, seed=1)
    return write_nt(tmp_path_factory.mktemp("nt") / "ckpt", cfg, tensors, tp=2), cfg, tensors


# ------------------------------------------------------------------------------ logits


@pytest.mark.parametrize("tied,interleaved,tp", [(True, False, 1), (False, True, 2), (True, True, 2),
                                                 (False, False, 1)])
def test_hf_logits_match_independent_fused_forward(tmp_path, tied, interleaved, tp):
    cfg = nanotron_config(tied=tied, interleaved=interleaved)
    tensors = random_fused(cfg, seed=3)
    ckpt = write_nt(tmp_path / "nt", cfg, tensors, tp=tp)
    report = to_hf.nanotron_to_hf(ckpt, tmp_path / "hf")
    ids = verify.reference_inputs(VOCAB, batch=3, length=20, seed=7)
    ref = reference_logits(cfg, tensors, ids)  # from the in-memory tensors, not from disk
    hf = verify.hf_logits(tmp_path / "hf", ids)
    assert ref.abs().max() > 1.0  # logits large enough for the comparison to mean something
    torch.testing.assert_close(hf, ref, atol=1e-4, rtol=1e-4)
    assert report.max_logits_diff < 1e-4 and report.roundtrip_identical is True
    assert report.tp == tp and report.parameters == sum(
        t.numel() for t in tensors.values())
    if interleaved:  # the permutation matters: rotate-half RoPE on the same weights is far off
        wrong = reference_logits(cfg, tensors, ids, rope_interleaved=False)
        assert (wrong - hf).abs().max() > 0.05


def test_reference_forward_matches_transformers_directly(tmp_path):
    """The fused-tensor forward agrees with transformers on an HF model fused by hand."""
    folder = tiny_hf(tmp_path / "hf", tied=False, seed=5)
    state = hf_state(folder)
    cfg = nanotron_config(tied=False)
    arch, _ = names.arch_from_model_config(cfg, "t")
    cfg["rms_norm_eps"] = 1e-6  # transformers' default
    fused = {n: names.fuse_from_hf(n, state.__getitem__, arch) for n in names.nanotron_shapes(arch)}
    ids = verify.reference_inputs(VOCAB)
    torch.testing.assert_close(reference_logits(cfg, fused, ids), verify.hf_logits(folder, ids), atol=1e-4, rtol=1e-4)


def test_verification_catches_a_wrong_permutation(tmp_path, nt_tp2, monkeypatch):
    ckpt, _, _ = nt_tp2
    monkeypatch.setattr(names, "_interleaved_to_half", lambda w, n, d: w)
    with pytest.raises(ZagreusError, match="verification failed"):
        to_hf.nanotron_to_hf(ckpt, tmp_path / "hf")


# ------------------------------------------------------------------------------ round trip


@pytest.mark.parametrize("tied,tp,interleaved", [(True, 1, False), (False, 2, False), (True, 2, True)])
def test_hf_nanotron_hf_round_trip_is_bit_identical(tmp_path, tied, tp, interleaved):
    src = tiny_hf(tmp_path / "hf", tied=tied)
    r1 = to_nanotron.hf_to_nanotron(src, tmp_path / "nt", tp=tp, rope_interleaved=interleaved)
    assert r1.roundtrip_identical is True and r1.max_logits_diff < 1e-4 and r1.tp == tp
    r2 = to_hf.nanotron_to_hf(tmp_path / "nt", tmp_path / "back")
    assert r2.roundtrip_identical is True and r2.max_logits_diff < 1e-4
    a, b = hf_state(src), hf_state(tmp_path / "back")
    assert sorted(a) == sorted(b) and ("lm_head.weight" in b) == (not tied)
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
    ca = json.loads((src / "config.json").read_text())
    cb = json.loads((tmp_path / "back" / "config.json").read_text())
    for key in names.CARRIED_KEYS + ("rope_parameters", "dtype", "head_dim", "model_type"):
        assert ca.get(key) == cb.get(key), key
    gen = json.loads((tmp_path / "back" / "generation_config.json").read_text())
    assert gen["bos_token_id"] == ca["bos_token_id"] and gen["eos_token_id"] == ca["eos_token_id"]
    assert r1.parameters == r2.parameters == sum(t.numel() for t in a.values())


def test_rope_scaling_llama3_round_trip(tmp_path):
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 64}
    src = tiny_hf(tmp_path / "hf", tied=True, rope_parameters={"rope_theta": 500000.0, **scaling})
    to_nanotron.hf_to_nanotron(src, tmp_path / "nt")
    nt = json.loads((tmp_path / "nt" / "model_config.json").read_text())
    assert nt["rope_theta"] == 500000.0 and nt["rope_scaling"] == scaling
    report = to_hf.nanotron_to_hf(tmp_path / "nt", tmp_path / "back")
    assert report.max_logits_diff < 1e-4
    cb = json.loads((tmp_path / "back" / "config.json").read_text())
    assert cb["rope_parameters"] == json.loads((src / "config.json").read_text())["rope_parameters"]


# ------------------------------------------------------------------------------ nanotron layout


def test_tp2_shards_follow_nanotron_chunked_layout(nt_tp2):
    ckpt, cfg, tensors = nt_tp2
    q, kv = HEADS * (H // HEADS), KV * (H // HEADS)
    with safe_open(str(shard_path(ckpt, QKV0, 1, 2)), framework="pt") as f:
        meta, local = f.metadata(), f.get_tensor("data")
    assert meta["version"] == checkpoint_io.CHECKPOINT_VERSION and meta["unsharded_shape"] == f"({q + 2 * kv}, {H})"
    half_q, half_kv = q // 2, kv // 2
    assert meta["local_global_slices_pairs"] == ";".join([
        f"0,{half_q},None|None,None,None#{half_q},{q},None|None,None,None",
        f"{half_q},{half_q + half_kv},None|None,None,None#{q + half_kv},{q + kv},None|None,None,None",
        f"{half_q + half_kv},{half_q + kv},None|None,None,None#{q + kv + half_kv},{q + 2 * kv},None|None,None,None"])
    full = tensors[QKV0]
    assert torch.equal(local[:half_q], full[half_q:q])  # rank 1 holds the second half of q ...
    assert torch.equal(local[half_q:half_q + half_kv], full[q + half_kv:q + kv])  # ... and of k
    merged = checkpoint_io.NanotronCheckpoint(ckpt).read(QKV0)
    assert torch.equal(merged, full)
    with safe_open(str(shard_path(ckpt, QKV0, 0, 2)), framework="pt") as f:
        naive = torch.cat([f.get_tensor("data"), local])
    assert not torch.equal(naive, full)  # plain concatenation of the shards would be wrong
    norm = checkpoint_io.param_folder(ckpt / "model", "model.decoder.0.pp_block.input_layernorm.weight")
    assert [p.name for p in norm.iterdir()] == ["model_weight.safetensors"]
    o_proj = "model.decoder.1.pp_block.attn.o_proj.weight"
    assert torch.equal(checkpoint_io.NanotronCheckpoint(ckpt).read(o_proj), tensors[o_proj])  # row-parallel: dim 1


def test_checkpoint_files_config_yaml_and_metadata(nt_tp2):
    import yaml

    from zagreus_utils.nanotron import schema

    ckpt, cfg, _ = nt_tp2
    data = yaml.safe_load((ckpt / "config.yaml").read_text())
    assert schema.check_keys(data, schema.NANOTRON_SCHEMA, schema.REQUIRED) == []
    assert data["parallelism"]["tp"] == 2 and data["model"]["model_config"] == cfg
    meta = json.loads((ckpt / "checkpoint_metadata.json").read_text())
    assert meta["version"] == "1.5" and meta["tp"] == 2 and meta["dp"] == 1 and meta["cp"] == 1
    assert meta["metas"]["consumed_train_samples"] == sum(
        s["consumed_train_samples"] for s in meta["metas"]["data_stages"])
    assert json.loads((ckpt / "model_config.json").read_text()) == cfg


def test_slices_and_numpy_shapes_parse():
    pairs = checkpoint_io.parse_slices_pairs("0,32,None|None,None,None#32,64,None|None,None,None;"
                                 "None,None,None|1,2,None#None,None,None|3,4,None")
    assert pairs[0] == ((slice(0, 32), slice(None)), (slice(32, 64), slice(None)))
    assert pairs[1][1] == (slice(None), slice(3, 4))
    assert checkpoint_io.parse_shape("(np.int64(1600), 960)") == (1600, 960)
    assert checkpoint_io.parse_shape("(960, np.int64(1600))") == (960, 1600)
    assert checkpoint_io.format_slices_pairs(pairs) == ("0,32,None|None,None,None#32,64,None|None,None,None;"
                                            "None,None,None|1,2,None#None,None,None|3,4,None")


def test_pipeline_rank_names_and_numpy_shape_headers_are_read(tmp_path):
    cfg = nanotron_config(tied=True)
    tensors = random_fused(cfg)
    ckpt = write_nt(tmp_path / "nt", cfg, tensors, tp=1)
    for path in (ckpt / "model" / "model" / "decoder" / "1").rglob("*_pp-rank-0-of-1_*.safetensors"):
        with safe_open(str(path), framework="pt") as f:
            data, meta = f.get_tensor("data"), f.metadata()
        rows, cols = data.shape
        meta["unsharded_shape"] = f"(np.int64({rows}), {cols})"
        save_file({"data": data}, str(path).replace("pp-rank-0-of-1", "pp-rank-1-of-2"), metadata=meta)
        path.unlink()
    report = to_hf.nanotron_to_hf(ckpt, tmp_path / "hf")
    assert report.roundtrip_identical and report.max_logits_diff < 1e-4


def test_checkpoints_root_picks_latest(tmp_path):
    cfg = nanotron_config(tied=True)
    write_nt(tmp_path / "ckpts" / "10", cfg, random_fused(cfg, seed=10))
    write_nt(tmp_path / "ckpts" / "20", cfg, random_fused(cfg, seed=20))
    write_nt(tmp_path / "ckpts" / "5", cfg, random_fused(cfg, seed=5))
    (tmp_path / "ckpts" / "latest.txt").write_text("10\n")
    report = to_hf.nanotron_to_hf(tmp_path / "ckpts", tmp_path / "hf", verify=False)
    assert report.src == tmp_path / "ckpts" / "10"
    (tmp_path / "ckpts" / "latest.txt").unlink()
    report = to_hf.nanotron_to_hf(tmp_path / "ckpts", tmp_path / "hf2", verify=False)
    assert report.src == tmp_path / "ckpts" / "20" and any("highest step" in n for n in report.notes)
    (tmp_path / "ckpts" / "latest.txt").write_text("30")
    with pytest.raises(ZagreusError, match="latest.txt names step '30'"):
        to_hf.nanotron_to_hf(tmp_path / "ckpts", tmp_path / "hf3")


def test_dtype_tokenizer_and_generation_config(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i + 3 for i in range(50)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(tmp_path / "tok")
    cfg = nanotron_config(tied=True)
    ckpt = write_nt(tmp_path / "nt", cfg, random_fused(cfg))
    report = to_hf.nanotron_to_hf(ckpt, tmp_path / "hf", tokenizer=tmp_path / "tok", dtype="bfloat16")
    assert report.dtype == "bfloat16" and report.roundtrip_identical is None
    assert report.max_logits_diff is not None and report.tokenizer == str(tmp_path / "tok")
    assert all(t.dtype == torch.bfloat16 for t in hf_state(tmp_path / "hf").values())
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["dtype"] == "bfloat16"
    assert AutoTokenizer.from_pretrained(tmp_path / "hf")("w1 w2")["input_ids"] == [4, 5]
    # the verification's layer-by-layer float32 forward equals loading the bf16 model in float32
    from transformers import LlamaForCausalLM

    ids = verify.reference_inputs(VOCAB)
    full = LlamaForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32, attn_implementation="eager")
    with torch.no_grad():
        torch.testing.assert_close(verify.hf_logits(tmp_path / "hf", ids), full(input_ids=ids).logits,
                                   atol=1e-5, rtol=1e-5)
    gen = json.loads((tmp_path / "hf" / "generation_config.json").read_text())
    assert (gen["bos_token_id"], gen["eos_token_id"]) == (1, 2)
    with pytest.raises(ZagreusError, match="does not exist"):
        to_hf.nanotron_to_hf(ckpt, tmp_path / "hf2", tokenizer=tmp_path / "nope")


def test_sharded_hf_output_with_index(tmp_path):
    cfg = nanotron_config(tied=False)
    ckpt = write_nt(tmp_path / "nt", cfg, random_fused(cfg))
    report = to_hf.nanotron_to_hf(ckpt, tmp_path / "hf", max_shard_bytes=200_000)
    files = sorted(p.name for p in (tmp_path / "hf").glob("model-*.safetensors"))
    assert len(files) > 1 and files[0].endswith(f"-of-{len(files):05d}.safetensors")
    index = json.loads((tmp_path / "hf" / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == set(files)
    assert report.roundtrip_identical and report.max_logits_diff < 1e-4


# ------------------------------------------------------------------------------ bad input


@pytest.fixture
def ckpt(tmp_path) -> Path:
    cfg = nanotron_config(tied=True)
    return write_nt(tmp_path / "nt", cfg, random_fused(cfg), tp=2)


def test_missing_shard_names_the_file(ckpt, tmp_path):
    shard_path(ckpt, QKV0, 1, 2).unlink()
    with pytest.raises(ZagreusError, match=r"missing shard: .*qkv_proj/model_weight_pp-rank-0-of-1_tp-rank-1-of-2"):
        to_hf.nanotron_to_hf(ckpt, tmp_path / "hf")


def test_missing_parameter_names_the_expected_file(ckpt, tmp_path):
    folder = checkpoint_io.param_folder(ckpt / "model", "model.decoder.1.pp_block.post_attention_layernorm.weight")
    (folder / "model_weight.safetensors").unlink()
    with pytest.raises(ZagreusError, match=r"missing parameters .*decoder/1/pp_block/post_attention_layernorm/"
                                           r"model_weight.safetensors"):
        to_hf.nanotron_to_hf(ckpt, tmp_path / "hf")


def test_wrong_tensor_shape_names_file_expected_and_found(ckpt, tmp_path):
    path = shard_path(ckpt, "model.decoder.1.pp_block.mlp.down_proj.weight", 0, 2)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    save_file({"data": torch.zeros(H, I // 2 - 4)}, str(path), metadata=meta)
    with pytest.raises(ZagreusError, match=r"down_proj/model_weight_pp-rank-0-of-1_tp-rank-0-of-2.safetensors: "
                                           r"wrong tensor shape.*\(64, 44\)"):
        to_hf.nanotron_to_hf(ckpt, tmp_path / "hf")


def test_unsharded_shape_disagreeing_with_config_names_both(ckpt, tmp_path):
    cfg = json.loads((ckpt / "model_config.json").read_text())
    cfg["intermediate_size"] = 128
    (ckpt / "model_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ZagreusError, match=r"gate_up_proj/.*wrong unsharded_shape .*expected \(256, 64\) from "
                                           r"model_config.json .*found \(192, 64\).*do not match"):
        to_hf.nanotron_to_hf(ckpt, tmp_path / "hf")


def test_unknown_and_missing_config_keys(ckpt, tmp_path):
    (ckpt / "model" / "model" / "decoder" / "7" / "pp_block" / "attn" / "o_proj").mkdir(parents=True)
    extra = ckpt / "model" / "model" / "decoder" / "7" / "pp_block" / "attn" / "o_proj" / "model_weight.safetensors"
    save_file({"data": torch.zeros(H, H)}, str(extra))
    with pytest.raises(ZagreusError, match=r"unknown parameters .*model.decoder.7.pp_block.attn.o_proj.weight"):
        to_hf.nanotron_to_hf(ckpt, tmp_path / "hf")
    extra.unlink()
    lm = checkpoint_io.param_folder(ckpt / "model", names.NT_LM_HEAD)
    lm.mkdir(parents=True)
    save_file({"data": torch.zeros(VOCAB, H)}, str(lm / "model_weight.safetensors"))
    with pytest.raises(ZagreusError, match="tie_word_embeddings is true"):
        to_hf.nanotron_to_hf(ckpt, tmp_path / "hf")
    (lm / "model_weight.safetensors").unlink()
    cfg = json.loads((ckpt / "model_config.json").read_text())
    del cfg["hidden_size"], cfg["vocab_size"]
    (ckpt / "model_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ZagreusError, match=r"model_config.json: missing model config keys: hidden_size, vocab_size"):
        to_hf.nanotron_to_hf(ckpt, tmp_path / "hf")


def test_file_without_data_key(ckpt, tmp_path):
    path = checkpoint_io.param_folder(ckpt / "model", names.NT_FINAL_NORM) / "model_weight.safetensors"
    save_file({"weight": torch.ones(H)}, str(path))
    with pytest.raises(ZagreusError, match=r"final_layer_norm/pp_block/model_weight.safetensors: no tensor under "
                                           r"the key 'data' \(found: weight\)"):
        to_hf.nanotron_to_hf(ckpt, tmp_path / "hf")


def test_architecture_keys_that_cannot_convert_are_refused(tmp_path):
    cfg = nanotron_config(tied=True, sliding_window_size=128)
    ckpt = tmp_path / "nt"
    (ckpt / "model").mkdir(parents=True)
    (ckpt / "model_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ZagreusError, match="sliding_window_size=128 is not supported"):
        to_hf.nanotron_to_hf(ckpt, tmp_path / "hf")


def test_target_holding_a_model_is_refused_unless_overwrite(ckpt, tmp_path):
    dst = tmp_path / "hf"
    to_hf.nanotron_to_hf(ckpt, dst, verify=False)
    (dst / "notes.txt").write_text("keep me")
    (dst / "model-00001-of-00009.safetensors").write_text("stale shard")
    with pytest.raises(ZagreusError, match=r"already holds a model \(config.json\); pass --overwrite"):
        to_hf.nanotron_to_hf(ckpt, dst)
    report = to_hf.nanotron_to_hf(ckpt, dst, overwrite=True)
    assert report.roundtrip_identical
    assert (dst / "notes.txt").read_text() == "keep me"
    assert not (dst / "model-00001-of-00009.safetensors").exists()
    with pytest.raises(ZagreusError, match="already holds a model"):
        to_nanotron.hf_to_nanotron(dst, ckpt)  # the nanotron checkpoint itself
    with pytest.raises(ZagreusError, match="the target is the source folder"):
        to_hf.nanotron_to_hf(ckpt, ckpt, overwrite=True)


def test_src_not_a_checkpoint(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ZagreusError, match="is not a nanotron checkpoint"):
        to_hf.nanotron_to_hf(tmp_path / "empty", tmp_path / "hf")
    with pytest.raises(ZagreusError, match="does not exist"):
        to_hf.nanotron_to_hf(tmp_path / "nowhere", tmp_path / "hf")
    with pytest.raises(ZagreusError, match="not a transformers model folder"):
        to_nanotron.hf_to_nanotron(tmp_path / "empty", tmp_path / "nt")


def test_bad_hf_sources(tmp_path):
    src = tiny_hf(tmp_path / "hf", tied=False)
    state = hf_state(src)
    with pytest.raises(ZagreusError, match="tp=3 does not divide num_attention_heads=4"):
        to_nanotron.hf_to_nanotron(src, tmp_path / "nt", tp=3)
    bad = dict(state)
    del bad["model.layers.1.mlp.up_proj.weight"]
    bad["model.layers.1.mlp.extra.weight"] = torch.zeros(2)
    save_file(bad, str(src / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ZagreusError, match=r"unknown tensors .*model.layers.1.mlp.extra.weight"):
        to_nanotron.hf_to_nanotron(src, tmp_path / "nt")
    del bad["model.layers.1.mlp.extra.weight"]
    save_file(bad, str(src / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ZagreusError, match=r"missing tensors: model.layers.1.mlp.up_proj.weight"):
        to_nanotron.hf_to_nanotron(src, tmp_path / "nt")
    bad["model.layers.1.mlp.up_proj.weight"] = torch.zeros(I, H + 1)
    save_file(bad, str(src / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ZagreusError, match=r"model.safetensors: wrong tensor shape for model.layers.1.mlp.up_proj"
                                           r".weight: expected \(96, 64\) from config.json, found \(96, 65\)"):
        to_nanotron.hf_to_nanotron(src, tmp_path / "nt", verify=False)


# ------------------------------------------------------------------------------ CLI


def test_cli_converts_and_reports_errors_in_one_line(ckpt, tmp_path, capsys):
    assert cli.main(["nanotron-to-hf", str(ckpt), str(tmp_path / "hf"), "--dtype", "float32"]) == 0
    out = capsys.readouterr().out
    assert "max_logits_diff" in out and "roundtrip_identical  True" in out
    assert cli.main(["hf-to-nanotron", str(tmp_path / "hf"), str(tmp_path / "nt2"), "--tp", "2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["direction"] == "hf-to-nanotron" and data["tp"] == 2 and data["roundtrip_identical"] is True
    assert cli.main(["nanotron-to-hf", str(ckpt), str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "--overwrite" in err[0]
