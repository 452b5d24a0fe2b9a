"""Stage 06 (zagreus_utils.stages.evaluation): lm-eval on tiny random Llamas, offline, CPU only.

One module-scoped run (two base checkpoints + an SFT model, a few items per task) gives real
lm-eval output that the ingestion, tables, figures, rerun and failure tests read.
"""

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pandas as pd
import pytest

import eval_helpers as H
from zagreus_utils.stages import evaluation as E
from zagreus_utils.pipeline import paths
from zagreus_utils.stages import plots
from zagreus_utils.results import published, tables
from zagreus_utils.pipeline.errors import ZagreusError
from zagreus_utils.pipeline.spec import load_spec

LIMIT = 4
TINY = {"vocab_size": 512, "hidden": 32, "layers": 2}
LANGS = ("ita", "spa", "fra", "por")


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A run folder evaluated once: results, metrics, outputs."""
    root = tmp_path_factory.mktemp("eval")
    made = H.make_run(root / "run", "ita", steps=(100, 200), sft=True, **TINY)
    spec = load_spec("ita", "smoke")
    out = root / "run" / "06_eval"
    summary = E.run_eval(spec, made["run_dir"], out, limit=LIMIT, log=lambda m: None)
    return {**made, "spec": spec, "out": out, "summary": summary}


# --- suites ---------------------------------------------------------------------------------

@pytest.mark.parametrize("lang", LANGS)
def test_full_suite_names_and_shots_come_from_the_spec(lang):
    spec = load_spec(lang, "full")
    iso = spec.language.iso639_1
    assert E.suite_source(spec) == "lm-eval"
    base = E.suite(spec, "base")
    head = [(t.task, t.metric, t.num_fewshot, t.chat_template, t.language) for t in base[:3]]
    assert head == [(f"m_mmlu_{iso}", "acc", 5, False, lang), (f"hellaswag_{iso}", "acc_norm", 0, False, lang),
                    (f"arc_{iso}", "acc_norm", 0, False, lang)]
    groups = {call_id: [t.task for t in ts] for call_id, _, _, ts in E.calls(base[:3])}
    assert groups == {"fewshot-5": [f"m_mmlu_{iso}"], "fewshot-0": [f"hellaswag_{iso}", f"arc_{iso}"]}
    instruct = {t.task: t for t in E.suite(spec, "instruct")}
    assert instruct["ifeval"].chat_template and instruct["ifeval"].metric == "prompt_level_strict_acc"
    assert instruct["mmlu"].num_fewshot == 5 and instruct["arc_challenge"].name == "arc"
    assert instruct["hellaswag"].language == "eng" and instruct[f"m_mmlu_{iso}"].language == lang
    if lang == "ita":
        assert instruct["ifeval-ita"].requires and instruct["ifeval-ita"].chat_template
    if lang == "por":
        assert {t.task for t in base if t.requires} >= {"assin2_rte", "enem_challenge", "tweetsentbr"}


def test_smoke_suite_is_the_local_heldout_tasks():
    spec = load_spec("spa", "smoke")
    assert E.suite_source(spec) == "heldout"
    base = [t.task for t in E.suite(spec, "base")]
    assert base == ["mmlu_spa", "arc_spa", "hellaswag_spa", "bpb_spa", "mmlu_eng", "arc_eng", "hellaswag_eng", "bpb_eng"]
    assert [t.task for t in E.suite(spec, "instruct")] == [t for t in base if not t.startswith("bpb")]
    assert all(t.num_fewshot is None and t.local for t in E.suite(spec, "base"))  # n-shot from the YAMLs
    assert {c for c, *_ in E.calls(E.suite(spec, "base"))} == {"fewshot-default"}
    committed = sorted(p.stem for p in (paths.CONFIGS / "lm_eval").glob("*.yaml") if not p.stem.startswith("_"))
    assert committed == sorted(f"{s}_{lang}" for s in ("mmlu", "arc", "hellaswag", "bpb")
                               for lang in ("eng",) + LANGS)


class _FakeTM:
    def __init__(self, names):
        self.all_tasks = sorted(names)
        self.task_index = {n: {"type": "task", "yaml_path": -1} for n in names}


def test_uninstalled_fork_tasks_are_skipped_and_unknown_tasks_refused():
    spec = load_spec("ita", "full")
    have = {"ifeval", "arc_challenge", "hellaswag", "mmlu", "arc_it", "hellaswag_it", "m_mmlu_it"}
    keep, notes = E.resolve(E.suite(spec, "instruct"), _FakeTM(have | {"m_mmlu_es"}))
    assert [t.task for t in keep] == ["ifeval", "arc_challenge", "hellaswag", "mmlu", "arc_it", "hellaswag_it", "m_mmlu_it"]
    assert len(notes) == 1 and "ifeval-ita" in notes[0] and "mii-llm" in notes[0]
    with pytest.raises(ZagreusError, match=r"m_mmlu_it not available here\. Available: .*m_mmlu_es"):
        E.resolve(E.suite(spec, "base"), _FakeTM(have - {"m_mmlu_it"} | {"m_mmlu_es"}))
    many = {f"task_{i}" for i in range(300)} | {"m_mmlu_es", "m_mmlu_fr"}  # lm-eval's index: closest ones
    with pytest.raises(ZagreusError, match=r"m_mmlu_it not available here\. Available: m_mmlu_es, m_mmlu_fr "
                                           r"\(closest matches; 302 tasks in all"):
        E.resolve(E.suite(spec, "base")[:1], _FakeTM(many))


def test_task_not_available_offline_lists_the_available_ones(tmp_path, monkeypatch):
    """Real lm-eval task YAMLs (the okapi multilingual MMLU) whose Hub dataset is not cached."""
    import lm_eval

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    okapi = Path(lm_eval.__file__).parent / "tasks" / "okapi" / "mmlu_multilingual"
    held = tmp_path / "run"
    H.write_heldout(held, "ita")
    E.render_tasks(held / "01_data" / "raw" / "heldout", tmp_path / "tasks", "ita")
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=[str(okapi), str(tmp_path / "tasks")], include_defaults=False)
    suite = [E.SuiteTask("m_mmlu_it", "acc", 5, language="ita"), E.SuiteTask("arc_ita", "acc_norm", None, local=True)]
    with pytest.raises(ZagreusError, match=r"not available offline: m_mmlu_it needs alexandrainst/m_mmlu .*"
                                           r"Available offline: .*arc_ita.*mmlu_ita"):
        E.resolve(suite, tm, tmp_path / "tasks")
    with pytest.raises(ZagreusError, match=r"m_mmlu_xx not available here\. Available: .*arc_ita.*m_mmlu_it"):
        E.resolve([E.SuiteTask("m_mmlu_xx", "acc", 5)], tm, tmp_path / "tasks")


def test_smoke_tasks_load_offline_with_a_separate_fewshot_split(tmp_path):
    heldout = H.write_heldout(tmp_path / "run", "por")
    index = E.render_tasks(heldout, tmp_path / "tasks", "por")
    assert sorted(index) == sorted(f"{s}_{lang}" for s in ("mmlu", "arc", "hellaswag", "bpb") for lang in ("por", "eng"))
    tm = E.task_manager(tmp_path / "tasks", include_defaults=False)
    assert set(index) <= set(tm.all_tasks)
    loaded = tm.load_task_or_group(["mmlu_por", "hellaswag_eng", "bpb_por"])
    mmlu = loaded["mmlu_por"]
    assert mmlu.config.num_fewshot == 5 and mmlu.config.output_type == "multiple_choice"
    test_ids = {d["id"] for d in mmlu.test_docs()}
    shot_ids = {d["id"] for d in mmlu.fewshot_docs()}
    assert len(test_ids) == E.TEST_ITEMS and len(shot_ids) == E.FEWSHOT_ITEMS and not test_ids & shot_ids
    doc = mmlu.test_docs()[0]
    assert mmlu.doc_to_text(doc).startswith("Pergunta: ") and mmlu.doc_to_text(doc).endswith("\nResposta:")
    assert mmlu.doc_to_choice(doc) == doc["choices"]
    hs = loaded["hellaswag_eng"]
    doc = hs.test_docs()[0]
    assert hs.doc_to_choice(doc) == [c + "." for c in doc["choices"]] and hs.doc_to_text(doc) == doc["context"]
    bpb = loaded["bpb_por"]
    assert bpb.config.output_type == "loglikelihood_rolling" and len(bpb.test_docs()) == min(E.BPB_DOCS, 20)
    rendered = (tmp_path / "tasks" / "mmlu_por.yaml").read_text()
    assert str((tmp_path / "tasks" / "data").resolve()) in rendered


# --- a real run: ingestion ------------------------------------------------------------------

def test_results_are_the_published_tidy_format_with_provenance(evaluated):
    out = evaluated["out"]
    df = published.load(out / "results.csv")  # the plots stage reads it like this
    assert set(df["source"]) == {"this run"}
    assert set(df["table_id"]) == {"ita_progression", "nesso_comparison"}
    res = E.load_results(out / "results.csv")
    scored = res[~res["is_average"]]
    ckpt = evaluated["checkpoints"]
    for step, folder in ckpt.items():
        rows = scored[scored["checkpoint_step"] == step]
        assert sorted(rows["task"]) == ["arc_ita", "hellaswag_ita", "mmlu_ita"]
        assert set(rows["model_path"]) == {str(folder.resolve())} and set(rows["row_label"]) == {f"step-{step}"}
    mmlu = scored[scored["task"] == "mmlu_ita"].iloc[0]
    assert mmlu["metric"] == "acc" and mmlu["n_shot"] == 5 and mmlu["chance"] == 0.25
    arc = scored[scored["task"] == "arc_ita"].iloc[0]
    assert arc["metric"] == "acc_norm" and arc["n_shot"] == 0
    assert scored["value"].between(0, 1).all() and (scored["stderr"] >= 0).all()
    assert set(scored["batch_size"]) == {str(evaluated["spec"].profile.eval.batch_size)}
    assert set(scored["lm_eval_version"]) == {E.lm_eval_version()} and not scored["chat_template"].any()
    assert set(scored["limit"]) == {str(LIMIT)} and set(scored["n_samples"]) == {LIMIT}
    sft = res[res["table_id"] == "nesso_comparison"]
    assert sft["checkpoint_step"].isna().all() and set(sft["model_kind"]) == {"instruct"}
    assert {"Media EN", "Media IT", "Media Totale"} <= set(sft["column"])
    assert set(sft.loc[~sft["is_average"], "language"]) == {"ita", "eng"}
    # every printed average is the mean of its cells (the published.averages definition)
    checks = published.averages(df)
    assert len(checks) == 2 + 3 and (checks["difference"].abs() < 1e-9).all()


def test_metrics_hold_every_number_including_bits_per_byte(evaluated):
    m = E.load_results(evaluated["out"] / "metrics.csv")
    bpb = m[m["metric"] == "bits_per_byte"]
    assert sorted(bpb["task"].unique()) == ["bpb_eng", "bpb_ita"]
    assert len(bpb) == 4 and (bpb["stderr"] > 0).all() and bpb["chance"].isna().all()
    assert bpb["note"].str.contains("samples").all()
    acc = m[(m["task"] == "arc_eng") & (m["row_label"] == "step-200")]
    assert set(acc["metric"]) == {"acc", "acc_norm"} and (acc["table_id"] == "").all()
    for p in ("results.csv", "metrics.csv", "learning_check.json", "outputs.json", "tasks/tasks.json"):
        assert (evaluated["out"] / p).is_file()
    kept = list((evaluated["out"] / "lm_eval" / "step-100" / "fewshot-default").glob("*"))
    names = {p.name.rsplit("_", 1)[0] for p in kept}
    assert {"results", "samples_mmlu_ita", "samples_bpb_eng", "zagreus_eval.json"} <= names | {p.name for p in kept}


def test_tables_and_figures_show_this_run_next_to_the_published(evaluated):
    out, spec = evaluated["out"], evaluated["spec"]
    index = json.loads((out / "outputs.json").read_text())
    assert {t["id"] for t in index["tables"]} == {"ita_progression", "nesso_comparison", "eval-metrics"}
    assert {f["id"] for f in index["figures"]} == {"progression-ita", "checkpoints-ita"}
    for entry in index["tables"] + index["figures"]:
        for key in ("html", "csv", "png", "svg"):
            if key in entry:
                assert (out / entry[key]).is_file()
    assert any("learning" in n for n in index["notes"])
    run = published.load(out / "results.csv")
    wide = tables.with_run_results(published.load(), run, "ita_progression")
    assert {"this run · step-100", "this run · step-200"} <= set(wide.index)
    assert wide.loc["this run · step-100", "Media"] == pytest.approx(
        run[(run.row_label == "step-100") & run.is_average]["value"].iloc[0])
    fig = plots.progression_figure(published.load(), "ita", run)
    assert len(fig.axes) == 2  # published | this run


def test_plots_stage_shows_finished_eval_results_and_names_the_languages_without(evaluated, tmp_path):
    from zagreus_utils.pipeline.context import StageContext

    run = tmp_path / "runs" / "smoke"
    for lang in ("ita", "spa"):
        (run / lang / "06_eval").mkdir(parents=True)
        shutil.copy(evaluated["out"] / "results.csv", run / lang / "06_eval" / "results.csv")
    # ita's eval finished; spa's has no manifest (it has not finished): its results are not shown
    (run / "ita" / "06_eval" / "manifest.json").write_text(json.dumps({"status": "ok"}))
    ctx = StageContext.create("plots", profile="smoke", languages=["ita", "spa"], run_dir=run)
    result = plots.run(ctx)
    assert result.out_dir == run / "07_plots" and (run / "07_plots" / "outputs.json").is_file()
    assert "this run's results: ['ita']" in result.notes[0]
    assert any(n.startswith("spa: this run's results not shown (stage 06_eval has not run") for n in result.notes)
    assert {"ita_progression", "por_leaderboard", "nesso_comparison", "averages"} <= set(result.tables)
    html = result.tables["ita_progression"].to_html()
    assert "this run · step-100" in html and "this run · step-200" in html
    assert "this run · step-100" not in result.tables["spa_progression"].to_html()
    assert all(png.is_file() for _, png in result.extra["figures"])


def test_learning_check_on_real_output_and_on_synthetic_frames(evaluated):
    check = json.loads((evaluated["out"] / "learning_check.json").read_text())
    assert set(check) == {"learning", "accuracy", "bits_per_byte", "summary"}
    assert check["accuracy"]["step"] == 200 and len(check["accuracy"]["tasks"]) == 6
    assert set(check["bits_per_byte"]["tasks"]) == {"bpb_ita", "bpb_eng"}

    def frame(acc, bpb):
        rows = []
        for step, (a, b) in enumerate(zip(acc, bpb), 1):
            for task, metric in [("mmlu_ita", "acc"), ("arc_ita", "acc_norm"), ("arc_ita", "acc")]:
                rows.append({"model_kind": "base", "checkpoint_step": step * 100, "is_average": False, "task": task,
                             "metric": metric, "value": a if metric != "acc" or task == "mmlu_ita" else 0.9,
                             "stderr": 0.04, "chance": 0.25})
            rows.append({"model_kind": "base", "checkpoint_step": step * 100, "is_average": False, "task": "bpb_ita",
                         "metric": "bits_per_byte", "value": b, "stderr": 0.05, "chance": float("nan")})
        rows.append({**rows[0], "model_kind": "instruct", "checkpoint_step": pd.NA, "value": 0.0})
        return pd.DataFrame(rows)

    good = E.learning_check(frame([0.3, 0.5], [3.0, 2.0]))
    assert good["learning"] and good["accuracy"]["mean"] == pytest.approx(0.5)  # acc_norm for ARC, not acc
    assert good["bits_per_byte"]["falls"] and good["bits_per_byte"]["tasks"]["bpb_ita"]["monotone"]
    at_chance = E.learning_check(frame([0.3, 0.27], [3.0, 2.0]))
    assert not at_chance["learning"] and not at_chance["accuracy"]["above_chance"]
    flat = E.learning_check(frame([0.3, 0.5], [3.0, 2.98]))  # within its stderr: noise, not learning
    assert not flat["learning"] and "does NOT fall" in " ".join(flat["summary"])


# --- reruns and failures --------------------------------------------------------------------

def _copy_run(evaluated, dst: Path, keep_models=("step-100", "sft")) -> Path:
    shutil.copytree(evaluated["run_dir"], dst, ignore=shutil.ignore_patterns("06_eval"))
    for name in keep_models:
        shutil.copytree(evaluated["out"] / "lm_eval" / name, dst / "06_eval" / "lm_eval" / name)
    return dst


def test_partial_failure_keeps_finished_results_and_a_rerun_skips_them(evaluated, tmp_path, monkeypatch):
    import lm_eval

    run_dir = _copy_run(evaluated, tmp_path / "run")
    calls = []
    real = lm_eval.simple_evaluate

    def broken(**kwargs):
        calls.append(kwargs["model_args"]["pretrained"])
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(lm_eval, "simple_evaluate", broken)
    with pytest.raises(ZagreusError, match=r"evaluation failed for step-200 .*out of memory.*kept \(step-100, sft\)"):
        E.run_eval(evaluated["spec"], run_dir, run_dir / "06_eval", limit=LIMIT, log=lambda m: None)
    assert [Path(c).name for c in calls] == ["step-200"]  # the copied models were up to date
    res = E.load_results(run_dir / "06_eval" / "results.csv")
    assert set(res["row_label"]) == {"step-100", "sft"}

    def counting(**kwargs):
        calls.append(kwargs["model_args"]["pretrained"])
        return real(**kwargs)

    calls.clear()
    monkeypatch.setattr(lm_eval, "simple_evaluate", counting)
    E.run_eval(evaluated["spec"], run_dir, run_dir / "06_eval", limit=LIMIT, log=lambda m: None)
    assert [Path(c).name for c in calls] == ["step-200"]
    assert set(E.load_results(run_dir / "06_eval" / "results.csv")["row_label"]) == {"step-100", "step-200", "sft"}
    # a changed checkpoint is evaluated again, not served from the old results
    calls.clear()
    (run_dir / "04_conversion" / "hf" / "step-100" / "generation_config.json").write_text("{}\n")
    E.run_eval(evaluated["spec"], run_dir, run_dir / "06_eval", limit=LIMIT, log=lambda m: None)
    assert [Path(c).name for c in calls] == ["step-100"]


def test_results_json_from_another_task_set_is_refused(evaluated, tmp_path):
    folder = evaluated["out"] / "lm_eval" / "step-100" / "fewshot-default"
    results = next(folder.glob("results_*.json"))
    other = E.suite(load_spec("ita", "full"), "base")
    with pytest.raises(ZagreusError, match=r"holds lm-eval results for tasks .* not this suite's \['m_mmlu_it'.*"
                                           r"another task set"):
        E.ingest_file(results, other)
    fewer = [t for t in E.suite(evaluated["spec"], "base") if t.task != "bpb_eng"]
    with pytest.raises(ZagreusError, match="unexpected bpb_eng"):
        E.ingest_file(results, fewer)
    sft = E.ModelEntry("sft", str(evaluated["sft"]), "instruct")
    with pytest.raises(ZagreusError, match="holds results of model .*step-100"):
        E.ingest_file(results, E.suite(evaluated["spec"], "base"), sft)
    junk = tmp_path / "results_x.json"
    junk.write_text('{"hello": 1}')
    with pytest.raises(ZagreusError, match="not an lm-eval results JSON"):
        E.ingest_file(junk, other)


def test_missing_or_broken_checkpoints_are_clear_errors(evaluated, tmp_path):
    hf = evaluated["run_dir"] / "04_conversion" / "hf"
    with pytest.raises(ZagreusError, match=r"no converted checkpoints: .* does not exist.*conversion"):
        E.find_checkpoints(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ZagreusError, match="no converted checkpoints in"):
        E.find_checkpoints(tmp_path / "empty")
    with pytest.raises(ZagreusError, match=r"missing checkpoint 300 .* available: step-100 \(step 100\), step-200"):
        E.find_checkpoints(hf, steps=[300])
    assert [m.step for m in E.find_checkpoints(hf, steps=["step-200"])] == [200]
    broken = tmp_path / "hf"
    shutil.copytree(hf, broken)
    (broken / "step-200" / "model.safetensors").unlink()
    with pytest.raises(ZagreusError, match=r"step-200 is not a complete Hugging Face model folder \(no weights"):
        E.find_checkpoints(broken)
    shutil.copytree(hf / "step-100", broken / "final")
    (broken / "final" / "zagreus_checkpoint.json").unlink()
    shutil.rmtree(broken / "step-200")
    with pytest.raises(ZagreusError, match="cannot tell the training step of checkpoint .*final"):
        E.find_checkpoints(broken)
    (broken / "final").rename(broken / "v2-95k")
    assert [m.step for m in E.find_checkpoints(broken)] == [100, 95000]
    with pytest.raises(ZagreusError, match=r"missing SFT model: .*05_sft/model does not exist"):
        E.discover_models(_no_sft(evaluated, tmp_path))
    (tmp_path / "heldout").mkdir()
    with pytest.raises(ZagreusError, match=r"missing held-out file .*mc_ita.jsonl"):
        E.render_tasks(tmp_path / "heldout", tmp_path / "tasks", "ita")
    with pytest.raises(ZagreusError, match=r"no held-out items: .* does not exist.*--stages data"):
        E.render_tasks(tmp_path / "nowhere", tmp_path / "tasks", "ita")


def _no_sft(evaluated, tmp_path) -> Path:
    dst = tmp_path / "run-no-sft"
    shutil.copytree(evaluated["run_dir"] / "04_conversion", dst / "04_conversion")
    return dst


# --- Slurm ----------------------------------------------------------------------------------

def _plan(evaluated, tmp_path, overrides=None):
    spec = load_spec("ita", "smoke", overrides)
    plan, _ = E.prepare(spec, evaluated["run_dir"], tmp_path / "06 eval $(touch canary)", limit=LIMIT,
                        overrides=overrides)
    return spec, plan


def test_slurm_array_script_is_shell_safe_with_one_task_per_model(evaluated, tmp_path):
    spec, plan = _plan(evaluated, tmp_path, {"slurm.account": "proj-1", "slurm.partition": "debug"})
    fake = tmp_path / "py thon" / "bin"  # a python that records its argv
    fake.mkdir(parents=True)
    py = fake / "python"
    py.write_text("#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\n")
    py.chmod(py.stat().st_mode | stat.S_IEXEC)
    script = E.write_slurm(plan, python=str(py))
    text = script.read_text()
    assert "#SBATCH --array=0-2\n" in text and "#SBATCH --account=proj-1\n" in text
    assert "#SBATCH --partition=debug\n" in text and "#SBATCH --time=00:20:00\n" in text
    assert "#SBATCH --cpus-per-task=1\n" in text and "--gres" not in text  # smoke: no GPU
    assert "#   0: step-100 (base, step 100)" in text and "#   2: sft (instruct)" in text
    assert "export HF_DATASETS_OFFLINE=1" in text
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    # run the script body: the paths with blanks and $(...) stay single arguments, nothing is executed
    out = subprocess.run(["bash", str(script)], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "SLURM_ARRAY_TASK_ID": "2"})
    assert out.returncode == 0, out.stderr
    argv = out.stdout.splitlines()
    assert argv == ["-m", "zagreus_utils.stages.evaluation", "array-task", "--plan",
                    str(Path(plan.out_dir) / "slurm" / "plan.json"), "--index", "2"]
    assert not (tmp_path / "canary").exists() and not Path("canary").exists()
    plan_back = E.EvalPlan.from_json(json.loads((Path(plan.out_dir) / "slurm" / "plan.json").read_text()))
    assert [m.name for m in plan_back.models] == ["step-100", "step-200", "sft"] and plan_back.limit == LIMIT
    _, bad = _plan(evaluated, tmp_path / "bad", {"slurm.account": "acct\n#SBATCH --uid=0"})
    with pytest.raises(ZagreusError, match="line break"):
        E.write_slurm(bad)
    _, odd = _plan(evaluated, tmp_path / "odd", {"slurm.partition": "p;rm -rf /"})
    assert '#SBATCH --partition="p;rm -rf /"\n' in E.write_slurm(odd).read_text()  # sbatch's quoting, one token
    full = load_spec("ita", "full")
    text = E.slurm_script(plan, Path("/p/plan.json"), spec=full).text
    assert "#SBATCH --gres=gpu:1" in text and "#SBATCH --account=YOUR_ACCOUNT" in text and "OFFLINE" not in text


def test_slurm_dry_run_submit_and_follow(evaluated, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    spec = evaluated["spec"]
    dry = E.run_eval(spec, evaluated["run_dir"], tmp_path / "out", launcher="slurm", dry_run=True, limit=LIMIT)
    assert dry["script"].startswith("#!/bin/bash") and dry["command"][:2] == ["sbatch", "--parsable"]
    assert Path(dry["script_path"]).is_file()
    _, plan = _plan(evaluated, tmp_path)
    script = E.write_slurm(plan)
    with pytest.raises(ZagreusError, match="`sbatch` is not installed here.*launcher='local'"):
        E.submit(plan, script)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    state = tmp_path / "polls"
    stubs = {  # the formats zagreus_utils.cluster.slurm asks for (squeue %i|%F|%K|%T|%r|%P|%N, sacct -X -P)
        "sbatch": 'echo "$@" > ' + str(tmp_path / "sbatch.args") + '; echo "4242;cluster"',
        # first poll: queued; then nothing in the queue (finished)
        "squeue": f'if [ ! -e {state} ]; then touch {state}; echo "4242_0|4242|0|RUNNING|None|debug|vm"; '
                  'echo "4242_1|4242|1|PENDING|None|debug|"; echo "4242_2|4242|2|PENDING|None|debug|"; fi',
        "sacct": 'printf "4242_0|COMPLETED|0:0||debug|vm\\n4242_1|COMPLETED|0:0||debug|vm\\n4242_2|FAILED|1:0||debug|vm\\n"',
        "sinfo": 'echo "vm|idle|none|debug*|2|1000|(null)"',
    }
    for name, body in stubs.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    assert E.submit(plan, script) == "4242"
    assert f"--output={Path(plan.out_dir) / 'slurm' / 'logs' / '%A_%a.out'}" in (tmp_path / "sbatch.args").read_text()
    from zagreus_utils.cluster import slurm

    with pytest.raises(slurm.JobFailed, match=r"Slurm job 4242 ended FAILED.*failed tasks: 4242_2 FAILED 1:0") as info:
        E.follow("4242", poll_s=0.01, progress=False)
    assert [t.state for t in info.value.job.tasks] == ["COMPLETED", "COMPLETED", "FAILED"]


def _slurm_cluster() -> bool:
    conf = Path(os.environ.get("ZAGREUS_SLURM_DIR", "/tmp/zagreus-slurm")) / "slurm.conf"
    if "SLURM_CONF" not in os.environ and conf.is_file():
        os.environ["SLURM_CONF"] = str(conf)
    if not shutil.which("sinfo"):
        return False
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.slurm
def test_slurm_array_runs_on_a_real_cluster(evaluated, tmp_path):
    if not _slurm_cluster():
        pytest.skip("no Slurm cluster answers here (start one with slurm/local-cluster/start.sh)")
    run_dir = _copy_run(evaluated, tmp_path / "run", keep_models=("step-100", "sft"))  # step-200 runs there
    summary = E.run_eval(evaluated["spec"], run_dir, run_dir / "06_eval", launcher="slurm", limit=LIMIT, poll_s=1,
                    timeout_s=300, log=lambda m: None)
    assert summary["failed"] == {} and set(summary["finished"]) == {"step-100", "step-200", "sft"}
    assert set(E.load_results(run_dir / "06_eval" / "results.csv")["row_label"]) == {"step-100", "step-200", "sft"}
    assert list((run_dir / "06_eval" / "slurm" / "logs").glob("*_2.out"))


# --- the notebook ---------------------------------------------------------------------------

def test_notebook_is_thin_stored_without_outputs_and_runs(evaluated, tmp_path):
    import nbformat
    import papermill as pm

    nb_path = paths.NOTEBOOKS / "06_eval.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and list(pm.inspect_notebook(str(nb_path))) == [
        "profile", "language", "run_dir", "out_dir", "launcher", "overrides"]
    assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code")
    # run it on a copy of the evaluated run (everything up to date: no model is evaluated again)
    run_dir = _copy_run(evaluated, tmp_path / "run", keep_models=("step-100", "step-200", "sft"))
    for stage in ("01_data", "04_conversion", "05_sft"):
        (run_dir / stage / "manifest.json").write_text(json.dumps({"status": "ok"}))
    # the notebook takes the profile's defaults: give it the fixture's limit through the marker check
    for marker in (run_dir / "06_eval" / "lm_eval").glob("*/*/zagreus_eval.json"):
        data = json.loads(marker.read_text())
        data["limit"] = None
        marker.write_text(json.dumps(data))
    out = tmp_path / "06_eval.ipynb"
    pm.execute_notebook(str(nb_path), str(out), parameters={"run_dir": str(run_dir)}, kernel_name="python3",
                        progress_bar=False, cwd=str(tmp_path))
    text = out.read_text()
    assert "the run" in text and "learning" in text
    assert (run_dir / "06_eval" / "results.csv").is_file()


def test_array_task_with_an_unreadable_plan_is_one_clear_line(tmp_path):
    import sys

    bad = tmp_path / "plan.json"
    bad.write_text("{not json")
    for plan in (tmp_path / "missing.json", bad):
        cp = subprocess.run([sys.executable, "-m", "zagreus_utils.stages.evaluation", "array-task", "--plan", str(plan),
                             "--index", "0"], capture_output=True, text=True, cwd=paths.REPO_ROOT,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(paths.REPO_ROOT)] + sys.path)})
        assert cp.returncode == 1 and "Traceback" not in cp.stderr, cp.stderr
        assert cp.stderr.startswith(f"error: cannot read the eval plan {plan}") and "rerun it" in cp.stderr
