"""The one description of the model (zagreus_utils.model.arch.LlamaArch): every reader gives the
same object, every writer round-trips, and the one check names the keys."""

from __future__ import annotations

import pytest

from zagreus_utils.model import planning
from zagreus_utils.model.arch import LlamaArch, head_problems
from zagreus_utils.nanotron import config as ncfg
from zagreus_utils.pipeline.errors import ZagreusError
from zagreus_utils.pipeline.spec import load_spec


@pytest.mark.parametrize("profile", ["smoke", "full"])
def test_spec_nanotron_and_hf_describe_the_same_model(profile):
    spec = load_spec("ita", profile)
    arch = LlamaArch.from_spec(spec)
    rendered = ncfg.render(spec)
    assert rendered["model"]["model_config"] == arch.to_nanotron()
    assert LlamaArch.from_nanotron(rendered) == arch  # the whole config, as the trainer and preflight read it
    assert LlamaArch.from_nanotron(rendered["model"]) == arch  # its model section
    back = LlamaArch.from_hf(arch.to_hf_config())
    assert back == LlamaArch(**{**arch.__dict__, "init_std": None})  # transformers has no init std
    m = spec.profile.model
    assert (arch.head_dim, arch.kv_dim) == (m.hidden_size // m.num_attention_heads,
                                            m.num_key_value_heads * m.hidden_size // m.num_attention_heads)


def test_parameter_count_is_the_same_from_every_reader():
    spec = load_spec("ita", "full")
    counts = {planning.parameter_counts(a)["total"] for a in (
        LlamaArch.from_spec(spec), LlamaArch.from_nanotron(ncfg.render(spec)),
        LlamaArch.from_hf(LlamaArch.from_spec(spec).to_hf_config()))}
    assert counts == {437_760_960}


@pytest.mark.parametrize("change,match", [
    ({"num_heads": 7}, r"hidden_size \(128\) must be divisible by num_attention_heads \(7\)"),
    ({"num_kv_heads": 3}, r"num_attention_heads \(4\) must be divisible by num_key_value_heads \(3\)"),
    ({"hidden_size": 12, "num_heads": 4, "num_kv_heads": 2}, r"head size must be even"),
    ({"vocab_size": 0}, r"sizes must be positive \(vocab_size=0\)"),
    ({"hidden_act": "tanh"}, r"hidden_act='tanh' is not supported"),
])
def test_check_names_the_keys(change, match):
    arch = LlamaArch.from_spec(load_spec("ita", "smoke"))
    arch.check("smoke")  # consistent as rendered
    with pytest.raises(ZagreusError, match=r"^where: .*" + match):
        LlamaArch(**{**arch.__dict__, **change}).check("where")


def test_reading_a_broken_nanotron_model_config_names_the_key():
    with pytest.raises(ZagreusError, match=r"cfg.yaml: missing model config keys: vocab_size"):
        LlamaArch.from_nanotron({"model": {"model_config": {"hidden_size": 8, "intermediate_size": 8,
                                                             "num_attention_heads": 2, "num_hidden_layers": 1}}},
                                "cfg.yaml")
    with pytest.raises(ZagreusError, match=r"cfg.yaml: a model shape is not a number"):
        LlamaArch.from_nanotron({"hidden_size": "big", "intermediate_size": 8, "num_attention_heads": 2,
                                 "num_hidden_layers": 1, "vocab_size": 8}, "cfg.yaml")


def test_the_spec_the_renderer_and_the_converter_share_the_head_check():
    assert head_problems(960, 15, 5) == []
    with pytest.raises(ZagreusError, match=r"num_attention_heads \(4\) must be divisible by num_key_value_heads \(3\)"):
        load_spec("ita", "smoke", {"model.num_key_value_heads": 3})
    cfg = ncfg.render(load_spec("ita", "smoke"))
    cfg["model"]["model_config"]["num_key_value_heads"] = 3
    assert any("must be divisible by num_key_value_heads (3)" in p for p in ncfg.value_problems(cfg))


def test_the_converter_runs_every_activation_the_check_accepts():
    from zagreus_utils.convert import verify
    from zagreus_utils.model import arch

    assert set(verify.ACTIVATIONS) == set(arch.ACTIVATIONS)
