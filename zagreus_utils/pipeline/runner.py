"""Run the stage notebooks headlessly with papermill, per language, with manifests and skipping.

``zagreus run`` calls :func:`run`. Each language goes through the per-language stages in order and
stops at its first failure (the failed notebook and a ``failed`` manifest stay for debugging)
while the other languages go on; per-profile stages (the plots) run last, over the languages asked
for and those that have run. :func:`run` first checks everything checkable
(:mod:`zagreus_utils.pipeline.runplan`) and holds the run folder's lock (:mod:`zagreus_utils.pipeline.lock`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import continual_inputs, lock, manifest, paths, progress as progress_mod, runplan, stages as stage_mod
from .kernel import StageKernelManager
from .errors import ZagreusError
from .spec import ENGLISH, OFFLINE_VARIABLES



@dataclass
class StageRun:
    language: str | None
    stage: str
    status: str  # ok | skipped | failed | blocked
    seconds: float = 0.0
    error: str = ""
    folder: Path | None = None
    moved_aside: list[dict] = field(default_factory=list)  # earlier results this run set aside (not deleted)


@dataclass
class RunSummary:
    profile: str
    results: list[StageRun] = field(default_factory=list)

    @property
    def failed(self) -> list[StageRun]:
        return [r for r in self.results if r.status in ("failed", "blocked")]

    def table(self, report: Path | None = None) -> str:
        """The run's summary for the terminal: one row per stage (its folder; a failure's message is
        printed once, after the table, by the cli), a total, and where the report is."""
        rows = [("language", "stage", "status", "seconds", "folder")]
        for r in self.results:
            detail = manifest.relative_to_repo(r.folder) if r.folder else ""
            rows.append((r.language or "(all)", r.stage, r.status, f"{r.seconds:.1f}", detail))
        widths = [max(len(str(row[i])) for row in rows) for i in range(4)]
        lines = ["  ".join(str(c).ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4] for row in rows]
        counts = {}
        for r in self.results:
            counts[r.status] = counts.get(r.status, 0) + 1
        lines.append(f"total: {len(self.results)} stage runs in {sum(r.seconds for r in self.results):.1f} s ("
                     + ", ".join(f"{n} {status}" for status, n in counts.items()) + ")")
        if report is not None:
            lines.append(f"report: {manifest.relative_to_repo(report)}  ({Path(report).resolve().as_uri()})")
        return "\n".join(lines)


def prepare_environment(profile: str, offline: bool, root: Path | None = None) -> dict[str, str]:
    """Keep Jupyter/IPython/matplotlib state inside the run folder; go offline for offline profiles.

    Only sets variables the caller has not set, so a user's own choices win. Returns what it set.
    """
    cache = paths.run_dir(profile, root=root) / ".cache"
    wanted = {
        "JUPYTER_CONFIG_DIR": cache / "jupyter" / "config",
        "JUPYTER_DATA_DIR": cache / "jupyter" / "data",
        "JUPYTER_RUNTIME_DIR": cache / "jupyter" / "runtime",
        "IPYTHONDIR": cache / "ipython",
        "MPLCONFIGDIR": cache / "matplotlib",
        # datasets' processed-data cache stays in the run folder; HF_HOME (a user's pre-filled hub
        # cache, e.g. the Llama-3.2 tokenizer for the full profile) is left alone.
        "HF_DATASETS_CACHE": cache / "huggingface" / "datasets",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "AXOLOTL_DO_NOT_TRACK": "1",
        "DO_NOT_TRACK": "1",
        "WANDB_MODE": "disabled",
    }
    if offline:
        wanted.update({name: "1" for name in OFFLINE_VARIABLES})
    set_now = {}
    for name, value in wanted.items():
        if name in os.environ:
            continue
        if isinstance(value, Path):
            value.mkdir(parents=True, exist_ok=True)
        os.environ[name] = set_now[name] = str(value)
    return set_now


def _upstream(stage: stage_mod.Stage, all_stages: list[stage_mod.Stage], profile: str,
              language: str | None, languages: list[str], root: Path | None) -> dict[str, Path]:
    """Stage folders whose outputs this stage reads: every earlier per-language stage, or those its
    notebook names (``reads``)."""
    earlier = [s for s in all_stages if s.scope == "language" and s.number < stage.number
               and (stage.reads is None or s.key in stage.reads)]
    if stage.scope == "language":
        return {s.name: s.folder(profile, language, root) for s in earlier}
    found = {}
    for lang in languages:
        for s in earlier:
            folder = s.folder(profile, lang, root)
            if (folder / manifest.MANIFEST).is_file():
                found[f"{lang}/{s.name}"] = folder
    return found


# Config files a stage reads besides its language's and its profile's (relative to configs/, by
# stage key; ``{language}`` stands for each run language): the sample corpus' facts
# (zagreus_utils.sample_corpus.knowledge.DATA), the smoke evaluation's task YAMLs
# (zagreus_utils.stages.evaluation.TASK_CONFIGS) and the ablation plan (zagreus_utils.stages.ablations.plan).
STAGE_CONFIGS = {"data": ("sample_corpus/facts.yaml", "sample_corpus/{language}.yaml"),
                 "eval": ("lm_eval/*.yaml",), "ablations": ("ablations/*.yaml",),
                 # the continual demonstration generates a second language's corpus and mixture
                 "continual": ("languages/*.yaml", "sample_corpus/*.yaml")}


def _config_files(stage: stage_mod.Stage, profile: str, languages: list[str]) -> dict[str, str]:
    """sha256 of each config file the stage reads: ``languages/<lang>.yaml`` of its own language(s)
    only, ``profiles/<profile>.yaml``, and its own extras; another language's file is not in it."""
    wanted = [paths.CONFIGS / "languages" / f"{lang}.yaml" for lang in languages]
    wanted.append(paths.CONFIGS / "profiles" / f"{profile}.yaml")
    for pattern in STAGE_CONFIGS.get(stage.key, ()):
        if "{language}" not in pattern:
            wanted += sorted(paths.CONFIGS.glob(pattern))
            continue
        # English is the second language of every run: its words are read with each language's
        wanted += [paths.CONFIGS / pattern.format(language=lang) for lang in dict.fromkeys([ENGLISH[0], *languages])]
    return {str(p.relative_to(paths.CONFIGS)): manifest.sha256_file(p) if p.is_file() else "missing"
            for p in wanted}


def _fingerprint(stage: stage_mod.Stage, parameters: dict, spec_digest: str, upstream: dict[str, Path],
                 profile: str, languages: list[str], extra: dict | None = None) -> tuple[str, dict]:
    inputs = {
        "notebook": manifest.sha256_file(stage.notebook),
        "zagreus_utils": manifest.tree_digest(paths.REPO_ROOT / "zagreus_utils"),
        "configs": _config_files(stage, profile, languages),
        "spec": spec_digest,
    }
    if stage.scope == "profile":
        inputs["published"] = manifest.tree_digest(paths.PUBLISHED, "*.csv")
    up = {}
    for name, folder in upstream.items():
        m = manifest.read(folder) or {}
        up[name] = manifest.sha256_json([m.get("fingerprint"), manifest.content_ids(m.get("outputs", {}))])
    inputs["upstream"] = up
    stable_params = {k: v for k, v in parameters.items() if k not in ("run_dir", "out_dir")}
    inputs["parameters"] = manifest.sha256_json(stable_params)
    inputs.update(extra or {})  # what a continual run reads besides (continual_inputs)
    return manifest.sha256_json(inputs), inputs


def _check_upstream(stage: stage_mod.Stage, upstream: dict[str, Path], profile: str,
                    language: str | None) -> str:
    """Why the stage cannot use its upstream stages' outputs ("" when it can): an upstream stage of
    its language that has not finished ``ok``, or any upstream output whose content is no longer
    what its manifest recorded (the line names the file and the command that rebuilds it). A stage
    selected in the same run has rerun before this check, so its outputs are fresh."""
    for name, folder in upstream.items():
        lang, _, stage_name = name.rpartition("/")
        lang = lang or language
        try:
            if stage.scope == "language":
                manifest.require(folder, stage_name, profile, lang, verify=True)
                continue
            m = manifest.read(folder)  # a per-profile stage reads whatever the languages have
            if m and m.get("status") == "ok":
                manifest.require(folder, stage_name, profile, lang, verify=True)
        except ZagreusError as exc:
            return str(exc)
    return ""


def _error_line(exc: BaseException) -> str:
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    if ename:
        return f"{ename}: {evalue}"
    return f"{type(exc).__name__}: {exc}"


def execute_stage(stage: stage_mod.Stage, profile: str, language: str | None, languages: list[str],
                  all_stages: list[stage_mod.Stage], *, spec_digest: str, force: bool = False,
                  launcher: str = "local", overrides: dict | None = None, root: Path | None = None,
                  progress: bool = True) -> StageRun:
    """Run one stage notebook (or skip it when up to date) and write its manifest."""
    import papermill as pm

    folder = stage.folder(profile, language, root)
    upstream = _upstream(stage, all_stages, profile, language, languages, root)
    blocked = _check_upstream(stage, upstream, profile, language)
    if blocked:
        return StageRun(language, stage.name, "blocked", 0.0, blocked, folder)

    offered = {"profile": profile, "language": language, "languages": languages,
               "run_dir": str(paths.run_dir(profile, language if stage.scope == "language" else None, root)),
               "out_dir": str(folder), "launcher": launcher, "overrides": overrides or {}, "force": force}
    parameters = {k: v for k, v in offered.items() if k in stage.parameters}
    # ``force`` reruns this stage once; it is not part of what the stage's outputs depend on
    stable = {k: v for k, v in parameters.items() if k != "force"}
    extra = continual_inputs.stage_inputs(stage, profile, language, overrides, all_stages, root)
    fingerprint, inputs = _fingerprint(stage, stable, spec_digest, upstream, profile,
                                       [language] if stage.scope == "language" else languages, extra)
    why = "--force" if force else manifest.stale_reason(folder, fingerprint, inputs)
    if not why:
        return StageRun(language, stage.name, "skipped", 0.0, "", folder)

    output_nb = folder / f"{stage.name}.ipynb"
    record: dict[str, Any] = {
        "stage": stage.name, "profile": profile, "language": language, "scope": stage.scope,
        "launcher": launcher, "status": "running", "parameters": parameters,
        "fingerprint": fingerprint, "inputs": inputs, "rerun_because": why, "notebook": output_nb.name,
        "started": manifest.now(), "versions": manifest.versions(), "git_commit": manifest.git_commit(),
    }
    t0 = time.perf_counter()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        manifest.write(folder, record)
    except (OSError, ZagreusError) as exc:  # a full or read-only disk before the stage started
        error = manifest.write_error(exc, folder) if isinstance(exc, OSError) else str(exc)
        return _finish(stage, folder, record, language, launcher, t0, "failed", error)
    try:
        with _watch(stage, profile, language, root, progress) as watcher:
            pm.execute_notebook(str(stage.notebook), str(output_nb), parameters=parameters,
                                kernel_name="python3", cwd=str(folder), log_output=False,
                                progress_bar=watcher.progress_bar if watcher else False,
                                kernel_manager_class=StageKernelManager)
        status, error = "ok", ""
    except OSError as exc:  # the executed notebook could not be written (disk full, read-only)
        status, error = "failed", manifest.write_error(exc, output_nb)
    except Exception as exc:  # the stage failed: keep the executed notebook and say why
        status, error = "failed", _error_line(exc)
        if not getattr(exc, "ename", None):
            record["traceback"] = traceback.format_exc()
    return _finish(stage, folder, record, language, launcher, t0, status, error)


def _watch(stage: stage_mod.Stage, profile: str, language: str | None, root: Path | None, show: bool):
    """The stage's progress line on stderr while its notebook runs (nothing with ``show`` off)."""
    if not show:
        return contextlib.nullcontext()
    label = f"[{profile}/{language}] {stage.name}" if language else f"[{profile}] {stage.name}"
    folder = paths.run_dir(profile, root=root) / ".cache" / "progress" / (language or "all") / stage.name
    return progress_mod.Watcher(label, folder, sys.stderr)


def _finish(stage: stage_mod.Stage, folder: Path, record: dict, language: str | None, launcher: str,
            t0: float, status: str, error: str) -> StageRun:
    """Record how the stage ended (its outputs, what ran it) in its manifest, where that can be
    written; a manifest that cannot be written makes the stage ``failed`` with the path."""
    seconds = time.perf_counter() - t0
    record.update(status=status, error=error, finished=manifest.now(), seconds=round(seconds, 2))
    moved = manifest.set_aside_since(folder, time.time() - seconds - 1) if folder.is_dir() else []
    if moved:
        record["moved_aside"] = moved
    try:
        record["outputs"] = manifest.describe_outputs(folder) if folder.is_dir() else {}
        record.update(_launched(stage, folder, launcher, t0))
        manifest.write(folder, record)
    except (OSError, ZagreusError) as exc:
        written = manifest.write_error(exc, folder) if isinstance(exc, OSError) else str(exc)
        if written != error:  # not the fault already reported
            status, error = "failed", f"{error}; {written}" if error else written
    return StageRun(language, stage.name, status, seconds, error, folder, moved)


def _launched(stage: stage_mod.Stage, folder: Path, launcher: str, started: float) -> dict:
    """What really ran the stage: its ``launch.json`` (written this run), else the launcher it was
    given; a stage that takes no ``launcher`` parameter runs in the notebook's own process."""
    info = manifest.read_launch(folder)
    path = folder / manifest.LAUNCH
    fresh = info is not None and path.stat().st_mtime >= time.time() - (time.perf_counter() - started) - 1
    if fresh:
        out = {"launcher": info.get("launcher") or launcher, "launcher_requested": launcher}
        if info.get("jobs"):
            out["slurm_jobs"] = info["jobs"]
        return out
    if "launcher" not in stage.parameters:
        return {"launcher": manifest.in_process(launcher), "launcher_requested": launcher}
    return {"launcher": launcher, "launcher_requested": launcher}


def run(profile: str, languages: list[str], stage_keys: list[str] | None = None, *,
        force: bool = False, launcher: str = "local", overrides: dict | None = None,
        root: Path | None = None, notebooks: Path | None = None, progress: bool = True,
        log=print, report_source: Path | None = None) -> RunSummary:
    """Check everything checkable, take the run folder's lock, then run the selected stages for
    each language and the per-profile stages.

    ``root`` is the runs folder (default ``runs/``), ``notebooks`` the stage notebooks' folder.
    """
    checked = runplan.plan(profile, languages, stage_keys, overrides=overrides, launcher=launcher,
                           root=root, notebooks=notebooks, report_source=report_source)
    with lock.hold(checked.folder, log):
        return execute(checked, force=force, progress=progress, log=log)


def execute(plan: runplan.Plan, *, force: bool = False, progress: bool = True, log=print) -> RunSummary:
    """Run a checked plan (the caller holds the run folder's lock, see :func:`run`)."""
    profile, languages, root = plan.profile, plan.languages, plan.root
    launcher, overrides = plan.launcher, plan.overrides or None
    prepare_environment(profile, plan.profile_spec.offline, root)
    summary = RunSummary(profile)

    for lang in languages:
        for stage in [s for s in plan.selected if s.scope == "language"]:
            log(f"[{profile}/{lang}] {stage.name} ...")
            res = execute_stage(stage, profile, lang, languages, plan.all_stages,
                                spec_digest=plan.run_specs[lang].digest(), force=force, launcher=launcher,
                                overrides=overrides, root=root, progress=progress)
            summary.results.append(res)
            # a failure's message is printed once, at the end (cli); here only that it happened
            log(f"[{profile}/{lang}] {stage.name} {res.status} ({res.seconds:.1f} s)")
            for move in res.moved_aside:
                log(f"[{profile}/{lang}] {stage.name}: kept, not deleted: {manifest.relative_to_repo(Path(move['path']))}"
                    + (f" ({move['reason']})" if move["reason"] else ""))
            if res.status in ("failed", "blocked"):
                log(f"[{profile}/{lang}] stopping {lang} here; other languages go on")
                break

    profile_stages = [s for s in plan.selected if s.scope == "profile"]
    covered = runplan.profile_languages(languages, profile, root) if profile_stages else []
    for stage in profile_stages:
        log(f"[{profile}] {stage.name} ({', '.join(covered)}) ...")
        res = execute_stage(stage, profile, None, covered, plan.all_stages,
                            spec_digest=manifest.sha256_json(plan.profile_spec.model_dump(mode="json")),
                            force=force, launcher=launcher, overrides=overrides, root=root,
                            progress=progress)
        summary.results.append(res)
        log(f"[{profile}] {stage.name} {res.status} ({res.seconds:.1f} s)")
    return summary


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
