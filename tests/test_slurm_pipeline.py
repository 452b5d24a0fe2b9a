"""End-to-end on a real Slurm: `zagreus run --profile smoke --languages ita --launcher slurm`.

Marked `slurm` (and skipped when no cluster answers: start the local one with
`sudo slurm/local-cluster/start.sh`; CI does). Nothing stands in for Slurm: datatrove's
SlurmPipelineExecutor submits the data and tokenization arrays, the pretraining sbatch script runs
`srun torchrun --nproc_per_node 2 -m zagreus_utils.model.trainer` (DDP over gloo), SFT runs axolotl as a
job, the eval is an array over the checkpoints. The pretraining job is cancelled mid-run with
`scancel` and the rerun resumes from the last checkpoint. The files each stage leaves are compared
with a local-launcher run of the same stages (data and tokenization run both ways; the later
stages against the files the local launcher is known to write).

A `full`-profile check rides along: its sbatch scripts pass `sbatch --test-only` against the
8 x 8-GPU `boost_usr_prod` shape partition (start.sh with ZAGREUS_SLURM_SHAPE=8x8).
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from zagreus_utils.pipeline import paths, stages
from zagreus_utils.cluster import slurm

AVAILABLE = slurm.cluster_available()

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(not AVAILABLE,
                       reason="no Slurm cluster answers (sbatch not on PATH or sinfo fails); start one with "
                              "`sudo slurm/local-cluster/start.sh` and `source /tmp/zagreus-slurm/env.sh`"),
]

SLURM_ONLY = re.compile(r"(^|/)(slurm_logs|launch_script\.slurm|executor\.pik|ranks_to_run\.json|slurm/|"
                        r"slurm-\d+\.out|slurm_job\.json|dry_run\.json)")


def _env(workdir: Path, **extra) -> dict:
    env = {**os.environ, **slurm.environ(), "ZAGREUS_RUNS": str(workdir / "runs"),
           "ZAGREUS_REPORT_DIR": str(workdir / "report"), **extra}
    env["PYTHONPATH"] = os.pathsep.join([str(paths.REPO_ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    return env


def _zagreus(workdir: Path, *args, timeout: float = 1500, **extra) -> subprocess.CompletedProcess:
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "zagreus_utils.cli", "run", "--profile", "smoke", "--languages",
                          "ita", "--quiet", *args], capture_output=True, text=True, env=_env(workdir, **extra),
                         timeout=timeout)
    out.seconds = time.monotonic() - t0
    return out


def _manifest(workdir: Path, stage: str, root: str = "runs") -> dict:
    folder = workdir / root / "smoke" / ("ita" if stage != "07_plots" else "") / stage
    return json.loads((folder / "manifest.json").read_text())


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def _comparable(names: set[str]) -> set[str]:
    """File names a launcher does not decide: no logs, no Slurm-only files, no datatrove task logs."""
    out = set()
    for n in names:
        if SLURM_ONLY.search(n) or n.startswith("logs/") or n in ("manifest.json", "launch.json"):
            continue
        out.add(n)
    return out


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("slurm-e2e")


@pytest.fixture(scope="module")
def data_stages(workdir):
    out = _zagreus(workdir, "--launcher", "slurm", "--stages", "data", "tokenization", "--no-report")
    assert out.returncode == 0, out.stdout + out.stderr
    local = _zagreus(workdir / "local", "--launcher", "local", "--stages", "data", "tokenization", "--no-report")
    assert local.returncode == 0, local.stdout + local.stderr
    return out


@pytest.mark.timeout(900)
def test_datatrove_stages_run_as_slurm_arrays_and_write_what_local_writes(data_stages, workdir):
    for stage in ("01_data", "02_tokenization"):
        m = _manifest(workdir, stage)
        assert m["status"] == "ok" and m["launcher"] == "slurm" and m["launcher_requested"] == "slurm"
        jobs = m["slurm_jobs"]
        assert jobs and all(j["state"] == "COMPLETED" and j["job_id"].isdigit() for j in jobs), jobs
        folder = workdir / "runs" / "smoke" / "ita" / stage
        local = workdir / "local" / "runs" / "smoke" / "ita" / stage
        assert _comparable(_files(folder)) == _comparable(_files(local)), stage
        assert _manifest(workdir / "local", stage)["launcher"] == "local"
        logs = list((folder / "logs").glob("*/slurm_logs/*.out"))
        assert logs, "datatrove's Slurm logs belong under the stage's logs/<job>/slurm_logs/"
    assert [j["name"] for j in _manifest(workdir, "01_data")["slurm_jobs"]] == [
        "filter", "minhash-buckets", "minhash-cluster", "minhash-filter"]
    # the same documents survive either way (the pipelines are deterministic)
    s_sum = json.loads((workdir / "runs/smoke/ita/02_tokenization/tokenized/summary.json").read_text())
    l_sum = json.loads((workdir / "local/runs/smoke/ita/02_tokenization/tokenized/summary.json").read_text())
    assert {k: v["documents"] for k, v in s_sum["sources"].items()} == \
        {k: v["documents"] for k, v in l_sum["sources"].items()}


def _wait(predicate, limit: float, what: str, proc=None):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended (exit {proc.returncode}) before {what}:\n"
                                 + proc.stdout.read() + proc.stderr.read())
        time.sleep(1)
    raise AssertionError(f"timed out after {limit:.0f}s waiting for {what}")


@pytest.mark.timeout(1200)
def test_pretraining_job_cancelled_mid_run_resumes_on_rerun(data_stages, workdir):
    stage = workdir / "runs" / "smoke" / "ita" / "03_pretraining"
    cmd = [sys.executable, "-m", "zagreus_utils.cli", "run", "--profile", "smoke", "--languages", "ita", "--quiet",
           "--launcher", "slurm", "--stages", "pretraining", "--no-report"]
    # a 0.3 s pause per step (ZAGREUS_STEP_DELAY reaches the job: sbatch exports the environment)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(workdir, ZAGREUS_STEP_DELAY="0.3"))
    try:
        job_id = _wait(lambda: (stage / "slurm_job.json").is_file()
                       and json.loads((stage / "slurm_job.json").read_text())["job_id"], 300, "the submission", proc)
        _wait(lambda: (stage / "checkpoints" / "checkpoint-100" / "trainer_state.json").is_file(), 600,
              "checkpoint-100", proc)
        assert not (stage / "checkpoints" / "checkpoint-400").exists()
        slurm.cancel(job_id)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    m = _manifest(workdir, "03_pretraining")
    assert m["status"] == "failed" and m["slurm_jobs"][0]["state"] == "CANCELLED"
    assert f"Slurm job {job_id} ended CANCELLED" in m["error"], m["error"]
    assert f"last lines of {stage / f'slurm-{job_id}.out'}" in (stage / "03_pretraining.ipynb").read_text()

    t0 = time.monotonic()
    rerun = _zagreus(workdir, "--launcher", "slurm", "--stages", "pretraining", "--no-report")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    summary = json.loads((stage / "pretraining.json").read_text())
    assert summary["status"] == "resumed" and summary["steps"] == 400, summary
    done = int(summary["resumed_from"].rsplit("-", 1)[1])
    assert done >= 100 and summary["slurm_job_id"] != job_id
    steps = [json.loads(line)["step"] for line in (stage / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 401)), "metrics.jsonl: every step once, the cancelled tail dropped"
    assert [p.name for p in sorted((stage / "checkpoints").glob("checkpoint-*"))] == [
        f"checkpoint-{s}" for s in (100, 200, 300, 400)]
    m = _manifest(workdir, "03_pretraining")
    assert m["status"] == "ok" and m["launcher"] == "slurm" and m["slurm_jobs"][0]["state"] == "COMPLETED"
    print(f"pretraining rerun (resume from step {done}) took {time.monotonic() - t0:.0f} s")
    # the files of the local launcher (trainer.py writes the same ones whichever process runs it)
    names = _files(stage)
    for name in ("nanotron_config.yaml", "pretraining.sbatch", "preflight.json", "pretraining.json", "metrics.jsonl",
                 "outputs.json", "checkpoints/run.json", "checkpoints/checkpoint-400/config.json",
                 "checkpoints/checkpoint-400/model.safetensors", "checkpoints/checkpoint-400/trainer_state.json"):
        assert name in names, name
    sbatch_text = (stage / "pretraining.sbatch").read_text()
    assert "srun --kill-on-bad-exit=1 torchrun" in sbatch_text and "GPUS_PER_NODE=2" in sbatch_text


@pytest.mark.timeout(1800)
def test_remaining_stages_and_the_report_say_which_launcher_ran(data_stages, workdir):
    pre = workdir / "runs" / "smoke" / "ita" / "03_pretraining" / "manifest.json"
    if not pre.is_file() or json.loads(pre.read_text())["status"] != "ok":
        pytest.skip("the pretraining test did not leave a finished stage")
    out = _zagreus(workdir, "--launcher", "slurm")
    assert out.returncode == 0, out.stdout + out.stderr
    expected = {"01_data": "slurm", "02_tokenization": "slurm", "03_pretraining": "slurm",
                "04_conversion": "local (in-process)", "05_sft": "slurm", "06_eval": "slurm",
                "07_plots": "local (in-process)"}
    for stage in stages.select(None):  # the default run: the optional stages run only when named
        m = _manifest(workdir, stage.name)
        assert m["status"] == "ok", (stage.name, m.get("error"))
        assert m["launcher"] == expected[stage.name], (stage.name, m["launcher"])
    sft = workdir / "runs" / "smoke" / "ita" / "05_sft"
    for name in ("logs/preprocess.log", "logs/train.log", "model/config.json", "sft.sbatch"):
        assert (sft / name).is_file(), name
    ev = _manifest(workdir, "06_eval")["slurm_jobs"][0]
    assert ev["state"] == "COMPLETED" and len(ev["tasks"]) == 5  # 4 checkpoints + the SFT model
    html = (workdir / "report" / "smoke" / "index.html").read_text()
    assert "local (in-process)" in html and "<td>slurm</td>" in html


# --- the full profile's scripts against the report's cluster shape ----------------------------

def _shape_partition() -> bool:
    if not AVAILABLE:
        return True  # the module-level skip speaks
    try:
        return any(n.partition == "boost_usr_prod" for n in slurm._sinfo_nodes(None))
    except Exception:
        return False


@pytest.mark.skipif(not _shape_partition(), reason="no boost_usr_prod partition: start the local cluster with "
                    "ZAGREUS_SLURM_SHAPE=8x8 ZAGREUS_SLURM_SHAPE_PARTITION=boost_usr_prod")
@pytest.mark.timeout(300)
def test_full_profile_scripts_pass_sbatch_test_only_on_the_reports_shape(tmp_path, monkeypatch):
    """Nodes, GPUs, CPUs, time and partition of the full profile's pretraining, SFT, eval and
    datatrove scripts are checked by the scheduler. Not checked: the account (YOUR_ACCOUNT) - the
    local cluster has no accounting database (slurmdbd), so Slurm accepts any account."""
    from types import SimpleNamespace

    from datatrove.pipeline.readers import JsonlReader

    from zagreus_utils.stages import evaluation, sft
    from zagreus_utils.cluster import executors, sbatch
    from zagreus_utils.pipeline.spec import load_spec

    monkeypatch.setattr(os, "environ", {**os.environ, **slurm.environ()})
    spec = load_spec("ita", "full")
    scripts = {}
    pt = sbatch.render(spec, "configs/nanotron/zagreus_350M_ita.yaml", output=str(tmp_path / "pt-%j.out"))
    scripts["pretraining"] = sbatch.write(pt, tmp_path / "pretraining.sbatch")
    plan = SimpleNamespace(config_path=paths.CONFIGS / "axolotl" / "zagreus_sft_ita.yaml", out_dir=tmp_path / "sft")
    scripts["sft"] = Path(sft.slurm(plan, spec, dry_run=True, venv=None)["path"])
    ev_plan = SimpleNamespace(language="ita", profile="full", overrides={},
                              models=[SimpleNamespace(name=f"m{i}", kind="base", step=i) for i in range(3)])
    ev = tmp_path / "eval.sbatch"
    ev.write_text(evaluation.slurm_script(ev_plan, tmp_path / "plan.json", spec=spec).text)
    scripts["eval"] = ev
    ex = executors.make_executor(spec, "slurm", [JsonlReader(str(tmp_path / "in"))], job_name="ita-tokenize",
                                 logging_dir=tmp_path / "dt", tasks=4)
    dt = tmp_path / "datatrove.sbatch"
    dt.write_text(executors.slurm_dry_run(ex))
    scripts["datatrove"] = dt
    for name, script in scripts.items():
        text = script.read_text()
        assert "#SBATCH --partition=boost_usr_prod" in text, name
        assert "#SBATCH --account=YOUR_ACCOUNT" in text, name
        message = slurm.submit(script, test_only=True)
        assert "to start at" in message and "partition boost_usr_prod" in message, (name, message)
    assert "gpu:8" in scripts["pretraining"].read_text() and "--nodes=8" in scripts["pretraining"].read_text()
    assert "#SBATCH --gres=gpu:0" in scripts["datatrove"].read_text()
    # and one GPU node too many is refused, as on the real cluster
    too_big = tmp_path / "nine.sbatch"
    too_big.write_text(scripts["pretraining"].read_text().replace("#SBATCH --nodes=8", "#SBATCH --nodes=9"))
    with pytest.raises(Exception, match="Requested node configuration is not available"):
        slurm.submit(too_big, test_only=True)
