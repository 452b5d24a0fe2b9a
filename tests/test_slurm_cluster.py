"""zagreus_utils.cluster.slurm against a real Slurm cluster (marked `slurm`).

Runs when a cluster answers: start the local one with `sudo slurm/local-cluster/start.sh`
(CI does). The drain test changes node states, so it runs only against that local cluster,
never against a site's cluster.
"""

import os
import time
from pathlib import Path

import pytest

from zagreus_utils.cluster import slurm
from zagreus_utils.pipeline.errors import ZagreusError

AVAILABLE = slurm.cluster_available()  # asked once: sinfo retries for seconds when no controller answers

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(not AVAILABLE,
                       reason="no Slurm cluster answers (sbatch not on PATH or sinfo fails); start one with "
                              "`sudo slurm/local-cluster/start.sh` and `source /tmp/zagreus-slurm/env.sh`"),
    pytest.mark.timeout(180),
]


def _is_local_cluster() -> bool:
    if not AVAILABLE:
        return True  # the module-level skip speaks
    conf = slurm.local_cluster_conf()
    active = slurm.environ().get("SLURM_CONF")
    return conf is not None and active is not None and Path(active).resolve() == conf.resolve()


def _script(folder: Path, name: str, body: str, **directives) -> tuple[Path, Path]:
    log = folder / f"{name}.out"
    directives = {"job_name": f"zagreus-test-{name}", "output": str(log), "time": "00:05:00", **directives}
    header = slurm.sbatch_header(**directives)
    return slurm.write_script(folder / f"{name}.sbatch", header, body), log


def _wait_for(job_id: str, states: set[str], limit: float = 60) -> slurm.JobState:
    deadline = time.monotonic() + limit
    while True:
        job = slurm.state(job_id)
        if job.state in states or job.terminal or time.monotonic() > deadline:
            return job
        time.sleep(0.5)


def test_tiny_job_completes(tmp_path):
    script, log = _script(tmp_path, "ok", 'echo "hello from $(hostname) job $SLURM_JOB_ID"\n',
                          comment="a'b; rm -rf / \"quoted\"")
    job_id = slurm.submit(script)
    final = slurm.follow(job_id, poll=0.5, progress=False)
    assert final.state == "COMPLETED" and final.exit_code == 0
    assert f"job {job_id}" in log.read_text()


def test_failing_job_raises_jobfailed_with_log_tail(tmp_path):
    script, log = _script(tmp_path, "fail", 'for i in $(seq 1 40); do echo "line $i"; done\n'
                          'echo "Traceback: the stage broke" >&2\nexit 3\n')
    job_id = slurm.submit(script)
    with pytest.raises(slurm.JobFailed) as info:
        slurm.follow(job_id, poll=0.5, log_path=log, progress=False)
    err = info.value
    assert (err.job_id, err.state, err.exit_code) == (job_id, "FAILED", 3)
    assert "Traceback: the stage broke" in str(err) and "line 40" in err.log_tail and "line 5\n" not in err.log_tail
    assert len(err.log_tail.splitlines()) == 30


def test_scancel_mid_run_gives_cancelled(tmp_path):
    script, log = _script(tmp_path, "sleep", "echo started\nsleep 60\necho never\n")
    job_id = slurm.submit(script)
    running = _wait_for(job_id, {"RUNNING"})
    assert running.state == "RUNNING", running
    slurm.cancel(job_id)
    t0 = time.monotonic()
    with pytest.raises(slurm.JobFailed) as info:
        slurm.follow(job_id, poll=0.5, progress=False)
    assert info.value.state == "CANCELLED" and time.monotonic() - t0 < 30
    assert "started" in info.value.log_tail and "never" not in log.read_text()


def test_array_job_reports_each_task(tmp_path):
    script, _ = _script(tmp_path, "array", 'echo "task $SLURM_ARRAY_TASK_ID"\n'
                        '[ "$SLURM_ARRAY_TASK_ID" != 1 ] || exit 4\n', array="0-2",
                        output=str(tmp_path / "array-%A_%a.out"))
    job_id = slurm.submit(script)
    with pytest.raises(slurm.JobFailed, match=rf"failed tasks: {job_id}_1 FAILED 4:0") as info:
        slurm.follow(job_id, poll=0.5, progress=False)
    tasks = info.value.job.tasks
    assert [t.state for t in tasks] == ["COMPLETED", "FAILED", "COMPLETED"]
    assert "task 1" in info.value.log_tail


@pytest.mark.skipif(not _is_local_cluster(), reason="drains nodes: only against the local cluster of "
                                                     "slurm/local-cluster (SLURM_CONF points elsewhere)")
@pytest.mark.skipif(os.geteuid() != 0, reason="draining a node needs root (the local cluster's SlurmUser)")
def test_drained_node_gives_clear_error(tmp_path):
    nodes = slurm.check_nodes()
    names = ",".join(sorted({n.name for n in nodes}))
    partition = nodes[0].partition
    script, _ = _script(tmp_path, "drained", "hostname\n")
    job_id = None
    slurm._run(["scontrol", "update", f"nodename={names}", "state=drain", "reason=zagreus-test"])
    try:
        with pytest.raises(ZagreusError, match=rf"every node of partition {partition} is drained.*zagreus-test.*"
                                               rf"scontrol update nodename={names} state=resume"):
            slurm.check_nodes()
        # Submitted anyway: follow must not wait for pending_timeout, and must not cancel the job.
        job_id = slurm.submit(script)
        t0 = time.monotonic()
        with pytest.raises(ZagreusError) as info:
            slurm.follow(job_id, poll=0.5, pending_timeout=120, progress=False)
        text = str(info.value)
        assert time.monotonic() - t0 < 30
        assert f"job {job_id} is PENDING" in text and "state=resume" in text and "zagreus-test" in text
        assert slurm.state(job_id).state == "PENDING"
    finally:
        if job_id:
            slurm.cancel(job_id)
        slurm._run(["scontrol", "update", f"nodename={names}", "state=resume"])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all(n.state in ("idle", "mixed", "allocated") and not n.flags for n in slurm.check_nodes()):
                break
            time.sleep(0.5)


def test_test_only_says_when_the_request_exceeds_the_cluster(tmp_path):
    nodes = slurm.check_nodes()
    fits, _ = _script(tmp_path, "fits", "hostname\n", nodes=1)
    assert "to start at" in slurm.submit(fits, test_only=True)
    too_big, _ = _script(tmp_path, "toobig", "hostname\n", nodes=len({n.name for n in nodes}) + 1)
    with pytest.raises(ZagreusError) as info:
        slurm.submit(too_big, test_only=True)
    text = str(info.value)
    assert "--test-only refused" in text and "Requested node configuration is not available" in text
    assert "exceeds what the cluster has" in text


def test_unknown_job_and_partition(tmp_path):
    with pytest.raises(ZagreusError, match="Slurm knows no job 987654321"):
        slurm.state("987654321")
    script, _ = _script(tmp_path, "nopart", "hostname\n", partition="no-such-partition")
    with pytest.raises(ZagreusError, match="sbatch refused .*[Ii]nvalid partition"):
        slurm.submit(script)
    with pytest.raises(ZagreusError, match="no partition 'no-such-partition'"):
        slurm.check_nodes("no-such-partition")


def _gpu_partitions() -> dict[str, list]:
    if not AVAILABLE:
        return {"(skipped)": []}  # the module-level skip speaks
    try:
        nodes = slurm._sinfo_nodes(None)
    except ZagreusError:
        return {}
    parts: dict[str, list] = {}
    for node in nodes:
        if node.gres.startswith("gpu:"):
            parts.setdefault(node.partition, []).append(node)
    return parts


@pytest.mark.skipif(not _is_local_cluster() or not _gpu_partitions(),
                    reason="no GPU-shaped partition: start the local cluster with ZAGREUS_SLURM_SHAPE=8x8 "
                           "(powered-off cloud nodes for sbatch --test-only)")
def test_test_only_against_a_gpu_shaped_partition(tmp_path):
    partition, nodes = next(iter(_gpu_partitions().items()))
    count, gpus = len(nodes), int(nodes[0].gres.split(":")[-1].split("(")[0])
    fits, _ = _script(tmp_path, "shape", "hostname\n", partition=partition, nodes=count, ntasks_per_node=1,
                      gres=f"gpu:{gpus}", cpus_per_task=nodes[0].cpus, account="YOUR_ACCOUNT", time="4-00:00:00")
    message = slurm.submit(fits, test_only=True)
    assert "to start at" in message and f"partition {partition}" in message
    too_many, _ = _script(tmp_path, "shape9", "hostname\n", partition=partition, nodes=count + 1,
                          gres=f"gpu:{gpus}")
    with pytest.raises(ZagreusError, match="Requested node configuration is not available"):
        slurm.submit(too_many, test_only=True)
    too_wide, _ = _script(tmp_path, "shape-gpus", "hostname\n", partition=partition, nodes=1,
                          gres=f"gpu:{gpus * 2}")
    with pytest.raises(ZagreusError, match="Requested node configuration is not available"):
        slurm.submit(too_wide, test_only=True)
