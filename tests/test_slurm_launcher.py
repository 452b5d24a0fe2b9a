"""The slurm launcher's pieces that run anywhere, without a Slurm cluster.

Rendering (the pretraining script of a CPU profile, the world size, pre-flight per launcher,
datatrove's packing), the launch record the runner copies into the manifest, and the job-state
handling of a datatrove stage against stub Slurm commands (a failed array raises with its id,
state and log tail, and the stats job waiting on it is cancelled). The same code against a real
cluster is tests/test_slurm_pipeline.py (marked ``slurm``).
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from zagreus_utils.cluster import executors, sbatch, slurm
from zagreus_utils.pipeline import manifest, runner, stages
from zagreus_utils.model import preflight
from zagreus_utils.pipeline.errors import ZagreusError
from zagreus_utils.pipeline.spec import load_spec


def test_cpu_profile_job_runs_procs_per_node_ranks_under_torchrun(tmp_path):
    spec = load_spec("ita", "smoke")
    assert sbatch.procs_per_node(spec) == 2 and sbatch.world_size(spec) == 2
    rendered = sbatch.render(spec, tmp_path / "cfg.yaml", entry="local", output=str(tmp_path / "slurm-%j.out"),
                             modules=(), nccl=(), extra_args=("--no-progress",))
    text = rendered.text
    assert "GPUS_PER_NODE=2   # no GPUs: 2 process(es) per node, DDP over gloo" in text
    assert f"-m zagreus_utils.model.trainer --config-file {tmp_path / 'cfg.yaml'} --no-progress" in text
    assert f"#SBATCH --output={tmp_path}/slurm-%j.out" in text and "#SBATCH --cpus-per-task=2" in text
    assert "--gres" not in text and "NCCL" not in text.split("set -euo pipefail")[1]
    full = load_spec("ita", "full")
    assert sbatch.procs_per_node(full) == 8 and sbatch.world_size(full) == 64
    from types import SimpleNamespace

    def fake(gpus, procs):
        req = SimpleNamespace(gpus_per_node=gpus, procs_per_node=procs, nodes=1)
        return SimpleNamespace(profile=SimpleNamespace(slurm=SimpleNamespace(pretraining=req),
                                                       hardware=SimpleNamespace(gpus_per_node=gpus, nodes=1)))

    with pytest.raises(ZagreusError, match="one process per GPU"):
        sbatch.procs_per_node(fake(8, 2))
    assert sbatch.procs_per_node(fake(8, 8)) == 8 and sbatch.procs_per_node(fake(0, None)) == 1
    with pytest.raises(ZagreusError, match="procs_per_node"):
        sbatch.procs_per_node(load_spec("ita", "smoke", {"slurm.pretraining.procs_per_node": 0}))


def test_preflight_world_size_depends_on_the_launcher():
    spec = load_spec("ita", "smoke")
    one = {"parallelism": {"dp": 1, "tp": 1, "pp": 1}}
    two = {"parallelism": {"dp": 2, "tp": 1, "pp": 1}}
    assert preflight.check_parallelism(spec, one, "local").ok  # one process on this machine
    assert not preflight.check_parallelism(spec, one, "slurm").ok  # the job starts 2 ranks
    assert preflight.check_parallelism(spec, two, "slurm").ok
    full = load_spec("ita", "full")
    assert preflight.check_parallelism(full, {"parallelism": {"dp": 64}}, "slurm").ok
    bad = preflight.check_parallelism(full, {"parallelism": {"dp": 32}}, "local")
    assert not bad.ok and "64 ranks" in bad.detail


def test_datatrove_jobs_are_packed_into_the_array_limit():
    assert executors.slurm_bins(load_spec("ita", "smoke")) == 2  # workers: 2
    assert executors.slurm_bins(load_spec("ita", "full")) is None  # workers: -1, one task per shard


def test_launch_record_reaches_the_manifest(tmp_path):
    folder = tmp_path / "03_x"
    rec = manifest.LaunchRecord(folder, "slurm")
    rec.job("pretraining", 12, "SUBMITTED")
    rec.job("pretraining", 12, "COMPLETED", seconds=3.5)
    data = manifest.read_launch(folder)
    assert data["jobs"] == [{"name": "pretraining", "job_id": "12", "state": "COMPLETED", "seconds": 3.5}]
    stage = stages.Stage("03_x", 3, "x", folder / "x.ipynb", ("language", "launcher"))
    t0 = time.perf_counter() - 5
    got = runner._launched(stage, folder, "slurm", t0)
    assert got["launcher"] == "slurm" and got["slurm_jobs"][0]["job_id"] == "12"
    # a stage without a launcher parameter runs in the notebook's process, whatever was asked
    plots = stages.Stage("07_p", 7, "p", tmp_path / "p.ipynb", ("languages",))
    assert runner._launched(plots, tmp_path / "07_p", "slurm", t0)["launcher"] == "local (in-process)"
    assert runner._launched(plots, tmp_path / "07_p", "local", t0)["launcher"] == "local"
    # an old launch.json (from an earlier run) does not count
    old = manifest.LaunchRecord(tmp_path / "04_c", "slurm")
    past = time.time() - 3600
    os.utime(old.path, (past, past))
    conv = stages.Stage("04_c", 4, "c", tmp_path / "c.ipynb", ("language", "launcher"))
    assert runner._launched(conv, tmp_path / "04_c", "local", time.perf_counter())["launcher"] == "local"


def _stub_slurm(bin_dir: Path, state_dir: Path, final: str = "FAILED", exit_code: str = "1:0") -> Path:
    """sbatch/squeue/sacct/scontrol/sinfo/scancel that play one failing datatrove array (job 501)
    and its stats job (502)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    scripts = {
        "sbatch": f'n=$(ls {state_dir} | grep -c sbatch); touch {state_dir}/sbatch$n; '
                  f'cat "${{@: -1}}" > {state_dir}/script$n; echo "Submitted batch job $((501 + n))"',
        "squeue": "exit 0",  # nothing queued: the jobs have ended
        "sacct": f'case "$*" in *501*) printf "501_0|COMPLETED|0:0||debug|vm\\n501_1|{final}|{exit_code}||debug|vm\\n";; '
                 '*) exit 0;; esac',
        "scontrol": f'case "$*" in *501*) echo "JobId=503 ArrayJobId=501 ArrayTaskId=1 JobState={final} '
                    f'ExitCode={exit_code} Partition=debug NodeList=vm StdOut={state_dir}/501_1.out";; *) exit 1;; esac',
        "sinfo": 'echo "vm|idle|none|debug*|2|1000|(null)"',
        "scancel": f'echo "$@" >> {state_dir}/scancel',
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/bash\n{body}\n")
        path.chmod(0o755)
    return bin_dir


def test_failed_datatrove_array_raises_with_job_id_state_and_log_tail(tmp_path, monkeypatch):
    from datatrove.pipeline.readers import JsonlReader

    state_dir = tmp_path / "state"
    state_dir.mkdir()
    slurm_logs = tmp_path / "logs" / "filter" / "slurm_logs"  # where datatrove's script sends each task's output
    slurm_logs.mkdir(parents=True)
    (slurm_logs / "501_1.out").write_text("".join(f"line {i}\n" for i in range(50)) + "ValueError: bad shard\n")
    bin_dir = _stub_slurm(tmp_path / "bin", state_dir)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "slurm.conf"))
    spec = load_spec("ita", "smoke")
    ex = executors.make_executor(spec, "slurm", [JsonlReader(str(tmp_path / "in"))], job_name="ita-filter",
                                 logging_dir=tmp_path / "logs" / "filter", tasks=2)
    rec = manifest.LaunchRecord(tmp_path, "slurm")
    with pytest.raises(slurm.JobFailed) as info:
        executors.run_slurm(ex, "filter", progress=False, launch=rec, poll=0.01)
    err = info.value
    assert err.job_id == "501" and err.state == "FAILED"
    text = str(err)
    assert "Slurm job 501 ended FAILED" in text and "failed tasks: 501_1 FAILED 1:0" in text
    assert f"last lines of {slurm_logs / '501_1.out'}" in text and "line 49" in text and "line 10\n" not in text
    assert "ValueError: bad shard" in text and "task logs in" in text and "a rerun skips" in text
    assert (state_dir / "scancel").read_text().split() == ["502"]  # the stats job would pend forever
    script = (state_dir / "script0").read_text()  # datatrove's own script, the profile's smoke settings
    assert "#SBATCH --array=0-1%2" in script and "#SBATCH --time=00:10:00" in script
    assert "--partition" not in script and "launch_pickled_pipeline" in script
    job = manifest.read_launch(tmp_path)["jobs"][0]
    assert (job["job_id"], job["state"], job["stats_job_id"]) == ("501", "FAILED", "502")


def test_completed_datatrove_tasks_are_not_submitted_again(tmp_path, monkeypatch):
    from datatrove.pipeline.readers import JsonlReader

    state_dir = tmp_path / "state"
    state_dir.mkdir()
    bin_dir = _stub_slurm(tmp_path / "bin", state_dir)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    logs = tmp_path / "logs" / "filter"
    for rank in range(2):  # datatrove's completion markers of an earlier run
        (logs / "completions").mkdir(parents=True, exist_ok=True)
        (logs / "completions" / f"{rank:05d}").write_text("")
    ex = executors.make_executor(load_spec("ita", "smoke"), "slurm", [JsonlReader(str(tmp_path / "in"))],
                                 job_name="ita-filter", logging_dir=logs, tasks=2)
    assert executors.run_slurm(ex, "filter", progress=False) is None
    assert not list(state_dir.glob("sbatch*"))


def test_drained_partition_is_refused_before_submission(tmp_path, monkeypatch):
    from datatrove.pipeline.readers import JsonlReader

    state_dir = tmp_path / "state"
    state_dir.mkdir()
    bin_dir = _stub_slurm(tmp_path / "bin", state_dir)
    (bin_dir / "sinfo").write_text('#!/bin/bash\necho "vm|drained|maintenance|debug*|2|1000|(null)"\n')
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    ex = executors.make_executor(load_spec("ita", "smoke"), "slurm", [JsonlReader(str(tmp_path / "in"))],
                                 job_name="ita-filter", logging_dir=tmp_path / "logs", tasks=2)
    with pytest.raises(ZagreusError, match="every node of partition debug is drained.*maintenance.*state=resume"):
        executors.run_slurm(ex, "filter", progress=False)
    assert not list(state_dir.glob("sbatch*"))


def test_follow_shows_the_training_step(tmp_path):
    from zagreus_utils.stages import pretraining

    metrics = tmp_path / "metrics.jsonl"
    assert pretraining._step_text(metrics, 400) == ""
    metrics.write_text(json.dumps({"step": 1}) + "\n" + json.dumps({"step": 17}) + "\n")
    assert pretraining._step_text(metrics, 400) == "step 17/400"
    seen = []

    class Bar:
        def set_description_str(self, text, refresh=True):
            seen.append(text)

        def close(self):
            pass

    states = iter([slurm.JobState("9", "RUNNING"), slurm.JobState("9", "COMPLETED", 0, 0)])
    import zagreus_utils.cluster.slurm as S

    original = S._progress_bar
    S._progress_bar = lambda enabled, job_id: Bar()
    try:
        S.follow("9", poll=0, state_fn=lambda _: next(states), sleep=lambda _: None, label="pretraining: Slurm job",
                 detail=lambda: pretraining._step_text(metrics, 400))
    finally:
        S._progress_bar = original
    assert seen[0] == "pretraining: Slurm job 9: RUNNING | step 17/400"
