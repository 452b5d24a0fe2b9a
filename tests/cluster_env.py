"""The cluster's training environment, for tests that let nanotron's and datatrove's own code judge
what the kit writes (configs, token folders, checkpoints).

nanotron (main, 2411b022) and the datatrove its data loader needs (nouamane/avoid-s3, 2c895af7)
cannot live in the kit's environment (nanotron pins numpy<2, datatrove needs numpy>=2), so they
sit in their own venv (``make train-env``) and the tests run them in a subprocess of that venv's
python, named by ``ZAGREUS_TRAIN_ENV`` (the venv folder, or its python). Without it those tests skip.

``import nanotron.config`` reaches ``nanotron/nn/ring_attention.py``, which imports ``flash_attn``
and ``triton`` at module level, and ``nanotron.models.llama`` reaches ``nanotron/nn/moe.py``, which
imports ``grouped_gemm``; on a CPU machine none of them installs. :func:`stub_path` writes
stand-ins for those imports only: every function they export raises when called, every class
can be built (no parameters, no buffers) but raises when used, so no test can use a kernel of theirs
by accident (loading a config, building datasets, building a model
on the meta device and reading checkpoints call none).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import textwrap
from pathlib import Path

import pytest

ENV_VAR = "ZAGREUS_TRAIN_ENV"

_STAND_IN = '''
def __getattr__(name):  # every other name: a stand-in that refuses to run
    if name.startswith("__"):
        raise AttributeError(name)

    def refuse(*args, **kwargs):
        raise RuntimeError(f"{__name__}.{name} is a CPU-test stand-in (tests/cluster_env.py): no kernel here")

    if name[:1].isupper():  # a class: it may be built (nanotron's modules hold one), not used
        return type(name, (), {"__init__": lambda self, *a, **k: None, "__call__": refuse, "forward": refuse,
                               "__module__": __name__})
    refuse.__name__ = name
    return refuse
'''

_TRITON = '''
def jit(fn=None, **kwargs):  # @triton.jit and @triton.jit(...): the kernel becomes a stand-in
    if fn is None:
        return jit
    return __getattr__(f"jit({fn.__name__})")


def heuristics(*args, **kwargs):
    return jit


autotune = heuristics
'''

#: the stand-in modules: exactly the import paths nanotron's modules name at import time
STAND_INS = {
    "flash_attn/__init__.py": '__version__ = "0.0.0+stand-in"  # below 2.1: nanotron takes no flash path\n',
    "flash_attn/bert_padding.py": "",
    "flash_attn/flash_attn_interface.py": "",
    "flash_attn/layers/__init__.py": "",
    "flash_attn/layers/rotary.py": "",
    "flash_attn/modules/__init__.py": "",
    "flash_attn/modules/mha.py": "",
    "flash_attn/ops/__init__.py": "",
    "flash_attn/ops/triton/__init__.py": "",
    "flash_attn/ops/triton/layer_norm.py": "",
    "triton/__init__.py": "from . import language\n" + _TRITON,
    "triton/language/__init__.py": "",
    # torch's inductor (imported when any torch optimizer is built) reads these two at import time
    "triton/backends/__init__.py": "",
    "triton/backends/compiler.py": "",
    "triton/compiler/__init__.py": "",
    "triton/compiler/compiler.py": "",
    # nanotron/nn/moe.py (reached by nanotron.models.llama) imports it and raises without it
    "grouped_gemm/__init__.py": "",
    "grouped_gemm/ops.py": "",
}


#: mark for a test module whose fixtures are built only for the training venv
requires_train_env = pytest.mark.skipif(not os.environ.get(ENV_VAR), reason=(
    f"{ENV_VAR} is not set: build the training venv (make train-env TRAIN_ENV=<dir> NANOTRON_SRC=... "
    f"DATATROVE_SRC=... CPU_ONLY=1) and export {ENV_VAR}=<dir>"))


def train_python() -> str:
    """The training venv's python (``ZAGREUS_TRAIN_ENV``); skips the test when it is not set."""
    where = os.environ.get(ENV_VAR)
    if not where:
        pytest.skip(f"{ENV_VAR} is not set: build the training venv (make train-env TRAIN_ENV=<dir> "
                    f"NANOTRON_SRC=... DATATROVE_SRC=... CPU_ONLY=1) and export {ENV_VAR}=<dir>")
    path = Path(where)
    python = path / "bin" / "python" if path.is_dir() else path
    if not python.is_file():
        pytest.fail(f"{ENV_VAR}={where}: no python there (expected a venv folder or its bin/python)")
    return str(python)


_STUBS: Path | None = None


def stub_path() -> Path:
    """A folder holding the ``flash_attn``/``triton`` stand-ins (written once per test session)."""
    global _STUBS
    if _STUBS is None:
        root = Path(tempfile.mkdtemp(prefix="zagreus-stand-ins-"))
        for rel, body in STAND_INS.items():
            f = root / rel
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(body + _STAND_IN, encoding="utf-8")
        _STUBS = root
    return _STUBS


def run_train_env(code: str, *args: str, cwd: str | Path | None = None, env: dict | None = None,
                  timeout: int = 300) -> dict:
    """Run ``code`` with the training venv's python (stand-ins first on the path, offline) and return
    the JSON object it prints on its last line of stdout; fails the test with its stderr otherwise."""
    python = train_python()
    env = {**os.environ, **(env or {})}
    env["PYTHONPATH"] = str(stub_path())
    env["PATH"] = f"{Path(python).parent}{os.pathsep}{env.get('PATH', '')}"  # nanotron's `make` helpers use python3
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        env[name] = "1"
    proc = subprocess.run([python, "-c", textwrap.dedent(code), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        pytest.fail(f"training-env python failed (rc {proc.returncode}):\n{proc.stderr[-6000:]}\n{proc.stdout[-2000:]}")
    return json.loads(lines[-1])


def python() -> Path:
    """:func:`train_python` as a Path."""
    return Path(train_python())


def folder() -> Path | None:
    """The train env's folder, or None when ``ZAGREUS_TRAIN_ENV`` is unset."""
    value = os.environ.get(ENV_VAR)
    return None if not value else (Path(value) if Path(value).is_dir() else Path(value).parent.parent)


def environ(**extra: str) -> dict:
    """os.environ for a train-env process: the stand-ins first on PYTHONPATH, offline HF variables."""
    env = {**os.environ, "PYTHONPATH": str(stub_path())}
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        env.setdefault(name, "1")
    env.update(extra)
    return env


def run(code: str, *args: str, cwd: str | Path | None = None, timeout: float = 300,
        env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -c code args...`` in the train env; fails the test with stderr when it exits non-zero."""
    cp = subprocess.run([train_python(), "-c", code, *args], cwd=cwd, env=env or environ(),
                        capture_output=True, text=True, timeout=timeout)
    if cp.returncode != 0:
        pytest.fail(f"train env python exited {cp.returncode}:\n{cp.stderr[-4000:]}")
    return cp


def nanotron_src() -> Path:
    """nanotron's source tree that ``make train-env`` keeps inside the env (run_train.py, examples/)."""
    python()
    return folder() / "src" / "nanotron"


#: the vendored source snapshots of the pinned commits (beside the checkout)
VENDOR = Path(__file__).resolve().parents[1].parent / "shared" / "vendor"

__all__ = ["ENV_VAR", "STAND_INS", "VENDOR", "environ", "folder", "nanotron_src", "python", "requires_train_env",
           "run", "run_train_env", "stub_path", "train_python"]
