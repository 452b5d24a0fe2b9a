"""The one stage contract: a stage is ``run(ctx: StageContext) -> StageResult``.

A stage notebook is its ``parameters`` cell (what the runner fills, see
``stages.RUNNER_PARAMETERS``), one line that builds the context from those parameters, one call of
its stage function, and the display of the result::

    ctx = StageContext.create("tokenization", profile=profile, language=language, run_dir=run_dir,
                              out_dir=out_dir, launcher=launcher, overrides=overrides)
    result = tokenization.run(ctx)

The context resolves, once and in one place, what every stage needs: the spec (language and
profile configs plus overrides), the run folder and the stage's own folder (empty parameters mean
the defaults under ``runs/``), the launcher (validated), and the folders of upstream stages, each
checked to have finished ``ok`` (``ctx.upstream("data")``). Run by ``zagreus run`` the runner has
already checked the upstream stages' content against their manifests; run by hand in JupyterLab,
``upstream`` still refuses a stage that has not finished.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from . import manifest, paths, stages
from .errors import ZagreusError
from .spec import load_profile, load_spec

LAUNCHERS = ("local", "slurm")


def check_launcher(launcher: str) -> str:
    if launcher not in LAUNCHERS:
        raise ZagreusError(f"unknown launcher {launcher!r}; choose one of: {', '.join(LAUNCHERS)} "
                           "(the notebook parameter `launcher`, or `zagreus run --launcher`)")
    return launcher


def parse_overrides(overrides) -> dict:
    """The notebooks' ``overrides`` parameter: a mapping, or its YAML/JSON text (``papermill -p``)."""
    if not overrides:
        return {}
    if isinstance(overrides, str):
        try:
            overrides = yaml.safe_load(overrides)
        except yaml.YAMLError:
            raise ZagreusError(f"overrides {overrides!r} is not a mapping such as "
                               "{'data.min_doc_chars': 20}") from None
    if not isinstance(overrides, dict):
        raise ZagreusError(f"overrides must be a mapping such as {{'data.min_doc_chars': 20}}, not {overrides!r}")
    return dict(overrides)


@dataclass(frozen=True)
class StageContext:
    """Everything a stage function reads about where and how it runs (see the module docstring)."""

    stage: stages.Stage
    profile: str
    language: str | None  # None for a per-profile stage
    languages: tuple[str, ...]  # a per-profile stage's languages; (language,) for a per-language one
    run_dir: Path  # runs/<profile>/<language> (per language) or runs/<profile> (per profile)
    out_dir: Path  # this stage's folder (the stage creates it once its checks pass: a refusal leaves none)
    launcher: str = "local"
    overrides: dict[str, Any] = field(default_factory=dict)
    force: bool = False

    @classmethod
    def create(cls, key: str, *, profile: str = "smoke", language: str | None = None,
               languages: list[str] | tuple[str, ...] | None = None, run_dir: str | Path = "",
               out_dir: str | Path = "", launcher: str = "local", overrides: dict | None = None,
               force: bool = False) -> "StageContext":
        """The context of stage ``key`` (``"data"``, ``"01_data"`` or ``"1"``) from a notebook's
        parameters; empty ``run_dir``/``out_dir`` mean the default folders under ``runs/``."""
        (stage,) = stages.select([key])
        if stage.scope == "language" and not language:
            raise ZagreusError(f"stage {stage.name} runs per language: give the notebook parameter `language`")
        lang = language if stage.scope == "language" else None
        rd = Path(run_dir) if str(run_dir) else paths.run_dir(profile, lang)
        od = Path(out_dir) if str(out_dir) else rd / stage.name
        langs = tuple(languages) if languages else ((language,) if language else ())
        return cls(stage, profile, lang, langs, rd.resolve(), od.resolve(), check_launcher(launcher),
                   parse_overrides(overrides), bool(force))

    @cached_property
    def spec(self):
        """The typed spec of (language, profile) with the overrides (a per-language stage)."""
        if self.language is None:
            raise ZagreusError(f"stage {self.stage.name} runs per profile: use ctx.profile_spec")
        return load_spec(self.language, self.profile, self.overrides)

    @cached_property
    def profile_spec(self):
        """The profile's typed settings with the overrides."""
        return load_profile(self.profile, self.overrides)

    def upstream(self, key: str, language: str | None = None, *, check: bool = True) -> Path:
        """The folder of an earlier stage (of this stage's language, or ``language`` for a per-profile
        stage), refused with the command that fixes it unless that stage finished ``ok``. ``check=False``
        only names the folder (a Slurm dry run plans jobs over outputs that do not exist yet)."""
        (stage,) = stages.select([key])
        lang = language or self.language
        base = self.run_dir if self.language is not None and lang == self.language \
            else paths.run_dir(self.profile, lang, self.run_dir.parents[1] if self.language else self.run_dir.parent)
        folder = base / stage.name
        if check:
            manifest.require(folder, stage.name, self.profile, lang)
        return folder

    def upstream_manifest(self, key: str, language: str | None = None) -> dict:
        """The manifest of :meth:`upstream`'s stage."""
        return manifest.read(self.upstream(key, language))


@dataclass
class StageResult:
    """What a stage hands its notebook: styled tables, figures, frames, scripts, notes, a summary."""

    out_dir: Path
    launcher: str
    tables: dict[str, Any] = field(default_factory=dict)  # id -> pandas Styler (or DataFrame)
    frames: dict[str, Any] = field(default_factory=dict)  # id -> pandas DataFrame
    figures: dict[str, Any] = field(default_factory=dict)  # id -> matplotlib Figure
    slurm_scripts: dict[str, str] = field(default_factory=dict)  # job name -> sbatch script
    notes: list[str] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # stage-specific results (e.g. the trainer's)

    def show_slurm(self) -> str:
        """All Slurm scripts, one after the other (print it)."""
        return "\n".join(f"# ===== {job} =====\n{script}" for job, script in self.slurm_scripts.items())
