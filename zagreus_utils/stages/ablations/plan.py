"""The ablation plan: ``configs/ablations/smollm3.yaml`` (variants, seeds, steps, the claims quoted
from the SmolLM notes), validated, and each run's profile overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from ...model.recipe import SWITCHES
from ...pipeline import paths
from ...pipeline.errors import ZagreusError
from ...pipeline.spec import _Strict, _validate, read_yaml
from .stats import METRICS, metric

PLAN_FILE = Path("ablations") / "smollm3.yaml"  # under configs/
BASELINE = "baseline"


class Check(_Strict):
    metric: str
    expect: Literal["better", "not_worse"]

    @model_validator(mode="after")
    def _known(self):
        if metric(self.metric) is None:
            raise ValueError(f"unknown metric {self.metric!r}; valid: {', '.join(METRICS)}, probe_bpb_<k>x")
        if metric(self.metric).lower_is_better is None:
            raise ValueError(f"metric {self.metric!r} has no better direction; choose another")
        return self


class Claim(_Strict):
    id: str
    variant: str
    quote: str
    checks: list[Check] = Field(min_length=1)


class Plan(_Strict):
    source: str
    steps: int = Field(ge=2)
    seeds: list[int] = Field(min_length=1)
    heldout_fraction: float = Field(gt=0, lt=0.5)
    heldout_tokens: int = Field(ge=2)
    probe_windows: int = Field(ge=1)
    probe_lengths: list[int] = Field(min_length=1)
    embed_norm_points: int = Field(ge=2)
    base: dict[str, Any] = {}
    variants: dict[str, list[str]]  # name -> the recipe switches it turns on (model.recipe.SWITCHES)
    claims: list[Claim] = []

    @model_validator(mode="after")
    def _consistent(self):
        problems = []
        if len(set(self.seeds)) != len(self.seeds):
            problems.append(f"seeds {self.seeds} repeat a seed")
        if self.variants.get(BASELINE) != []:
            problems.append(f"variants must include {BASELINE!r} with no switch (the others are compared with it)")
        for name, switches in self.variants.items():
            unknown = [s for s in switches if s not in SWITCHES]
            if unknown:
                problems.append(f"variant {name!r}: unknown switch(es) {unknown}; the switches are {list(SWITCHES)}")
        if 1 not in self.probe_lengths or any(k < 1 for k in self.probe_lengths):
            problems.append(f"probe_lengths {self.probe_lengths} must be positive multiples and include 1")
        for c in self.claims:
            if c.variant not in self.variants:
                problems.append(f"claim {c.id!r} names variant {c.variant!r}, not one of {list(self.variants)}")
            for check in c.checks:
                if metric(check.metric).multiple not in (None, *self.probe_lengths):
                    problems.append(f"claim {c.id!r} checks {check.metric}, a length not in probe_lengths")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def runs(self) -> list[tuple[str, int]]:
        """(variant, seed) of every run, variant by variant."""
        return [(v, s) for v in self.variants for s in self.seeds]


def plan_path() -> Path:
    return paths.CONFIGS / PLAN_FILE


def load_plan(path: str | Path | None = None) -> Plan:
    """The plan in ``path`` (default: ``configs/ablations/smollm3.yaml``); a bad key or value is
    refused naming the file and line."""
    path = Path(path) if path else plan_path()
    if not path.is_file():
        raise ZagreusError(f"no ablation plan at {path}; restore configs/{PLAN_FILE.as_posix()} from the repository")
    return _validate(Plan, read_yaml(path), path)


def scaled_schedule(training, steps: int) -> dict[str, Any]:
    """The profile's learning-rate schedule with its shape kept (warmup, decay start and length as
    fractions of its ``train_steps``) over ``steps`` steps, with one checkpoint at the end."""
    total = training.train_steps

    def scale(n):
        return None if n is None else int(round(n * steps / total))

    out = {"training.train_steps": steps, "training.checkpoint_interval": steps,
           "training.lr_warmup_steps": scale(training.lr_warmup_steps)}
    start = scale(training.lr_decay_starting_step)
    out["training.lr_decay_starting_step"] = start
    if training.lr_decay_steps is not None:
        out["training.lr_decay_steps"] = min(scale(training.lr_decay_steps), steps - (start or 0))
    return out


def switch_overrides(switches: list[str]) -> dict[str, Any]:
    """The profile overrides that turn ``switches`` on (each as :data:`zagreus_utils.model.recipe.SWITCHES` says)."""
    return {k: v for s in switches for k, v in SWITCHES[s].items()}


def run_overrides(plan: Plan, training, variant: str, seed: int, user: dict | None = None) -> dict[str, Any]:
    """The profile overrides of one run: the user's, the scaled schedule, the plan's base, the
    variant's switches, the seed (later ones win)."""
    return {**(user or {}), **scaled_schedule(training, plan.steps), **plan.base,
            **switch_overrides(plan.variants[variant]), "training.seed": seed}
