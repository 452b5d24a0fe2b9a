"""``manifest.json``: what a stage ran with, what it wrote, how long it took, and whether it worked.

The runner writes one per stage folder. A stage is up to date when its manifest says ``ok``, its
fingerprint (notebook, package code, spec, parameters, upstream stages) is unchanged and the
outputs it recorded are still there.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from . import paths
from .errors import ZagreusError

MANIFEST = "manifest.json"
LAUNCH = "launch.json"  # what a stage says actually ran it (see LaunchRecord)
IN_PROCESS = "local (in-process)"  # a stage that ran in the notebook's own process although another launcher was asked


def in_process(launcher: str) -> str:
    """The launcher to record for a stage that always runs in the notebook's process."""
    return "local" if launcher == "local" else IN_PROCESS
_FULL_HASH_LIMIT = 64 * 2**20  # bigger files are fingerprinted by size and mtime
_PACKAGES = ("torch", "transformers", "datasets", "tokenizers", "datatrove", "lm_eval", "axolotl",
             "papermill", "nbconvert", "pandas", "matplotlib", "pydantic")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def tree_digest(folder: Path, pattern: str = "*.py") -> str:
    """One hash over the files of a folder (names and contents), e.g. the package's code."""
    h = hashlib.sha256()
    for path in sorted(Path(folder).rglob(pattern)):
        if "__pycache__" in path.parts:
            continue
        h.update(str(path.relative_to(folder)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def describe_outputs(folder: Path, exclude: tuple[str, ...] = (MANIFEST,)) -> dict[str, dict]:
    """Every file under the stage folder: size, and sha256 (or size+mtime for big files)."""
    out = {}
    for path in sorted(Path(folder).rglob("*")):
        if not path.is_file() or path.name in exclude or ".ipynb_checkpoints" in path.parts:
            continue
        st = path.stat()
        entry: dict[str, Any] = {"bytes": st.st_size}
        if st.st_size <= _FULL_HASH_LIMIT:
            entry["sha256"] = sha256_file(path)
        else:
            entry["mtime_ns"] = st.st_mtime_ns
        out[str(path.relative_to(folder))] = entry
    return out


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            try:
                found[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                found[name] = None
    return found


def git_commit(repo: Path = paths.REPO_ROOT) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read(folder: Path) -> dict | None:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None  # a half-written manifest counts as none: the stage reruns


def write(folder: Path, manifest: dict) -> Path:
    path = Path(folder) / MANIFEST
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False, default=str))
    os.replace(tmp, path)
    return path


def is_up_to_date(folder: Path, fingerprint: str) -> bool:
    m = read(folder)
    if not m or m.get("status") != "ok" or m.get("fingerprint") != fingerprint:
        return False
    for rel, info in m.get("outputs", {}).items():
        p = Path(folder) / rel
        if not p.is_file() or p.stat().st_size != info.get("bytes"):
            return False
    return True


def require(folder: Path, stage_name: str, profile: str, language: str | None = None) -> dict:
    """The manifest of an upstream stage that must have finished; a clear error otherwise."""
    key = stage_name.split("_", 1)[-1]
    rerun = f"zagreus run --profile {profile}" + (f" --languages {language}" if language else "") + f" --stages {key}"
    m = read(folder)
    if m is None:
        raise ZagreusError(f"stage {stage_name} has not run: no {MANIFEST} in {folder}. Run it first: {rerun}")
    if m.get("status") != "ok":
        raise ZagreusError(f"stage {stage_name} in {folder} ended with status {m.get('status')!r}"
                           f"{': ' + m['error'] if m.get('error') else ''}. Fix it and rerun: {rerun}")
    return m


def relative_to_repo(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(paths.REPO_ROOT))
    except ValueError:
        return str(path)


class LaunchRecord:
    """``<stage>/launch.json``: which launcher really ran the stage's work, and its Slurm jobs.

    A stage creates one when it starts (replacing an earlier run's) and adds each Slurm job as it
    submits and follows it; the runner copies it into the manifest, so the manifest and the report
    say ``slurm`` only where jobs ran, and ``local (in-process)`` where a stage ran in the
    notebook's own process although ``--launcher slurm`` was asked.
    """

    def __init__(self, folder: Path, launcher: str, requested: str | None = None, note: str = ""):
        self.path = Path(folder) / LAUNCH
        self.data: dict[str, Any] = {"launcher": launcher, "requested": requested or launcher, "note": note,
                                     "jobs": []}
        self.write()

    def job(self, name: str, job_id: str | None, state: str = "SUBMITTED", **extra) -> dict:
        """Add or update the job called ``name``."""
        entry = next((j for j in self.data["jobs"] if j["name"] == name), None)
        if entry is None:
            entry = {"name": name}
            self.data["jobs"].append(entry)
        entry.update({"job_id": None if job_id is None else str(job_id), "state": state, **extra})
        self.write()
        return entry

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str))
        os.replace(tmp, self.path)


def read_launch(folder: Path) -> dict | None:
    path = Path(folder) / LAUNCH
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
