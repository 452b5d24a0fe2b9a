"""``zagreus doctor``: check a machine before anything is submitted, naming the fix of each failure.

Checks, for a profile and its languages: the kit's installed versions against pyproject.toml's
pins; the training env (``$ZAGREUS_TRAIN_ENV`` or ``slurm.train_env``: nanotron, datatrove with the
loader's signature, flash-attn, GPUs) where the profile trains with GPUs; the caches that
``zagreus prefetch`` fills; Slurm reachable (``sinfo``); and the report's lm-eval tasks (present in
the installed lm-eval, or where to get them: a warning, since the eval stage skips them with a note).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from ..pipeline import paths
from ..pipeline.spec import load_spec
from . import prefetch, slurm

MAKE_TRAIN_ENV = "make train-env TRAIN_ENV={env}   (with the CUDA module loaded; README, cluster)"
# what the train env must show: nanotron's data loader needs datatrove's avoid-s3 signature
TRAIN_ENV_PROBE = r"""
import importlib.util, inspect, json
out = {}
from importlib import metadata
for name in ("torch", "nanotron", "datatrove", "flash_attn", "numpy"):
    try:
        mod = __import__(name)
        try:
            out[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            out[name] = getattr(mod, "__version__", "installed")
    except Exception as exc:
        out[name] = None
        out[name + "_error"] = f"{type(exc).__name__}: {exc}"[:200]
try:
    from datatrove.utils.dataset import DatatroveFolderDataset
    out["folder_path"] = "folder_path" in inspect.signature(DatatroveFolderDataset).parameters
except Exception:
    out["folder_path"] = False
try:
    import torch
    out["gpus"] = torch.cuda.device_count()
except Exception:
    out["gpus"] = 0
print(json.dumps(out))
"""


@dataclass
class Check:
    name: str
    status: str   # ok | FAIL | warn
    detail: str
    fix: str = ""

    def lines(self) -> list[str]:
        out = [f"{self.status:4}  {self.name}: {self.detail}"]
        return out + ([f"      fix: {self.fix}"] if self.fix and self.status != "ok" else [])


def pinned_versions() -> dict[str, str]:
    """``name==version`` pins of pyproject.toml's dependencies."""
    project = tomllib.loads((paths.REPO_ROOT / "pyproject.toml").read_text())["project"]
    pins = {}
    for req in project["dependencies"]:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*==\s*([^\s;]+)\s*", req)
        if m:
            pins[m.group(1)] = m.group(2)
    return pins


def check_pins() -> list[Check]:
    out = []
    for name, want in pinned_versions().items():
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            have = None
        ok = have is not None and have.split("+")[0] == want.split("+")[0]
        out.append(Check(f"kit {name}", "ok" if ok else "FAIL", f"{have or 'not installed'} (pinned {want})",
                         "pip install -e . in the kit's env (conda env create -f environment.yml)"))
    return out


def train_env_folder(spec) -> Path:
    value = os.environ.get("ZAGREUS_TRAIN_ENV") or spec.profile.slurm.train_env
    folder = Path(value)
    return folder if folder.is_absolute() else paths.REPO_ROOT / folder


BUILD_SCRIPT = paths.REPO_ROOT / "slurm" / "train-env" / "build.sh"
RECORD = "zagreus-train-env.json"  # written by build.sh


def train_env_pins() -> dict[str, str]:
    """The commits slurm/train-env/build.sh pins: {"nanotron": sha, "datatrove": sha}."""
    text = BUILD_SCRIPT.read_text(encoding="utf-8")
    return {tool.lower(): sha for tool, sha in re.findall(r"^(NANOTRON|DATATROVE)_COMMIT=([0-9a-f]{40})", text, re.M)}


def check_train_env(spec) -> list[Check]:
    env = train_env_folder(spec)
    fix = MAKE_TRAIN_ENV.format(env=env)
    python = env / "bin" / "python"
    if not python.is_file():
        return [Check("train env", "FAIL", f"no training environment at {env}", fix)]
    probe = subprocess.run([str(python), "-c", TRAIN_ENV_PROBE], capture_output=True, text=True, timeout=300)
    try:
        got = json.loads(probe.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return [Check("train env", "FAIL", f"{python} does not run: {probe.stderr.strip()[-300:]}", fix)]
    out = [Check("train env", "ok", str(env))]
    try:
        record = json.loads((env / RECORD).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        record = {}
    pins = train_env_pins()
    built = {tool: record.get(tool) for tool in pins}
    out.append(Check("train env commits", "ok" if built == pins else "FAIL",
                     ", ".join(f"{tool} {(sha or 'unknown')[:8]} (pinned {pins[tool][:8]})" for tool, sha in built.items()),
                     f"rebuild it: {fix}"))
    run_train = env / "src" / "nanotron" / "run_train.py"
    out.append(Check("train env run_train.py", "ok" if run_train.is_file() else "FAIL", str(run_train), fix))
    for name in ("torch", "nanotron", "datatrove", "numpy"):
        out.append(Check(f"train env {name}", "ok" if got[name] else "FAIL",
                         got[name] or got.get(name + "_error", "missing"), fix))
    out.append(Check("train env datatrove loader", "ok" if got["folder_path"] else "FAIL",
                     "DatatroveFolderDataset(folder_path=...) as nanotron's tokenized_bytes.py calls it"
                     if got["folder_path"] else "DatatroveFolderDataset lacks folder_path= (a datatrove release "
                     "<= 0.10.1): nanotron's data loader fails with TypeError", fix))
    out.append(Check("train env flash-attn", "ok" if got["flash_attn"] else "FAIL",
                     got["flash_attn"] or got.get("flash_attn_error", "missing"),
                     f"build it without CPU_ONLY: {fix}"))
    out.append(Check("GPUs", "ok" if got["gpus"] else "FAIL", f"{got['gpus']} CUDA device(s) visible to the train env",
                     "run doctor where training runs: srun --gres=gpu:1 --pty zagreus doctor --profile "
                     f"{spec.profile.name} (and load the CUDA modules the sbatch script loads)"))
    return out


def check_caches(profile: str, languages: list[str]) -> tuple[list[Check], list[Check]]:
    caches, tasks = [], []
    fetch = f"zagreus prefetch --profile {profile} --languages {' '.join(languages)}   (on a login node)"
    for it in prefetch.items(profile, languages):
        if it.kind == "external":
            tasks.append(Check(f"task {it.name}", "warn", f"{it.reason}; the eval stage skips it", it.fix))
        else:
            ok = prefetch.cached(it)
            caches.append(Check(f"cache {it.kind} {it.name}" + (f" [{', '.join(it.patterns)}]" if it.patterns else ""),
                                "ok" if ok else "FAIL", "present" if ok else "missing", fetch))
    return caches, tasks


def check_slurm() -> Check:
    ok = slurm.cluster_available()
    return Check("Slurm", "ok" if ok else "FAIL", "sinfo answers" if ok else "sbatch/sinfo missing or no controller answers",
                 "run on the cluster's login node (module load slurm), or check SLURM_CONF")


def checks(profile: str, languages: list[str]) -> list[Check]:
    """Every check of the environment for (profile, languages), in the order they are printed."""
    spec = load_spec(languages[0], profile)
    found = check_pins()
    if spec.profile.hardware.gpus_per_node:
        found += check_train_env(spec)
    caches, tasks = check_caches(profile, languages)
    return found + caches + [check_slurm()] + tasks


def main(profile: str, languages: list[str], *, log=print) -> int:
    found = checks(profile, languages)
    for c in found:
        for line in c.lines():
            log(line)
    failed = [c for c in found if c.status == "FAIL"]
    log(f"{len(found) - len(failed)} of {len(found)} checks passed" + (f"; {len(failed)} failed" if failed else ""))
    return 1 if failed else 0
