"""The eval stage on Slurm: an array job with one task per model, rendered by the kit's one sbatch renderer.

:func:`write_slurm` writes ``plan.json`` (the :class:`EvalPlan` each array task reloads) and
``eval_array.sbatch``; :func:`submit` and :func:`follow` go through the project's one Slurm client;
:func:`array_task` is what one task runs (``python -m zagreus_utils.stages.evaluation array-task``).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

from ...cluster import sbatch
from ...cluster import slurm as slurm_mod
from ...pipeline import paths
from ...pipeline.errors import ZagreusError
from ...pipeline.manifest import LaunchRecord
from ...pipeline.spec import OFFLINE_VARIABLES, load_spec
from .evaluate import EvalPlan, _model_done, evaluate_model, lm_eval_version
from .tasks import go_offline, task_manager

TEMPLATE = paths.REPO_ROOT / "slurm" / "eval.sbatch.j2"


def slurm_script(plan: EvalPlan, plan_file: Path, *, python: str | None = None, job_name: str | None = None,
                 workdir: Path = paths.REPO_ROOT, spec=None) -> sbatch.Rendered:
    """The sbatch script: an array with one task per model (``0..n-1``, in ``plan.models`` order),
    ``slurm/eval.sbatch.j2`` rendered by the kit's one sbatch renderer (:func:`zagreus_utils.cluster.sbatch.script`:
    sbatch's own quoting for the ``#SBATCH`` lines, a line break refused; every other value
    ``shlex.quote``-d). The log path goes on the sbatch command line (:func:`sbatch_command`).
    """
    spec = spec or load_spec(plan.language, plan.profile, plan.overrides)
    s = spec.profile.slurm
    res = s.eval
    slurm_mod.check_time_limit(res.time, f"configs/profiles/{plan.profile}.yaml slurm.eval.time", '"04:00:00"')
    if not plan.models:
        raise ZagreusError("no models to evaluate: nothing to submit")
    gres = res.gres or (f"gpu:{res.gpus_per_node}" if res.gpus_per_node else None)
    return sbatch.script(
        TEMPLATE,
        dict(job_name=job_name or f"zagreus-eval-{plan.language}", array=f"0-{len(plan.models) - 1}",
             nodes=res.nodes or 1, ntasks=1, time=res.time, cpus_per_task=res.cpus_per_task or None, gres=gres,
             mem_per_cpu=f"{int(math.ceil(res.mem_per_cpu_gb * 1024))}M" if res.mem_per_cpu_gb else None,
             account=s.account, partition=s.partition),
        nodes=res.nodes or 1,
        profile=plan.profile, language=plan.language, lm_eval_version=lm_eval_version(), plan_name=plan_file.name,
        models=[f"{i}: {m.name} ({m.kind}{'' if m.step is None else ', step ' + str(m.step)})"
                for i, m in enumerate(plan.models)],
        offline=OFFLINE_VARIABLES if spec.profile.offline else (),
        environment=[(var, os.environ[var]) for var in ("HF_HOME", "ZAGREUS_RUNS", "ZAGREUS_CONFIGS") if os.environ.get(var)],
        nltk_data=str(paths.nltk_data_dir()),  # lm-eval's ifeval reads punkt_tab: the folder `zagreus prefetch` fills
        workdir=str(workdir), python=python or sys.executable, module=__package__, plan_file=str(plan_file))


def _slurm_dir(plan: EvalPlan) -> Path:
    return Path(plan.out_dir) / "slurm"


def write_slurm(plan: EvalPlan, **kwargs) -> Path:
    """Write ``plan.json`` and ``eval_array.sbatch`` into ``<out_dir>/slurm/``; returns the script."""
    folder = _slurm_dir(plan)
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    plan_file = folder / "plan.json"
    plan_file.write_text(json.dumps(plan.to_json(), indent=2) + "\n", encoding="utf-8")
    return sbatch.write(slurm_script(plan, plan_file, **kwargs), folder / "eval_array.sbatch")


def sbatch_command(plan: EvalPlan, script: Path) -> list[str]:
    return ["sbatch", "--parsable", f"--output={_slurm_dir(plan) / 'logs' / '%A_%a.out'}", str(script)]


def submit(plan: EvalPlan, script: Path) -> str:
    """``sbatch --parsable`` (:func:`zagreus_utils.cluster.slurm.submit`); returns the array job id."""
    return slurm_mod.submit(script, extra=sbatch_command(plan, script)[2:-1])


def follow(job_id: str, *, poll_s: float = 15, timeout_s: float | None = None, progress: bool = True,
           pending_timeout: float | None = 600, log_path: str | Path | None = None):
    """Follow the array until every task has ended (:func:`zagreus_utils.cluster.slurm.follow`: a progress
    line with the tasks' states; :class:`zagreus_utils.cluster.slurm.JobFailed` with the failed tasks and
    the tail of a failed task's log when one ended other than COMPLETED). Returns the final JobState."""
    return slurm_mod.follow(job_id, poll=poll_s, timeout=timeout_s, progress=progress,
                            pending_timeout=pending_timeout, label="eval array: Slurm job", log_path=log_path)


def array_task(plan_file: Path, index: int) -> list[Path]:
    """What one Slurm array task runs: evaluate model ``index`` of the plan."""
    try:
        plan = EvalPlan.from_json(json.loads(Path(plan_file).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ZagreusError(f"cannot read the eval plan {plan_file} ({type(exc).__name__}: {exc}); the eval stage "
                           "writes it with the sbatch script: rerun it (zagreus run --stages eval --launcher slurm)") from None
    if not 0 <= index < len(plan.models):
        raise ZagreusError(f"array index {index} out of range: the plan has {len(plan.models)} models")
    if plan.offline:
        go_offline()
    tm = task_manager(Path(plan.tasks_dir) if plan.tasks_dir else None, include_defaults=plan.include_defaults)
    return evaluate_model(plan, plan.models[index], tm)


def run_array(plan: EvalPlan, spec, *, poll_s: float = 15, timeout_s: float | None = None, log=print,
              progress: bool = True) -> dict:
    """Submit the array (a partition whose nodes are all drained or down is refused first), follow
    it, and say which models finished and which failed (their array task and state)."""
    script = write_slurm(plan)
    launch = LaunchRecord(plan.out_dir, "slurm")
    slurm_mod.require("sbatch")
    slurm_mod.check_nodes(spec.profile.slurm.partition)  # all drained/down: a clear error, nothing submitted
    job = submit(plan, script)
    launch.job("eval array", job, "SUBMITTED", tasks=len(plan.models), logs="slurm/logs/%A_%a.out")
    log(f"submitted eval array job {job} ({len(plan.models)} tasks)")
    t0 = time.perf_counter()
    error = None
    try:
        state = follow(job, poll_s=poll_s, timeout_s=timeout_s, progress=progress,
                       log_path=_slurm_dir(plan) / "logs" / "%A_%a.out")
    except slurm_mod.JobFailed as exc:  # finished models are still ingested below
        state, error = exc.job, exc
    launch.job("eval array", job, state.state, seconds=round(time.perf_counter() - t0, 1),
               tasks={t.array_task_id: t.state for t in state.tasks})
    task_state = {str(t.array_task_id): t.state for t in state.tasks}
    outcome = {"finished": [m.name for m in plan.models if _model_done(plan, m)],
               "failed": {m.name: f"array task {job}_{i}: {task_state.get(str(i), state.state)}"
                          for i, m in enumerate(plan.models) if not _model_done(plan, m)},
               "job": {"job_id": job, "state": state.state, "tasks": task_state}}
    if error is not None and not outcome["failed"]:
        outcome["failed"]["(array)"] = str(error)
    if error is not None:
        outcome["error"] = str(error)
    return outcome
