"""``manifest.json``: what a stage ran with, what it wrote, how long it took, and whether it worked.

The runner writes one per stage folder. A stage is up to date when its manifest says ``ok``, its
fingerprint (notebook, package code, the config files it reads, spec, parameters, upstream stages'
recorded outputs) is unchanged and the outputs it recorded still have the recorded content. Every
output is recorded with its size and ``mtime_ns``, and its sha256 up to :data:`_FULL_HASH_LIMIT`;
:func:`check_outputs` compares size and mtime first and hashes only files whose stat changed
(``full=True``, as ``zagreus verify`` does, hashes every file). Before the runner starts a stage it
checks the files the stage consumes with ``require(..., verify=True)``.
"""

from __future__ import annotations

import contextlib
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
# Something computed that a stage would otherwise overwrite (an earlier run trained on other
# inputs, an incomplete checkpoint) is moved to <stage>/previous/<when>-<label>/ with a moved.json
# saying why; the runner names every such move in its output and the manifest.
SET_ASIDE = "previous"
SET_ASIDE_RECORD = "moved.json"
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
    """Every file under the stage folder: size, mtime_ns, and sha256 (files up to the hash limit)."""
    out = {}
    for path in sorted(Path(folder).rglob("*")):
        if not path.is_file() or path.name in exclude or ".ipynb_checkpoints" in path.parts:
            continue
        st = path.stat()
        entry: dict[str, Any] = {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
        if st.st_size <= _FULL_HASH_LIMIT:
            entry["sha256"] = sha256_file(path)
        out[str(path.relative_to(folder))] = entry
    return out


def content_ids(outputs: dict[str, dict]) -> dict[str, str]:
    """What identifies each recorded output's content: its sha256, else (a file too big to hash)
    its size and mtime. A downstream fingerprint keys on these, not on when a file was touched."""
    return {rel: info.get("sha256") or f"{info.get('bytes')}:{info.get('mtime_ns')}"
            for rel, info in outputs.items()}


def check_outputs(folder: Path, outputs: dict[str, dict], full: bool = False) -> dict[str, str]:
    """The recorded outputs whose file no longer has the recorded content: ``{relative path: why}``.

    A file whose size and mtime are as recorded counts as unchanged unless ``full``; otherwise its
    sha256 is compared. A file too big to have been hashed changed when its size or mtime did.
    """
    changed = {}
    for rel, info in outputs.items():
        path = Path(folder) / rel
        try:
            st = path.stat()
        except OSError:
            changed[rel] = "missing"
            continue
        if not path.is_file():
            changed[rel] = "no longer a file"
            continue
        same_stat = st.st_size == info.get("bytes") and st.st_mtime_ns == info.get("mtime_ns")
        if "sha256" not in info:
            if not same_stat:
                changed[rel] = (f"size or mtime differs from the recorded {info.get('bytes')} bytes "
                                "(too big to be hashed, so a touched file counts as changed)")
        elif full or not same_stat:
            if st.st_size != info.get("bytes"):
                changed[rel] = f"{st.st_size} bytes, {info.get('bytes')} recorded"
            elif sha256_file(path) != info["sha256"]:
                changed[rel] = "content differs from the recorded sha256 (same size)"
    return changed


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


class CorruptManifest(ZagreusError):
    """A ``manifest.json`` that is there but cannot be read as a manifest (truncated, not JSON)."""

    def __init__(self, path: Path, why: str):
        self.path = Path(path)
        super().__init__(f"corrupt manifest {path}: {why}")


def read(folder: Path) -> dict | None:
    """The stage's manifest; ``None`` when it has none. A corrupt one raises :class:`CorruptManifest`."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        text = path.read_text()
    except OSError as exc:
        raise ZagreusError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptManifest(path, f"not valid JSON ({exc}; truncated?)") from None
    if not isinstance(data, dict):
        raise CorruptManifest(path, f"a JSON {type(data).__name__}, not a mapping")
    return data


def write_error(exc: OSError, path: Path) -> str:
    """One line for a file that could not be written (a full or read-only disk, a permission)."""
    where = exc.filename or path
    return (f"cannot write {where}: {exc.strerror or exc} (disk full or read-only?); "
            "free space or make it writable, then rerun")


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as JSON atomically (a temporary sibling, then a rename): readers see the old
    file or the new one, never half of one. On a disk fault the temporary file is removed and the
    OSError raised."""
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, default=str))
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    return path


def write(folder: Path, manifest: dict) -> Path:
    """Write the manifest atomically; a disk fault raises one :class:`ZagreusError` line and leaves
    no temporary file behind."""
    path = Path(folder) / MANIFEST
    try:
        return write_json(path, manifest)
    except OSError as exc:
        raise ZagreusError(write_error(exc, path.with_suffix(".tmp"))) from None


def stale_reason(folder: Path, fingerprint: str, inputs: dict | None = None) -> str:
    """Why the stage in ``folder`` is not up to date ("" when it is): no ``ok`` manifest, another
    fingerprint (naming the inputs that differ when ``inputs`` is given), or an output whose content
    is no longer the recorded one. A corrupt manifest is not up to date: the stage reruns over it."""
    try:
        m = read(folder)
    except CorruptManifest as exc:
        return str(exc)
    if not m:
        return "it has not run"
    if m.get("status") != "ok":
        return f"its last run ended {m.get('status')!r}"
    if m.get("fingerprint") != fingerprint:
        changed = _changed_keys(m.get("inputs") or {}, inputs or {}) if inputs else []
        return "changed inputs: " + (", ".join(changed) or "fingerprint differs")
    changed_outputs = check_outputs(folder, m.get("outputs", {}))
    if changed_outputs:
        rel, why = next(iter(changed_outputs.items()))
        return f"its output {rel} changed: {why}"
    return ""


def _changed_keys(old: dict, new: dict) -> list[str]:
    """The keys (``section/key`` one level down) whose values differ between two inputs records."""
    changed = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            changed += [f"{key}/{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        else:
            changed.append(key)
    return changed


def rerun_command(stage_name: str, profile: str, language: str | None = None) -> str:
    key = stage_name.split("_", 1)[-1]
    return f"zagreus run --profile {profile}" + (f" --languages {language}" if language else "") + f" --stages {key}"


def require(folder: Path, stage_name: str, profile: str, language: str | None = None,
            verify: bool = False) -> dict:
    """The manifest of an upstream stage that must have finished ``ok``; with ``verify`` (as the
    runner asks before it starts a stage) its recorded outputs must also still hold the recorded
    content (size and mtime, else sha256). A clear error naming the fix otherwise.

    A stage notebook calls it without ``verify``: run by hand in JupyterLab it rewrites its own
    folder without a manifest, and the next notebook should still run; ``zagreus run`` then sees
    that folder changed and reruns the stage."""
    rerun = rerun_command(stage_name, profile, language)
    try:
        m = read(folder)
    except CorruptManifest as exc:
        raise ZagreusError(f"stage {stage_name}: {exc}. Rerun the stage to rewrite it: {rerun}") from None
    if m is None:
        raise ZagreusError(f"stage {stage_name} has not run: no {MANIFEST} in {folder}. Run it first: {rerun}")
    if m.get("status") != "ok":
        raise ZagreusError(f"stage {stage_name} in {folder} ended with status {m.get('status')!r}"
                           f"{': ' + m['error'] if m.get('error') else ''}. Fix it and rerun: {rerun}")
    changed = check_outputs(folder, m.get("outputs", {})) if verify else {}
    if changed:
        rel, why = next(iter(changed.items()))
        more = f" (and {len(changed) - 1} more file(s))" if len(changed) > 1 else ""
        raise ZagreusError(f"stage {stage_name}'s output {Path(folder) / rel} changed since it ran: {why}{more}. "
                           f"Rerun that stage to rebuild it: {rerun}")
    return m


def stage_folders(profile: str | None = None, languages: list[str] | None = None,
                  root: Path | None = None) -> list[tuple[Path, str, str | None]]:
    """``(folder, profile, language)`` of every stage folder with a manifest under the runs root
    (one profile or all; the per-profile stages and those of the given languages, or all)."""
    base = Path(root) if root is not None else paths.runs_root()
    profiles = [base / profile] if profile else sorted(p for p in base.glob("*") if p.is_dir())
    found = []
    for prof in profiles:
        found += [(mf.parent, prof.name, None) for mf in sorted(prof.glob(f"*/{MANIFEST}"))]
        found += [(mf.parent, prof.name, mf.parent.parent.name) for mf in sorted(prof.glob(f"*/*/{MANIFEST}"))
                  if not languages or mf.parent.parent.name in languages]
    return found


def verify(folder: Path) -> tuple[str, dict[str, str]]:
    """Fully hash every output a stage recorded: ``(status, {relative path: why})``; the status is
    the manifest's, or ``corrupt`` (the reason under the manifest's own name)."""
    try:
        m = read(folder) or {}
    except ZagreusError as exc:
        return "corrupt", {MANIFEST: str(exc)}
    return str(m.get("status")), check_outputs(folder, m.get("outputs", {}), full=True)


def set_aside_since(folder: Path, since: float) -> list[dict]:
    """The moves recorded under ``folder``'s ``previous/`` since ``since`` (a time.time() value):
    ``{"path", "reason"}`` each, oldest first."""
    found = []
    for rec in sorted(Path(folder).glob(f"{SET_ASIDE}/*/{SET_ASIDE_RECORD}")):
        if rec.stat().st_mtime >= since:
            try:
                reason = json.loads(rec.read_text()).get("reason", "")
            except (OSError, json.JSONDecodeError):
                reason = ""
            found.append({"path": str(rec.parent), "reason": reason})
    return found


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
        write_json(self.path, self.data)


def read_launch(folder: Path) -> dict | None:
    path = Path(folder) / LAUNCH
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
