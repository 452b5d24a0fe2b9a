"""datatrove executors for the data stages, rendered from the run spec.

``local``  runs a pipeline on this machine with datatrove's ``LocalPipelineExecutor`` and the profile's
           workers (``data.workers``).
``slurm``  builds datatrove's ``SlurmPipelineExecutor`` with the report's settings (section 3's
           tokenization script: tasks, workers, time, partition, mem per CPU, ``account`` and
           ``gres: gpu:0`` as sbatch arguments) taken from ``profile.slurm.tokenization``, with the
           Slurm logs inside the stage's logging folder. :func:`run_slurm` submits it
           (datatrove's own ``executor.run()``, pointed at the cluster ``zagreus_utils.cluster.slurm``
           finds) and follows the array until it ends; :func:`slurm_dry_run` returns the exact
           sbatch script ``executor.run()`` would submit, without calling ``sbatch``. With
           ``slurm.tokenization.workers`` > 0 the shards are packed into that many array tasks.

Reruns: datatrove marks each finished task in ``<logging_dir>/completions/`` and skips it the next
time, so a stage that failed halfway resumes where it stopped as long as its ``logging_dir`` stays
the same. Callers keep the logging folder apart from the data they write and never wipe it on a
plain rerun (see ``stages/reruns.py``: a changed configuration gets a fresh folder).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from datatrove.executor import LocalPipelineExecutor, SlurmPipelineExecutor
from loguru import logger

from ..pipeline.context import check_launcher
from ..pipeline.errors import ZagreusError
from ..pipeline.spec import Spec
from . import slurm

# What may appear unquoted in an ``#SBATCH --key=value`` line or on datatrove's ``srun`` line:
# no blanks, quotes, ``$``, backticks, ``;``, ``&``, ``|``, redirections or newlines.
_SAFE = re.compile(r"^[A-Za-z0-9_.,:/@%+=\-]+$")


def _safe(value: Any, key: str, where: str) -> str:
    text = str(value)
    if not _SAFE.match(text):
        raise ZagreusError(
            f"{where}: {key} = {text!r} cannot go into an sbatch script as is (it holds blanks, quotes, "
            "newlines or shell characters such as $ ; & | ` < >). Use letters, digits and _ . , : / @ % + = - only"
            + (", i.e. move the run folder to a path without such characters (ZAGREUS_RUNS)" if "/" in text else ""))
    return text


def _mem_args(mem_per_cpu_gb: float | None) -> tuple[int, dict]:
    """datatrove writes ``--mem-per-cpu={n}G``; a fractional GB value is passed in MB instead."""
    if mem_per_cpu_gb is None:
        return 2, {}
    if float(mem_per_cpu_gb).is_integer():
        return int(mem_per_cpu_gb), {}
    return int(math.ceil(mem_per_cpu_gb)), {"mem-per-cpu": f"{int(round(mem_per_cpu_gb * 1024))}M"}


class ZagreusSlurmExecutor(SlurmPipelineExecutor):
    """datatrove's Slurm executor, leaving out directives whose value the profile does not set
    (``partition: null`` means the cluster's default partition, not an empty ``--partition``),
    and keeping the id of the stats-merging job datatrove submits after the array (so that the
    stage can follow it, or cancel it when the array failed)."""

    merge_stats_job_id: str | None = None

    def get_sbatch_args(self, max_array: int = 1) -> dict:
        return {k: v for k, v in super().get_sbatch_args(max_array).items() if v is not None}

    def get_launch_file_contents(self, sbatch_args: dict, run_script: str) -> str:
        """datatrove's script, with ``SRUN_CPUS_PER_TASK`` exported before its ``srun`` line: srun
        (Slurm >= 22.05) no longer inherits ``--cpus-per-task`` from the allocation."""
        text = super().get_launch_file_contents(sbatch_args, run_script)
        if not run_script.startswith("srun "):
            return text
        export = f'export SRUN_CPUS_PER_TASK="${{SLURM_CPUS_PER_TASK:-{int(self.cpus_per_task)}}}"'
        return text.replace(f"\n{run_script}", f"\n{export}\n{run_script}", 1)

    def launch_merge_stats(self):
        from datatrove.executor import slurm as dt_slurm

        self.merge_stats_job_id = dt_slurm.launch_slurm_job(
            self.get_launch_file_contents(
                {**self.get_sbatch_args(), "cpus-per-task": 1, "mem-per-cpu": "1G",
                 "dependency": f"afterok:{self.job_id}"},
                f"merge_stats {self.logging_dir.resolve_paths('stats')} "
                f"-o {self.logging_dir.resolve_paths('stats.json')}"),
            self.job_id_retriever)


def slurm_bins(spec: Spec) -> int | None:
    """How many Slurm array tasks a datatrove job is packed into: ``slurm.tokenization.workers``
    (at most that many run at once anyway) when it is a limit, else one task per shard (-1/None)."""
    workers = spec.profile.slurm.tokenization.workers
    return int(workers) if workers is not None and workers > 0 else None


def run_executor(executor, job: str) -> None:
    """Run a local executor, keeping datatrove's console chatter out of the notebook (the per-task
    logs stay in ``<logging_dir>/logs/``); a failing task is reported with its log folder."""
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stderr(buffer):
            logger.remove()
            logger.add(buffer, level="INFO")
            executor.run()
    except Exception as exc:
        tail = "\n".join(buffer.getvalue().splitlines()[-15:])
        raise RuntimeError(f"datatrove job {job} failed ({type(exc).__name__}: {exc}); task logs in "
                           f"{executor.logging_dir.resolve_paths('logs')}\n{tail}") from exc
    finally:
        _restore_console_logging()


def _restore_console_logging() -> None:
    """datatrove's task logger replaces loguru's handlers; put a quiet console handler back."""
    logger.remove()
    logger.add(sys.stderr, level="WARNING")


def run_job(executor, job: str, launcher: str, *, progress: bool = True, launch=None) -> str | None:
    """Run one datatrove job of a stage with its launcher: :func:`run_executor` locally, else
    :func:`run_slurm`; returns the note a Slurm job leaves in the stage's notes (None locally)."""
    if launcher != "slurm":
        run_executor(executor, job)
        return None
    job_id = run_slurm(executor, job, progress=progress, launch=launch)
    return f"datatrove job {job}: " + (f"Slurm job {job_id} COMPLETED" if job_id else
                                       "every task already completed (skipped)")


def run_slurm(executor, job: str, *, progress: bool = True, launch=None,
              pending_timeout: float | None = 600, poll: float = 2.0) -> str | None:
    """Submit a datatrove job with datatrove's own ``SlurmPipelineExecutor.run()`` and wait for it.

    The Slurm client is pointed at the cluster :func:`zagreus_utils.cluster.slurm.environ` finds (the
    local one when nothing else is configured); a partition whose nodes are all drained or down is
    refused before anything is submitted. datatrove submits the array and returns; the array and
    then datatrove's stats-merging job are followed with :func:`zagreus_utils.cluster.slurm.follow` (a
    progress line with the completed tasks). A failed job raises :class:`zagreus_utils.cluster.slurm.JobFailed`
    (job id, state, the tail of its log, the datatrove task logs' folder); the stats job left
    waiting on it is cancelled. Tasks completed in an earlier run are skipped (datatrove's
    ``completions/`` markers), so a rerun after a failure only runs what is left. Returns the
    array's job id (None when every task was already complete). ``launch``: a
    :class:`zagreus_utils.pipeline.manifest.LaunchRecord` to add the jobs to.
    """
    if not isinstance(executor, SlurmPipelineExecutor):
        raise ZagreusError(f"run_slurm needs a Slurm executor; got {type(executor).__name__}")
    os.environ.update(slurm.environ())  # datatrove calls sbatch itself: give it the same cluster
    slurm.require("sbatch")
    slurm.check_nodes(executor.partition or None)
    executor.depends = None  # the stage runs its jobs one after the other (and checks between them)
    total = executor.tasks
    left = len(executor.get_incomplete_ranks())
    if left == 0:
        if launch is not None:
            launch.job(job, None, "SKIPPED", note=f"all {total} tasks already completed")
        return None
    t0 = time.perf_counter()
    try:
        executor.run()
    except subprocess.CalledProcessError as exc:
        raise ZagreusError(f"sbatch refused datatrove job {job} (exit {exc.returncode}; sbatch's message is "
                           f"above); its script: {executor.logging_dir.resolve_paths('launch_script.slurm')}") from None
    job_id = str(executor.job_id)
    merge_id = getattr(executor, "merge_stats_job_id", None)
    if launch is not None:
        launch.job(job, job_id, "SUBMITTED", tasks=left, stats_job_id=merge_id)
    completions = Path(executor.logging_dir.resolve_paths("completions"))

    def done() -> str:
        n = len(list(completions.iterdir())) if completions.is_dir() else 0
        return f"{n}/{total} datatrove tasks done"

    try:
        final = slurm.follow(job_id, poll=poll, pending_timeout=pending_timeout, progress=progress,
                             label=f"datatrove {job}: Slurm job", detail=done,
                             log_path=Path(executor.slurm_logs_folder) / "%A_%a.out")
        if merge_id:
            slurm.follow(merge_id, poll=poll, pending_timeout=pending_timeout, progress=False)
    except slurm.JobFailed as exc:
        if merge_id and exc.job_id == job_id:
            try:
                slurm.cancel(merge_id)  # it waits on afterok:<array> and would pend forever
            except ZagreusError:
                pass
        if launch is not None:
            launch.job(job, job_id, exc.state, seconds=round(time.perf_counter() - t0, 1))
        raise slurm.JobFailed(exc.job, exc.log_path or executor.slurm_logs_folder, (exc.log_tail or "(empty)") + (
            f"\n(datatrove job {job}: task logs in {executor.logging_dir.resolve_paths('logs')}; a rerun skips "
            f"the tasks already completed)")) from None
    if launch is not None:
        launch.job(job, job_id, final.state, seconds=round(time.perf_counter() - t0, 1))
    return job_id


def make_executor(spec: Spec, launcher: str, pipeline: list, *, job_name: str, logging_dir,
                  tasks: int | None = None, workers: int | None = None, depends=None):
    """The executor that runs ``pipeline`` for this run's launcher.

    ``tasks``: how many datatrove tasks (input shards) the pipeline is split into; default: the
    profile's ``data.workers`` (local) or ``slurm.tokenization.tasks`` (slurm). ``workers``: how
    many run at once; default: the profile's ``data.workers`` (local) or
    ``slurm.tokenization.workers`` (slurm, -1 = no limit). ``depends``: an executor of the same
    launcher that must finish first (datatrove runs it first locally; Slurm gets a dependency).
    """
    check_launcher(launcher)
    profile = spec.profile
    logging_dir = str(Path(logging_dir))
    if launcher == "local":
        tasks = int(tasks if tasks is not None else max(1, profile.data.workers))
        workers = int(workers if workers is not None else max(1, profile.data.workers))
        if tasks < 1:
            raise ZagreusError(f"job {job_name}: tasks must be at least 1 (got {tasks})")
        # fork: a pool of 2 starts in ~0.1 s; forkserver re-imports datatrove per child (~1.4 s a pool)
        start = "fork" if sys.platform.startswith("linux") else "spawn"
        return LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=max(1, min(workers, tasks)),
                                     logging_dir=logging_dir, depends=depends, skip_completed=True,
                                     start_method=start)

    where = f"configs/profiles/{profile.name}.yaml slurm"
    settings = profile.slurm.tokenization
    tasks = int(tasks if tasks is not None else (settings.tasks or 1))
    workers = int(workers if workers is not None else (settings.workers if settings.workers is not None else -1))
    slurm.check_time_limit(settings.time, f"{where}.tokenization.time")
    _safe(job_name, "job name", where)
    _safe(logging_dir, "logging folder", where)
    sbatch_args: dict[str, str] = {}
    for key, value in (("account", profile.slurm.account), ("gres", settings.gres)):
        if value is not None:
            sbatch_args[key] = _safe(value, key, where if key == "account" else f"{where}.tokenization")
    partition = _safe(profile.slurm.partition, "partition", where) if profile.slurm.partition else None
    mem_gb, mem_override = _mem_args(settings.mem_per_cpu_gb)
    sbatch_args.update(mem_override)
    activate = Path(sys.prefix) / "bin" / "activate"
    venv_path = _safe(activate, "python environment", "this machine") if activate.is_file() else None
    return ZagreusSlurmExecutor(
        pipeline=pipeline, tasks=tasks, workers=workers, time=settings.time, partition=partition,
        cpus_per_task=int(settings.cpus_per_task or 1), mem_per_cpu_gb=mem_gb, job_name=job_name,
        logging_dir=logging_dir, slurm_logs_folder=str(Path(logging_dir) / "slurm_logs"),
        sbatch_args=sbatch_args, venv_path=venv_path, depends=depends, skip_completed=True)


from datatrove.pipeline.base import PipelineStep  # noqa: E402


class PerSourceTask(PipelineStep):
    """One datatrove job over several sources, each with its own pipeline and task count.

    Task ``r`` of the job runs, in turn, each ``(source, k, n)`` of ``plan[r]``: task ``k`` of
    ``n`` of that source's own pipeline (its readers shard files, its writers name files, by ``k``
    and ``n``). One executor run (one local pool, one Slurm array) then covers every source, and
    locally the small source tasks are packed into as many tasks as there are workers
    (:func:`pack_tasks`), so that datatrove's per-task set-up is paid a few times, not per shard.
    """

    type = "🔀 - SOURCES"
    name = "per-source tasks"

    def __init__(self, plan: list[list[tuple[str, int, int]]], pipelines: dict[str, list]):
        super().__init__()
        self.plan = [[tuple(entry) for entry in task] for task in plan]
        missing = sorted({sid for task in self.plan for sid, _, _ in task} - set(pipelines))
        if missing:
            raise ValueError(f"no pipeline for source(s) {missing}")
        self.pipelines = pipelines

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        if world_size != len(self.plan):
            raise ValueError(f"this job has {len(self.plan)} tasks, the executor runs {world_size}")
        for sid, k, n in self.plan[rank]:
            self.stat_update(f"tasks_{sid}")
            out = None
            for step in self.pipelines[sid]:
                out = step(out, k, n)
            if out is not None:
                yield from out


def pack_tasks(entries: list[tuple[int, tuple[str, int, int]]], bins: int | None) -> list[list[tuple[str, int, int]]]:
    """``(size, (source, k, n))`` entries -> tasks. ``bins=None`` (Slurm): one task per entry, biggest
    first. Otherwise at most ``bins`` tasks balanced by size (largest-first greedy)."""
    ordered = sorted(entries, key=lambda e: -e[0])
    if bins is None or bins >= len(ordered):
        return [[entry] for _, entry in ordered]
    tasks: list[list] = [[] for _ in range(max(1, bins))]
    loads = [0] * len(tasks)
    for size, entry in ordered:
        i = loads.index(min(loads))
        tasks[i].append(entry)
        loads[i] += max(size, 1)
    return [t for t in tasks if t]


def _run_line(executor: SlurmPipelineExecutor) -> str:
    """The command datatrove's ``launch_job`` puts at the end of the script (same formatting)."""
    pik = executor.logging_dir.resolve_paths("executor.pik")
    srun_args = " ".join(f"--{k}={v}" for k, v in executor.srun_args.items()) if executor.srun_args else ""
    if executor.with_srun:
        return f"srun {srun_args} -l -n {executor.nodes_per_task} launch_pickled_pipeline {pik}"
    return f"launch_pickled_pipeline {pik}"


def slurm_dry_run(executor) -> str:
    """The sbatch script ``executor.run()`` would submit now, without calling ``sbatch``.

    datatrove has no dry-run flag; this builds the script with the executor's own
    ``get_sbatch_args``/``get_launch_file_contents`` exactly as ``launch_job`` does (array size from
    the tasks not yet completed). The ``sbatch`` command line adds ``--export=ALL,RUN_OFFSET=<n>``
    and, for a dependent job, ``--dependency=...`` (see :func:`sbatch_command`).
    """
    if not isinstance(executor, SlurmPipelineExecutor):
        raise ZagreusError(f"a dry run needs a Slurm executor (launcher 'slurm'); got {type(executor).__name__}")
    ranks = executor.get_incomplete_ranks()
    if not ranks:
        return (f"# all {executor.tasks} tasks of {executor.job_name} are already completed "
                f"({executor.logging_dir.resolve_paths('completions')}): sbatch would not be called\n")
    jobs = math.ceil(len(ranks) / executor.tasks_per_job)
    max_array = min(jobs, executor.max_array_size) if executor.max_array_size != -1 else jobs
    return executor.get_launch_file_contents(executor.get_sbatch_args(max_array), _run_line(executor))


def write_dry_run_scripts(jobs: list[tuple[str, Any]], folder: Path) -> dict[str, str]:
    """The sbatch script of each ``(job name, executor)``, written to ``<folder>/<job>.sbatch``."""
    scripts = {}
    for name, ex in jobs:
        scripts[name] = slurm_dry_run(ex)
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"{name}.sbatch").write_text(scripts[name])
    return scripts


def sbatch_command(executor, script_path: str = "launch_script.slurm") -> list[str]:
    """The ``sbatch`` call datatrove makes for the first array job (for display next to the dry run)."""
    args = ["sbatch", "--export=ALL,RUN_OFFSET=0"]
    depends = getattr(executor, "depends", None)
    if depends is not None:
        args.append(f"--dependency=afterok:<job id of {depends.job_name}>")
    elif getattr(executor, "depends_job_id", None):
        args.append(f"--dependency=afterok:{executor.depends_job_id}")
    return args + [script_path]
