"""Stage 01 (zagreus_utils.stages.data) and the datatrove executors (zagreus_utils.cluster.executors).

Tiny hand-made sources with planted documents: each filter must remove exactly what was planted
for it (and nothing else), MinHash must remove one of each planted near-duplicate pair, bad inputs
must be refused with a clear message before any pipeline runs, and a rerun must not redo finished
datatrove tasks.
"""

import json
import random
import re
import subprocess
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import stage_ctx
from zagreus_utils.stages import data, data_filters, data_inputs, data_report
from zagreus_utils.cluster import executors
from zagreus_utils.pipeline.errors import ZagreusError
from zagreus_utils.pipeline.spec import load_spec

WORDS = ("river mountain capital country language people city valley forest ocean island summer winter "
         "morning evening market bridge garden window teacher student history science music village "
         "harbour castle church museum library station kitchen animal horse rabbit eagle salmon apple "
         "orange lemon bread cheese butter honey water stone silver golden yellow purple green brown "
         "quiet gentle rapid ancient modern northern southern eastern western little famous humble "
         "travel wander gather listen answer follow remember carry build paint write read study").split()


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def _prose(rng: random.Random, sentences: int = 6) -> str:
    return " ".join(_sentence(rng, rng.randint(6, 12)) for _ in range(sentences))


def _code(rng: random.Random, k: int) -> str:
    body = "\n".join(f"    value_{i} = compute_{rng.choice(WORDS)}(argument_{i}, {rng.randint(0, 99)})"
                     for i in range(rng.randint(4, 9)))
    return f"def function_{k}(argument):\n    \"\"\"{_sentence(rng, 8)}\"\"\"\n{body}\n    return value_0\n"


PLANTED = {  # source -> {doc id: step that must remove it}
    "fineweb": {"short-1": "min_chars", "numbers-1": "quality", "longwords-1": "quality",
                "repeat-1": "repetition"},
    "fineweb2": {"short-2": "min_chars", "repeat-2": "repetition"},
    "finepdfs": {"numbers-3": "quality"},
    "starcoderdata": {"short-code": "min_chars", "longline": "quality", "symbols": "quality"},
}
NEAR_DUPLICATES = {"fineweb": ("dup-a", "dup-b"), "finepdfs": ("dup-c", "dup-d")}


def make_sources(root: Path, seed: int = 0, normal: int = 60) -> Path:
    """Four sources in the layout of the real ones (parquet shards with a ``text`` column)."""
    rng = random.Random(seed)
    planted_text = {
        "short-1": "Too short.", "short-2": "Breve.", "short-code": "x = 1\n",
        "numbers-1": " ".join(str(rng.randint(10, 99999)) for _ in range(40)),
        "numbers-3": " ".join(f"{rng.randint(1, 9)}.{rng.randint(0, 99)}" for _ in range(60)),
        "longwords-1": " ".join("x" * rng.randint(14, 20) + rng.choice(WORDS) for _ in range(20)),
        "repeat-1": "\n".join(["Buy the best river stones at the market today."] * 12),
        "repeat-2": "\n".join(["Compra le migliori pietre del fiume al mercato oggi."] * 12),
        "longline": "DATA = '" + "ab" * 900 + "'\n" + _code(rng, 0),
        "symbols": "\n".join(["{}[]()<>;;;; ==== ++++ ----"] * 40),
    }
    for sid in ("fineweb", "fineweb2", "finepdfs", "starcoderdata"):
        rows = [{"id": f"{sid}-{k:03d}", "text": _code(rng, k) if sid == "starcoderdata" else _prose(rng)}
                for k in range(normal)]
        rows += [{"id": pid, "text": planted_text[pid]} for pid in PLANTED[sid]]
        if sid in NEAR_DUPLICATES:
            a, b = NEAR_DUPLICATES[sid]
            base = _prose(rng, 14)
            words = base.split()
            words[len(words) // 2] = "different"
            rows += [{"id": a, "text": base}, {"id": b, "text": " ".join(words)}]
        rng.shuffle(rows)
        folder = root / sid
        folder.mkdir(parents=True)
        half = len(rows) // 2
        for k, part in enumerate((rows[:half], rows[half:])):
            pq.write_table(pa.table({"text": [r["text"] for r in part], "id": [r["id"] for r in part],
                                     "lang": ["x"] * len(part)}), folder / f"part-{k:05d}.parquet")
    return root


@pytest.fixture(scope="module")
def spec():
    return load_spec("ita", "smoke")


@pytest.fixture(scope="module")
def stage(tmp_path_factory, spec):
    root = tmp_path_factory.mktemp("data")
    sources = make_sources(root / "sources")
    result = data.run(stage_ctx("data", root), sources_dir=sources)
    return root, sources, result


def _removed_ids(out: Path, sid: str, step: str) -> set[str]:
    ids = set()
    for f in (out / "removed" / sid / step).glob("*.jsonl"):
        ids |= {json.loads(line)["id"] for line in f.read_text().splitlines() if line.strip()}
    return ids


def _clean_ids(out: Path, sid: str) -> set[str]:
    return {i for f in (out / "clean" / sid).glob("*.parquet") for i in pq.read_table(f).column("id").to_pylist()}


# --- filters and dedup -----------------------------------------------------------------------

def test_each_filter_removes_exactly_what_was_planted(stage):
    root, _, _ = stage
    out = root / "01_data"
    for sid, planted in PLANTED.items():
        for step in ("min_chars", "quality", "repetition"):
            want = {pid for pid, s in planted.items() if s == step}
            assert _removed_ids(out, sid, step) == want, (sid, step)
        clean = _clean_ids(out, sid)
        assert not clean & set(planted), (sid, clean & set(planted))
        assert {f"{sid}-{k:03d}" for k in range(60)} <= clean, f"{sid}: a normal document was removed"


def test_minhash_removes_one_of_each_planted_near_duplicate_pair(stage):
    root, _, _ = stage
    out = root / "01_data"
    for sid in PLANTED:
        removed = _removed_ids(out, sid, "minhash")
        if sid in NEAR_DUPLICATES:
            pair = set(NEAR_DUPLICATES[sid])
            assert len(removed) == 1 and removed <= pair, (sid, removed)
            assert len(_clean_ids(out, sid) & pair) == 1
        else:
            assert removed == set(), (sid, removed)


def test_stats_per_source_and_step_add_up_with_examples(stage, spec):
    root, _, result = stage
    steps = result.frames["steps"]
    assert list(steps.columns) == data_report.STEP_COLUMNS
    for sid in PLANTED:
        rows = steps[steps.source == sid].set_index("step")
        read, clean = rows.loc["read"], rows.loc["clean"]
        planted = len(PLANTED[sid]) + (2 if sid in NEAR_DUPLICATES else 0)
        assert read.documents == 60 + planted
        assert clean.documents == read.documents - len(PLANTED[sid]) - (1 if sid in NEAR_DUPLICATES else 0)
        removed = rows.drop(index=["read", "clean"])
        assert removed.removed_documents.sum() == read.documents - clean.documents
        assert removed.removed_bytes.sum() == read.bytes - clean.bytes
        assert clean.est_tokens == clean.bytes // 4
        assert ("repetition" in rows.index) == (sid != "starcoderdata")  # prose-only filter
    ex = result.frames["removed_examples"]
    quality = ex[(ex.source == "starcoderdata") & (ex.step == "quality")]
    assert set(quality.id) == {"longline", "symbols"}
    assert quality.reason.str.contains("line of|alphanumeric").all()
    assert ex[(ex.source == "fineweb") & (ex.step == "min_chars")].reason.iloc[0] == "fewer than 40 characters"
    # the files later stages and the report read
    out = root / "01_data"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sources"]["fineweb"]["clean"] == "clean/fineweb"
    clean_row = steps[(steps.source == "fineweb") & (steps.step == "clean")]
    assert summary["sources"]["fineweb"]["documents"] == int(clean_row.documents.iloc[0])
    index = json.loads((out / "outputs.json").read_text())
    assert {f["id"] for f in index["figures"]} == {"mixture", "removed"}
    assert {t["id"] for t in index["tables"]} == {"mixture", "steps", "removed_examples"}
    for item in index["figures"] + index["tables"]:
        for key in ("png", "svg", "html", "csv"):
            if key in item:
                assert (out / item[key]).is_file()
    assert pd.read_csv(out / "stats" / "steps.csv").shape == steps.shape


def test_mixture_table_against_the_reports_budget(stage, spec):
    _, _, result = stage
    mix = result.frames["mixture"].set_index("group")
    assert mix.loc["English", "budget_tokens"] == 400e9 and mix.loc["code", "budget_tokens"] == 200e9
    assert mix.loc["Italian (target)", "budget_share"] == 0.4
    assert mix.loc["English", "report_printed_tokens"] == 350e9
    assert pd.isna(mix.loc["Italian (target)", "report_printed_tokens"])  # the report prints none
    assert abs(mix.drop(index="total").run_share.sum() - 1) < 1e-3


def test_filter_rules_directly():
    from datatrove.data import Document

    def doc(t):
        return Document(text=t, id="x")

    assert data_filters.MinChars(10)(doc("0123456789")) is True
    assert data_filters.MinChars(10)(doc("  short  ")) == (False, "fewer than 10 characters")
    prose = data_filters.ProseQuality()
    assert prose(doc("The river flows through the ancient valley every spring.")) is True
    assert prose(doc("12 13 14 15 16 17 18 nineteen"))[0] is False
    assert "mean word length" in prose(doc("a b c d e f g h"))[1]
    code = data_filters.CodeQuality()
    assert code(doc("def f(x):\n    return x + 1\n")) is True
    assert "line of" in code(doc("x = '" + "a" * 2000 + "'"))[1]
    assert "alphanumeric" in code(doc("\n".join(["{}()[];;"] * 10)))[1]
    words = data_filters.RegexWordTokenizer()
    assert words.word_tokenize("L'acqua è blu, 42 volte!") == ["L", "acqua", "è", "blu", "42", "volte"]
    assert words.sent_tokenize("Una frase. Due frasi! Tre?") == ["Una frase.", "Due frasi!", "Tre?"]


# --- reruns ----------------------------------------------------------------------------------

def test_rerun_after_a_failure_does_not_redo_finished_tasks(stage, spec):
    root, sources, _ = stage
    out = root / "01_data"
    filtered = sorted((out / "work").glob("*/filtered/*.parquet"))
    before = {p: p.stat().st_mtime_ns for p in filtered}
    clean_before = {sid: _clean_ids(out, sid) for sid in PLANTED}
    # the last job "failed" in its first task: no completion marker, that task's outputs gone
    job = out / "logs" / "minhash-filter"
    plan = json.loads((job / "executor.json").read_text())["pipeline"][0]["plan"]
    assert len(plan) == 2  # locally: one task per worker, sources packed by size
    lost = {p for sid, k, _ in plan[0] for p in (out / "clean" / sid).glob(f"*_{k:05d}_*.parquet")}
    kept = {p: p.stat().st_mtime_ns for p in (out / "clean").glob("*/*.parquet") if p not in lost}
    assert lost and kept
    (job / "completions" / "00000").unlink()
    for p in lost:
        p.unlink()
    data.run(stage_ctx("data", root), sources_dir=sources)
    assert {p: p.stat().st_mtime_ns for p in filtered} == before, "the finished filter tasks ran again"
    assert {p: p.stat().st_mtime_ns for p in kept} == kept, "a finished MinHash filter task ran again"
    assert {sid: _clean_ids(out, sid) for sid in PLANTED} == clean_before
    assert len(list((job / "completions").iterdir())) == len(plan)


def test_changed_configuration_starts_fresh(tmp_path):
    sources = make_sources(tmp_path / "sources", normal=20)
    out = tmp_path / "01_data"
    data.run(stage_ctx("data", tmp_path, {"data.dedup": "none"}), sources_dir=sources)
    assert not (out / "removed" / "fineweb" / "minhash").exists()
    assert "short-1" in _removed_ids(out, "fineweb", "min_chars")
    r = data.run(stage_ctx("data", tmp_path, {"data.dedup": "none", "data.min_doc_chars": 5}), sources_dir=sources)
    assert "short-1" in _clean_ids(out, "fineweb")  # 10 characters >= 5: kept, not the stale result
    assert r.frames["steps"].query("source == 'fineweb' and step == 'min_chars'").removed_documents.iloc[0] == 0


# --- bad inputs ------------------------------------------------------------------------------

def test_missing_source_folder_is_refused_before_any_work(tmp_path, spec):
    sources = make_sources(tmp_path / "sources", normal=5)
    import shutil

    shutil.rmtree(sources / "finepdfs")
    with pytest.raises(ZagreusError) as err:
        data.run(stage_ctx("data", tmp_path, out_dir=tmp_path / "out"), sources_dir=sources)
    assert "'finepdfs'" in str(err.value) and str(sources / "finepdfs") in str(err.value)
    assert "does not exist" in str(err.value)
    assert not (tmp_path / "out" / "logs").exists() and not (tmp_path / "out" / "clean").exists()


def test_empty_source_folder_is_refused(tmp_path, spec):
    sources = make_sources(tmp_path / "sources", normal=5)
    for f in (sources / "fineweb2").iterdir():
        f.unlink()
    with pytest.raises(ZagreusError, match=r"source 'fineweb2': input folder .*fineweb2 is empty"):
        data.run(stage_ctx("data", tmp_path, out_dir=tmp_path / "out"), sources_dir=sources)
    assert not (tmp_path / "out" / "logs").exists()


def test_parquet_without_text_column_names_file_and_columns(tmp_path, spec):
    sources = make_sources(tmp_path / "sources", normal=5)
    bad = sources / "starcoderdata" / "part-00001.parquet"
    pq.write_table(pa.table({"content": ["print(1)"], "id": ["a"]}), bad)
    with pytest.raises(ZagreusError) as err:
        data.run(stage_ctx("data", tmp_path, out_dir=tmp_path / "out"), sources_dir=sources)
    msg = str(err.value)
    assert str(bad) in msg and "has no 'text' column" in msg and "content, id" in msg
    assert not (tmp_path / "out" / "logs").exists()


def test_hub_sources_map_to_the_datasets_files():
    full = load_spec("ita", "full")
    got = {s.id: data_inputs.hub_input(s) for s in full.language.mixture}
    assert got["fineweb"].folder == "hf://datasets/HuggingFaceFW/fineweb/sample/350BT"
    assert got["fineweb2"].folder == "hf://datasets/HuggingFaceFW/fineweb-2/data/ita_Latn/train"
    assert got["finepdfs"].folder == "hf://datasets/HuggingFaceFW/finepdfs/data/ita_Latn/train"
    assert got["starcoderdata"].folder == "hf://datasets/bigcode/starcoderdata"
    assert got["starcoderdata"].glob == "*/*.parquet" and got["starcoderdata"].text_key == "content"
    assert all(not g.local for g in got.values())


def test_hub_profile_offline_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ZagreusError, match="offline.*--profile smoke"):
        data.run(stage_ctx("data", tmp_path, out_dir=tmp_path / "out", profile="full"))


# --- executors -------------------------------------------------------------------------------

def test_local_executor_from_the_profile(tmp_path, spec):
    from datatrove.executor import LocalPipelineExecutor

    ex = executors.make_executor(spec, "local", [], job_name="j", logging_dir=tmp_path / "logs", tasks=4)
    assert isinstance(ex, LocalPipelineExecutor)
    assert (ex.tasks, ex.workers) == (4, spec.profile.data.workers)
    assert ex.logging_dir.path == str(tmp_path / "logs") and ex.skip_completed
    one = executors.make_executor(spec, "local", [], job_name="j", logging_dir=tmp_path / "l2", tasks=1)
    assert one.workers == 1
    with pytest.raises(ZagreusError, match="unknown launcher 'ray'.*local, slurm"):
        executors.make_executor(spec, "ray", [], job_name="j", logging_dir=tmp_path)


SBATCH_LINE = re.compile(r"^#SBATCH --[a-z-]+(=[A-Za-z0-9_.,:/@%+=\-]+)?$")


def _script(spec, tmp_path, **kw):
    from datatrove.pipeline.readers import ParquetReader

    ex = executors.make_executor(spec, "slurm", [ParquetReader(str(tmp_path / "in"))], job_name="tokenize-fineweb",
                                 logging_dir=tmp_path / "logs", **kw)
    return ex, executors.slurm_dry_run(ex)


def test_slurm_dry_run_renders_the_reports_settings(tmp_path):
    full = load_spec("ita", "full")
    ex, script = _script(full, tmp_path)
    directives = dict(line[len("#SBATCH --"):].partition("=")[::2] for line in script.splitlines()
                      if line.startswith("#SBATCH"))
    assert directives["partition"] == "boost_usr_prod"
    assert directives["time"] == "24:00:00"
    assert directives["mem-per-cpu"] == "16G"
    assert directives["account"] == "YOUR_ACCOUNT"
    assert directives["gres"] == "gpu:0"
    assert directives["array"] == "0-0"  # tasks=1, workers=-1 (no limit), as in the report's script
    assert directives["output"].startswith(str(tmp_path / "logs" / "slurm_logs"))
    assert script.rstrip().endswith(f"launch_pickled_pipeline {tmp_path / 'logs' / 'executor.pik'}")
    # shell-safe: every directive is a plain token and bash parses the whole script
    for line in script.splitlines():
        if line.startswith("#SBATCH"):
            assert SBATCH_LINE.match(line), line
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    assert not (tmp_path / "logs" / "executor.pik").exists()  # nothing written, nothing submitted


def test_slurm_dry_run_equals_what_datatrove_submits(tmp_path, monkeypatch):
    import datatrove.executor.slurm as dslurm

    smoke = load_spec("ita", "smoke")
    ex, script = _script(smoke, tmp_path, tasks=3)
    submitted = []
    monkeypatch.setattr(dslurm, "launch_slurm_job", lambda contents, retriever, *args: submitted.append(
        (contents, args)) or "4242")
    ex.run()  # datatrove's own launch path, with sbatch replaced
    assert submitted[0][0] == script
    assert (tmp_path / "logs" / "launch_script.slurm").read_text() == script
    assert "--partition" not in script  # smoke sets no partition: the cluster default, no empty directive
    assert "#SBATCH --array=0-2%2" in script and "#SBATCH --time=00:10:00" in script
    assert "#SBATCH --mem-per-cpu=2G" in script and "--account" not in script


@pytest.mark.parametrize("key, value", [("slurm.account", "acct; rm -rf ~"), ("slurm.partition", "a b"),
                                        ("slurm.tokenization.gres", "gpu:0\nsrun evil"),
                                        ("slurm.tokenization.time", "1 day")])
def test_unsafe_slurm_values_are_refused(tmp_path, key, value):
    bad = load_spec("ita", "full", {key: value})
    with pytest.raises(ZagreusError, match=key.rsplit(".", 1)[-1]):
        _script(bad, tmp_path)


def test_fractional_memory_is_passed_in_megabytes(tmp_path):
    _, script = _script(load_spec("ita", "full", {"slurm.tokenization.mem_per_cpu_gb": 1.5}), tmp_path)
    assert "#SBATCH --mem-per-cpu=1536M" in script and "1.5G" not in script


def test_data_stage_slurm_launcher_writes_dry_run_scripts(tmp_path):
    sources = make_sources(tmp_path / "sources", normal=5)
    r = data.run(stage_ctx("data", tmp_path, {"data.source": "sample"}, out_dir=tmp_path / "out", launcher="slurm",
                           profile="full"), sources_dir=sources, dry_run=True)
    assert list(r.slurm_scripts) == ["filter", "minhash-buckets", "minhash-cluster", "minhash-filter"]
    assert "#SBATCH --array=0-7\n" in r.slurm_scripts["filter"]  # 2 shards x 4 sources
    assert "#SBATCH --array=0-55\n" in r.slurm_scripts["minhash-buckets"]  # 14 buckets x 4 sources
    assert "#SBATCH --array=0-3\n" in r.slurm_scripts["minhash-cluster"]
    assert all("#SBATCH --gres=gpu:0" in s and "#SBATCH --partition=boost_usr_prod" in s
               for s in r.slurm_scripts.values())
    assert "#SBATCH --job-name=ita-minhash-filter\n" in r.slurm_scripts["minhash-filter"]
    assert (tmp_path / "out" / "slurm" / "filter.sbatch").is_file()
    assert not (tmp_path / "out" / "clean").exists()  # a dry run processes nothing


def test_notebook_parameters_become_one_context(tmp_path):
    """The notebooks' ``overrides`` (a mapping, or its text from ``papermill -p``) and ``launcher``
    are checked once, by StageContext.create; the folder of the stage is its own under run_dir."""
    ctx = stage_ctx("data", tmp_path, "{data.min_doc_chars: 20}")
    assert ctx.overrides == {"data.min_doc_chars": 20} and ctx.spec.profile.data.min_doc_chars == 20
    assert ctx.out_dir == tmp_path.resolve() / "01_data" and not ctx.out_dir.exists()
    with pytest.raises(ZagreusError, match="overrides must be a mapping"):
        stage_ctx("data", tmp_path, "[1, 2]")
    with pytest.raises(ZagreusError, match="unknown launcher 'ray'.*local, slurm"):
        stage_ctx("data", tmp_path, launcher="ray")
