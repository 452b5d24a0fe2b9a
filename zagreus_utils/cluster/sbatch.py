"""The kit's one sbatch renderer (pretraining, SFT and eval jobs) and the Slurm calls around it.

:func:`script` is the renderer every job uses: the ``#SBATCH`` request through
:func:`zagreus_utils.cluster.slurm.sbatch_header` and the body from a Jinja template under ``slurm/``
through :func:`zagreus_utils.cluster.slurm.render_body`; :func:`resources` reads a job's nodes, GPUs,
CPUs and time from ``profile.slurm.<job>`` (the hardware section fills what is unset). The SFT
(``zagreus_utils.stages.sft.slurm``) and eval (``zagreus_utils.stages.evaluation.slurm``) scripts
are rendered by it; the pretraining script is :func:`render`:

``render`` writes the ``#SBATCH`` request (nodes, one task per node, GPUs per node, CPUs, time,
account, partition) from ``profile.slurm.pretraining`` through :func:`zagreus_utils.cluster.slurm.sbatch_header`
(sbatch's own quoting; a line break in a value is refused) and fills ``slurm/pretraining.sbatch.j2``
for the rest: the torchrun rendezvous, the offline Hugging Face variables, NCCL settings and
``srun torchrun ... run_train.py --config-file`` (or the local trainer, ``-m zagreus_utils.model.trainer``,
where nanotron cannot run: a profile without GPUs). Every shell value is ``shlex.quote``-d, so the
script is safe against any parameter value.

Submitting, following and cancelling go through :mod:`zagreus_utils.cluster.slurm`, the project's one
Slurm client (real ``sbatch``/``squeue``/``sacct``/``scancel``; a clear error where Slurm is not
installed). ``dry_run`` checks the script's syntax (``bash -n``) and, where Slurm answers, asks
``sbatch --test-only`` (the scheduler validates the request without submitting anything).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..pipeline import paths
from . import slurm
from ..pipeline.errors import ZagreusError

TEMPLATE = paths.REPO_ROOT / "slurm" / "pretraining.sbatch.j2"
SHELL = "/bin/bash"

# Site settings the spec does not hold (the report's values; override per call).
DEFAULT_MODULES = ("profile/global", "python/3.11", "cuda/12.2", "cudnn", "nccl", "gcc")
SFT_MODULES = ("profile/global", "cuda/12.2", "cudnn", "nccl")  # the report's SFT script loads no python/gcc
DEFAULT_NCCL = (("NCCL_IB_DISABLE", "0"), ("NCCL_SOCKET_IFNAME", "ib0,eno,eth"))
DEFAULT_MASTER_PORT = 29400


def count(key: str, value, minimum: int = 0) -> int:
    """A count from the profile (nodes, GPUs, CPUs, a port), or a clear error naming its key."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        what = "a non-negative integer" if minimum == 0 else f"an integer >= {minimum}"
        raise ZagreusError(f"slurm setting {key} must be {what} (got {value!r}); fix it in the profile")
    return value


@dataclass(frozen=True)
class Resources:
    """What one job asks Slurm for (``profile.slurm.<job>``, defaults from ``profile.hardware``)."""

    nodes: int
    gpus_per_node: int
    cpus_per_task: int | None
    time: str


def resources(spec, job: str, *, min_nodes: int = 0) -> Resources:
    """The request of ``profile.slurm.<job>`` (``pretraining`` or ``sft``); unset nodes and GPUs per
    node are the profile's hardware; a missing time limit is a clear error."""
    p = spec.profile
    req, hw = getattr(p.slurm, job), p.hardware
    nodes = count(f"slurm.{job}.nodes", req.nodes if req.nodes is not None else hw.nodes, min_nodes)
    gpus = count(f"slurm.{job}.gpus_per_node", req.gpus_per_node if req.gpus_per_node is not None else hw.gpus_per_node)
    cpus = None if req.cpus_per_task is None else count(f"slurm.{job}.cpus_per_task", req.cpus_per_task, 1)
    if not req.time:
        raise ZagreusError(f"slurm.{job}.time is missing; set it in the profile (e.g. 12:00:00)")
    return Resources(nodes, gpus, cpus, req.time)


@dataclass
class Rendered:
    """One rendered sbatch script: its ``#SBATCH`` header, its body, and the job's shape."""

    header: str
    body: str
    nodes: int
    procs_per_node: int
    world_size: int
    entry: str = ""
    gpus_per_node: int = 0

    @property
    def text(self) -> str:
        """The script as :func:`zagreus_utils.cluster.slurm.write_script` writes it."""
        return f"#!{SHELL}\n{self.header.rstrip()}\n\n{self.body.lstrip()}"


def script(template: Path, directives: dict, *, nodes: int = 1, procs_per_node: int = 1, gpus_per_node: int = 0,
           entry: str = "", **context) -> Rendered:
    """The renderer of every job: ``directives`` (``#SBATCH`` options, in order) through
    :func:`zagreus_utils.cluster.slurm.sbatch_header`, ``context`` into ``template`` through
    :func:`zagreus_utils.cluster.slurm.render_body` (``{{ value | q }}`` shell-quotes)."""
    body = slurm.render_body(template, nodes=nodes, procs_per_node=procs_per_node, gpus_per_node=gpus_per_node,
                             entry=entry, **context)
    return Rendered(slurm.sbatch_header(**directives), body, nodes, procs_per_node, nodes * procs_per_node, entry,
                    gpus_per_node)


def procs_per_node(spec) -> int:
    """torchrun processes per node of the pretraining job: one per GPU; on a CPU profile
    ``slurm.pretraining.procs_per_node`` (DDP over gloo; default 1)."""
    req, hw = spec.profile.slurm.pretraining, spec.profile.hardware
    gpus = req.gpus_per_node if req.gpus_per_node is not None else hw.gpus_per_node
    if gpus:
        if req.procs_per_node not in (None, gpus):
            raise ZagreusError(f"slurm.pretraining.procs_per_node = {req.procs_per_node} but the job has {gpus} GPUs "
                               "per node: a GPU profile runs one process per GPU; leave procs_per_node unset")
        return count("slurm.pretraining.gpus_per_node", gpus)
    procs = 1 if req.procs_per_node is None else count("slurm.pretraining.procs_per_node", req.procs_per_node)
    if procs < 1:
        raise ZagreusError("slurm.pretraining.procs_per_node must be at least 1")
    return procs


def world_size(spec) -> int:
    """Ranks of the pretraining job: nodes x processes per node."""
    req, hw = spec.profile.slurm.pretraining, spec.profile.hardware
    return count("slurm.pretraining.nodes", req.nodes if req.nodes is not None else hw.nodes) * procs_per_node(spec)


def render(spec, config_path: str | Path, *, entry: str = "nanotron", workdir: str | Path = paths.REPO_ROOT,
           job_name: str | None = None, output: str = "slurm-%j.out", modules=DEFAULT_MODULES,
           venv: str | None = None, hf_home: str | None = None, nccl=DEFAULT_NCCL,
           master_port: int = DEFAULT_MASTER_PORT, train_env: str | None = None,
           extra_args: tuple[str, ...] = ()) -> Rendered:
    """The sbatch script of one run (``entry``: ``nanotron`` for run_train.py, ``local`` for the local trainer).

    The ``nanotron`` entry activates the training environment (``train_env``, default the profile's
    ``slurm.train_env``; ``$ZAGREUS_TRAIN_ENV`` at submission time wins) and runs the
    ``run_train.py`` that ``make train-env`` keeps in it; the ``local`` entry activates ``venv``.
    """
    if entry not in ("nanotron", "local"):
        raise ZagreusError(f"unknown entry {entry!r}: use 'nanotron' (run_train.py) or 'local' (zagreus_utils.model.trainer)")
    p = spec.profile
    res = resources(spec, "pretraining")
    procs = procs_per_node(spec)
    return script(
        TEMPLATE,
        dict(job_name=job_name or f"zagreus-pt-{spec.language.code}", account=p.slurm.account,
             partition=p.slurm.partition, nodes=res.nodes, ntasks_per_node=1,
             gres=f"gpu:{res.gpus_per_node}" if res.gpus_per_node else None, cpus_per_task=res.cpus_per_task,
             time=res.time, output=output),
        nodes=res.nodes, procs_per_node=procs, gpus_per_node=res.gpus_per_node, entry=entry,
        profile=p.name, language=spec.language.code, workdir=str(workdir), modules=[str(m) for m in modules or ()],
        venv=venv, venv_activate=str(Path(venv) / "bin" / "activate") if venv else "", hf_home=hf_home,
        omp_threads=max((res.cpus_per_task or procs) // procs, 1), nccl=slurm.env_pairs(nccl),
        world_size=res.nodes * procs, master_port=count("master_port", master_port),
        train_env=(train_env or p.slurm.train_env) if entry == "nanotron" else "", cpus_per_task=res.cpus_per_task or 1,
        config=str(config_path), extra_args=[str(a) for a in extra_args])


def write(rendered: Rendered, path: str | Path) -> Path:
    return slurm.write_script(path, rendered.header, rendered.body, shell=SHELL)


# --- the Slurm calls (zagreus_utils.cluster.slurm) ----------------------------------------------------

def submit(script: str | Path, **kwargs) -> str:
    """Submit (``sbatch --parsable``); returns the job id."""
    return slurm.submit(script, **kwargs)


def status(job_id: str) -> slurm.JobState:
    """The job's state (squeue, then sacct / scontrol)."""
    return slurm.state(job_id)


def follow(job_id: str, **kwargs) -> slurm.JobState:
    """Follow the job until it ends (raises with the log's tail when it fails)."""
    return slurm.follow(job_id, **kwargs)


def cancel(job_id: str) -> None:
    slurm.cancel(job_id)


@dataclass
class DryRun:
    script: str
    command: list[str]
    syntax_ok: bool
    syntax_error: str = ""
    slurm_answers: bool = False
    test_only_ok: bool | None = None
    test_only_output: str = ""
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def dry_run(script: str | Path) -> DryRun:
    """Check the script without submitting it: ``bash -n``, and ``sbatch --test-only`` where Slurm answers."""
    script = Path(script)
    dr = DryRun(str(script), ["sbatch", "--parsable", str(script)], True)
    try:
        slurm.dry_run(script)
    except ZagreusError as exc:
        dr.syntax_ok, dr.syntax_error = False, str(exc)
        return dr
    dr.slurm_answers = slurm.cluster_available()
    if dr.slurm_answers:
        try:
            dr.test_only_output = slurm.submit(script, test_only=True)
            dr.test_only_ok = True
        except ZagreusError as exc:
            dr.test_only_ok, dr.test_only_output = False, str(exc)
    else:
        dr.notes.append("no Slurm cluster answers here: the script's syntax was checked with bash -n; "
                        "`sbatch --test-only` runs where Slurm is (the real submission is the next stage's job)")
    return dr
