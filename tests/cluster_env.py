"""The training environment (nanotron + datatrove) for tests that run those tools' own code.

The kit's venv cannot hold nanotron (numpy<2) beside datatrove 0.10.1 (numpy>=2), so nanotron's
code runs in the separate train env that ``make train-env`` builds (slurm/train-env/build.sh). CI
(.ci/run) builds it CPU-only from the vendored snapshots of the pinned commits and exports its
folder as ``ZAGREUS_TRAIN_ENV``; without that variable the tests that need it skip, saying so.

Interface::

    import cluster_env
    python = cluster_env.python()        # Path of the train env's python (skips the test when unset)
    env = cluster_env.environ()          # os.environ + PYTHONPATH of the flash_attn/triton stand-ins
    cp = cluster_env.run("import nanotron.config; print(1)", cwd=tmp_path)   # python -c, checked
    cluster_env.nanotron_src()           # the nanotron source tree (run_train.py) inside the env

The stand-ins for the CUDA-only imports (``flash_attn``, ``triton``) live in ONE place:
tests/nanotron_stubs/sitecustomize.py (active only where the real package is missing).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ENV_VAR = "ZAGREUS_TRAIN_ENV"
STANDINS = Path(__file__).resolve().parent / "nanotron_stubs"
VENDOR = Path(__file__).resolve().parents[1].parent / "shared" / "vendor"
SKIP_REASON = (f"{ENV_VAR} is not set: build the train env (make train-env TRAIN_ENV=<dir> "
               "NANOTRON_SRC=<dir> DATATROVE_SRC=<dir> CPU_ONLY=1) and export its folder; .ci/run does")


def folder() -> Path | None:
    """The train env's folder, or None when ``ZAGREUS_TRAIN_ENV`` is unset."""
    value = os.environ.get(ENV_VAR)
    return Path(value) if value else None


def python() -> Path:
    """The train env's interpreter; skips the calling test when ``ZAGREUS_TRAIN_ENV`` is unset."""
    env = folder()
    if env is None:
        pytest.skip(SKIP_REASON)
    exe = env / "bin" / "python"
    if not exe.is_file():
        pytest.fail(f"{ENV_VAR}={env} has no bin/python: rebuild it with make train-env TRAIN_ENV={env}")
    return exe


def pythonpath() -> str:
    """PYTHONPATH of the stand-ins (a folder with a ``sitecustomize`` module)."""
    return str(STANDINS)


def environ(**extra: str) -> dict:
    """os.environ for a train-env process: the stand-ins first on PYTHONPATH, offline HF variables."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([pythonpath()] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        env.setdefault(name, "1")
    env.update(extra)
    return env


def nanotron_src() -> Path:
    """nanotron's source tree kept by build.sh (run_train.py, examples/)."""
    python()
    return folder() / "src" / "nanotron"


def run(code: str, *args: str, cwd: str | Path | None = None, timeout: float = 300,
        env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -c code args...`` in the train env; fails the test with stderr when it exits non-zero."""
    cp = subprocess.run([str(python()), "-c", code, *args], cwd=cwd, env=env or environ(),
                        capture_output=True, text=True, timeout=timeout)
    if cp.returncode != 0:
        pytest.fail(f"train env python exited {cp.returncode}:\n{cp.stderr[-4000:]}")
    return cp
