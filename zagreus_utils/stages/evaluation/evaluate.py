"""Running lm-eval: the eval plan, one ``simple_evaluate`` call per model and (n-shot, chat template) group.

lm-eval runs through its Python API (``simple_evaluate`` with a ``TaskManager``), one call per
model and group, exactly as the report's separate commands do; its own ``results_<date>.json`` /
``samples_<task>_<date>.jsonl`` are kept under ``<out_dir>/lm_eval/<model>/<call>/``. Each call is
written as soon as it finishes, with a ``zagreus_eval.json`` marker (model fingerprint, tasks,
limit, batch size): a rerun skips what is done, and a failure keeps the finished results.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from ...pipeline import progress, stages
from ...pipeline.errors import ZagreusError
from .models import ModelEntry, check_model, discover_models, model_fingerprint
from .tasks import SuiteTask, calls, find_heldout, go_offline, render_tasks, resolve, suite, suite_source, \
    task_manager, tasks_digest

MARKER = "zagreus_eval.json"

def lm_eval_version() -> str:
    try:
        return metadata.version("lm_eval")
    except metadata.PackageNotFoundError:  # pragma: no cover
        return "unknown"


@dataclass
class EvalPlan:
    """Everything one eval run needs; also what a Slurm array task reloads (``plan.json``)."""

    profile: str
    language: str
    overrides: dict
    run_dir: str
    out_dir: str
    models: list[ModelEntry]
    suites: dict[str, list[SuiteTask]]
    tasks_dir: str | None
    include_defaults: bool
    tasks_digest: str
    batch_size: int | str
    device: str
    dtype: str
    limit: int | float | None = None
    offline: bool = False
    notes: list[str] = field(default_factory=list)

    def tasks_for(self, model: ModelEntry) -> list[SuiteTask]:
        return self.suites[model.kind]

    def to_json(self) -> dict:
        d = asdict(self)
        d["models"] = [asdict(m) for m in self.models]
        d["suites"] = {k: [asdict(t) for t in v] for k, v in self.suites.items()}
        return d

    @classmethod
    def from_json(cls, d: dict) -> "EvalPlan":
        d = dict(d)
        d["models"] = [ModelEntry(**m) for m in d["models"]]
        d["suites"] = {k: [SuiteTask(**t) for t in v] for k, v in d["suites"].items()}
        return cls(**d)


def prepare(spec, run_dir, out_dir, *, models: list[ModelEntry] | None = None, limit=None, steps=None,
            tm=None, overrides: dict | None = None) -> tuple[EvalPlan, Any]:
    """Render the local tasks (smoke), check every task is available, find the models."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if spec.profile.offline:
        go_offline()
    if models is None:
        models = discover_models(run_dir, steps=steps)
    else:
        for m in models:
            check_model(Path(m.path), "SFT model" if m.kind == "instruct" else "checkpoint")
    local = suite_source(spec) == "heldout"
    tasks_dir = None
    if local:
        tasks_dir = out_dir / "tasks"
        data_dir = run_dir / stages.folder_name("data")
        render_tasks(find_heldout(data_dir, spec.language.code), tasks_dir, spec.language.code)
        digest = tasks_digest(tasks_dir)
    else:
        digest = f"lm-eval {lm_eval_version()}"
    if tm is None:
        tm = task_manager(tasks_dir, include_defaults=not local)
    suites, notes = {}, []
    for kind in sorted({m.kind for m in models}):
        keep, skipped = resolve(suite(spec, kind), tm, tasks_dir)
        suites[kind] = keep
        notes += [n for n in skipped if n not in notes]
    plan = EvalPlan(profile=spec.profile.name, language=spec.language.code, overrides=dict(overrides or {}),
                run_dir=str(run_dir), out_dir=str(out_dir), models=list(models), suites=suites,
                tasks_dir=str(tasks_dir) if tasks_dir else None, include_defaults=not local,
                tasks_digest=digest, batch_size=spec.profile.eval.batch_size, device=spec.profile.eval.device,
                dtype=spec.profile.model.dtype, limit=limit, offline=spec.profile.offline, notes=notes)
    return plan, tm


def _call_dir(plan: EvalPlan, model: ModelEntry, call_id: str) -> Path:
    return Path(plan.out_dir) / "lm_eval" / model.name / call_id


def _marker(plan: EvalPlan, model: ModelEntry, fingerprint: str, n, chat: bool, tasks: list[SuiteTask]) -> dict:
    return {"model": model.name, "model_path": model.path, "model_fingerprint": fingerprint,
            "tasks": [t.task for t in tasks], "num_fewshot": n, "chat_template": chat,
            "limit": plan.limit, "batch_size": plan.batch_size, "device": plan.device, "dtype": plan.dtype,
            "tasks_digest": plan.tasks_digest, "lm_eval_version": lm_eval_version()}


def _latest(folder: Path, pattern: str = "results_*.json") -> Path | None:
    found = sorted(Path(folder).glob(pattern))
    return found[-1] if found else None


def is_done(folder: Path, marker: dict) -> bool:
    path = Path(folder) / MARKER
    if not path.is_file():
        return False
    try:
        saved = json.loads(path.read_text())
    except json.JSONDecodeError:
        return False
    results = saved.get("results_file")
    same = all(saved.get(k) == v for k, v in marker.items() if k != "model_path")  # a moved run folder still matches
    return same and bool(results) and (Path(folder) / results).is_file()


def evaluate_model(plan: EvalPlan, model: ModelEntry, tm, *, log: Callable[[str], None] = print,
                   force: bool = False) -> list[Path]:
    """Run lm-eval on one model (one call per n-shot/chat group); returns its results JSON files.

    A call whose marker matches (same model files, tasks, limit, batch size) is skipped.
    """
    check_model(Path(model.path), "SFT model" if model.kind == "instruct" else "checkpoint")
    fingerprint = model_fingerprint(Path(model.path))
    with _cpu_threads(plan.device):
        return [_evaluate_call(plan, model, tm, fingerprint, call, log, force) for call in calls(plan.tasks_for(model))]


@contextlib.contextmanager
def _cpu_threads(device: str):
    """On CPU, run torch single-threaded unless ``ZAGREUS_EVAL_THREADS`` says otherwise.

    The smoke models are tiny: a second intra-op thread buys little on an idle 2-core machine and
    costs a lot on a busy one (measured 36 s -> 7 s per checkpoint with 1 thread at load 6).
    """
    import torch

    wanted = os.environ.get("ZAGREUS_EVAL_THREADS", "1" if str(device).startswith("cpu") else "")
    before = torch.get_num_threads()
    if wanted.strip().isdigit() and int(wanted) > 0:
        torch.set_num_threads(int(wanted))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _evaluate_call(plan: EvalPlan, model: ModelEntry, tm, fingerprint: str, call: tuple, log, force: bool) -> Path:
    """One lm-eval call (tasks sharing n-shot and chat template); lm-eval's own files are kept."""
    import lm_eval
    from lm_eval.loggers import EvaluationTracker

    call_id, n, chat, tasks = call
    folder = _call_dir(plan, model, call_id)
    marker = _marker(plan, model, fingerprint, n, chat, tasks)
    if not force and is_done(folder, marker):
        log(f"{model.name}/{call_id}: up to date, skipped")
        return folder / json.loads((folder / MARKER).read_text())["results_file"]
    if folder.exists():
        shutil.rmtree(folder)  # results of another model version or task set: redo them
    folder.mkdir(parents=True)
    t0 = time.perf_counter()
    tracker = EvaluationTracker(output_path=str(folder / "results.json"))
    # lm-eval's progress bars go to lm_eval.log beside its results, not into the notebook
    with open(folder / "lm_eval.log", "w", encoding="utf-8") as log_file, contextlib.redirect_stderr(log_file):
        results = lm_eval.simple_evaluate(
            model="hf", model_args={"pretrained": model.path, "dtype": plan.dtype},
            tasks=[t.task for t in tasks], num_fewshot=n, batch_size=plan.batch_size, device=plan.device,
            limit=plan.limit, log_samples=True, apply_chat_template=chat, fewshot_as_multiturn=chat,
            task_manager=tm, evaluation_tracker=tracker, verbosity="WARNING")
    samples = results.pop("samples")
    tracker.save_results_aggregated(results=results, samples=samples)
    for task_name in results["configs"]:
        tracker.save_results_samples(task_name=task_name, samples=samples[task_name])
    written = _latest(folder)
    if written is None:
        raise ZagreusError(f"lm-eval did not write its results JSON into {folder} (disk full or not writable?)")
    marker.update(results_file=written.name, seconds=round(time.perf_counter() - t0, 2))
    tmp = folder / (MARKER + ".tmp")
    tmp.write_text(json.dumps(marker, indent=2) + "\n")
    os.replace(tmp, folder / MARKER)
    log(f"{model.name}/{call_id}: {', '.join(t.task for t in tasks)} in {marker['seconds']:.1f} s")
    return written


def evaluate_all(plan: EvalPlan, tm, *, log: Callable[[str], None] = print, force: bool = False) -> dict:
    """Evaluate every model of the plan; one model failing does not stop the others."""
    finished, failed = [], {}
    for i, model in enumerate(plan.models, 1):
        progress.report("eval", f"eval model {i}/{len(plan.models)}: {model.name}"
                                + (f" · {len(failed)} failed" if failed else ""))
        try:
            evaluate_model(plan, model, tm, log=log, force=force)
            finished.append(model.name)
        except Exception as exc:  # keep going: the finished results stay, a rerun skips them
            failed[model.name] = f"{type(exc).__name__}: {exc}"
            log(f"{model.name}: FAILED: {failed[model.name]}")
    return {"finished": finished, "failed": failed}



def _model_done(plan: EvalPlan, model: ModelEntry) -> bool:
    return all((_call_dir(plan, model, c) / MARKER).is_file() for c, _, _, _ in calls(plan.tasks_for(model)))

