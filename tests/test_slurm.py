"""Unit tests of zagreus_utils.cluster.slurm that run anywhere, without Slurm.

The command outputs below were captured from the single-node cluster of slurm/local-cluster
(Debian 12, Slurm 22.05.8, no slurmdbd) unless marked otherwise.
"""

import os
import stat
from pathlib import Path

import pytest

from zagreus_utils.cluster import slurm
from zagreus_utils.pipeline.errors import ZagreusError

# squeue -h -r -t all -o '%i|%F|%K|%T|%r|%P|%N'
SQUEUE_ALL = """\
3|3|N/A|CANCELLED|None|debug|vm
4|4|N/A|CANCELLED|Nodes required for job are DOWN, DRAINED or reserved for jobs in higher priority partitions|debug|
10|10|N/A|CANCELLED|PartitionConfig|debug|
14|14|N/A|CANCELLED|JobHeldUser|debug|
1|1|N/A|COMPLETED|None|debug|vm
11_0|11|0|COMPLETED|None|debug|vm
2|2|N/A|FAILED|NonZeroExitCode|debug|vm
11_2|11|2|FAILED|NonZeroExitCode|debug|vm
11_1|11|1|FAILED|NonZeroExitCode|debug|vm
"""
SQUEUE_RUNNING = "3|3|N/A|RUNNING|None|debug|vm\n"
SQUEUE_ARRAY_PENDING = """\
11_0|11|0|PENDING|None|debug|
11_1|11|1|PENDING|None|debug|
11_2|11|2|PENDING|None|debug|
"""
SQUEUE_DRAINED = ("17|17|N/A|PENDING|Nodes required for job are DOWN, DRAINED or reserved for jobs in higher "
                  "priority partitions|debug|\n")

# sacct -c -P -n -o JobID,State,ExitCode,Reason,Partition,NodeList (jobcomp/filetxt, no slurmdbd)
SACCT_JOBCOMP = """\
1|COMPLETED|0:0||debug|vm
2|FAILED|3:0||debug|vm
3|CANCELLED|0:0||debug|vm
"""
# sacct -X -P -n with slurmdbd (the documented format; not captured here: no slurmdbd on this machine)
SACCT_DBD = """\
123|CANCELLED by 0|0:15|None|gpu|node[01-02]
124_0|COMPLETED|0:0|None|gpu|node01
124_1|OUT_OF_MEMORY|0:125|None|gpu|node02
124_[2-3]|PENDING|0:0|Resources|gpu|None assigned
124.batch|COMPLETED|0:0||gpu|node01
"""

# scontrol show job -o 11 (an array of 3 tasks: 0 completed, 1 and 2 exited 1 and 2)
SCONTROL_ARRAY = (
    "JobId=11 ArrayJobId=11 ArrayTaskId=2 JobName=wrap UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901749 "
    "Nice=0 Account=(null) QOS=(null) JobState=FAILED Reason=NonZeroExitCode Dependency=(null) Requeue=1 Restarts=0 "
    "BatchFlag=1 Reboot=0 ExitCode=2:0 RunTime=00:00:02 TimeLimit=UNLIMITED TimeMin=N/A SubmitTime=2026-11-25T17:14:37 "
    "EligibleTime=2026-11-25T17:14:37 AccrueTime=2026-11-25T17:14:37 StartTime=2026-11-25T17:14:43 "
    "EndTime=2026-11-25T17:14:45 Deadline=N/A SuspendTime=None SecsPreSuspend=0 LastSchedEval=2026-11-25T17:14:43 "
    "Scheduler=Main Partition=debug AllocNode:Sid=localhost:590 ReqNodeList=(null) ExcNodeList=(null) NodeList=vm "
    "BatchHost=vm NumNodes=1 NumCPUs=2 NumTasks=1 CPUs/Task=2 ReqB:S:C:T=0:0:*:* TRES=cpu=2,node=1,billing=2 "
    "Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=* MinCPUsNode=2 MinMemoryNode=0 MinTmpDiskNode=0 Features=(null) "
    "DelayBoot=00:00:00 OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null) Command=(null) WorkDir=/work/main "
    "StdErr=/tmp/slurmtest/arr-11_2.txt StdIn=/dev/null StdOut=/tmp/slurmtest/arr-11_2.txt Power= \n"
    "JobId=13 ArrayJobId=11 ArrayTaskId=1 JobName=wrap UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901749 "
    "Nice=0 Account=(null) QOS=(null) JobState=FAILED Reason=NonZeroExitCode Dependency=(null) Requeue=1 Restarts=0 "
    "BatchFlag=1 Reboot=0 ExitCode=1:0 RunTime=00:00:02 TimeLimit=UNLIMITED TimeMin=N/A Partition=debug "
    "AllocNode:Sid=localhost:590 NodeList=vm BatchHost=vm NumNodes=1 NumCPUs=2 TRES=cpu=2,node=1,billing=2 "
    "WorkDir=/work/main StdErr=/tmp/slurmtest/arr-11_1.txt StdIn=/dev/null StdOut=/tmp/slurmtest/arr-11_1.txt Power= \n"
    "JobId=12 ArrayJobId=11 ArrayTaskId=0 JobName=wrap UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901749 "
    "Nice=0 Account=(null) QOS=(null) JobState=COMPLETED Reason=None Dependency=(null) Requeue=1 Restarts=0 "
    "BatchFlag=1 Reboot=0 ExitCode=0:0 RunTime=00:00:02 TimeLimit=UNLIMITED TimeMin=N/A Partition=debug "
    "AllocNode:Sid=localhost:590 NodeList=vm BatchHost=vm NumNodes=1 NumCPUs=2 TRES=cpu=2,node=1,billing=2 "
    "WorkDir=/work/main StdErr=/tmp/slurmtest/arr-11_0.txt StdIn=/dev/null StdOut=/tmp/slurmtest/arr-11_0.txt Power= \n")
# scontrol show job -o 17: pending on a drained node
SCONTROL_DRAINED = (
    "JobId=17 JobName=wrap UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901746 Nice=0 Account=(null) "
    "QOS=(null) JobState=PENDING Reason=Nodes_required_for_job_are_DOWN,_DRAINED_or_reserved_for_jobs_in_higher_"
    "priority_partitions Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0 RunTime=00:00:00 "
    "TimeLimit=UNLIMITED TimeMin=N/A SubmitTime=2026-11-25T17:17:58 EligibleTime=2026-11-25T17:17:58 "
    "AccrueTime=2026-11-25T17:17:58 StartTime=Unknown EndTime=Unknown Deadline=N/A SuspendTime=None SecsPreSuspend=0 "
    "LastSchedEval=2026-11-25T17:17:59 Scheduler=Main Partition=debug AllocNode:Sid=localhost:590 ReqNodeList=(null) "
    "ExcNodeList=(null) NodeList= NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 ReqB:S:C:T=0:0:*:* "
    "TRES=cpu=1,mem=22900M,node=1,billing=1 Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=* MinCPUsNode=1 "
    "MinMemoryNode=0 MinTmpDiskNode=0 Features=(null) DelayBoot=00:00:00 OverSubscribe=OK Contiguous=0 "
    "Licenses=(null) Network=(null) Command=(null) WorkDir=/tmp/slurmtest StdErr=/dev/null StdIn=/dev/null "
    "StdOut=/dev/null Power= \n")
# scontrol show job 3 (the multi-line form, without -o): a cancelled `sleep 60`
SCONTROL_MULTILINE = """\
JobId=3 JobName=sleeper
   UserId=root(0) GroupId=root(0) MCS_label=N/A
   Priority=4294901757 Nice=0 Account=(null) QOS=(null)
   JobState=CANCELLED Reason=None Dependency=(null)
   Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:15
   RunTime=00:00:01 TimeLimit=UNLIMITED TimeMin=N/A
   Partition=debug AllocNode:Sid=localhost:590
   NodeList=vm
   BatchHost=vm
   WorkDir=/tmp/slurmtest
   StdErr=/tmp/slurmtest/out-3.txt
   StdIn=/dev/null
   StdOut=/tmp/slurmtest/out-3.txt
   Power=

"""

# sinfo -h -N -o '%N|%T|%E|%P|%c|%m|%G'
SINFO_IDLE = "vm|idle|none|debug*|2|22900|(null)\n"
SINFO_DRAINED = "vm|drained|disk full|debug*|2|22900|(null)\n"
SINFO_DRAINING = "vm|draining|maint|debug*|2|22900|(null)\n"
SINFO_MIXED_CLUSTER = """\
gpu01|mixed|none|gpu|64|512000|gpu:4
gpu02|drained*|bad GPU|gpu|64|512000|gpu:4
cpu01|idle~|none|cpu*|32|128000|(null)
cpu02|down*|Not responding|cpu*|32|128000|(null)
"""


# ---------------------------------------------------------------------------- header rendering

def sbatch_read_argument(line: str) -> list[str]:
    """sbatch's own reading of a directive line's arguments (src/sbatch/opt.c, _get_argument):
    quotes group, a backslash escapes the next character, blanks and an unquoted # end an argument."""
    text = line[len("#SBATCH"):]
    args, i = [], 0
    while i < len(text):
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text) or text[i] == "#":
            break
        arg, quote, escape = [], None, False
        while i < len(text):
            c = text[i]
            i += 1
            if escape:
                arg.append(c)
                escape = False
            elif c == "\\":
                escape = True
            elif quote:
                if c == quote:
                    quote = None
                else:
                    arg.append(c)
            elif c in "\"'":
                quote = c
            elif c.isspace() or c == "#":
                break
            else:
                arg.append(c)
        args.append("".join(arg))
    return args


def test_header_plain_values_flags_and_skips():
    text = slurm.sbatch_header(job_name="pretrain-ita", nodes=2, ntasks_per_node=1, cpus_per_task=8,
                               time="01:00:00", output="logs/%x-%j.out", exclusive=True, account=None, hold=False)
    assert text.splitlines() == [
        "#SBATCH --job-name=pretrain-ita",
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --time=01:00:00",
        "#SBATCH --output=logs/%x-%j.out",
        "#SBATCH --exclusive",
    ]
    assert slurm.sbatch_header() == ""
    assert slurm.sbatch_header(**{"gres": "gpu:4", "array": "0-3%2"}) == "#SBATCH --gres=gpu:4\n#SBATCH --array=0-3%2\n"


@pytest.mark.parametrize("value", [
    "a'b; rm -rf /",
    'say "hi" $(reboot) `id` $HOME',
    "x # not a comment",
    "back\\slash and \\\" quote",
    "/scratch/my runs/%j.out",
    "tab\there",
    "'",
    '"',
    "",
])
def test_header_hostile_values_are_quoted_so_sbatch_reads_them_back_unchanged(value):
    text = slurm.sbatch_header(comment=value)
    assert text.count("\n") == 1 and text.startswith("#SBATCH --comment=")
    assert sbatch_read_argument(text.rstrip("\n")) == [f"--comment={value}"]
    if value and " " in value:
        assert '"' in text  # quoted


@pytest.mark.parametrize("value", ["a\nb", "x\r\n#SBATCH --uid=0", "nul\x00"])
def test_header_refuses_line_breaks(value):
    with pytest.raises(ZagreusError, match="line break"):
        slurm.sbatch_header(job_name=value)


@pytest.mark.parametrize("key", ["job name", "--nodes", "a;b", "x\n"])
def test_header_refuses_odd_keys(key):
    with pytest.raises(ZagreusError, match="option name"):
        slurm.sbatch_header(**{key: "1"})


def test_write_script_and_dry_run(tmp_path):
    header = slurm.sbatch_header(job_name="t", output="t-%j.out")
    path = slurm.write_script(tmp_path / "sub" / "job.sbatch", header, "set -e\necho hello\n")
    text = path.read_text()
    assert text.startswith("#!/bin/bash\n#SBATCH --job-name=t\n#SBATCH --output=t-%j.out\n\nset -e\n")
    assert os.stat(path).st_mode & stat.S_IXUSR
    assert slurm.dry_run(path) == text
    bad = slurm.write_script(tmp_path / "bad.sbatch", header, "if true; then\necho x\n")
    with pytest.raises(ZagreusError, match="syntax error"):
        slurm.dry_run(bad)
    with pytest.raises(ZagreusError, match="does not exist"):
        slurm.dry_run(tmp_path / "missing.sbatch")
    with pytest.raises(ZagreusError, match="non-comment line"):
        slurm.write_script(tmp_path / "x.sbatch", "#SBATCH --nodes=1\necho oops\n", "true")


def test_parse_job_id():
    assert slurm.parse_job_id("16\n") == "16"
    assert slurm.parse_job_id("42;zagreus\n") == "42"
    with pytest.raises(ZagreusError, match="not a job id"):
        slurm.parse_job_id("sbatch: error: something\n")


# ---------------------------------------------------------------------------- parsing

def test_parse_squeue_all_states():
    jobs = slurm.parse_squeue(SQUEUE_ALL)
    assert [j.job_id for j in jobs] == ["3", "4", "10", "14", "1", "11_0", "2", "11_2", "11_1"]
    by_id = {j.job_id: j for j in jobs}
    assert by_id["3"].state == "CANCELLED" and by_id["3"].nodes == "vm" and by_id["3"].array_task_id is None
    assert by_id["4"].reason.startswith("Nodes required for job are DOWN, DRAINED")
    assert by_id["11_2"].array_task_id == "2" and by_id["11_2"].state == "FAILED"
    assert all(j.terminal for j in jobs) and all(j.exit_code is None for j in jobs)


def test_parse_squeue_running_and_array_pending():
    (job,) = slurm.parse_squeue(SQUEUE_RUNNING)
    assert job.state == "RUNNING" and not job.terminal and not job.pending
    array = slurm.combine("11", slurm.parse_squeue(SQUEUE_ARRAY_PENDING))
    assert array.state == "PENDING" and array.pending and len(array.tasks) == 3


def test_parse_sacct_jobcomp_and_dbd():
    jobs = slurm.parse_sacct(SACCT_JOBCOMP)
    assert [(j.job_id, j.state, j.exit_code) for j in jobs] == [("1", "COMPLETED", 0), ("2", "FAILED", 3),
                                                                 ("3", "CANCELLED", 0)]
    dbd = slurm.parse_sacct(SACCT_DBD)
    assert [j.job_id for j in dbd] == ["123", "124_0", "124_1", "124_[2-3]"]  # the .batch step is skipped
    assert dbd[0].state == "CANCELLED" and (dbd[0].exit_code, dbd[0].signal) == (0, 15)
    array = slurm.combine("124", dbd)
    assert array.state == "PENDING" and array.reason == "Resources"
    assert slurm.combine("124_1", dbd).state == "OUT_OF_MEMORY"


def test_parse_scontrol_array_and_combine():
    jobs = slurm.parse_scontrol_jobs(SCONTROL_ARRAY)
    assert sorted(j.job_id for j in jobs) == ["11_0", "11_1", "11_2"]
    array = slurm.combine("11", jobs)
    assert array.is_array and array.terminal and not array.ok
    assert array.state == "FAILED" and array.exit_code in (1, 2)
    assert [t.job_id for t in array.tasks] == ["11_0", "11_1", "11_2"]
    assert array.tasks[0].stdout == "/tmp/slurmtest/arr-11_0.txt"
    assert "1 COMPLETED, 2 FAILED" in array.describe()
    task = slurm.combine("11_1", jobs)
    assert task.job_id == "11_1" and task.state == "FAILED" and task.exit_code == 1 and not task.tasks


def test_parse_scontrol_record_values_with_equals_and_blanks():
    rec = slurm.parse_scontrol_record(SCONTROL_DRAINED.strip())
    assert rec["TRES"] == "cpu=1,mem=22900M,node=1,billing=1"
    assert rec["NodeList"] == "" and rec["AllocNode:Sid"] == "localhost:590" and rec["Power"] == ""
    (job,) = slurm.parse_scontrol_jobs(SCONTROL_DRAINED)
    assert job.state == "PENDING" and job.reason.startswith("Nodes required for job are DOWN, DRAINED")


def test_parse_scontrol_multiline_form():
    (job,) = slurm.parse_scontrol_jobs(SCONTROL_MULTILINE)
    assert (job.job_id, job.state, job.exit_code, job.signal) == ("3", "CANCELLED", 0, 15)
    assert job.stdout == "/tmp/slurmtest/out-3.txt" and "signal 15" in job.exit_text()


def test_parse_sinfo_nodes():
    (idle,) = slurm.parse_sinfo_nodes(SINFO_IDLE)
    assert (idle.name, idle.state, idle.reason, idle.partition, idle.default, idle.cpus, idle.memory_mb,
            idle.gres) == ("vm", "idle", "", "debug", True, "2", "22900", "")
    assert idle.usable
    (drained,) = slurm.parse_sinfo_nodes(SINFO_DRAINED)
    assert drained.state == "drained" and drained.reason == "disk full" and not drained.usable
    (draining,) = slurm.parse_sinfo_nodes(SINFO_DRAINING)
    assert not draining.usable
    nodes = slurm.parse_sinfo_nodes(SINFO_MIXED_CLUSTER)
    assert [(n.name, n.state, n.flags, n.usable) for n in nodes] == [
        ("gpu01", "mixed", "", True), ("gpu02", "drained", "*", False),
        ("cpu01", "idle", "~", True), ("cpu02", "down", "*", False)]
    assert [n.name for n in slurm.nodes_of(nodes, None)] == ["cpu01", "cpu02"]  # the default partition
    assert slurm.unusable_message("gpu", slurm.nodes_of(nodes, "gpu")) is None
    assert slurm.parse_sinfo_nodes("") == []


# ---------------------------------------------------------------------------- job state logic

@pytest.mark.parametrize("state, terminal, pending", [
    ("PENDING", False, True), ("RUNNING", False, False), ("COMPLETING", False, False),
    ("CONFIGURING", False, False), ("REQUEUED", False, True), ("SUSPENDED", False, False),
    ("COMPLETED", True, False), ("FAILED", True, False), ("CANCELLED", True, False), ("TIMEOUT", True, False),
    ("NODE_FAIL", True, False), ("OUT_OF_MEMORY", True, False), ("PREEMPTED", True, False),
    ("BOOT_FAIL", True, False), ("DEADLINE", True, False)])
def test_terminal_and_pending(state, terminal, pending):
    job = slurm.JobState("1", state)
    assert job.terminal is terminal and job.pending is pending and job.ok is (state == "COMPLETED")


def test_normalize_state_and_exit():
    assert slurm.normalize_state("CANCELLED by 0") == "CANCELLED"
    assert slurm.normalize_state("cancelled+") == "CANCELLED"
    assert slurm.normalize_state("") == "UNKNOWN"
    assert slurm.parse_exit("3:0") == (3, 0) and slurm.parse_exit("0:15") == (0, 15)
    assert slurm.parse_exit("") == (None, None) and slurm.parse_exit("N/A") == (None, None)


def test_combine_array_running_completed_and_missing():
    tasks = [slurm.JobState("7_0", "COMPLETED", 0, 0, array_task_id="0"),
             slurm.JobState("7_1", "RUNNING", array_task_id="1"),
             slurm.JobState("7_2", "PENDING", reason="Resources", array_task_id="2")]
    assert slurm.combine("7", tasks).state == "RUNNING"
    done = [slurm.JobState(f"7_{i}", "COMPLETED", 0, 0, array_task_id=str(i)) for i in range(3)]
    assert slurm.combine("7", done).ok
    mixed = done[:2] + [slurm.JobState("7_2", "CANCELLED", 0, 15, array_task_id="2"),
                        slurm.JobState("7_3", "TIMEOUT", 0, 1, array_task_id="3")]
    assert slurm.combine("7", mixed).state == "TIMEOUT"  # the most telling failure
    assert slurm.combine("8", tasks) is None


def test_never_starts():
    drained = slurm.parse_sinfo_nodes(SINFO_DRAINED)
    idle = slurm.parse_sinfo_nodes(SINFO_IDLE)
    (pending,) = slurm.parse_squeue(SQUEUE_DRAINED)
    message = slurm.never_starts(pending, drained)
    assert "scontrol update nodename=vm state=resume" in message and "disk full" in message
    assert slurm.never_starts(pending, idle) is None  # nodes fine: transient (higher-priority partitions)
    config = slurm.JobState("10", "PENDING", reason="PartitionConfig", partition="debug")
    assert "more nodes" in slurm.never_starts(config, idle)
    assert slurm.never_starts(slurm.JobState("9", "PENDING", reason="PartitionNodeLimit"), idle)
    assert slurm.never_starts(slurm.JobState("9", "PENDING", reason="ReqNodeNotAvail, UnavailableNodes:vm"), idle)
    assert slurm.never_starts(slurm.JobState("9", "PENDING", reason="ReqNodeNotAvail, Reserved for maintenance"),
                              idle) is None
    assert slurm.never_starts(slurm.JobState("9", "PENDING", reason="Priority"), idle) is None
    assert slurm.never_starts(slurm.JobState("9", "PENDING", reason="Resources"), idle) is None
    assert slurm.never_starts(slurm.JobState("9", "PENDING", reason="Resources", partition="debug"), drained)


# ---------------------------------------------------------------------------- follow

class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def scripted(states):
    """A state function answering the given JobStates in turn (the last one repeats)."""
    seq = list(states)
    calls = []

    def state_fn(job_id):
        calls.append(job_id)
        return seq.pop(0) if len(seq) > 1 else seq[0]
    state_fn.calls = calls
    return state_fn


@pytest.fixture
def no_cancel(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("follow must never cancel a job")
    monkeypatch.setattr(slurm, "cancel", refuse)
    monkeypatch.setattr(slurm, "_run", refuse)


def test_follow_drained_node_raises_clear_error_without_cancelling(no_cancel):
    (pending,) = slurm.parse_squeue(SQUEUE_DRAINED)
    clock = FakeClock()
    with pytest.raises(ZagreusError) as info:
        slurm.follow("17", state_fn=scripted([pending]), nodes_fn=lambda p: slurm.parse_sinfo_nodes(SINFO_DRAINED),
                     sleep=clock.sleep, clock=clock, progress=False)
    text = str(info.value)
    assert "17" in text and "PENDING" in text and "drained" in text and "disk full" in text
    assert "scontrol update nodename=vm state=resume" in text and "scancel 17" in text
    assert not isinstance(info.value, slurm.JobFailed)
    assert clock.now == 0  # at once, no waiting


def test_follow_never_start_reason(no_cancel):
    job = slurm.JobState("10", "PENDING", reason="PartitionConfig", partition="debug")
    with pytest.raises(ZagreusError, match="job 10 is PENDING and cannot start.*PartitionConfig"):
        slurm.follow("10", state_fn=scripted([job]), nodes_fn=lambda p: slurm.parse_sinfo_nodes(SINFO_IDLE),
                     sleep=lambda s: None, progress=False)


def test_follow_pending_timeout(no_cancel):
    clock = FakeClock()
    job = slurm.JobState("5", "PENDING", reason="Priority", partition="debug")
    with pytest.raises(ZagreusError, match=r"job 5 has been PENDING for \d+s \(reason: Priority\).*scancel 5"):
        slurm.follow("5", poll=10, pending_timeout=60, state_fn=scripted([job]),
                     nodes_fn=lambda p: slurm.parse_sinfo_nodes(SINFO_IDLE), sleep=clock.sleep, clock=clock,
                     progress=False)
    assert 60 < clock.now <= 80


def test_follow_completes(no_cancel):
    clock = FakeClock()
    fn = scripted([slurm.JobState("6", "PENDING", reason="None"), slurm.JobState("6", "RUNNING"),
                   slurm.JobState("6", "COMPLETING"), slurm.JobState("6", "COMPLETED", 0, 0)])
    final = slurm.follow("6", poll=1, state_fn=fn, nodes_fn=lambda p: [], sleep=clock.sleep, clock=clock,
                         progress=True)
    assert final.ok and len(fn.calls) == 4


def test_follow_failed_job_raises_jobfailed_with_log_tail(tmp_path, no_cancel):
    log = tmp_path / "job.out"
    log.write_text("".join(f"line {i}\n" for i in range(1, 51)) + "Traceback: boom\n")
    failed = slurm.JobState("8", "FAILED", exit_code=3, signal=0, reason="NonZeroExitCode", stdout=str(log))
    with pytest.raises(slurm.JobFailed) as info:
        slurm.follow("8", state_fn=scripted([slurm.JobState("8", "RUNNING"), failed]), sleep=lambda s: None,
                     progress=False)
    err = info.value
    assert isinstance(err, ZagreusError)
    assert (err.job_id, err.state, err.exit_code) == ("8", "FAILED", 3)
    assert "Slurm job 8 ended FAILED (exit code 3:0" in str(err) and "Traceback: boom" in str(err)
    tail_lines = err.log_tail.splitlines()
    assert len(tail_lines) == 30 and tail_lines[0] == "line 22" and tail_lines[-1] == "Traceback: boom"


def test_follow_cancelled_and_explicit_log_path(tmp_path, no_cancel):
    log = tmp_path / "other.log"
    log.write_text("started\n")
    job = slurm.JobState("9", "CANCELLED", exit_code=0, signal=15, stdout="/nonexistent/out")
    with pytest.raises(slurm.JobFailed, match=r"ended CANCELLED \(exit code 0:15 \(signal 15\)\)") as info:
        slurm.follow("9", log_path=log, state_fn=scripted([job]), sleep=lambda s: None, progress=False)
    assert info.value.log_tail == "started"


def test_follow_array_failure_names_the_failed_tasks(no_cancel):
    array = slurm.combine("11", slurm.parse_scontrol_jobs(SCONTROL_ARRAY))
    with pytest.raises(slurm.JobFailed, match=r"failed tasks: 11_1 FAILED 1:0, 11_2 FAILED 2:0"):
        slurm.follow("11", state_fn=scripted([array]), sleep=lambda s: None, progress=False)


def test_follow_timeout_and_unreachable_controller(no_cancel):
    clock = FakeClock()
    with pytest.raises(ZagreusError, match=r"job 4 is still RUNNING after \d+s \(timeout=30s\)"):
        slurm.follow("4", poll=10, timeout=30, state_fn=scripted([slurm.JobState("4", "RUNNING")]),
                     sleep=clock.sleep, clock=clock, progress=False)

    answers = iter([slurm.SlurmUnreachable("busy"), slurm.SlurmUnreachable("busy"),
                    slurm.JobState("4", "COMPLETED", 0, 0)])

    def flaky(job_id):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer
    assert slurm.follow("4", state_fn=flaky, sleep=lambda s: None, progress=False).ok

    def down(job_id):
        raise slurm.SlurmUnreachable("controller down")
    clock = FakeClock()
    with pytest.raises(slurm.SlurmUnreachable, match="controller down"):
        slurm.follow("4", poll=30, state_fn=down, sleep=clock.sleep, clock=clock, progress=False)
    assert clock.now > slurm.UNREACHABLE_GRACE


# ---------------------------------------------------------------------------- without Slurm

@pytest.fixture
def no_slurm(tmp_path, monkeypatch):
    """A PATH without any Slurm command, and no local cluster."""
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv(slurm.LOCAL_CLUSTER_DIR_ENV, str(tmp_path / "no-cluster"))
    monkeypatch.delenv("SLURM_CONF", raising=False)
    return empty


@pytest.mark.parametrize("command", ["sbatch", "squeue", "sacct", "scontrol", "sinfo", "scancel"])
def test_require_names_the_missing_command_and_the_fix(no_slurm, command):
    with pytest.raises(ZagreusError) as info:
        slurm.require(command)
    text = str(info.value)
    assert f"`{command}`" in text and "slurm/local-cluster/start.sh" in text and "login node" in text


def test_calls_without_slurm_fail_clearly(no_slurm, tmp_path):
    script = slurm.write_script(tmp_path / "j.sbatch", slurm.sbatch_header(job_name="x"), "true\n")
    assert slurm.cluster_available() is False
    with pytest.raises(ZagreusError, match="`sbatch` is not installed"):
        slurm.submit(script)
    with pytest.raises(ZagreusError, match="`squeue` is not installed"):
        slurm.state("1")
    with pytest.raises(ZagreusError, match="`scancel` is not installed"):
        slurm.cancel("1")
    with pytest.raises(ZagreusError, match="`sinfo` is not installed"):
        slurm.check_nodes()
    assert slurm.dry_run(script).startswith("#!/bin/bash")  # needs no Slurm


def fake_command(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text("#!/bin/sh\nPATH=/usr/bin:/bin\n" + body)
    path.chmod(0o755)
    return path


def test_submit_with_a_fake_sbatch(no_slurm, tmp_path):
    calls = tmp_path / "calls.txt"
    fake_command(no_slurm, "sbatch", f'echo "$@" >> {calls}\n'
                 'case "$1" in --test-only) echo "sbatch: Job 7 to start at 2026-11-25T17:14:33 using 1 processors '
                 'on nodes vm in partition debug" >&2 ;; *) echo "42;zagreus" ;; esac\n')
    script = slurm.write_script(tmp_path / "j.sbatch", "", "true\n")
    assert slurm.submit(script, dependency="41", extra=["--export=ALL"]) == "42"
    assert slurm.submit(script, dependency=["39", "40"]) == "42"
    assert slurm.submit(script, dependency="afterany:38") == "42"
    assert "to start at" in slurm.submit(script, test_only=True)
    assert calls.read_text().splitlines() == [
        f"--parsable --dependency=afterok:41 --export=ALL {script}",
        f"--parsable --dependency=afterok:39:40 {script}",
        f"--parsable --dependency=afterany:38 {script}",
        f"--test-only {script}",
    ]
    with pytest.raises(ZagreusError, match="does not exist"):
        slurm.submit(tmp_path / "missing.sbatch")


def test_submit_refusal_carries_sbatch_stderr(no_slurm, tmp_path):
    fake_command(no_slurm, "sbatch", 'echo "sbatch: error: Batch job submission failed: Invalid partition name '
                 'specified" >&2\nexit 1\n')
    script = slurm.write_script(tmp_path / "j.sbatch", "", "true\n")
    with pytest.raises(ZagreusError, match="sbatch refused .*Invalid partition name specified"):
        slurm.submit(script)


def test_test_only_refusal_lists_the_cluster(no_slurm, tmp_path):
    fake_command(no_slurm, "sbatch", 'echo "allocation failure: Requested node configuration is not available" >&2\n'
                 "exit 1\n")
    fake_command(no_slurm, "sinfo", f"cat <<'EOF'\n{SINFO_IDLE}EOF\n")
    script = slurm.write_script(tmp_path / "j.sbatch", slurm.sbatch_header(nodes=8, gres="gpu:4"), "true\n")
    with pytest.raises(ZagreusError) as info:
        slurm.submit(script, test_only=True)
    text = str(info.value)
    assert "--test-only refused" in text and "Requested node configuration is not available" in text
    assert "debug: vm (2 CPUs, 22900 MB, no GRES, idle)" in text


def test_check_nodes_with_a_fake_sinfo(no_slurm):
    fake_command(no_slurm, "sinfo", f"cat <<'EOF'\n{SINFO_MIXED_CLUSTER}EOF\n")
    assert [n.name for n in slurm.check_nodes("gpu")] == ["gpu01", "gpu02"]
    assert [n.name for n in slurm.check_nodes()] == ["cpu01", "cpu02"]  # cpu01 is powered off (~) but usable
    with pytest.raises(ZagreusError, match="no partition 'nope'; its partitions: cpu, gpu"):
        slurm.check_nodes("nope")
    fake_command(no_slurm, "sinfo", "cat <<'EOF'\ncpu02|down*|Not responding|cpu*|32|128000|(null)\n"
                                   "cpu01|drained|bad disk|cpu*|32|128000|(null)\nEOF\n")
    with pytest.raises(ZagreusError, match=r"every node of partition cpu is drained or down.*"
                                           r"scontrol update nodename=cpu01,cpu02 state=resume") as info:
        slurm.check_nodes()
    assert "bad disk" in str(info.value) and "Not responding" in str(info.value)


def test_state_with_fake_commands(no_slurm):
    # squeue has forgotten the job; sacct has no database; scontrol still knows the array.
    fake_command(no_slurm, "squeue", 'echo "slurm_load_jobs error: Invalid job id specified" >&2\nexit 1\n')
    fake_command(no_slurm, "sacct", 'echo "Slurm accounting storage is disabled" >&2\nexit 1\n')
    fake_command(no_slurm, "scontrol", f"cat <<'EOF'\n{SCONTROL_ARRAY}EOF\n")
    job = slurm.state("11")
    assert job.state == "FAILED" and len(job.tasks) == 3 and job.source == "scontrol"
    # squeue knows it running: no other command is asked
    fake_command(no_slurm, "squeue", f"cat <<'EOF'\n{SQUEUE_RUNNING}EOF\n")
    fake_command(no_slurm, "scontrol", "exit 99\n")
    assert slurm.state("3").state == "RUNNING"
    # squeue says finished: the exit code comes from the job-completion log when nothing else answers
    fake_command(no_slurm, "squeue", "exit 1\n")
    with pytest.raises(slurm.SlurmUnreachable):
        slurm.state("2")
    fake_command(no_slurm, "squeue", 'echo "slurm_load_jobs error: Invalid job id specified" >&2\nexit 1\n')
    fake_command(no_slurm, "sacct", 'if [ "$1" = -c ]; then cat <<\'EOF\'\n' + SACCT_JOBCOMP
                 + 'EOF\nelse echo "Slurm accounting storage is disabled" >&2; exit 1; fi\n')
    job = slurm.state("2")
    assert (job.state, job.exit_code, job.source) == ("FAILED", 3, "sacct -c")
    with pytest.raises(ZagreusError, match="Slurm knows no job 99"):
        slurm.state("99")


def test_environ_points_at_a_running_local_cluster(tmp_path, monkeypatch):
    folder = tmp_path / "cluster"
    (folder / "run").mkdir(parents=True)
    (folder / "slurm.conf").write_text("ClusterName=zagreus\n")
    monkeypatch.setenv(slurm.LOCAL_CLUSTER_DIR_ENV, str(folder))
    monkeypatch.delenv("SLURM_CONF", raising=False)
    assert slurm.local_cluster_conf() is None  # no controller pid
    (folder / "run" / "slurmctld.pid").write_text(f"{os.getpid()}\n")
    assert slurm.local_cluster_conf() == folder / "slurm.conf"
    if not Path("/etc/slurm/slurm.conf").exists():
        assert slurm.environ()["SLURM_CONF"] == str(folder / "slurm.conf")
    monkeypatch.setenv("SLURM_CONF", "/site/slurm.conf")
    assert slurm.environ()["SLURM_CONF"] == "/site/slurm.conf"
