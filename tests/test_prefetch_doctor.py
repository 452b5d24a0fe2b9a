"""`zagreus prefetch --dry-run` lists, offline, what the full profile reads at run time; `zagreus doctor`
checks this machine and names the fix of each failure (here: no GPU, no flash-attn, empty caches)."""
import pytest

import cluster_env
from zagreus_utils import cli
from zagreus_utils.stages import data
from zagreus_utils.cluster import prefetch
from zagreus_utils.pipeline.spec import load_spec

PT_TASKS = {"assin2_rte", "assin2_sts", "bluex", "enem_challenge", "faquad_nli", "hatebr_offensive", "oab_exams",
            "portuguese_hate_speech", "tweetsentbr"}


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("NLTK_DATA", str(tmp_path / "nltk"))
    return tmp_path


def _cli(argv, capsys):
    code = cli.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_prefetch_dry_run_lists_everything_the_full_profile_reads(empty_caches, capsys):
    code, out, _ = _cli(["prefetch", "--profile", "full", "--languages", "ita", "por", "--dry-run"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert any(ln.startswith("to fetch  tokenizer meta-llama/Llama-3.2-1B [tokenizer*") for ln in lines)
    for lang in ("ita", "por"):  # the same hub folders the data stage reads
        for source in load_spec(lang, "full").language.mixture:
            inp = data.hub_input(source)
            folder = inp.folder.removeprefix(f"hf://datasets/{source.dataset}").strip("/")
            assert f"dataset   {source.dataset} [{folder + '/' if folder else ''}{inp.glob}]" in out
    for repo in ("alexandrainst/m_mmlu", "alexandrainst/m_arc", "google/IFEval", "cais/mmlu", "allenai/ai2_arc"):
        assert f"to fetch  lm-eval   {repo}  (" in out
    assert f"to fetch  nltk      punkt_tab" in out and str(empty_caches / "nltk") in lines[0]
    external = {ln.split()[2]: ln for ln in lines if ln.startswith("install   external")}
    assert set(external) == PT_TASKS | {"ifeval-ita"}  # the report's 10 tasks lm-eval 0.4.11 lacks
    assert all("github.com/eduagarcia/lm-evaluation-harness-pt" in external[t] for t in PT_TASKS)
    assert "mii-llm" in external["ifeval-ita"] and "--include_path" in external["ifeval-ita"]


def test_prefetch_dry_run_sees_what_is_already_cached(empty_caches, capsys):
    (empty_caches / "nltk" / "tokenizers" / "punkt_tab" / "english").mkdir(parents=True)
    repo = empty_caches / "hf" / "hub" / "models--meta-llama--Llama-3.2-1B"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("a" * 40)
    (repo / "snapshots" / ("a" * 40)).mkdir(parents=True)
    (repo / "snapshots" / ("a" * 40) / "tokenizer.json").write_text("{}")
    code, out, _ = _cli(["prefetch", "--profile", "full", "--languages", "ita", "--dry-run"], capsys)
    assert code == 0
    assert "cached    tokenizer meta-llama/Llama-3.2-1B" in out and "cached    nltk      punkt_tab" in out
    assert "to fetch  lm-eval   google/IFEval" in out


def test_prefetch_refuses_to_download_offline_with_one_line(empty_caches, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = _cli(["prefetch", "--profile", "full", "--languages", "ita"], capsys)
    assert code == 2 and err.startswith("error: HF_HUB_OFFLINE=1: prefetch downloads; run it on a login node")


def test_smoke_profile_reads_nothing_from_the_network(empty_caches):
    assert prefetch.items("smoke", ["ita", "por"]) == []  # generated corpus, local BPE, held-out tasks


def _checks(out: str) -> dict[str, list[str]]:
    found, name = {}, None
    for ln in out.splitlines():
        if ln.startswith(("ok ", "FAIL", "warn")):
            name = ln[6:].split(":")[0]
            found[name] = [ln]
        elif ln.startswith("      fix: ") and name:
            found[name].append(ln)
    return found


def test_doctor_without_a_train_env_names_make_train_env(empty_caches, capsys, monkeypatch):
    monkeypatch.setenv("ZAGREUS_TRAIN_ENV", str(empty_caches / "no-env"))
    code, out, _ = _cli(["doctor", "--profile", "full", "--languages", "ita"], capsys)
    assert code == 1
    checks = _checks(out)
    assert checks["train env"] == [f"FAIL  train env: no training environment at {empty_caches / 'no-env'}",
                                   f"      fix: make train-env TRAIN_ENV={empty_caches / 'no-env'}   "
                                   "(with the CUDA module loaded; README, cluster)"]
    assert checks["kit torch"][0].startswith("ok    kit torch: 2.13.0")
    assert checks["cache nltk punkt_tab"][1] == ("      fix: zagreus prefetch --profile full --languages ita   "
                                                 "(on a login node)")
    assert checks["task ifeval-ita"][0].startswith("warn")
    assert "Slurm" in checks and out.splitlines()[-1].endswith("failed")


def test_doctor_in_the_cpu_train_env_fails_on_gpus_and_flash_attn_with_the_fix(empty_caches, capsys, monkeypatch):
    env = cluster_env.python().parent.parent  # skips unless ZAGREUS_TRAIN_ENV is set (CI sets it)
    monkeypatch.setenv("ZAGREUS_TRAIN_ENV", str(env))
    code, out, _ = _cli(["doctor", "--profile", "full", "--languages", "ita"], capsys)
    checks = _checks(out)
    assert code == 1
    assert checks["train env"][0] == f"ok    train env: {env}"
    assert checks["train env datatrove loader"][0].startswith("ok")  # the avoid-s3 signature
    assert checks["train env nanotron"][0].startswith("ok")
    assert checks["train env commits"][0] == ("ok    train env commits: nanotron 2411b022 (pinned 2411b022), "
                                              "datatrove 2c895af7 (pinned 2c895af7)")
    assert checks["train env run_train.py"][0].startswith("ok")
    assert checks["train env flash-attn"][0].startswith("FAIL") and "build it without CPU_ONLY: make train-env" in checks["train env flash-attn"][1]
    assert checks["GPUs"][0] == "FAIL  GPUs: 0 CUDA device(s) visible to the train env"
    assert "srun --gres=gpu:1" in checks["GPUs"][1]


def _cache_dataset(hub: "Path", repo: str, files: list[str], text_key: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = hub / ("datasets--" + repo.replace("/", "--"))
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text("b" * 40)
    for f in files:
        path = root / "snapshots" / ("b" * 40) / f
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({text_key: ["un documento di prova " * 20]}), path)


def test_offline_data_stage_reads_the_prefetched_shards_or_names_prefetch(empty_caches, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = load_spec("ita", "full")
    with pytest.raises(Exception, match=r"zagreus prefetch --profile full --languages ita` on a login node"):
        data.plan_inputs(spec, None)
    hub = empty_caches / "hf" / "hub"
    for source in spec.language.mixture:  # the files `zagreus prefetch` would have fetched
        pattern = prefetch.source_item(source).patterns[0]
        shard = pattern.replace("**/", "").replace("*/", "python/").replace("*.parquet", "000_00000.parquet")
        _cache_dataset(hub, source.dataset, [shard], data.hub_input(source).text_key)
    inputs = data.plan_inputs(spec, None)
    assert [inp.local for inp in inputs] == [True] * len(inputs)
    snap = hub / "datasets--HuggingFaceFW--fineweb-2" / "snapshots" / ("b" * 40)
    assert inputs[1].folder == str(snap / "data" / "ita_Latn" / "train")
