"""What Slurm says, read: job states (squeue, sacct, scontrol, the completion log) and nodes (sinfo).

Pure functions over the commands' text, testable without Slurm; :mod:`.slurm` runs the commands
and uses these (and re-exports them, so ``slurm.parse_squeue`` and friends keep working).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

TERMINAL_STATES = frozenset({
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
    "BOOT_FAIL", "DEADLINE", "REVOKED", "SPECIAL_EXIT"})


ACTIVE_STATES = frozenset({
    "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT",
    "RESIZING"})


PENDING_STATES = frozenset({"PENDING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD"})


# Order in which an array's failed tasks name the whole array's state (most telling first).
FAILURE_ORDER = ("NODE_FAIL", "BOOT_FAIL", "OUT_OF_MEMORY", "TIMEOUT", "DEADLINE", "FAILED",
                 "PREEMPTED", "SPECIAL_EXIT", "REVOKED", "CANCELLED")


# Pending reasons (spaces and underscores removed, lower case) after which a job never starts
# without someone changing the job or the cluster.
NEVER_START_REASONS = {
    "partitionconfig": "the job asks more nodes, CPUs, memory or GRES than the partition has or allows",
    "partitionnodelimit": "the job asks more nodes than the partition has or allows",
    "partitiontimelimit": "the job's --time exceeds the partition's MaxTime",
    "partitiondown": "the partition is down (`scontrol update partitionname=<p> state=up`)",
    "partitioninactive": "the partition is inactive",
    "badconstraints": "no node has the requested features/constraints",
    "dependencyneversatisfied": "a job it depends on failed or was cancelled",
    "jobhelduser": "the job is held (`scontrol release <id>`)",
    "jobheldadmin": "an administrator holds the job",
    "invalidaccount": "the account is not valid here",
    "invalidqos": "the QOS is not valid here",
    "accountnotallowed": "the account may not use this partition",
    "qosnotallowed": "the QOS may not use this partition",
    "reqnodenotavail": "a node the job requires is unavailable (drained, down or reserved)",
}


# Reasons that look final but are not (a maintenance reservation ends).
TRANSIENT_REASON_PARTS = ("reservedformaintenance", "maintenance")


UNUSABLE_NODE_STATES = frozenset({
    "down", "drain", "drained", "draining", "drng", "fail", "failing", "future", "futr", "inval",
    "no_respond", "not_responding"})


@dataclass
class JobState:
    """A job's state as the scheduler reports it.

    ``state`` is Slurm's base state name (PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT,
    NODE_FAIL, OUT_OF_MEMORY, ...); ``exit_code``/``signal`` split Slurm's ``code:signal``.
    For an array job, ``tasks`` holds each task's state and ``state`` sums them up (PENDING or
    RUNNING while any task is unfinished; COMPLETED when all completed; otherwise the most telling
    failure).
    """

    job_id: str
    state: str
    exit_code: int | None = None
    signal: int | None = None
    reason: str = ""
    partition: str = ""
    nodes: str = ""
    stdout: str = ""
    array_task_id: str | None = None
    tasks: list["JobState"] = field(default_factory=list)
    source: str = ""

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def ok(self) -> bool:
        return self.state == "COMPLETED"

    @property
    def pending(self) -> bool:
        return self.state in PENDING_STATES

    @property
    def is_array(self) -> bool:
        return bool(self.tasks)

    def exit_text(self) -> str:
        if self.exit_code is None:
            return "unknown"
        return f"{self.exit_code}:{self.signal or 0}" + (f" (signal {self.signal})" if self.signal else "")

    def describe(self) -> str:
        text = f"job {self.job_id} {self.state}"
        if self.reason and self.reason not in ("None", "(null)"):
            text += f" ({self.reason})"
        if self.tasks:
            counts: dict[str, int] = {}
            for task in self.tasks:
                counts[task.state] = counts.get(task.state, 0) + 1
            text += " [" + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + "]"
        return text


def normalize_state(text: str) -> str:
    """``CANCELLED by 0`` → ``CANCELLED``; ``cancelled+`` → ``CANCELLED``."""
    word = (text or "").strip().split(" ", 1)[0].rstrip("+*").upper()
    return word or "UNKNOWN"


def parse_exit(text: str) -> tuple[int | None, int | None]:
    """Slurm's ``code:signal`` → (code, signal)."""
    match = re.fullmatch(r"\s*(-?\d+)(?::(\d+))?\s*", text or "")
    if not match:
        return None, None
    return int(match.group(1)), int(match.group(2) or 0)


def _split_job_id(job_id: str) -> tuple[str, str | None]:
    """``11_2`` → (``11``, ``2``); ``11`` → (``11``, None); ``11_[0-3]`` → (``11``, ``[0-3]``)."""
    base, sep, task = str(job_id).partition("_")
    return base, (task if sep else None)


SQUEUE_FORMAT = "%i|%F|%K|%T|%r|%P|%N"


def _records(text: str, width: int, least: int = 2):
    """The ``|``-separated lines of a Slurm listing (blank lines and lines of fewer than ``least``
    fields skipped), each as ``width`` stripped fields (missing ones empty)."""
    for line in text.splitlines():
        parts = line.split("|")
        if line.strip() and len(parts) >= least:
            yield [p.strip() for p in (parts + [""] * width)[:width]]


def parse_squeue(text: str) -> list[JobState]:
    """Lines of ``squeue -h -r -t all -o '%i|%F|%K|%T|%r|%P|%N'``."""
    jobs = []
    for jid, array_id, task, state, reason, partition, nodes in _records(text, 7, least=4):
        task_id = None if task in ("", "N/A") else task
        jobs.append(JobState(job_id=jid, state=normalize_state(state), reason=reason, partition=partition,
                             nodes=nodes, array_task_id=task_id, source="squeue"))
    return jobs


SACCT_FIELDS = "JobID,State,ExitCode,Reason,Partition,NodeList"


def parse_sacct(text: str) -> list[JobState]:
    """Lines of ``sacct -X -P -n -o JobID,State,ExitCode,Reason,Partition,NodeList`` (job steps skipped)."""
    jobs = []
    for jid, state, exit_text, reason, partition, nodes in _records(text, 6):
        if jid.lower() == "jobid" or "." in jid:  # a header line, or a step (123.batch, 123.0)
            continue
        code, sig = parse_exit(exit_text)
        _, task = _split_job_id(jid)
        jobs.append(JobState(job_id=jid, state=normalize_state(state), exit_code=code, signal=sig,
                             reason=reason, partition=partition, nodes=nodes, array_task_id=task,
                             source="sacct"))
    return jobs


_SCONTROL_KEY = re.compile(r"(?:(?<=\s)|^)([A-Za-z][A-Za-z0-9_/:]*)=")


def parse_scontrol_record(line: str) -> dict[str, str]:
    """One ``scontrol show job -o`` line → {key: value} (values may hold blanks and ``=``)."""
    fields: dict[str, str] = {}
    matches = list(_SCONTROL_KEY.finditer(line))
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(line)
        fields.setdefault(match.group(1), line[match.end():end].strip())
    return fields


def parse_scontrol_jobs(text: str) -> list[JobState]:
    """The output of ``scontrol show job -o <id>`` (one line per job or array task)."""
    jobs = []
    records = []
    if "\n   " in text:  # the multi-line form (without -o): join each record's indented lines
        for block in re.split(r"\n\s*\n", text.strip()):
            records.append(" ".join(ln.strip() for ln in block.splitlines()))
    else:
        records = [ln for ln in text.splitlines() if ln.strip()]
    for line in records:
        rec = parse_scontrol_record(line)
        if "JobId" not in rec or "JobState" not in rec:
            continue
        array_id, task = rec.get("ArrayJobId"), rec.get("ArrayTaskId")
        jid = f"{array_id}_{task}" if array_id and task else rec["JobId"]
        code, sig = parse_exit(rec.get("ExitCode", ""))
        jobs.append(JobState(job_id=jid, state=normalize_state(rec["JobState"]), exit_code=code, signal=sig,
                             reason=rec.get("Reason", "").replace("_", " ") if rec.get("Reason") else "",
                             partition=rec.get("Partition", ""),
                             nodes="" if rec.get("NodeList") in (None, "(null)") else rec["NodeList"],
                             stdout=rec.get("StdOut", ""), array_task_id=task, source="scontrol"))
    return jobs


def _task_sort_key(job: JobState):
    task = job.array_task_id or ""
    return (0, int(task)) if task.isdigit() else (1, task)


def combine(job_id: str, records: Sequence[JobState]) -> JobState | None:
    """One JobState for ``job_id`` from the records a command gave (array tasks summed up)."""
    job_id = str(job_id)
    base, wanted_task = _split_job_id(job_id)
    mine = []
    for rec in records:
        rec_base, rec_task = _split_job_id(rec.job_id)
        if rec.array_task_id is not None and rec_task is None:
            rec_task = rec.array_task_id
        if wanted_task is not None:
            if rec.job_id == job_id or (rec_base == base and rec_task == wanted_task):
                mine.append(rec)
        elif rec_base == base or rec.job_id == job_id:
            mine.append(rec)
    if not mine:
        return None
    if wanted_task is not None or (len(mine) == 1 and mine[0].array_task_id is None):
        single = mine[0]
        return JobState(**{**single.__dict__, "job_id": job_id})
    tasks = sorted(mine, key=_task_sort_key)
    states = [t.state for t in tasks]
    unfinished = [t for t in tasks if not t.terminal]
    if unfinished:
        running = [t for t in unfinished if t.state in ACTIVE_STATES]
        lead = running[0] if running else unfinished[0]
        state, code, sig = ("RUNNING" if running else lead.state), None, None
        reason = lead.reason
    elif all(s == "COMPLETED" for s in states):
        lead, state, code, sig, reason = tasks[0], "COMPLETED", 0, 0, ""
    else:
        failed = [t for t in tasks if t.state != "COMPLETED"]
        failed.sort(key=lambda t: FAILURE_ORDER.index(t.state) if t.state in FAILURE_ORDER else len(FAILURE_ORDER))
        lead = failed[0]
        state, code, sig, reason = lead.state, lead.exit_code, lead.signal, lead.reason
    return JobState(job_id=job_id, state=state, exit_code=code, signal=sig, reason=reason,
                    partition=lead.partition, nodes=lead.nodes, stdout=lead.stdout, tasks=list(tasks),
                    source=lead.source)


@dataclass
class NodeInfo:
    name: str
    state: str          # sinfo's long state, lower case, flags stripped (idle, mixed, drained, down, ...)
    reason: str = ""
    partition: str = ""
    default: bool = False  # the partition is the cluster's default
    cpus: str = ""
    memory_mb: str = ""
    gres: str = ""
    flags: str = ""     # sinfo's state suffixes: * not responding, ~ powered off, # powering up, ...

    @property
    def usable(self) -> bool:
        parts = set(self.state.split("+"))
        return not (parts & UNUSABLE_NODE_STATES)


SINFO_FORMAT = "%N|%T|%E|%P|%c|%m|%G"


def parse_sinfo_nodes(text: str) -> list[NodeInfo]:
    """Lines of ``sinfo -h -N -o '%N|%T|%E|%P|%c|%m|%G'`` (one per node and partition)."""
    nodes = []
    for name, state, reason, partition, cpus, mem, gres in _records(text, 7):
        if name.upper() == "NODELIST":
            continue
        base = state.lower()
        flags = ""
        while base and base[-1] in "*~#!%$@^-":
            flags = base[-1] + flags
            base = base[:-1]
        nodes.append(NodeInfo(name=name, state=base, reason="" if reason == "none" else reason,
                              partition=partition.rstrip("*"), default=partition.endswith("*"),
                              cpus=cpus, memory_mb=mem, gres="" if gres == "(null)" else gres, flags=flags))
    return nodes


def nodes_of(nodes: Sequence[NodeInfo], partition: str | None) -> list[NodeInfo]:
    """The nodes of ``partition`` (None: the default partition)."""
    if partition:
        return [n for n in nodes if n.partition == partition]
    return [n for n in nodes if n.default]


def unusable_message(partition: str | None, nodes: Sequence[NodeInfo]) -> str | None:
    """A clear message when every node of the partition is drained/down, else None."""
    if not nodes or any(n.usable for n in nodes):
        return None
    part = partition or nodes[0].partition
    listing = ", ".join(f"{n.name} {n.state}{n.flags}" + (f" (reason: {n.reason})" if n.reason else "") for n in nodes)
    names = ",".join(sorted({n.name for n in nodes}))
    return (f"every node of partition {part} is drained or down: {listing}. A job there would wait forever. "
            f"Resume the nodes (as root / the Slurm admin): `scontrol update nodename={names} state=resume`, "
            "or submit to another partition")


def never_starts(job: JobState, nodes: Sequence[NodeInfo] | None) -> str | None:
    """Why a pending job can never start, or None (it may still start). ``nodes``: its partition's nodes.

    A job on a partition whose nodes are all drained or down never starts, whatever its reason
    says; otherwise the reason decides (NEVER_START_REASONS), except for maintenance reservations.
    """
    if nodes:
        message = unusable_message(job.partition or None, nodes)
        if message:
            return message
    compact = re.sub(r"[\s_]", "", job.reason or "").lower()
    if any(part in compact for part in TRANSIENT_REASON_PARTS):
        return None
    for key, hint in NEVER_START_REASONS.items():
        if compact.startswith(key) or compact.startswith("(" + key):
            return f"Slurm will never start it as it is (reason {job.reason}): {hint}"
    return None
