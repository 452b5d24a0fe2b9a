"""What makes a data stage start afresh: a digest of its configuration and code, and the
folders of an older configuration removed before datatrove resumes (stages 01 and 02)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path


def fresh_if_changed(out: Path, key: dict, folders: list[Path], marker: Path) -> bool:
    """datatrove skips tasks it finished before (``logs/*/completions``): right for a rerun after a
    failure, wrong after the configuration changed. When ``key`` differs from the one recorded in
    ``marker``, remove ``folders`` (logs and outputs of the old configuration); returns True then."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    previous = json.loads(marker.read_text()).get("digest") if marker.is_file() else None
    if previous == digest:
        return False
    for folder in folders:
        if folder.exists():
            shutil.rmtree(folder)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"digest": digest, "key": key}, indent=2, default=str) + "\n")
    return True


def code_digest(*modules: str) -> str:
    """One hash over the named modules' code, each named by its path in the package (``stages/data``)."""
    h = hashlib.sha256()
    here = Path(__file__).parents[1]
    for name in modules:
        h.update((here / f"{name}.py").read_bytes())
    return h.hexdigest()[:16]

