"""Talking to Slurm: the one module every stage uses to render, submit, follow and cancel jobs.

Rendering
    :func:`sbatch_header` turns keyword directives into ``#SBATCH`` lines, every value made safe:
    newlines and NULs are refused; a value that is not a plain token is double-quoted with ``\\``
    and ``"`` escaped, which is how sbatch itself reads a directive's argument (quotes group, a
    backslash escapes the next character, ``#`` and blanks end an unquoted argument; directives are
    never run through a shell). :func:`write_script` writes header and body; :func:`dry_run`
    checks the script's shell syntax and returns its text.

Submitting and following
    :func:`submit` (``sbatch --parsable``; ``test_only`` asks ``sbatch --test-only`` instead),
    :func:`state` (squeue, then sacct, then ``scontrol show job``, then sacct's job-completion
    log: a single-node cluster without slurmdbd has no accounting database, so plain ``sacct``
    cannot answer there), :func:`follow` (a progress display until the job ends; a job that can
    never start, or pends too long, or ends other than COMPLETED raises a clear error),
    :func:`cancel`, :func:`check_nodes` (refuse to submit to a partition whose nodes are all
    drained or down) and :func:`cluster_available`.

Parsing
    ``parse_squeue``/``parse_sacct``/``parse_scontrol_jobs``/``parse_sinfo_nodes`` and
    :func:`combine` are pure functions over the commands' text, testable without Slurm; they live
    in :mod:`.slurm_parse` and are re-exported here.

The local single-node cluster (``slurm/local-cluster/start.sh``) keeps its ``slurm.conf`` under
``$ZAGREUS_SLURM_DIR`` (default ``/tmp/zagreus-slurm``). When ``SLURM_CONF`` is unset, there is no
``/etc/slurm/slurm.conf`` and that cluster's controller is running, the commands here are pointed
at it (:func:`environ`); everywhere else the Slurm client's own configuration is used unchanged.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import jinja2

from ..pipeline import progress as progress_line
from ..pipeline.errors import ZagreusError
from .slurm_parse import (  # noqa: F401 - the parse vocabulary, re-exported: slurm.JobState, slurm.parse_squeue, ...
    ACTIVE_STATES, FAILURE_ORDER, NEVER_START_REASONS, PENDING_STATES, SACCT_FIELDS, SINFO_FORMAT, SQUEUE_FORMAT,
    TERMINAL_STATES, TRANSIENT_REASON_PARTS, UNUSABLE_NODE_STATES, JobState, NodeInfo, _split_job_id, combine,
    never_starts, nodes_of, normalize_state, parse_exit, parse_sacct, parse_scontrol_jobs, parse_scontrol_record,
    parse_sinfo_nodes, parse_squeue, unusable_message)

LOCAL_CLUSTER_DIR_ENV = "ZAGREUS_SLURM_DIR"
DEFAULT_LOCAL_CLUSTER_DIR = "/tmp/zagreus-slurm"
START_SCRIPT = "slurm/local-cluster/start.sh"
COMMAND_TIMEOUT = 60  # seconds for any one Slurm client command
PROGRESS_REFRESH = 5.0  # seconds between redraws of an unchanged progress line (elapsed time)
UNREACHABLE_GRACE = 120  # seconds follow() keeps polling a controller that does not answer


DIRECTIVE_PLAIN = re.compile(r"^[A-Za-z0-9._:@%+=,/\[\]-]+$")
DIRECTIVE_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


# ---------------------------------------------------------------------------- environment

def local_cluster_dir() -> Path:
    return Path(os.environ.get(LOCAL_CLUSTER_DIR_ENV) or DEFAULT_LOCAL_CLUSTER_DIR)


def local_cluster_conf() -> Path | None:
    """The local cluster's slurm.conf when that cluster's controller is running, else None."""
    folder = local_cluster_dir()
    conf, pid_file = folder / "slurm.conf", folder / "run" / "slurmctld.pid"
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return conf if conf.is_file() else None


def environ() -> dict[str, str]:
    """The environment for Slurm commands: os.environ, pointed at the local cluster when nothing else is set.

    Pass it to any other process that calls Slurm (datatrove's executor calls ``sbatch`` itself;
    ``os.environ.update(slurm.environ())`` gives it the same view).
    """
    env = dict(os.environ)
    if not env.get("SLURM_CONF") and not Path("/etc/slurm/slurm.conf").exists():
        conf = local_cluster_conf()
        if conf is not None:
            env["SLURM_CONF"] = str(conf)
    return env


def require(command: str) -> str:
    """The path of a Slurm client command, or a ZagreusError saying how to get one."""
    path = shutil.which(command, path=environ().get("PATH"))
    if path is None:
        raise ZagreusError(
            f"the Slurm command `{command}` is not installed here (not on PATH): start a local "
            f"single-node Slurm with `sudo {START_SCRIPT}` (Debian's slurm-wlm + munge; then "
            f"`source {local_cluster_dir()}/env.sh`), or run this on a cluster login node; "
            "launcher='local' runs the stage on this machine without Slurm")
    return path


def _run(args: Sequence[str], *, check: bool = True, timeout: float = COMMAND_TIMEOUT,
         cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    require(args[0])
    try:
        proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                              env=environ(), cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        raise ZagreusError(f"`{shlex.join(args)}` did not answer within {timeout:.0f}s: is the Slurm "
                           f"controller up? (`scontrol ping`; locally: `sudo {START_SCRIPT}`)") from exc
    if check and proc.returncode != 0:
        raise ZagreusError(f"`{shlex.join(args)}` failed (exit {proc.returncode}): {_message(proc)}"
                           + _controller_hint(proc))
    return proc


def _message(proc: subprocess.CompletedProcess) -> str:
    text = (proc.stderr or "").strip() or (proc.stdout or "").strip()
    return " / ".join(line.strip() for line in text.splitlines() if line.strip()) or "no message"


def _controller_hint(proc: subprocess.CompletedProcess) -> str:
    text = (proc.stderr or "").lower()
    if any(s in text for s in ("unable to contact slurm controller", "could not establish a configuration",
                               "connection refused", "fetch_config", "munge")):
        conf = environ().get("SLURM_CONF") or "/etc/slurm/slurm.conf"
        return (f" — the Slurm controller cannot be reached with configuration {conf}; start the local "
                f"cluster with `sudo {START_SCRIPT}` and `source {local_cluster_dir()}/env.sh`, or set "
                "SLURM_CONF to your cluster's slurm.conf")
    return ""


def cluster_available() -> bool:
    """True when ``sbatch`` is on PATH and ``sinfo`` answers (a controller is reachable)."""
    env = environ()
    if shutil.which("sbatch", path=env.get("PATH")) is None or shutil.which("sinfo", path=env.get("PATH")) is None:
        return False
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=15, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and bool(proc.stdout.strip())


# ---------------------------------------------------------------------------- rendering

def _directive_value(key: str, value) -> str:
    text = str(value)
    if any(c in text for c in "\n\r\x00"):
        raise ZagreusError(f"#SBATCH --{key}: the value {text!r} holds a line break or NUL; a directive is one line")
    if DIRECTIVE_PLAIN.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def sbatch_header(**directives) -> str:
    """``#SBATCH`` lines for the given directives, in the given order.

    ``job_name="x"`` becomes ``#SBATCH --job-name=x``; ``True`` gives a bare flag
    (``exclusive=True`` → ``--exclusive``); ``None`` and ``False`` are left out. Values with
    blanks, quotes or other specials are double-quoted (sbatch's own rule); newlines are refused.
    """
    lines = []
    for raw_key, value in directives.items():
        if not DIRECTIVE_KEY.fullmatch(raw_key):
            raise ZagreusError(f"#SBATCH directive name {raw_key!r} is not an option name (letters, digits, - and _)")
        key = raw_key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            lines.append(f"#SBATCH --{key}")
        else:
            lines.append(f"#SBATCH --{key}={_directive_value(key, value)}")
    return "\n".join(lines) + ("\n" if lines else "")


TIME_LIMIT = re.compile(r"^(\d+-)?\d{1,3}(:\d{1,2}){0,2}$|^\d+-\d{1,2}$")  # sbatch's --time forms


def check_time_limit(value: str | None, where: str, example: str = '"24:00:00" or "1-00:00:00"') -> str:
    """``value`` when sbatch reads it as a time limit, else one line naming ``where`` it is set."""
    if not TIME_LIMIT.match(value or ""):
        raise ZagreusError(f"{where} = {value!r} is not a Slurm time limit; write e.g. {example}")
    return value


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def env_pairs(variables) -> list[tuple[str, str]]:
    """``{name: value}`` or ``[(name, value)]`` (e.g. NCCL settings) as pairs of strings, every name
    checked to be a valid environment variable name (they are written as ``export NAME=...``)."""
    pairs = list(variables.items()) if isinstance(variables, dict) else list(variables or ())
    for name, _ in pairs:
        if not _ENV_NAME.match(str(name)):
            raise ZagreusError(f"NCCL variable name {name!r} is not a valid environment variable name")
    return [(str(n), str(v)) for n, v in pairs]


def render_body(template: Path, **context) -> str:
    """A script body from a Jinja template under ``slurm/``: strict (an unknown name is an error),
    no autoescaping, and a ``q`` filter that shell-quotes a value (``{{ value | q }}``)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(template.parent)), autoescape=False,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["q"] = lambda v: shlex.quote(str(v))
    return env.get_template(template.name).render(**context)


def write_script(path: str | Path, header: str, body: str, *, shell: str = "/bin/bash") -> Path:
    """Write an sbatch script: shebang, the ``#SBATCH`` header, then the body. Returns the path."""
    path = Path(path)
    for line in header.splitlines():
        if line.strip() and not line.startswith("#"):
            raise ZagreusError(f"the sbatch header for {path} holds a non-comment line {line!r}: sbatch stops "
                               "reading directives at the first command, so the rest would be ignored")
    text = f"#!{shell}\n{header.rstrip()}\n\n{body.lstrip()}"
    if not text.endswith("\n"):
        text += "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def dry_run(script_path: str | Path) -> str:
    """The script's text, after checking its shell syntax (``bash -n``). Submits nothing."""
    path = Path(script_path)
    if not path.is_file():
        raise ZagreusError(f"sbatch script {path} does not exist")
    text = path.read_text()
    bash = shutil.which("bash")
    if bash:
        proc = subprocess.run([bash, "-n", str(path)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise ZagreusError(f"sbatch script {path} has a shell syntax error: {_message(proc)}")
    return text


# ---------------------------------------------------------------------------- submit / cancel

def _dependency(dependency) -> str | None:
    if dependency is None or dependency == "" or dependency == []:
        return None
    if isinstance(dependency, (list, tuple)):
        return "afterok:" + ":".join(str(d) for d in dependency)
    text = str(dependency)
    return text if ":" in text or text in ("singleton",) else f"afterok:{text}"


def submit(script_path: str | Path, *, test_only: bool = False, dependency=None, extra: Iterable[str] = (),
           cwd: str | Path | None = None) -> str:
    """Submit an sbatch script; return the job id (or, with ``test_only``, sbatch's estimate).

    ``dependency`` is a job id, a list of ids (both meaning ``afterok``) or a full Slurm
    dependency (``afterany:123``). ``extra`` are more sbatch options. ``test_only`` runs
    ``sbatch --test-only``: the scheduler validates the request and says when and where it
    would start, without submitting anything. A refusal raises ZagreusError with sbatch's message.
    """
    path = Path(script_path)
    if not path.is_file():
        raise ZagreusError(f"sbatch script {path} does not exist")
    args = ["sbatch", "--test-only" if test_only else "--parsable"]
    dep = _dependency(dependency)
    if dep:
        args.append(f"--dependency={dep}")
    args += [str(e) for e in extra]
    args.append(str(path))
    proc = _run(args, check=False, cwd=cwd)
    if proc.returncode != 0:
        what = "sbatch --test-only refused" if test_only else "sbatch refused"
        raise ZagreusError(f"{what} {path}: {_message(proc)}{_hint_for_refusal(proc)}{_controller_hint(proc)}")
    if test_only:
        return _message(proc)
    return parse_job_id(proc.stdout)


def _hint_for_refusal(proc: subprocess.CompletedProcess) -> str:
    text = _message(proc).lower()
    if "requested node configuration is not available" in text or "node count specification invalid" in text:
        try:
            nodes = _sinfo_nodes(None)
        except ZagreusError:
            return ""
        parts = sorted({f"{n.partition}: {n.name} ({n.cpus} CPUs, {n.memory_mb} MB, {n.gres or 'no GRES'}, {n.state})"
                        for n in nodes})
        return (" — the request (nodes, CPUs, memory, GPUs/GRES) exceeds what the cluster has: "
                + "; ".join(parts))
    return ""


def parse_job_id(text: str) -> str:
    """The job id from ``sbatch --parsable`` output (``123`` or ``123;cluster``)."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    job_id = line.split(";", 1)[0]
    if not re.fullmatch(r"\d+", job_id):
        raise ZagreusError(f"sbatch --parsable gave {text.strip()!r}, not a job id")
    return job_id


def cancel(job_id: str) -> None:
    """``scancel`` the job (an array id cancels every task)."""
    _run(["scancel", str(job_id)])


# ---------------------------------------------------------------------------- job state

class SlurmUnreachable(ZagreusError):
    """A Slurm command could not get an answer from the controller (perhaps only for a moment)."""


def _call(args: Sequence[str]) -> subprocess.CompletedProcess | None:
    """Run a Slurm command; None when it is not installed or does not answer in time."""
    if shutil.which(args[0], path=environ().get("PATH")) is None:
        return None
    try:
        return subprocess.run(list(args), capture_output=True, text=True, timeout=COMMAND_TIMEOUT, env=environ())
    except (OSError, subprocess.TimeoutExpired):
        return None


def _stdout(args: Sequence[str]) -> str | None:
    proc = _call(args)
    return proc.stdout if proc is not None and proc.returncode == 0 else None


def state(job_id: str) -> JobState:
    """The job's state: squeue (queued and recently finished jobs), then sacct, then scontrol, then
    sacct's job-completion log (``sacct -c``: on a cluster without slurmdbd, once scontrol has
    forgotten the job MinJobAge seconds after it ended; it does not know array tasks).

    squeue gives no exit code, so a job squeue reports finished is looked up further down.
    Raises SlurmUnreachable when the controller does not answer, ZagreusError for an unknown job.
    """
    job_id = str(job_id)
    require("squeue")
    proc = _call(["squeue", "-h", "-r", "-t", "all", "-j", job_id, "-o", SQUEUE_FORMAT])
    if proc is None:
        raise SlurmUnreachable(f"squeue did not answer within {COMMAND_TIMEOUT}s for job {job_id}")
    queued = None
    if proc.returncode == 0:
        queued = combine(job_id, parse_squeue(proc.stdout))
        if queued is not None and not queued.terminal:
            return queued
    elif "invalid job id" not in _message(proc).lower():
        raise SlurmUnreachable(f"squeue could not answer for job {job_id}: {_message(proc)}{_controller_hint(proc)}")
    text = _stdout(["sacct", "-X", "-P", "-n", "-j", job_id, "-o", SACCT_FIELDS])
    if text:
        found = combine(job_id, parse_sacct(text))
        if found is not None:
            return found
    text = _stdout(["scontrol", "show", "job", "-o", job_id])
    if text:
        found = combine(job_id, parse_scontrol_jobs(text))
        if found is not None:
            return found
    if queued is not None:
        return queued
    text = _stdout(["sacct", "-c", "-P", "-n", "-j", _split_job_id(job_id)[0], "-o", SACCT_FIELDS])
    if text:
        found = combine(job_id, [JobState(**{**r.__dict__, "source": "sacct -c"}) for r in parse_sacct(text)])
        if found is not None:
            return found
    raise ZagreusError(f"Slurm knows no job {job_id} (squeue, sacct and scontrol have no record of it): a wrong "
                       "id, another cluster (check SLURM_CONF), or a job that ended long ago on a cluster "
                       "without accounting")


# ---------------------------------------------------------------------------- nodes

def _sinfo_nodes(partition: str | None) -> list[NodeInfo]:
    args = ["sinfo", "-h", "-N", "-o", SINFO_FORMAT]
    if partition:
        args[1:1] = ["-p", partition]
    return parse_sinfo_nodes(_run(args).stdout)


def check_nodes(partition: str | None = None) -> list[NodeInfo]:
    """Raise ZagreusError before submission when every node of the partition is drained or down.

    ``partition`` None means the cluster's default partition. Returns the partition's nodes.
    """
    every = _sinfo_nodes(None)
    mine = nodes_of(every, partition)
    if not mine:
        known = sorted({n.partition for n in every})
        which = f"partition {partition!r}" if partition else "a default partition"
        raise ZagreusError(f"the Slurm cluster has no {which}; its partitions: {', '.join(known) or 'none'}")
    message = unusable_message(partition, mine)
    if message:
        raise ZagreusError(message)
    return mine


# ---------------------------------------------------------------------------- follow

class JobFailed(ZagreusError):
    """A job ended in a state other than COMPLETED."""

    def __init__(self, job: JobState, log_path: str | Path | None = None, log_tail: str = ""):
        self.job = job
        self.job_id = job.job_id
        self.state = job.state
        self.exit_code = job.exit_code
        self.log_path = str(log_path) if log_path else None
        self.log_tail = log_tail
        text = f"Slurm job {job.job_id} ended {job.state} (exit code {job.exit_text()})"
        if job.reason and job.reason not in ("None", "(null)"):
            text += f", reason: {job.reason}"
        if job.tasks:
            bad = [t for t in job.tasks if t.state != "COMPLETED"]
            text += "; failed tasks: " + ", ".join(f"{t.job_id} {t.state} {t.exit_text()}" for t in bad)
        if self.log_path:
            text += f"\n--- last lines of {self.log_path} ---\n{log_tail}" if log_tail else \
                f"\n(its log {self.log_path} is empty or missing)"
        super().__init__(text)


def tail(path: str | Path | None, lines: int = 30) -> str:
    """The last ``lines`` lines of a text file ('' when it is absent)."""
    if not path:
        return ""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 256 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def _progress_bar(enabled: bool, job_id: str):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=None, desc=f"Slurm job {job_id}", bar_format="{desc} [{elapsed}]", leave=True)


def _failed_log(job: JobState, log_path: str | Path | None) -> str:
    """The log to quote for a failed job: ``log_path`` (``%A``/``%a`` filled in with the first
    failed array task, as sbatch names its files), else the StdOut Slurm reports."""
    failed = next((t for t in job.tasks if not t.ok), None)
    if log_path:
        text = str(log_path)
        if "%" in text:
            base, task = _split_job_id(failed.job_id if failed else job.job_id)
            task = (failed.array_task_id if failed else None) or task or ""
            text = text.replace("%A", base).replace("%a", task).replace("%j", base)
        return text
    return job.stdout or (failed.stdout if failed and failed.stdout else "") or \
        next((t.stdout for t in job.tasks if not t.ok and t.stdout), "")


def follow(job_id: str, *, poll: float = 2.0, pending_timeout: float | None = 120, timeout: float | None = None,
           log_path: str | Path | None = None, progress: bool = True,
           state_fn: Callable[[str], JobState] | None = None,
           nodes_fn: Callable[[str | None], Sequence[NodeInfo]] | None = None,
           sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
           detail: Callable[[], str] | None = None, label: str | None = None) -> JobState:
    """Follow a job until it ends; return its final state when COMPLETED.

    Shows the state and elapsed time (tqdm; off with ``progress=False``). Nothing is ever cancelled
    here; instead it raises:

    * ZagreusError when the job pends for a reason after which it can never start (its partition's
      nodes are all drained or down, the request exceeds the partition, it is held, its dependency
      failed), or pends longer than ``pending_timeout`` seconds (None: wait as long as it takes);
    * ZagreusError when it has not ended after ``timeout`` seconds (None: no limit);
    * :class:`JobFailed` when it ends FAILED, CANCELLED, TIMEOUT, NODE_FAIL, OUT_OF_MEMORY, ...,
      with the last 30 lines of ``log_path`` (default: the job's StdOut as scontrol reports it;
      ``%A``/``%a`` in it are filled in with the first failed array task, as sbatch names logs).

    ``detail`` returns a short text shown after the state while the job runs (e.g. the training
    step read from its metrics file); ``label`` replaces "Slurm job" in the display.
    ``state_fn``/``nodes_fn``/``sleep``/``clock`` replace :func:`state`, the sinfo node query, the
    wait and the clock (for tests).
    """
    job_id = str(job_id)
    get_state = state_fn or state

    def get_nodes(partition: str | None) -> list[NodeInfo]:
        if nodes_fn is not None:
            return list(nodes_fn(partition))
        try:
            return nodes_of(_sinfo_nodes(None), partition or None)
        except ZagreusError:
            return []

    start = clock()
    pending_since: float | None = None
    unreachable_since: float | None = None
    bar = _progress_bar(progress, job_id)
    last, last_refresh = "", start
    try:
        while True:
            try:
                job = get_state(job_id)
            except SlurmUnreachable:
                # A busy or restarting controller: try again for a while before giving up.
                now = clock()
                unreachable_since = now if unreachable_since is None else unreachable_since
                if now - unreachable_since > UNREACHABLE_GRACE:
                    raise
                sleep(poll)
                continue
            unreachable_since = None
            now = clock()
            if bar is not None:
                text = f"{label or 'Slurm job'} {job_id}: {job.describe().split(' ', 2)[-1]}"
                if detail is not None and job.state in ACTIVE_STATES:
                    try:
                        extra = detail()
                    except Exception:  # a progress hint must never stop the follow
                        extra = ""
                    text += f" | {extra}" if extra else ""
                if text != last or now - last_refresh >= PROGRESS_REFRESH:
                    bar.set_description_str(text, refresh=True)
                    progress_line.report("slurm", text)  # zagreus run's progress line
                    last, last_refresh = text, now
            if job.terminal:
                if job.ok:
                    return job
                path = _failed_log(job, log_path)
                raise JobFailed(job, path or None, tail(path, 30) if path else "")
            if job.pending:
                pending_since = now if pending_since is None else pending_since
                why = never_starts(job, get_nodes(job.partition or None))
                if why:
                    raise ZagreusError(
                        f"Slurm job {job_id} is {job.state} and cannot start: {why}. The job is left in the queue; "
                        f"cancel it with `scancel {job_id}` or fix the cause and follow it again")
                if pending_timeout is not None and now - pending_since > pending_timeout:
                    raise ZagreusError(
                        f"Slurm job {job_id} has been {job.state} for {now - pending_since:.0f}s "
                        f"(reason: {job.reason or 'none given'}), longer than pending_timeout={pending_timeout:g}s. "
                        f"The job is left in the queue: check `squeue -j {job_id}` and `sinfo`, follow it again with "
                        f"a larger pending_timeout, or `scancel {job_id}`")
            else:
                pending_since = None
            if timeout is not None and now - start > timeout:
                raise ZagreusError(
                    f"Slurm job {job_id} is still {job.state} after {now - start:.0f}s (timeout={timeout:g}s). "
                    f"It keeps running: follow it again, or `scancel {job_id}`")
            sleep(poll)
    finally:
        if bar is not None:
            bar.close()
