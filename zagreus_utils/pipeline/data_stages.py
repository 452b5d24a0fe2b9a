"""Continual pretraining in the spec: where a run starts from, what it resets, and its data stages.

``training.init_from`` (profile): null (train from scratch), a Hugging Face model folder or Hub
id, or a nanotron checkpoint folder (a step folder, or a checkpoints folder with ``latest.txt``);
a relative path is taken from the repository root. ``training.init_reset`` lists what the run does
*not* take over from that checkpoint: ``optimizer`` (Adam's moments), ``lr_schedule`` and ``step``
(the step counter, hence the data position). nanotron restores the step counter together with the
LR schedule (both come with ``checkpoints.load_lr_scheduler``), so the two are reset together or
not at all; a Hugging Face model carries none of the three, so it needs all three reset.
``training.init_rewarmup_steps`` (null: ``lr_warmup_steps``) is the warmup of a run started from
``init_from`` with its schedule reset.

``data_stages`` (profile, top level): the mixture read from each step on, as nanotron's
``data_stages``::

    data_stages:
      - {name: italian, start_step: 0, mixture: null}            # the language's own mixture
      - {name: spanish, start_step: 300, mixture: {spa/fineweb2: 3, fineweb: 1}}

``start_step`` counts from 0 (the first stage starts at 0; nanotron's ``start_training_step`` is
``start_step + 1``); starts increase and lie before ``training.train_steps``. ``mixture: null`` is
the run language's pretraining mixture (``configs/languages/<code>.yaml``), each source weighted by
its tokens: today's single-stage blend, the default. A mapping names sources and their positive
relative weights (normalised): ``fineweb2`` is a source of the run's language, ``spa/fineweb2`` a
source of another language's mixture (its token folder is that language's stage-02 output; the
tokenizer must be the same, which the pre-flight checks).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

RESETS = ("optimizer", "lr_schedule", "step")
#: the default stage: the language's mixture from step 0
DEFAULT_STAGE_NAME = "stable phase"  # the report's name for its single data stage


class DataStage(BaseModel):
    """One data stage of the profile: from ``start_step`` on, read ``mixture``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    start_step: int
    mixture: dict[str, float] | None = None  # None: the run language's mixture, weighted by tokens

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("a data stage needs a non-empty name")
        return v

    @field_validator("mixture")
    @classmethod
    def _weights(cls, v):
        if v is None:
            return v
        if not v:
            raise ValueError("mixture is empty: name at least one source with a positive weight, "
                             "or write null for the language's own mixture")
        bad = [f"{ref}: {w!r}" for ref, w in v.items() if not (math.isfinite(w) and w > 0)]
        if bad:
            raise ValueError(f"mixture weights must be positive numbers ({', '.join(bad)})")
        return v


InitReset = Literal["optimizer", "lr_schedule", "step"]


def stage_problems(stages: list[DataStage]) -> list[str]:
    """The order of the stages: at least one, the first at step 0, starts increasing, names unique."""
    if not stages:
        return ["data_stages is empty: give at least one stage, e.g. "
                "[{name: stable phase, start_step: 0, mixture: null}]"]
    problems = []
    if stages[0].start_step != 0:
        problems.append(f"data_stages[0].start_step is {stages[0].start_step}: the first stage must start at step 0")
    for i in range(1, len(stages)):
        if stages[i].start_step <= stages[i - 1].start_step:
            problems.append(f"data_stages[{i}].start_step ({stages[i].start_step}) must be greater than "
                            f"data_stages[{i - 1}].start_step ({stages[i - 1].start_step}): list the stages "
                            "in the order they start")
    names = [s.name for s in stages]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        problems.append(f"data_stages names must be unique; repeated: {dupes}")
    return problems


def late_stage_problems(stages: list[DataStage], train_steps: int) -> list[str]:
    """Stages that would never run: a start at or after the last step."""
    return [f"data_stages[{i}] ({s.name!r}) starts at step {s.start_step}, at or after the last step "
            f"(training.train_steps={train_steps}): raise train_steps or move the stage earlier"
            for i, s in enumerate(stages) if s.start_step >= train_steps]


def init_problems(init_from: str | None, init_reset: list[str], rewarmup: int | None, train_steps: int) -> list[str]:
    """What nanotron cannot do with the reset flags (checked without reading the checkpoint)."""
    problems = []
    dupes = sorted({r for r in init_reset if init_reset.count(r) > 1})
    if dupes:
        problems.append(f"init_reset repeats {dupes}")
    if ("lr_schedule" in init_reset) != ("step" in init_reset):
        problems.append(f"init_reset {list(init_reset)}: nanotron restores the step counter together with the LR "
                        "schedule (checkpoints.load_lr_scheduler), so list both lr_schedule and step, or neither")
    if rewarmup is not None:
        if init_from is None:
            problems.append("init_rewarmup_steps is set but init_from is null: a run from scratch warms up over "
                            "lr_warmup_steps; set init_rewarmup_steps: null")
        elif "lr_schedule" not in init_reset:
            problems.append("init_rewarmup_steps needs lr_schedule in init_reset: a schedule taken over from the "
                            "checkpoint continues where it was (nanotron cannot re-warm it by config)")
        if not 0 <= rewarmup < train_steps:
            problems.append(f"init_rewarmup_steps ({rewarmup}) must lie within 0..train_steps-1 ({train_steps - 1})")
    return problems


# --- resolving a stage's mixture to sources -------------------------------------------------

@dataclass(frozen=True)
class StageSource:
    """One source of a resolved stage: the language whose token folder holds it, its id, its weight
    (None: by its tokens, as the language's own mixture is blended)."""

    language: str
    source: str
    weight: float | None

    @property
    def ref(self) -> str:
        return f"{self.language}/{self.source}"


@dataclass(frozen=True)
class ResolvedStage:
    name: str
    start_step: int
    sources: tuple[StageSource, ...]

    @property
    def start_training_step(self) -> int:
        """nanotron's 1-based ``start_training_step``."""
        return self.start_step + 1

    @property
    def languages(self) -> list[str]:
        return sorted({s.language for s in self.sources})


def parse_ref(ref: str, own_language: str) -> tuple[str, str]:
    """``"fineweb2"`` -> ``(own_language, "fineweb2")``; ``"spa/fineweb2"`` -> ``("spa", "fineweb2")``."""
    lang, sep, source = ref.partition("/")
    return (lang, source) if sep else (own_language, ref)


def resolve(stages: list[DataStage], language, load_language: Callable[[str], object]) -> list[ResolvedStage]:
    """Each stage's sources; ``language`` is the run's LanguageSpec, ``load_language(code)`` gives
    another's. Raises ValueError naming the unknown language or source and the valid ones."""
    out = []
    for i, stage in enumerate(stages):
        if stage.mixture is None:
            sources = tuple(StageSource(language.code, s.id, None) for s in language.mixture)
        else:
            found = []
            for ref, weight in stage.mixture.items():
                code, source = parse_ref(ref, language.code)
                lang = language if code == language.code else load_language(code)
                ids = [s.id for s in lang.mixture]
                if source not in ids:
                    raise ValueError(f"data_stages[{i}].mixture: {ref!r} names no source of {code}'s mixture "
                                     f"(configs/languages/{code}.yaml); its sources: {', '.join(ids)}"
                                     + ("" if code != language.code else "; another language's: <code>/<source>"))
                found.append(StageSource(code, source, float(weight)))
            sources = tuple(found)
        out.append(ResolvedStage(stage.name, stage.start_step, sources))
    return out
