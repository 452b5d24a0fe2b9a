"""Stage 05 SFT (zagreus_utils.stages.sft): rendering, axolotl validation, label mask, bad inputs, Slurm,
and one real axolotl run (preprocess + train) on a tiny model, offline, on CPU."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import sft_helpers  # noqa: E402

from zagreus_utils.cluster import sbatch, slurm  # noqa: E402
from zagreus_utils.stages import sft  # noqa: E402
from zagreus_utils.pipeline.errors import ZagreusError  # noqa: E402
from zagreus_utils.pipeline.spec import available, load_spec  # noqa: E402

HOSTILE = "a'b; rm -rf /"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run folder with the SFT's inputs (generated conversations, a tiny converted base model)."""
    return sft_helpers.make_run_dir(tmp_path_factory.mktemp("sft") / "runs" / "smoke" / "ita")


@pytest.fixture(scope="module")
def smoke_spec():
    return load_spec("ita", "smoke")


# --- rendering ------------------------------------------------------------------------------

@pytest.mark.parametrize("language", available("languages"))
def test_committed_configs_equal_the_renderer(language):
    path = sft.committed_path(language)
    assert path.is_file(), f"missing {path}: run zagreus_utils.stages.sft.write_committed()"
    assert path.read_text(encoding="utf-8") == sft.render_committed(language), (
        f"{path} is stale: re-render with zagreus_utils.stages.sft.write_committed()")


@pytest.mark.parametrize("language", available("languages"))
def test_full_config_is_the_reports_except_the_adaptations(language):
    full = sft.render(load_spec(language, "full"))
    diff = sft.differences(sft.report_config(), full)
    assert set(diff["key"]) == {c.key for c in sft.ADAPTATIONS}
    assert diff["reason"].str.len().min() > 20
    assert full["base_model"] == f"runs/full/{language}/04_conversion/hf/step-2000000"
    assert full["chat_template_jinja"] == sft.CHATML_TEMPLATE
    ds = full["datasets"][0]
    assert (ds["type"], ds["field_messages"], ds["roles_to_train"], ds["train_on_eos"]) == (
        "chat_template", "conversation", ["assistant"], "turn")
    assert full["sample_packing"] and full["fsdp_config"]["fsdp_transformer_layer_cls_to_wrap"] == "LlamaDecoderLayer"
    assert full["special_tokens"] == {"pad_token": "<|im_end|>", "eos_token": "<|im_end|>"}


def test_transcription_equals_the_reports_markdown(report_source):
    assert sft.report_config(report_source) == sft.report_config()


def test_smoke_config_lists_every_difference_with_a_reason(smoke_spec, tmp_path):
    smoke = sft.render(smoke_spec, run_dir=tmp_path)
    diff = sft.differences(sft.report_config(), smoke)
    unexplained = diff[diff["reason"] == ""]
    assert unexplained.empty, f"differences without a reason: {unexplained['key'].tolist()}"
    keys = set(diff["key"])
    for key in ("bf16", "flash_attention", "attn_implementation", "gradient_checkpointing", "max_steps",
                "sequence_len", "val_set_size", "dataset_num_proc", "fsdp_config.fsdp_sharding_strategy",
                "base_model", "datasets[0].path"):
        assert key in keys, key
    assert smoke["bf16"] is False and smoke["attn_implementation"] == "sdpa" and "fsdp_config" not in smoke
    assert "flash_attention" not in smoke
    assert smoke["sequence_len"] == smoke_spec.profile.sft.sequence_len
    assert 0 < smoke["val_set_size"] < 1
    assert smoke["special_tokens"]["eos_token"] == "<|im_end|>"
    # everything else is the report's value
    report = sft.flatten(sft.report_config())
    for key, value in sft.flatten(smoke).items():
        if key not in keys:
            assert sft._same(report[key], value), key


# --- axolotl's validation -------------------------------------------------------------------

@pytest.fixture(scope="module")
def report_validation():
    return sft.validate_report("ita")


def test_axolotl_validation_lists_dropped_keys_and_knobs_without_effect(report_validation):
    table = report_validation.table()
    kinds = dict(zip(table["key"], table["kind"]))
    assert kinds["fsdp_config.fsdp_sharding_strategy"] == "dropped"
    assert kinds["fsdp_config.fsdp_backward_prefetch_policy"] == "dropped"
    assert kinds["cosine_constant_lr_ratio"] == "no effect"
    assert kinds["cosine_min_lr_ratio"] == "no effect"
    assert kinds["flash_attention"] == "renamed"
    assert kinds["fsdp_config.fsdp_auto_wrap_policy"] == "renamed"
    assert "(sbatch) --gres / GPUS_PER_NODE" in kinds
    assert report_validation.config["attn_implementation"] == "flash_attention_2"


def test_smoke_config_passes_axolotl_validation(smoke_spec, tmp_path, report_validation):
    v = sft.validate(sft.render(smoke_spec, run_dir=tmp_path), smoke_spec)
    assert v.config["attn_implementation"] == "sdpa" and v.config["bf16"] is False
    assert v.config["special_tokens"]["eos_token"] == "<|im_end|>"
    assert {"cosine_min_lr_ratio", "num_epochs"} <= {r["key"] for r in v.findings if r["kind"] == "no effect"}


def test_axolotl_refusal_is_a_clear_error(smoke_spec, tmp_path, report_validation):
    cfg = sft.render(smoke_spec, run_dir=tmp_path)
    cfg["micro_batch_size"] = "many"
    with pytest.raises(ZagreusError, match="axolotl refuses the SFT config.*micro_batch_size"):
        sft.validate(cfg, smoke_spec)


# --- the label mask -------------------------------------------------------------------------

def test_label_mask_trains_only_assistant_content_and_im_end(run_dir, smoke_spec, report_validation):
    cfg = sft.render(smoke_spec, run_dir=run_dir)
    conversation = [
        {"role": "system", "content": "Sei un assistente utile."},
        {"role": "user", "content": "Di che colore è il cielo?"},
        {"role": "assistant", "content": "Il cielo è azzurro."},
        {"role": "user", "content": "How many legs has a cat?"},
        {"role": "assistant", "content": "A cat has four legs."},
    ]
    mask = sft.label_mask_example(cfg, conversation=conversation)
    assert sft.trained_spans(mask) == ["Il cielo è azzurro.<|im_end|>", "A cat has four legs.<|im_end|>"]
    trained = mask[mask["trained"]]
    assert (trained["label"] == trained["token_id"]).all()
    html = sft.label_mask_html(mask)
    assert html.count("trained\"") == len(trained) and "&lt;|im_end|&gt;" in html


# --- bad input, refused before training -----------------------------------------------------

def _bad_run(run_dir: Path, tmp_path: Path, rows: list | None = None, text: str | None = None) -> Path:
    bad = tmp_path / "run"
    (bad / "01_data" / "raw" / "sft").mkdir(parents=True)
    (bad / "04_conversion" / "hf").mkdir(parents=True)
    os.symlink(sft.converted_dir(run_dir) / "step-400", sft.converted_dir(bad) / "step-400")
    data = sft.sft_data_path(bad)
    data.write_text(text if text is not None else "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return bad


GOOD = {"conversation": [{"role": "user", "content": "Ciao?"}, {"role": "assistant", "content": "Ciao!"}], "lang": "ita"}


@pytest.mark.parametrize("rows, text, match", [
    ([GOOD, {"messages": GOOD["conversation"]}], None, r"conversations\.jsonl:2: no 'conversation' field"),
    ([GOOD, GOOD, {"conversation": [{"role": "bot", "content": "x"}]}], None,
     r"conversations\.jsonl:3: message 0 has unknown role 'bot'; valid roles: system, user, assistant"),
    ([{"conversation": [{"role": "user"}]}], None, r":1: message 0 .* 'role' and 'content'"),
    ([{"conversation": []}], None, r":1: 'conversation' must be a non-empty list"),
    (None, "", r"is empty: no conversations"),
    (None, "\n\n", r"is empty: no conversations"),
    (None, '{"conversation": [\n', r":1: not valid JSON"),
    ([{"conversation": [{"role": "user", "content": "only a question"}]}], None, r"no conversation has an assistant turn"),
])
def test_bad_datasets_are_refused_with_file_and_line(run_dir, tmp_path, smoke_spec, rows, text, match):
    bad = _bad_run(run_dir, tmp_path, rows, text)
    with pytest.raises(ZagreusError, match=match):
        sft.prepare(smoke_spec, bad, validate_config=False)
    assert not (bad / "05_sft" / "axolotl.yaml").exists()


def test_base_model_without_tokenizer_is_refused(run_dir, tmp_path, smoke_spec):
    bad = tmp_path / "run"
    (bad / "01_data" / "raw" / "sft").mkdir(parents=True)
    shutil.copy(sft.sft_data_path(run_dir), sft.sft_data_path(bad))
    final = sft.converted_dir(bad) / "step-400"
    final.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(sft.converted_dir(run_dir) / "step-400" / name, final / name)
    with pytest.raises(ZagreusError, match=r"has no tokenizer .*conversion"):
        sft.prepare(smoke_spec, bad, validate_config=False)
    with pytest.raises(ZagreusError, match="does not exist"):
        sft.check_base_model(tmp_path / "nowhere")
    with pytest.raises(ZagreusError, match=r"no base model: .*step-400 does not exist.*--stages conversion"):
        sft.prepare(smoke_spec, tmp_path / "empty-run", validate_config=False)


@pytest.mark.parametrize("template, match", [
    ("{% for message in messages %}{{ message.content }", "does not render"),
    ("{{ messages[0].nope.deeper }}", "does not render"),
    ("{% for message in messages %}<|im_start|>{{ message.role }}<|im_end|>{% endfor %}", "drops the content"),
    ("{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}", "never writes the EOS override"),
    ("{% for m in messages %}{{ m.content }}<|im_end|>{% endfor %}", "ignores add_generation_prompt"),
])
def test_a_template_that_does_not_render_is_refused(run_dir, smoke_spec, template, match):
    with pytest.raises(ZagreusError, match=match):
        sft.prepare(smoke_spec, run_dir, chat_template=template, validate_config=False)


# --- Slurm ----------------------------------------------------------------------------------

def _assignment(script: str, name: str, prefix: str = "") -> str:
    """What bash assigns to ``name`` in the script (its assignment line run on its own)."""
    line = next(ln for ln in script.splitlines() if ln.startswith(f"{prefix}{name}="))
    return subprocess.run(["bash", "-c", f'{line}\nprintf %s "${name}"'], capture_output=True, text=True,
                          check=True).stdout


def test_sbatch_nodes_and_gpus_per_node_are_consistent():
    spec = load_spec("ita", "full")
    script = sft.render_sbatch(spec, "configs/axolotl/zagreus_sft_ita.yaml", venv=None)
    sl = spec.profile.slurm.sft
    assert (script.nodes, script.gpus_per_node, script.procs_per_node) == (sl.nodes, sl.gpus_per_node, sl.gpus_per_node)
    assert f"#SBATCH --nodes={sl.nodes}\n" in script.text
    assert f"#SBATCH --gres=gpu:{sl.gpus_per_node}\n" in script.text
    assert f"GPUS_PER_NODE={sl.gpus_per_node} " in script.text
    assert '--nproc_per_node "$GPUS_PER_NODE"' in script.text
    assert "srun --kill-on-bad-exit=1 torchrun" in script.text and "-m axolotl.cli.train" in script.text
    assert "export AXOLOTL_DO_NOT_TRACK=1" in script.text and "export HF_HUB_OFFLINE=1" in script.text
    for gpus in (1, 4):
        other = load_spec("ita", "full", {"slurm.sft.gpus_per_node": gpus, "slurm.sft.nodes": 2})
        s = sft.render_sbatch(other, "c.yaml", venv=None)
        assert f"--gres=gpu:{gpus}\n" in s.text and f"GPUS_PER_NODE={gpus} " in s.text and s.world_size == 2 * gpus
    cpu = sft.render_sbatch(load_spec("ita", "smoke"), "c.yaml", venv=None)
    assert "--gres" not in cpu.text and cpu.procs_per_node == 1 and "module load" not in cpu.text
    with pytest.raises(ZagreusError, match="slurm.sft.gpus_per_node"):
        sft.render_sbatch(load_spec("ita", "full", {"slurm.sft.gpus_per_node": -2}), "c.yaml")
    with pytest.raises(ZagreusError, match="slurm.sft.nodes"):
        sft.render_sbatch(load_spec("ita", "full", {"slurm.sft.nodes": 0}), "c.yaml")


def test_sbatch_is_shell_safe(tmp_path):
    spec = load_spec("ita", "full", {"slurm.account": HOSTILE, "slurm.partition": HOSTILE})
    script = sft.render_sbatch(spec, f"/x/{HOSTILE}.yaml", workdir=f"/w/{HOSTILE}", venv=f"/v/{HOSTILE}",
                               hf_home=HOSTILE, nccl={"NCCL_SOCKET_IFNAME": HOSTILE}, job_name=HOSTILE)
    assert f"CONFIG={shlex.quote(f'/x/{HOSTILE}.yaml')}\n" in script.text
    assert f"cd {shlex.quote(f'/w/{HOSTILE}')}\n" in script.text
    assert _assignment(script.text, "CONFIG") == f"/x/{HOSTILE}.yaml"
    assert _assignment(script.text, "HF_HOME", "export ") == HOSTILE
    assert _assignment(script.text, "NCCL_SOCKET_IFNAME", "export ") == HOSTILE
    # directives are read by sbatch, not a shell: quoted the way sbatch reads them, one per line
    assert '#SBATCH --account="a\'b; rm -rf /"\n' in script.text
    assert all(line.startswith("#SBATCH --") for line in script.header.splitlines())
    path = sbatch.write(script, tmp_path / "sft.sbatch")
    assert path.read_text() == script.text
    assert slurm.dry_run(path) == script.text  # bash -n accepts it
    with pytest.raises(ZagreusError, match="line break"):
        sft.render_sbatch(load_spec("ita", "full", {"slurm.account": "a\nsrun rm -rf /"}), "c.yaml")
    with pytest.raises(ZagreusError, match="not a valid environment variable name"):
        sft.render_sbatch(spec, "c.yaml", nccl={"A;B": "1"})


def test_dry_run_returns_the_script_and_missing_slurm_is_a_clear_error(tmp_path, monkeypatch):
    spec = load_spec("ita", "full")
    plan = SimpleNamespace(config_path=tmp_path / "axolotl.yaml", out_dir=tmp_path)
    res = sft.slurm(plan, spec, dry_run=True, venv=None)
    assert res["script"] == (tmp_path / "sft.sbatch").read_text() and res["world_size"] == 32
    assert f"#SBATCH --output={tmp_path}/logs/slurm-%j.out" in res["script"]
    assert res["command"][:2] == ["sbatch", "--parsable"]
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(ZagreusError, match="`sbatch` is not installed"):
        sft.slurm(plan, spec, dry_run=False, venv=None)


# --- one real axolotl run -------------------------------------------------------------------

def test_real_axolotl_sft_run_leaves_a_chat_model(run_dir, smoke_spec):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    plan = sft.prepare(smoke_spec, run_dir, max_steps=4)
    assert plan.config_path.is_file() and plan.dataset.rows >= 40
    run = sft.run_local(plan, timeout_s=300)
    for step in ("preprocess", "train"):
        assert run.logs[step].is_file()
    log = run.logs["train"].read_text()
    assert "Model successfully saved" in log
    curves = sft.loss_curves(run.model_dir, run.logs["train"])
    assert set(curves["split"]) == {"train", "eval"} and curves["step"].max() == 4
    tok = AutoTokenizer.from_pretrained(run.model_dir)
    model = AutoModelForCausalLM.from_pretrained(run.model_dir)
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    assert tok.eos_token == "<|im_end|>"
    messages = [{"role": "user", "content": "Which colour is the sky?"}]
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")
    assert model.config.vocab_size >= len(tok)
    answer = sft.chat(run.model_dir, messages, max_new_tokens=8)
    assert isinstance(answer, str)
    table = sft.compare_chats(plan.base_model, run.model_dir, sft.sample_prompts(plan.config["datasets"][0]["path"],
                                                                                 "ita", 1), max_new_tokens=4)
    assert list(table["lang"]) == ["eng", "ita"]


@pytest.mark.slurm
def test_sft_job_runs_on_a_real_slurm(run_dir, smoke_spec, tmp_path):
    if not slurm.cluster_available():
        pytest.skip("no Slurm controller answers (start one with slurm/local-cluster/start.sh)")
    plan = sft.prepare(smoke_spec, run_dir, tmp_path / "05_sft", max_steps=2, validate_config=False)
    res = sft.slurm(plan, smoke_spec, dry_run=False, follow=True, timeout_s=900)
    assert res["state"] == "COMPLETED", res
    sft.check_output(plan.config["output_dir"])
