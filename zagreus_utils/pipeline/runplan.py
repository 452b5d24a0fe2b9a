"""Everything ``zagreus run`` can check before its first stage, and the run it will do.

:func:`plan` validates the names (profile and languages are ``[a-z][a-z0-9_]*`` and their run
folders lie inside the runs root), the configs with the ``--set`` overrides applied, whether each
language can run on the profile (the sample corpus generates only some languages), the training
settings that stage 03 would refuse later (world size, schedule, sequence length, a start model
``training.init_from`` that does not fit the spec), the data stages, the stages and
``--report-source``. It writes nothing; every problem is listed in one :class:`ZagreusError`, each
naming where the bad value came from (``--set ...`` or ``file:line``), so that a typo costs seconds
and is reported once.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..model import preflight, start_checks
from ..nanotron import config as ncfg
from . import manifest, paths, spec as specs, stages as stage_mod
from .errors import ZagreusError

NAME = re.compile(r"[a-z][a-z0-9_]*")

# Profile values that the training checks name, by the word they use for them.
_TRAINING_KEYS = {
    "train_steps": "training.train_steps", "lr_warmup_steps": "training.lr_warmup_steps",
    "lr_decay_starting_step": "training.lr_decay_starting_step", "lr_decay_steps": "training.lr_decay_steps",
    "learning_rate": "training.learning_rate", "min_decay_lr": "training.min_decay_lr",
    "checkpoint_interval": "training.checkpoint_interval", "sequence_length": "training.sequence_length",
    "max_position_embeddings": "model.max_position_embeddings",
}


@dataclass
class Plan:
    """A checked run: what ``runner.execute`` runs."""

    profile: str
    languages: list[str]
    run_specs: dict[str, specs.Spec]
    profile_spec: specs.ProfileSpec
    selected: list[stage_mod.Stage]
    all_stages: list[stage_mod.Stage]
    root: Path | None
    overrides: dict[str, Any]
    launcher: str
    report_source: Path | None = None

    @property
    def folder(self) -> Path:
        """``runs/<profile>``: the folder one run at a time may write (see :mod:`zagreus_utils.pipeline.lock`)."""
        return paths.run_dir(self.profile, root=self.root)


def name_problem(kind: str, name: str) -> str | None:
    if isinstance(name, str) and NAME.fullmatch(name):
        return None
    return (f"{kind} name {name!r} is not valid: a {kind} is named by lowercase letters, digits and _, "
            "starting with a letter ([a-z][a-z0-9_]*), as its file in configs/"
            f"{'languages' if kind == 'language' else 'profiles'}/ is")


def outside_root(folder: Path, root: Path | None) -> str | None:
    """A problem when ``folder`` is not inside the runs root (``..`` resolved; symlinked run
    folders, e.g. onto scratch storage, are allowed)."""
    base = os.path.normpath(os.path.abspath(root if root is not None else paths.runs_root()))
    target = os.path.normpath(os.path.abspath(folder))
    if os.path.commonpath([base, target]) != base:
        return f"run folder {target} is outside the runs root {base}"
    return None


def sample_languages() -> tuple[str, ...]:
    """The languages the smoke sample corpus can generate: one data file each,
    ``configs/sample_corpus/<code>.yaml`` (read by ``zagreus_utils.sample_corpus.knowledge``)."""
    from ..sample_corpus.knowledge import LANGUAGES

    return LANGUAGES


def language_problem(lang: str, profile: specs.ProfileSpec, overrides: dict | None) -> str | None:
    """Why ``lang`` cannot run on ``profile`` (its data source cannot provide it), or None."""
    if profile.data.source != "sample" or lang in sample_languages():
        return None
    where = specs.value_source(profile.name, "data.source", overrides)
    return (f"language {lang!r} cannot run on profile {profile.name!r}: its data is the generated sample "
            f"corpus (data.source: sample, {where}), which can generate only {', '.join(sample_languages())}; "
            f"run {lang} on a profile that reads the real datasets (data.source: hub, e.g. --profile full) "
            f"or leave it out of --languages")


def training_problems(spec: specs.Spec, overrides: dict | None) -> list[str]:
    """Stage 03's settings checks (schedule, sequence length) on the rendered config,
    each naming where the values it mentions come from."""
    config = ncfg.render(spec)
    # The world size is left to stage 03: on a CPU profile the Slurm launcher sets dp from
    # slurm.pretraining there (pretraining.prepare), so the profile's own dp is not the final one.
    checks = [preflight.check_schedule(config), preflight.check_sequence(config)]
    problems = []
    for check in checks:
        if check.ok is not False:
            continue
        named = [dotted for word, dotted in _TRAINING_KEYS.items() if re.search(rf"\b{word}\b", check.detail)]
        sources = "; ".join(f"{dotted}: {specs.value_source(spec.profile.name, dotted, overrides)}"
                            for dotted in named)
        problems.append(f"{check.name}: {check.detail}" + (f" (values from {sources})" if sources else "")
                        + f". Fix: {check.fix}")
    return problems


def start_problems(spec: specs.Spec, overrides: dict | None) -> list[str]:
    """``training.init_from`` against the spec (shape, sequence length, resets, the profile's
    pretrained tokenizer): what stage 03 would refuse, before stage 01 runs."""
    return [f"{c.name}: {c.detail}. Fix: {c.fix}" for c in start_checks.check_start(spec, None, overrides=overrides)
            if c.ok is False]


def report_source_problem(source: Path | None) -> str | None:
    if source is None:
        return None
    source = Path(source)
    if not source.is_file():
        return (f"--report-source {source} does not exist (or is not a file); pass the report's markdown, "
                f"e.g. --report-source {paths.DEFAULT_REPORT_SOURCE}")
    try:
        with open(source, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        return f"--report-source {source} cannot be read ({exc.strerror}); fix its permissions"
    return None


def _raise(problems: list[str]) -> None:
    if len(problems) == 1:
        raise ZagreusError(f"{problems[0]} (nothing was run)")
    if problems:
        raise ZagreusError(f"{len(problems)} problems; nothing was run:\n  - " + "\n  - ".join(problems))


def plan(profile: str, languages: list[str], stage_keys: list[str] | None = None, *,
         overrides: dict | None = None, launcher: str = "local", root: Path | None = None,
         notebooks: Path | None = None, report_source: Path | None = None) -> Plan:
    """Check everything checkable before the first stage; return the run, or raise listing every problem."""
    overrides = dict(overrides or {})
    languages = list(dict.fromkeys(languages))  # a language named twice runs once
    problems = [p for p in [name_problem("profile", profile)] + [name_problem("language", lang) for lang in languages]
                if p]
    if not languages:
        problems.append("no language given: name at least one with --languages")
    _raise(problems)  # names first: a bad name must not reach a path
    for lang in languages:
        problem = outside_root(paths.run_dir(profile, lang, root), root)
        if problem:
            problems.append(problem)

    try:
        profile_spec = specs.load_profile(profile, overrides)
    except ZagreusError as exc:
        profile_spec = None
        problems.append(str(exc))
    run_specs = {}
    for lang in languages:
        try:
            language_spec = specs.load_language(lang)
        except ZagreusError as exc:
            problems.append(str(exc))
            continue
        if profile_spec is None:
            continue
        try:
            spec = specs.Spec(language=language_spec, profile=profile_spec)
            specs.data_stages(spec, overrides=overrides)
            run_specs[lang] = spec  # the settings checks below render it: its data stages must resolve
        except ZagreusError as exc:
            problems.append(str(exc))
        problem = language_problem(lang, profile_spec, overrides)
        if problem:
            problems.append(problem)
    if run_specs:  # the training settings are the profile's: check them once
        problems += training_problems(next(iter(run_specs.values())), overrides)
    try:
        selected = stage_mod.select(stage_keys, notebooks)
        all_stages = stage_mod.discover(notebooks)
    except ZagreusError as exc:
        problems.append(str(exc))
    else:
        if run_specs and any(s.key == "pretraining" for s in selected):  # the start model, before any stage
            problems += start_problems(next(iter(run_specs.values())), overrides)
    problem = report_source_problem(report_source)
    if problem:
        problems.append(problem)
    _raise(problems)
    return Plan(profile, languages, run_specs, profile_spec, selected, all_stages, root, overrides,
                launcher, Path(report_source) if report_source is not None else None)


def check_report(profile: str, source: Path | None) -> None:
    """``zagreus report``'s checks: a valid profile name, a readable ``--report-source``."""
    _raise([p for p in (name_problem("profile", profile), report_source_problem(source)) if p])


def profile_languages(asked: list[str], profile: str, root: Path | None = None) -> list[str]:
    """The languages a per-profile stage (the plots) and the report cover: those asked for now and
    those with a stage that finished ``ok`` in an earlier run of this profile; not every file in
    configs/languages."""
    found = set(asked)
    base = paths.run_dir(profile, root=root)
    if base.is_dir():
        for folder in base.iterdir():
            if folder.is_dir() and NAME.fullmatch(folder.name) and any(
                    _finished(stage) for stage in folder.iterdir() if stage.is_dir()):
                found.add(folder.name)
    return sorted(found)


def _finished(stage_folder: Path) -> bool:
    try:
        return (manifest.read(stage_folder) or {}).get("status") == "ok"
    except ZagreusError:  # an unreadable manifest is not a finished stage
        return False
