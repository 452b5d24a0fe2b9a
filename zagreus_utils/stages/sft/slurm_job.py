"""The SFT job on Slurm: ``slurm/sft.sbatch.j2`` rendered by the kit's one sbatch renderer
(:func:`zagreus_utils.cluster.sbatch.script`), then dry-run, submitted and followed.

The job runs axolotl's preprocess once, then ``srun torchrun -m axolotl.cli.train`` with nodes and
GPUs per node from ``profile.slurm.sft``: ``--gres=gpu:N`` and torchrun's ``--nproc_per_node`` are
the same N (a CPU profile: no gres, one process per node).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from ...cluster import sbatch
from ...cluster import slurm as slurm_mod
from ...pipeline import paths
from ...pipeline.errors import ZagreusError
from .axolotl import SftPlan, SftRun, _clear_previous_model, check_output
from .config import load_config

TEMPLATE = paths.REPO_ROOT / "slurm" / "sft.sbatch.j2"


def render_sbatch(spec, config_path: str | Path, *, workdir: str | Path = paths.REPO_ROOT,
                  job_name: str | None = None, output: str | Path = "slurm-%j.out", venv: str | Path | None = "auto",
                  modules=None, hf_home: str | None = None, nccl=None,
                  master_port: int = sbatch.DEFAULT_MASTER_PORT, logs_dir: str | Path | None = None) -> sbatch.Rendered:
    """The sbatch script of one SFT run: ``srun torchrun ... -m axolotl.cli.train <config>``.

    ``venv="auto"``: this interpreter's environment. ``modules``/``nccl`` default to the report's on
    GPU profiles and to none on CPU profiles. Every value in the script body is ``shlex.quote``-d.
    """
    p = spec.profile
    res = sbatch.resources(spec, "sft", min_nodes=1)
    gpus = res.gpus_per_node
    procs = gpus or 1
    if venv == "auto":
        venv = sys.prefix if (Path(sys.prefix) / "bin" / "activate").is_file() else None
    modules = sbatch.SFT_MODULES if (modules is None and gpus) else (modules or ())
    nccl = sbatch.DEFAULT_NCCL if (nccl is None and gpus) else (nccl or ())
    return sbatch.script(
        TEMPLATE,
        dict(job_name=job_name or f"zagreus-sft-{spec.language.code}", account=p.slurm.account,
             partition=p.slurm.partition, nodes=res.nodes, ntasks_per_node=1, gres=f"gpu:{gpus}" if gpus else None,
             cpus_per_task=res.cpus_per_task, time=res.time, output=str(output)),
        nodes=res.nodes, procs_per_node=procs, gpus_per_node=gpus,
        profile=p.name, language=spec.language.code, workdir=str(workdir), modules=[str(m) for m in modules],
        venv=str(venv) if venv else "", venv_activate=str(Path(venv) / "bin" / "activate") if venv else "",
        hf_home=hf_home, omp_threads=max((res.cpus_per_task or procs) // procs, 1), nccl=slurm_mod.env_pairs(nccl),
        master_port=sbatch.count("master_port", master_port, 1), config=str(config_path),
        logs_dir=str(logs_dir) if logs_dir else "", cpus_per_task=res.cpus_per_task or 1)


def slurm(plan: SftPlan, spec, *, dry_run: bool = True, follow: bool = False, timeout_s: float | None = None,
          progress: bool = False, pending_timeout: float | None = 600, launch=None, **render_kwargs) -> dict:
    """Render ``<out>/sft.sbatch`` (logs to ``<out>/logs/slurm-<job>.out``, and axolotl's
    ``preprocess.log``/``train.log`` beside it as the local launcher writes them) and check its syntax.

    ``dry_run``: return it without submitting (and, where a Slurm controller answers, with
    ``sbatch --test-only``'s verdict). Else refuse a partition whose nodes are all drained or down,
    submit it (``sbatch --parsable``) and, with ``follow``, wait until it ends with a progress line
    (:func:`zagreus_utils.cluster.slurm.follow` raises with the job id, state and the log's tail on failure).
    ``launch``: a :class:`zagreus_utils.pipeline.manifest.LaunchRecord` to add the job to.
    """
    logs = Path(plan.out_dir) / "logs"
    render_kwargs.setdefault("logs_dir", logs)
    script = render_sbatch(spec, plan.config_path, output=logs / "slurm-%j.out", **render_kwargs)
    path = sbatch.write(script, Path(plan.out_dir) / "sft.sbatch")
    text = slurm_mod.dry_run(path)  # bash -n
    result: dict[str, Any] = {"script": text, "path": str(path), "nodes": script.nodes,
                              "gpus_per_node": script.gpus_per_node, "procs_per_node": script.procs_per_node,
                              "world_size": script.world_size, "command": ["sbatch", "--parsable", str(path)]}
    if dry_run:
        if slurm_mod.cluster_available():
            try:
                result["test_only"] = slurm_mod.submit(path, test_only=True)
            except ZagreusError as exc:
                result["test_only"] = f"refused: {exc}"
        else:
            result["test_only"] = "no Slurm controller answers here: syntax checked with bash -n only"
        return result
    logs.mkdir(parents=True, exist_ok=True)
    slurm_mod.require("sbatch")
    slurm_mod.check_nodes(spec.profile.slurm.partition)  # all drained/down: a clear error, nothing submitted
    t0 = time.perf_counter()
    job = slurm_mod.submit(path)
    result["job_id"] = job
    result["log"] = str(logs / f"slurm-{job}.out")
    if launch is not None:
        launch.job("sft", job, "SUBMITTED", log=f"logs/slurm-{job}.out")
    if follow:
        try:
            state = slurm_mod.follow(job, log_path=logs / f"slurm-{job}.out", progress=progress, timeout=timeout_s,
                                     pending_timeout=pending_timeout, label="SFT (axolotl): Slurm job")
        except slurm_mod.JobFailed as exc:
            if launch is not None:
                launch.job("sft", job, exc.state, seconds=round(time.perf_counter() - t0, 1))
            raise
        result["state"] = state.state
        result["seconds"] = round(time.perf_counter() - t0, 1)
        if launch is not None:
            launch.job("sft", job, state.state, seconds=result["seconds"])
    return result


def run_slurm(plan: SftPlan, spec, *, progress: bool = True, timeout_s: float | None = None, launch=None,
              **render_kwargs) -> SftRun:
    """The ``slurm`` launcher's SFT: submit ``sft.sbatch`` (axolotl preprocess, then
    ``srun torchrun -m axolotl.cli.train``), follow it, and check the model it wrote, as
    :func:`run_local` does. Returns the same :class:`SftRun` (logs ``preprocess``/``train`` are
    axolotl's output, written by the job; ``seconds['slurm job']`` from submission to end)."""
    cfg = load_config(plan.config_path)
    model_dir = Path(cfg["output_dir"])
    _clear_previous_model(model_dir, plan.out_dir)
    res = slurm(plan, spec, dry_run=False, follow=True, timeout_s=timeout_s, progress=progress, launch=launch,
                **render_kwargs)
    logs = Path(plan.out_dir) / "logs"
    template = check_output(model_dir)
    return SftRun(model_dir, {"slurm job": res["seconds"]},
                    {"preprocess": logs / "preprocess.log", "train": logs / "train.log", "slurm": Path(res["log"])},
                    template)

