"""Tests for ``zagreus audit``: each check on a consistent and an inconsistent fixture, the public
API and CLI, and the findings on the real report (skipped when it is not there)."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
from pathlib import Path

import pytest

from zagreus_utils.audit import checks as ac
from zagreus_utils.audit.core import audit, audit_text, findings_frame, format_text, main
from zagreus_utils.pipeline.errors import ZagreusError
from zagreus_utils.audit.markdown import parse
from zagreus_utils.nanotron import logs
from zagreus_utils.nanotron.schedule import NanotronSchedule, lr_at
from zagreus_utils.nanotron.schema import NANOTRON_SCHEMA, Variants, check_keys, schema_paths

FIXTURES = Path(__file__).parent / "fixtures" / "audit"


def text_of(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def line_with(name: str, needle: str, nth: int = 0) -> int:
    """1-based line of the ``nth`` line containing ``needle`` in a fixture."""
    hits = [i for i, line in enumerate(text_of(name).splitlines(), 1) if needle in line]
    return hits[nth]


def run(check, name: str) -> list[ac.Finding]:
    return check(parse(text_of(name)))


def axolotl_importable() -> bool:
    return ac.axolotl_schema()[0] is not None


OK_FIXTURES = sorted(p.name for p in FIXTURES.glob("*_ok.md"))


@pytest.mark.parametrize("name", OK_FIXTURES)
def test_consistent_fixtures_have_no_findings(name):
    findings = audit(FIXTURES / name)
    problems = [f for f in findings if f.severity != "info" or "check failed" in f.found]
    assert problems == [], format_text(problems)


def test_every_check_is_registered_and_has_fixtures():
    topics = [importlib.import_module(f"{ac.__name__}.{m.name}") for m in pkgutil.iter_modules(ac.__path__)]
    names = {n for topic in topics for n, obj in inspect.getmembers(topic, inspect.isfunction)
             if n.startswith("check_") and obj.__module__ == topic.__name__}
    assert names == {c.__name__ for c in ac.CHECKS}
    assert len(OK_FIXTURES) == len(list(FIXTURES.glob("*_bad.md")))


# ----------------------------------------------------------------------------- one test per check


def test_averages():
    assert run(ac.check_averages, "averages_ok.md") == []
    found = run(ac.check_averages, "averages_bad.md")
    name = "averages_bad.md"
    errors = {f.line for f in found if f.severity == "error"}
    assert errors == {line_with(name, "| alpha"), line_with(name, "| m1"), line_with(name, "| m2")}
    assert any("Media Totale" in f.says and "0.3500" in f.found for f in found)
    assert any("Media IT" in f.says and "0.4000" in f.found for f in found)
    info = [f for f in found if f.severity == "info"]
    assert [f.line for f in info] == [line_with(name, "| beta")] and "2 of 3" in info[0].found


def test_duplicate_rows():
    assert run(ac.check_duplicate_rows, "duplicate_rows_ok.md") == []
    (f,) = run(ac.check_duplicate_rows, "duplicate_rows_bad.md")
    assert f.line == line_with("duplicate_rows_bad.md", "| 30k") and "'20k'" in f.found


def test_yaml_syntax_reports_the_report_line():
    assert run(ac.check_yaml_syntax, "yaml_syntax_ok.md") == []
    (f,) = run(ac.check_yaml_syntax, "yaml_syntax_bad.md")
    fence = line_with("yaml_syntax_bad.md", "```yaml")
    assert f.severity == "error" and f.line == line_with("yaml_syntax_bad.md", "extra: 4") == fence + 3
    assert "invalid YAML" in f.found


def test_nanotron_config_keys():
    assert run(ac.check_config_keys, "config_keys_ok.md") == []
    name = "config_keys_bad.md"
    found = {f.says: f for f in run(ac.check_config_keys, name)}
    misplaced = found["`resume_checkpoint_path` at top level"]
    assert misplaced.line == line_with(name, "resume_checkpoint_path")
    assert "checkpoints.resume_checkpoint_path" in misplaced.found and misplaced.severity == "error"
    assert found["`hidden_dim` at model.model_config"].line == line_with(name, "hidden_dim")
    assert any("`sequence_length` is missing" in f.found for f in found.values())
    assert len(found) == 3


def test_axolotl_config_keys():
    if not axolotl_importable():
        pytest.skip("axolotl is not importable here (the fallback is tested separately)")
    assert run(ac.check_config_keys, "axolotl_keys_ok.md") == []
    name = "axolotl_keys_bad.md"
    found = {f.says: f for f in run(ac.check_config_keys, name)}
    assert "datasets[].field_messages" in found["`field_messages` at top level"].found
    assert found["`role_to_train` at datasets[0]"].line == line_with(name, "role_to_train")
    assert found["`learning_rte` at top level"].severity == "warning"
    assert found["`fsdp_sharding_strategy` at fsdp_config"].line == line_with(name, "fsdp_sharding_strategy")
    assert len(found) == 4


def test_axolotl_missing_gives_an_info_finding(monkeypatch):
    monkeypatch.setattr(ac.configs, "axolotl_schema", lambda: (None, "ModuleNotFoundError: No module named 'axolotl'"))
    (f,) = run(ac.check_config_keys, "axolotl_keys_bad.md")
    assert f.severity == "info" and "not importable" in f.found


def test_config_settings():
    assert run(ac.check_config_settings, "config_settings_ok.md") == []
    name = "config_settings_bad.md"
    found = run(ac.check_config_settings, name)
    by_line = {f.line: f for f in found}
    assert "cosine" in by_line[line_with(name, "cosine_constant_lr_ratio")].found
    assert "lr_scheduler: constant" in by_line[line_with(name, "cosine_min_lr_ratio")].found
    assert text_of(name).splitlines().index("warmup_steps: 10") + 1 in by_line
    assert any("stays there for the last 500 steps" in f.found for f in found)
    assert any("starting at step 1" in f.found and f.severity == "error" for f in found)


def test_launch():
    assert run(ac.check_launch, "launch_ok.md") == []
    name = "launch_bad.md"
    found = run(ac.check_launch, name)
    world = [f for f in found if f.severity == "error"]
    assert len(world) == 1 and "= 4 processes" in world[0].says and "= 8 processes" in world[0].found
    assert "8 GPUs across 2 nodes" in world[0].says
    warnings = {f.line: f.found for f in found if f.severity == "warning"}
    assert "says 4 nodes" in warnings[line_with(name, "--nodes=2")]
    assert "says 3" in warnings[line_with(name, "NNODES=")]
    gres = [f.found for f in found if f.line == line_with(name, "--gres")]
    assert any("says 8 GPUs" in g for g in gres) and any("2 GPUs per node idle" in g for g in gres)


def test_eval_models():
    assert run(ac.check_eval_models, "eval_model_ok.md") == []
    name = "eval_model_bad.md"
    found = {f.line: f for f in run(ac.check_eval_models, name)}
    other = found[line_with(name, "OtherModel-1B")]
    assert other.severity == "error" and "Zagreus-0.4B-ita" in other.found
    size = found[line_with(name, "zagreus-3B-1000")]
    assert "3B model" in size.found and "0.4B" in size.found and "step 1000" in size.found
    assert "'spa'" in found[line_with(name, "zagreus-0.4B-spa")].found
    baseline = found[line_with(name, "Baseline-0.5B")]
    assert baseline.severity == "warning" and "comparison model" in baseline.found
    assert len(found) == 4  # the ``pretrained=checkpoint`` placeholder is not a finding


def test_training_log():
    assert run(ac.check_training_log, "training_log_ok.md") == []
    found = {f.says.split(":")[0].split()[0]: f for f in run(ac.check_training_log, "training_log_bad.md")}
    assert set(found) == {"iteration", "global_batch_size", "tokens_per_sec", "lr", "consumed_tokens",
                          "time_per_iteration_ms", "eta"}
    assert "65,536 tokens" in found["global_batch_size"].found
    assert "train_steps: 1000" in found["iteration"].found
    assert "imply 16 GPUs" in found["tokens_per_sec"].found
    assert "gives 0.001" in found["lr"].found


def test_param_count():
    assert run(ac.check_param_count, "param_count_ok.md") == []
    found = {f.says: f for f in run(ac.check_param_count, "param_count_bad.md")}
    assert found["'about 500 million parameters'"].severity == "warning"
    assert found["'nesso-350M-chat'"].severity == "warning"
    assert found["'zagreus-3B-base'"].severity == "error"
    assert all("437,760,960" in f.found for f in found.values()) and len(found) == 3


def test_token_budget():
    assert run(ac.check_token_budget, "token_budget_ok.md") == []
    found = run(ac.check_token_budget, "token_budget_bad.md")
    text = " / ".join(f.found for f in found)
    assert "sums to 110B" in text and "only 50B tokens" in text and "= 197B tokens" in text
    assert len(found) == 3


def test_dataset_sources():
    assert run(ac.check_dataset_sources, "dataset_sources_ok.md") == []
    (f,) = run(ac.check_dataset_sources, "dataset_sources_bad.md")  # one finding per folder name
    assert "'books-en'" in f.found and f.line == line_with("dataset_sources_bad.md", "books-en")


def test_duplicate_sections():
    assert run(ac.check_duplicate_sections, "duplicate_sections_ok.md") == []
    (f,) = run(ac.check_duplicate_sections, "duplicate_sections_bad.md")
    assert f.line == line_with("duplicate_sections_bad.md", "## Setup", 1)
    assert f"line {line_with('duplicate_sections_bad.md', '## Setup')}" in f.found


def test_tokenizer():
    assert run(ac.check_tokenizer, "tokenizer_ok.md") == []
    (f,) = run(ac.check_tokenizer, "tokenizer_bad.md")
    assert "cache folder" in f.says and "org/demo-tokenizer" in f.found


def test_python_syntax():
    assert run(ac.check_python_syntax, "python_syntax_ok.md") == []
    (f,) = run(ac.check_python_syntax, "python_syntax_bad.md")
    assert f.line == line_with("python_syntax_bad.md", "OUTPUT_DIR") and f.severity == "error"


# ----------------------------------------------------------------------------- building blocks


def test_nanotron_schema_says_where_a_key_belongs():
    problems = check_keys({"general": {"project": "p"}, "checkpoint_interval": 5,
                           "data_stages": [{"name": "s", "start_training_step": 1,
                                            "data": {"seed": 1, "dataset": {"dataset_folder": "x", "bogus": 1}}}]},
                          NANOTRON_SCHEMA)
    by_key = {p.key: p for p in problems}
    assert by_key["checkpoint_interval"].belongs == ["checkpoints.checkpoint_interval"]
    assert by_key["bogus"].path == ("data_stages", 0, "data", "dataset") and by_key["bogus"].belongs == []
    assert "data_stages[].data.dataset.dataset_folder" in schema_paths(NANOTRON_SCHEMA)["dataset_folder"]
    assert Variants({"a": {"x": None}, "b": {"y": None, "z": None}}).pick({"y": 1, "z": 2})[0] == "b"


def test_numbers_schedule_and_parameter_count():
    assert logs.number("8.79K") == pytest.approx(8790)
    assert logs.number("480B") == pytest.approx(4.8e11) == logs.number("480G")
    assert logs.number("0.0001") == pytest.approx(1e-4) and logs.number("fast") is None
    assert logs.parse_eta("131 days, 1:45:39") == 131 * 86400 + 3600 + 45 * 60 + 39
    sched = {"learning_rate": 0.003, "lr_warmup_steps": 4000, "lr_warmup_style": "linear",
             "lr_decay_style": "linear", "lr_decay_starting_step": 750000, "lr_decay_steps": 50000,
             "min_decay_lr": "1e-7"}  # as YAML reads it: a string
    schedule = NanotronSchedule.from_section(sched, 2_000_000)
    assert lr_at(2000, schedule) == pytest.approx(0.0015)
    assert lr_at(211364, schedule) == pytest.approx(0.003)
    assert lr_at(775000, schedule) == pytest.approx((0.003 + 1e-7) / 2)
    assert lr_at(900000, schedule) == pytest.approx(1e-7)
    from zagreus_utils.model.arch import LlamaArch
    from zagreus_utils.model.planning import parameter_counts

    arch = LlamaArch(vocab_size=128256, hidden_size=960, intermediate_size=2560, num_layers=32, num_heads=15,
                    num_kv_heads=5, tie_word_embeddings=True)
    total = parameter_counts(arch)["total"]
    assert total == 437_760_960  # embeddings 123,125,760 + 32 layers × 9,832,320 + final norm 960
    untied = LlamaArch(128256, 960, 2560, 32, 15, 5, tie_word_embeddings=False)
    assert parameter_counts(untied)["total"] - total == 128256 * 960
    biased = LlamaArch(128256, 960, 2560, 32, 15, 5, attention_bias=True)
    assert parameter_counts(biased)["total"] - total == 32 * (960 + 2 * 320 + 960)  # q, k, v, o biases


# ----------------------------------------------------------------------------- API and CLI


def test_audit_rejects_bad_paths(tmp_path):
    with pytest.raises(ZagreusError, match="nothing-here.md"):
        audit(tmp_path / "nothing-here.md")
    with pytest.raises(ZagreusError, match="not a file"):
        audit(tmp_path)
    (tmp_path / "report.pdf").write_bytes(b"%PDF-1.4")
    with pytest.raises(ZagreusError, match="not a markdown file"):
        audit(tmp_path / "report.pdf")
    (tmp_path / "binary.md").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ZagreusError, match="UTF-8"):
        audit(tmp_path / "binary.md")


def test_frame_text_and_cli(tmp_path, capsys):
    findings = audit_text(text_of("duplicate_rows_bad.md") + "\n" + text_of("averages_bad.md"))
    frame = findings_frame(findings)
    assert list(frame.columns) == ["check", "line", "heading", "says", "found", "severity"]
    assert len(frame) == len(findings) == 5
    assert frame.iloc[0].to_dict() == {**vars(findings[0])}
    assert list(findings_frame([]).columns) == list(frame.columns)
    text = format_text(findings)
    assert text.index("ERROR (3)") < text.index("WARNING (1)") < text.index("INFO (1)")
    assert text.splitlines()[-1] == "5 findings: 3 errors, 1 warning, 1 info"
    assert format_text([]) == "0 findings: 0 errors, 0 warnings, 0 info"

    assert main([str(FIXTURES / "duplicate_rows_bad.md")]) == 0
    assert capsys.readouterr().out.strip().endswith("1 finding: 0 errors, 1 warning, 0 info")
    assert main([str(FIXTURES / "duplicate_rows_bad.md"), "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["check"] == "duplicate_rows" and record["severity"] == "warning"
    assert main([str(tmp_path / "missing.md")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "missing.md" in err[0]


# ----------------------------------------------------------------------------- the real report


def test_real_report_key_findings(report_source):
    """The report's own inconsistencies (``report_source`` skips when its markdown is absent)."""
    findings = audit(report_source)
    assert not [f for f in findings if "check failed" in f.found]

    def has(check, line=None, severity=None, *needles):
        return any(f.check == check and line in (None, f.line) and severity in (None, f.severity)
                   and all(n in f.says + " " + f.found for n in needles) for f in findings)

    # the nanotron config: invalid YAML, and checkpoint keys at top level
    assert has("yaml_syntax", 226, "error", "save_initial_state")
    for key in ("resume_checkpoint_path", "save_final_state", "save_initial_state"):
        assert has("config_keys", None, "error", f"`{key}` at top level", f"checkpoints.{key}")
    # the launch script: 8 nodes × GPUS_PER_NODE=4 = 32 processes, but dp=64; comments that disagree
    assert has("launch", 369, "error", "= 32 processes", "= 64 processes", "64 GPUs across 8 nodes")
    assert has("launch", 336, "warning", "says 4 nodes")
    assert has("launch", 433, "warning", "says 2 nodes")
    assert has("launch", 434, "warning", "says 4 GPUs per node")
    assert has("launch", 337, "warning", "4 GPUs per node idle")
    # eval commands that evaluate another model
    for line in (557, 590, 614, 641):
        assert has("eval_model", line, "error", "LiquidAI/LFM2-350M")
    assert has("eval_model", 663, "error", "zagreus-3B-165000", "3B model")
    # the training log against the config
    assert has("training_log", 382, "error", "global_batch_size: 1.6M", "1,048,576 tokens")
    assert has("training_log", 382, "error", "1500000", "train_steps: 2000000")
    assert has("training_log", 382, "error", "tokens_per_sec_per_gpu: 699", "imply 260 GPUs")
    assert has("training_log", 382, "error", "lr: 0.0001", "gives 0.003")
    # duplicated progression rows and duplicated sections
    assert has("duplicate_rows", 572, "warning", "v2-520k", "v2-460k")
    assert has("duplicate_rows", 626, "warning", "603k", "365k")
    assert has("duplicate_sections", 17) and has("duplicate_sections", 23)
    # sizes and budgets
    assert has("param_count", 13, "warning", "500 million")
    assert has("param_count", None, "warning", "zagreus-350M")
    assert has("param_count", 663, "error", "zagreus-3B")
    assert has("token_budget", 108, "warning", "400B English", "350B")
    assert has("token_budget", None, "warning", "2.1T tokens", "1 trillion")
    assert has("dataset_sources", None, "warning", "fineweb-edu-350BT")
    # axolotl: cosine knobs with a constant schedule
    assert has("config_settings", 500, "warning", "cosine_constant_lr_ratio", "constant")
    assert has("config_settings", 501, "warning", "cosine_min_lr_ratio", "constant")
    if axolotl_importable():
        assert has("config_keys", 526, "warning", "fsdp_sharding_strategy")
    # averages all recompute; only the partial rows are noted
    assert not has("averages", None, "error")
