"""Run the stage notebooks headlessly with papermill, per language, with manifests and skipping.

``zagreus run`` calls :func:`run`. Each language goes through the per-language stages in order and
stops at its first failure (the failed notebook and a ``failed`` manifest stay for debugging)
while the other languages go on; per-profile stages (the plots) run last, over whatever exists.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import manifest, paths, spec as specs, stages as stage_mod
from .errors import ZagreusError

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


@dataclass
class StageResult:
    language: str | None
    stage: str
    status: str  # ok | skipped | failed | blocked
    seconds: float = 0.0
    error: str = ""
    folder: Path | None = None


@dataclass
class RunSummary:
    profile: str
    results: list[StageResult] = field(default_factory=list)

    @property
    def failed(self) -> list[StageResult]:
        return [r for r in self.results if r.status in ("failed", "blocked")]

    def table(self) -> str:
        rows = [("language", "stage", "status", "seconds", "detail")]
        for r in self.results:
            detail = r.error or (manifest.relative_to_repo(r.folder) if r.folder else "")
            rows.append((r.language or "(all)", r.stage, r.status, f"{r.seconds:.1f}", detail))
        widths = [max(len(str(row[i])) for row in rows) for i in range(4)]
        return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4]
                         for row in rows)


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
    """Stage folders whose outputs this stage reads."""
    if stage.scope == "language":
        return {s.name: s.folder(profile, language, root)
                for s in all_stages if s.scope == "language" and s.number < stage.number}
    found = {}
    for lang in languages:
        for s in all_stages:
            if s.scope == "language" and s.number < stage.number:
                folder = s.folder(profile, lang, root)
                if (folder / manifest.MANIFEST).is_file():
                    found[f"{lang}/{s.name}"] = folder
    return found


def _fingerprint(stage: stage_mod.Stage, parameters: dict, spec_digest: str,
                 upstream: dict[str, Path]) -> tuple[str, dict]:
    inputs = {
        "notebook": manifest.sha256_file(stage.notebook),
        "zagreus_utils": manifest.tree_digest(paths.REPO_ROOT / "zagreus_utils"),
        "configs": manifest.tree_digest(paths.CONFIGS, "*.yaml"),
        "spec": spec_digest,
    }
    if stage.scope == "profile":
        inputs["published"] = manifest.tree_digest(paths.PUBLISHED, "*.csv")
    up = {}
    for name, folder in upstream.items():
        m = manifest.read(folder) or {}
        up[name] = manifest.sha256_json([m.get("fingerprint"), m.get("outputs")])
    inputs["upstream"] = up
    stable_params = {k: v for k, v in parameters.items() if k not in ("run_dir", "out_dir")}
    inputs["parameters"] = manifest.sha256_json(stable_params)
    return manifest.sha256_json(inputs), inputs


def _error_line(exc: BaseException) -> str:
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    if ename:
        return f"{ename}: {evalue}"
    return f"{type(exc).__name__}: {exc}"


def execute_stage(stage: stage_mod.Stage, profile: str, language: str | None, languages: list[str],
                  all_stages: list[stage_mod.Stage], *, spec_digest: str, force: bool = False,
                  launcher: str = "local", overrides: dict | None = None, root: Path | None = None,
                  progress: bool = True) -> StageResult:
    """Run one stage notebook (or skip it when up to date) and write its manifest."""
    import papermill as pm

    folder = stage.folder(profile, language, root)
    upstream = _upstream(stage, all_stages, profile, language, languages, root)
    if stage.scope == "language":
        for name, up_folder in upstream.items():
            try:
                manifest.require(up_folder, name, profile, language)
            except ZagreusError as exc:
                return StageResult(language, stage.name, "blocked", 0.0, str(exc), folder)

    offered = {"profile": profile, "language": language, "languages": languages,
               "run_dir": str(paths.run_dir(profile, language if stage.scope == "language" else None, root)),
               "out_dir": str(folder), "launcher": launcher, "overrides": overrides or {}, "force": force}
    parameters = {k: v for k, v in offered.items() if k in stage.parameters}
    fingerprint, inputs = _fingerprint(stage, {k: v for k, v in parameters.items() if k != "force"}, spec_digest, upstream)
    if not force and manifest.is_up_to_date(folder, fingerprint):
        return StageResult(language, stage.name, "skipped", 0.0, "", folder)

    folder.mkdir(parents=True, exist_ok=True)
    output_nb = folder / f"{stage.name}.ipynb"
    record: dict[str, Any] = {
        "stage": stage.name, "profile": profile, "language": language, "scope": stage.scope,
        "launcher": launcher, "status": "running", "parameters": parameters,
        "fingerprint": fingerprint, "inputs": inputs, "notebook": output_nb.name,
        "started": manifest.now(), "versions": manifest.versions(), "git_commit": manifest.git_commit(),
    }
    manifest.write(folder, record)
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(str(stage.notebook), str(output_nb), parameters=parameters,
                            kernel_name="python3", progress_bar=progress, cwd=str(folder),
                            log_output=False)
        status, error = "ok", ""
    except Exception as exc:  # the stage failed: keep the executed notebook and say why
        status, error = "failed", _error_line(exc)
        if not getattr(exc, "ename", None):
            record["traceback"] = traceback.format_exc()
    seconds = time.perf_counter() - t0
    record.update(status=status, error=error, finished=manifest.now(), seconds=round(seconds, 2),
                  outputs=manifest.describe_outputs(folder))
    record.update(_launched(stage, folder, launcher, t0))
    manifest.write(folder, record)
    return StageResult(language, stage.name, status, seconds, error, folder)


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
        log=print) -> RunSummary:
    """Run the selected stages for each language, then the per-profile stages.

    ``root`` is the runs folder (default ``runs/``), ``notebooks`` the stage notebooks' folder.
    """
    # Validate everything before running anything: a typo should not cost a half-run.
    run_specs = {lang: specs.load_spec(lang, profile, overrides) for lang in languages}
    profile_spec = specs.load_profile(profile, overrides)
    selected = stage_mod.select(stage_keys, notebooks)
    all_stages = stage_mod.discover(notebooks)
    prepare_environment(profile, profile_spec.offline, root)
    summary = RunSummary(profile)
    every_language = specs.available("languages")

    for lang in languages:
        for stage in [s for s in selected if s.scope == "language"]:
            log(f"[{profile}/{lang}] {stage.name} ...")
            res = execute_stage(stage, profile, lang, languages, all_stages,
                                spec_digest=run_specs[lang].digest(), force=force, launcher=launcher,
                                overrides=overrides, root=root, progress=progress)
            summary.results.append(res)
            log(f"[{profile}/{lang}] {stage.name} {res.status} ({res.seconds:.1f} s)"
                + (f": {res.error}" if res.error else ""))
            if res.status in ("failed", "blocked"):
                log(f"[{profile}/{lang}] stopping {lang} here; other languages go on")
                break

    for stage in [s for s in selected if s.scope == "profile"]:
        log(f"[{profile}] {stage.name} ...")
        res = execute_stage(stage, profile, None, every_language, all_stages,
                            spec_digest=manifest.sha256_json(profile_spec.model_dump(mode="json")),
                            force=force, launcher=launcher, overrides=overrides, root=root,
                            progress=progress)
        summary.results.append(res)
        log(f"[{profile}] {stage.name} {res.status} ({res.seconds:.1f} s)"
            + (f": {res.error}" if res.error else ""))
    return summary


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
