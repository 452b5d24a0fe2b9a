"""A NoPE model (``no_rope_layer``) converts both ways: nanotron's Qwen2 layout <-> a transformers
SmolLM3 folder, verified by logits as any conversion is (the reference forward skips RoPE in the
same layers as transformers' ``no_rope_layers``)."""

import dataclasses
import json

import pytest
import torch
from test_convert import VOCAB, hf_state, nanotron_config, random_fused, reference_logits, write_nt

from zagreus_utils.convert import names, to_hf, to_nanotron, verify
from zagreus_utils.model.arch import LlamaArch
from zagreus_utils.pipeline.errors import ZagreusError


def qwen2_config(tied: bool, no_rope_layer: int = 2) -> dict:
    """A model_config.json of nanotron's Qwen2 with NoPE layers (as the kit renders it, doc masking on)."""
    cfg = nanotron_config(tied=tied)
    del cfg["is_llama_config"]
    return {**cfg, "is_qwen2_config": True, "no_rope_layer": no_rope_layer, "_use_doc_masking": True}


@pytest.mark.parametrize("tied", [True, False])
def test_nope_checkpoint_to_smollm3_and_back(tmp_path, tied):
    cfg = qwen2_config(tied)
    tensors = random_fused(cfg, seed=4)
    ckpt = write_nt(tmp_path / "nt", cfg, tensors)
    report = to_hf.nanotron_to_hf(ckpt, tmp_path / "hf")
    hf_cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert hf_cfg["model_type"] == "smollm3" and hf_cfg["architectures"] == ["SmolLM3ForCausalLM"]
    assert hf_cfg["no_rope_layers"] == [1, 0] and hf_cfg["use_sliding_window"] is False
    assert report.max_logits_diff < 1e-4 and report.roundtrip_identical is True
    assert "_use_doc_masking" in report.dropped_config_keys and "no_rope_layer" not in report.dropped_config_keys

    ids = verify.reference_inputs(VOCAB, batch=2, length=20, seed=3)
    hf = verify.hf_logits(tmp_path / "hf", ids)  # transformers' SmolLM3ForCausalLM
    torch.testing.assert_close(hf, reference_logits(cfg, tensors, ids), atol=1e-4, rtol=1e-4)
    # the NoPE layer matters: RoPE everywhere on the same weights is far off
    assert (reference_logits(cfg, tensors, ids, no_rope_layer=None) - hf).abs().max() > 0.05

    back = to_nanotron.hf_to_nanotron(tmp_path / "hf", tmp_path / "nt2")
    assert back.roundtrip_identical is True and back.max_logits_diff < 1e-4
    mc = json.loads((tmp_path / "nt2" / "model_config.json").read_text())
    assert mc["is_qwen2_config"] is True and mc["no_rope_layer"] == 2 and "is_llama_config" not in mc
    ckpt2 = names.arch_from_model_config(mc, "back")[0]
    assert ckpt2 == LlamaArch.from_nanotron(cfg)
    a, b = hf_state(tmp_path / "hf"), hf_state(to_hf.nanotron_to_hf(tmp_path / "nt2", tmp_path / "hf2").dst)
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_verification_catches_nope_written_as_llama(tmp_path, monkeypatch):
    """Were the NoPE layers lost on the way (a Llama folder written), the logits check refuses it."""
    cfg = qwen2_config(tied=True)
    ckpt = write_nt(tmp_path / "nt", cfg, random_fused(cfg, seed=5))
    original = LlamaArch.to_hf_config
    monkeypatch.setattr(LlamaArch, "to_hf_config",
                        lambda self, **extra: original(dataclasses.replace(self, no_rope_layer=None),
                                                       **{**extra, "architectures": ["LlamaForCausalLM"]}))
    with pytest.raises(ZagreusError, match="verification failed"):
        to_hf.nanotron_to_hf(ckpt, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_smollm3_folders_nanotron_cannot_hold_are_refused(tmp_path):
    from transformers import SmolLM3Config

    base = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=VOCAB)
    irregular = SmolLM3Config(**base, no_rope_layers=[0, 1, 1, 1])  # layer 0 only: not every Nth layer
    with pytest.raises(ZagreusError, match=r"NoPE in layers \[0\]; nanotron only drops RoPE in every Nth layer"):
        LlamaArch.from_hf(irregular)
    sliding = SmolLM3Config(**base, use_sliding_window=True, sliding_window=16)
    with pytest.raises(ZagreusError, match="use_sliding_window"):
        LlamaArch.from_hf(sliding)
    assert LlamaArch.from_hf(SmolLM3Config(**base, no_rope_layer_interval=2)).no_rope_layer == 2
    assert LlamaArch.from_hf(SmolLM3Config(**base, no_rope_layers=[1] * 4)).no_rope_layer is None
