"""The pipeline's stages, discovered from ``notebooks/NN_<key>.ipynb``.

A stage is a notebook over a function in this package. Adding a stage means adding its notebook
(and the function it calls): the number orders it, the key names it on the command line, and the
notebook's ``parameters`` cell says its scope: a ``language`` parameter makes it run once per
language (``runs/<profile>/<language>/NN_key/``), a ``languages`` parameter once per profile
(``runs/<profile>/NN_key/``). A notebook whose metadata holds ``"zagreus": {"optional": true}``
runs only when named (``zagreus run --stages ablations``), not in a plain ``zagreus run``; one whose
metadata holds ``"reads": ["tokenization"]`` depends on those earlier stages only (by default on every
earlier one of its scope).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from . import paths
from .errors import ZagreusError

_NAME = re.compile(r"^(\d\d)_([a-z][a-z0-9_]*)$")

# Parameters the runner knows how to fill; a notebook declares the ones it takes.
RUNNER_PARAMETERS = ("profile", "language", "languages", "run_dir", "out_dir", "launcher", "overrides", "force")


@dataclass(frozen=True)
class Stage:
    name: str  # "07_plots"
    number: int
    key: str  # "plots"
    notebook: Path
    parameters: tuple[str, ...]
    optional: bool = False  # runs only when named on the command line
    reads: tuple[str, ...] | None = None  # keys of the earlier stages it reads (None: every earlier one)

    @property
    def scope(self) -> str:
        return "language" if "language" in self.parameters else "profile"

    def folder(self, profile: str, language: str | None = None, root: Path | None = None) -> Path:
        return paths.run_dir(profile, language if self.scope == "language" else None, root) / self.name


def _parameters(notebook: Path) -> tuple[str, ...]:
    import papermill as pm

    try:
        params = pm.inspect_notebook(str(notebook))
    except Exception as exc:  # a broken notebook file is a user-fixable mistake
        raise ZagreusError(f"cannot read stage notebook {notebook}: {exc}") from None
    if not params:
        raise ZagreusError(f"stage notebook {notebook} has no cell tagged 'parameters'; "
                           "tag the cell holding its defaults")
    return tuple(params)


def _zagreus_metadata(notebook: Path) -> tuple[bool, tuple[str, ...] | None]:
    """(optional, reads) from the notebook's ``"zagreus"`` metadata."""
    try:
        meta = json.loads(notebook.read_text(encoding="utf-8")).get("metadata", {}).get("zagreus", {})
    except (OSError, ValueError) as exc:
        raise ZagreusError(f"cannot read stage notebook {notebook}: {exc}") from None
    reads = meta.get("reads")
    if reads is not None and (not isinstance(reads, list) or not all(isinstance(k, str) for k in reads)):
        raise ZagreusError(f"stage notebook {notebook}: metadata zagreus.reads must be a list of stage keys "
                           f"such as [\"tokenization\"], not {reads!r}")
    return bool(meta.get("optional", False)), None if reads is None else tuple(reads)


@lru_cache(maxsize=8)
def _discover(folder: Path, signature: tuple) -> tuple[Stage, ...]:
    stages = []
    for nb in sorted(folder.glob("*.ipynb")):
        m = _NAME.match(nb.stem)
        if not m:
            continue
        params = _parameters(nb)
        if "language" not in params and "languages" not in params:
            raise ZagreusError(f"stage notebook {nb}: its parameters cell must define `language` "
                               "(a per-language stage) or `languages` (a per-profile stage)")
        stages.append(Stage(nb.stem, int(m.group(1)), m.group(2), nb, params, *_zagreus_metadata(nb)))
    return tuple(stages)


def discover(folder: Path | None = None) -> list[Stage]:
    """All stages in order (cached on the notebooks' names and modification times)."""
    folder = Path(folder or paths.NOTEBOOKS)
    signature = tuple((p.name, p.stat().st_mtime_ns) for p in sorted(folder.glob("*.ipynb")))
    return list(_discover(folder, signature))


def select(keys: list[str] | None, folder: Path | None = None) -> list[Stage]:
    """The stages named by key (``data``), name (``01_data``) or number (``1``), in pipeline order;
    no keys: every stage that is not optional."""
    stages = discover(folder)
    if not keys:
        return [s for s in stages if not s.optional]
    chosen = []
    for key in keys:
        match = [s for s in stages if key in (s.key, s.name, str(s.number), f"{s.number:02d}")]
        if not match:
            valid = ", ".join(s.key for s in stages)
            raise ZagreusError(f"unknown stage {key!r}. Valid stages: {valid}")
        chosen.extend(m for m in match if m not in chosen)
    return sorted(chosen, key=lambda s: s.number)


def folder_name(key: str, folder: Path | None = None) -> str:
    """The run-folder name of stage ``key`` (``"plots"`` -> ``"07_plots"``): its notebook's name.
    Read from the file names only, so modules that know a stage's outputs name no folder."""
    folder = Path(folder or paths.NOTEBOOKS)
    for nb in sorted(folder.glob("*.ipynb")):
        m = _NAME.match(nb.stem)
        if m and m.group(2) == key:
            return nb.stem
    raise ZagreusError(f"no stage {key!r}: there is no notebook {folder}/NN_{key}.ipynb")
