"""The benchmarks the report evaluates, in one table: chance level, choices, metric, display, colour.

One entry per benchmark family (lm-eval task names map to a family with :func:`benchmark_family`:
``m_mmlu_it``, ``hellaswag_es``, ``arc_pt``, ``"ARC"``, ``"HS_EN"`` ... all resolve). Tables,
figures, the evaluation stage and the audit all read this table; adding an evaluation task is its
lm-eval YAML plus one entry here (docs/extending.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from ..pipeline.errors import ZagreusError
from ..pipeline.spec import ENGLISH, available, load_language


@dataclass(frozen=True)
class Benchmark:
    family: str
    display: str  # as the report's tables and the figures name it
    color: str | None = None  # Okabe-Ito: distinguishable for colour-blind readers and in greyscale print
    marker: str | None = None  # in the progression figures
    choices: int | None = None  # answer options of a multiple-choice benchmark (None: not one)
    metric: str | None = None  # the metric the report prints for it (lm-eval's name)
    heldout: bool = False  # the smoke profile has a held-out task of this style (configs/lm_eval/<family>_<lang>.yaml)

    @property
    def chance(self) -> float | None:
        """Chance accuracy (lm-eval's acc / acc_norm) of a multiple-choice benchmark."""
        return 1 / self.choices if self.choices else None


BENCHMARKS: dict[str, Benchmark] = {b.family: b for b in [
    Benchmark("mmlu", "MMLU", "#0072B2", "o", choices=4, metric="acc", heldout=True),
    Benchmark("arc", "ARC", "#009E73", "^", choices=4, metric="acc_norm", heldout=True),
    Benchmark("hellaswag", "HellaSwag", "#D55E00", "s", choices=4, metric="acc_norm", heldout=True),
    Benchmark("ifeval", "IFEval", "#CC79A7", metric="prompt_level_strict_acc"),
    Benchmark("average", "Average"),
]}

CHANCE = {k: b.chance for k, b in BENCHMARKS.items() if b.chance is not None}
CHOICES = {k: b.choices for k, b in BENCHMARKS.items() if b.choices}
DISPLAY = {k: b.display for k, b in BENCHMARKS.items()}
FAMILY_COLORS = {k: b.color for k, b in BENCHMARKS.items() if b.color}
FAMILY_MARKERS = {k: b.marker for k, b in BENCHMARKS.items() if b.marker}
SERIES_COLORS = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]


def chance_label() -> str:
    """The figures' legend for the chance line: "chance 0.25 (4-way multiple choice: ARC, HellaSwag, MMLU)"."""
    levels = {(b.chance, b.choices) for b in BENCHMARKS.values() if b.choices}
    if len(levels) != 1:
        return "chance (1 / the number of answer options)"
    (chance, choices), = levels
    names = ", ".join(sorted((b.display for b in BENCHMARKS.values() if b.choices), key=str.lower))
    return f"chance {chance:g} ({choices}-way multiple choice: {names})"


HELDOUT_STYLES = tuple(k for k, b in BENCHMARKS.items() if b.heldout)  # the smoke profile's held-out tasks
STYLE_METRIC = {k: BENCHMARKS[k].metric for k in HELDOUT_STYLES}  # as the report prints them

_ALIASES = {"hs": "hellaswag", "m_mmlu": "mmlu", "arc_easy": "arc", "arc_challenge": "arc",
            "media": "average", "avg": "average", "average": "average", "ifeval": "ifeval"}


@lru_cache(maxsize=None)
def _language_suffix() -> re.Pattern:
    """A task name's language suffix: every configured language's code and ISO 639-1 code, and English's."""
    codes = {ENGLISH[0], "en"}
    for code in available("languages"):
        codes |= {code, load_language(code).iso639_1}
    return re.compile(rf"[_\- ]({'|'.join(sorted(codes))})$")


def benchmark_family(task: str) -> str:
    """``m_mmlu_it`` -> ``mmlu``, ``HS_EN`` -> ``hellaswag``, ``arc_pt`` -> ``arc``, ``Media IT`` -> ``average``."""
    name = str(task).strip().strip("*").strip().lower()
    name = re.sub(r"\s*\(.*\)$", "", name)  # "mmlu_it (acc)" -> "mmlu_it"
    while True:
        shorter = _language_suffix().sub("", name)
        if shorter == name:
            break
        name = shorter
    name = name.replace("-", "_")
    if name.startswith("m_"):
        name = name[2:]
    if name.startswith("media") or name.startswith("average"):
        return "average"
    return _ALIASES.get(name, name)


def chance_level(task: str) -> float:
    """Chance accuracy of a benchmark task (``mmlu``, ``m_mmlu_it``, ``hellaswag_es``, ``arc_pt``...).

    Raises ``ZagreusError`` for a task without a known chance level.
    """
    family = benchmark_family(task)
    if family not in CHANCE:
        raise ZagreusError(
            f"no chance level known for task {task!r} (benchmark family {family!r}); known families: "
            f"{', '.join(sorted(CHANCE))}. Add it (choices=N) to BENCHMARKS in zagreus_utils/results/benchmarks.py"
        )
    return CHANCE[family]
