"""The environments: pyproject.toml and environment.yml list the same kit dependencies, every git pin
names a commit whose source snapshot is vendored, and the train env (make train-env) works."""
import re
import subprocess
import tomllib

import pytest
import yaml

import cluster_env
from zagreus_utils.pipeline import paths

BUILD = paths.REPO_ROOT / "slurm" / "train-env" / "build.sh"
TRAIN_ENV_FILES = [BUILD, *sorted((paths.REPO_ROOT / "slurm" / "train-env").glob("requirements*.txt"))]
GIT_PIN = re.compile(r"github\.com/huggingface/(nanotron|datatrove)@([0-9a-f]+)")
COMMIT_VAR = re.compile(r"^(NANOTRON|DATATROVE)_COMMIT=([0-9a-f]+)", re.M)


def _norm(req: str) -> str:
    return re.sub(r"\s+", "", req).lower().replace("_", "-")


def _project():
    return tomllib.loads((paths.REPO_ROOT / "pyproject.toml").read_text())["project"]


def _env_pip():
    env = yaml.safe_load((paths.REPO_ROOT / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    return next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))


def test_environment_yml_mirrors_pyproject():
    project = _project()
    wanted = {_norm(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    listed = {_norm(r) for r in _env_pip() if not r.startswith("-e")}
    assert listed == wanted, f"only in pyproject: {wanted - listed}; only in environment.yml: {listed - wanted}"


def test_kit_environment_has_no_nanotron_and_a_numpy2_datatrove():
    # nanotron pins numpy<2, datatrove 0.10.1 needs numpy>=2: one pip resolution of both fails
    pip = [_norm(r) for r in _env_pip()]
    assert not [r for r in pip if r.startswith("nanotron")], pip
    assert "datatrove==0.10.1" in pip


def test_torch_is_pinned_to_the_cpu_build_on_disk():
    assert "torch==2.13.0" in _project()["dependencies"]


def _vendored() -> dict[str, str]:
    """commit -> archive name, from ../shared/vendor/README.md's table (archives that exist)."""
    readme = cluster_env.VENDOR / "README.md"
    if not readme.is_file():
        pytest.skip(f"no vendored snapshots at {cluster_env.VENDOR} (CI has them beside the clone)")
    found = {}
    for row in readme.read_text().splitlines():
        cells = [c.strip(" `") for c in row.strip().strip("|").split("|")]
        if len(cells) >= 4 and re.fullmatch(r"[0-9a-f]{40}", cells[3]) and (cluster_env.VENDOR / cells[0]).is_file():
            found[cells[3]] = cells[0]
    return found


def _git_pins() -> list[tuple[str, str, str]]:
    """(file, tool, commit) of every git pin: pyproject, environment.yml, the train env's build files."""
    pins = []
    for path in [paths.REPO_ROOT / "pyproject.toml", paths.REPO_ROOT / "environment.yml", *TRAIN_ENV_FILES]:
        text = path.read_text()
        rel = str(path.relative_to(paths.REPO_ROOT))
        pins += [(rel, tool, sha) for tool, sha in GIT_PIN.findall(text)]
        pins += [(rel, tool.lower(), sha) for tool, sha in COMMIT_VAR.findall(text)]
    return pins


def test_every_git_pin_names_a_full_commit_whose_snapshot_is_vendored():
    vendored = _vendored()
    pins = _git_pins()
    assert {tool for _, tool, _ in pins} == {"nanotron", "datatrove"}, pins
    for where, tool, sha in pins:
        assert len(sha) == 40, f"{where}: {tool}@{sha} is not a full commit hash"
        assert sha in vendored, f"{where}: {tool}@{sha} has no source snapshot in {cluster_env.VENDOR}"
        assert vendored[sha].startswith(tool), (where, tool, vendored[sha])


def test_cluster_extra_and_train_env_pin_the_same_nanotron():
    (req,) = _project()["optional-dependencies"]["cluster"]
    m = re.fullmatch(r"nanotron @ git\+https://github\.com/huggingface/nanotron@([0-9a-f]{40})", req)
    assert m, req
    assert dict(COMMIT_VAR.findall(BUILD.read_text()))["NANOTRON"] == m.group(1)


def test_train_env_requirements_resolve_the_numpy_conflict_explicitly():
    reqs = (paths.REPO_ROOT / "slurm" / "train-env" / "requirements.txt").read_text()
    lines = [ln.split("#")[0].strip() for ln in reqs.splitlines()]
    assert "numpy>=2.0.0" in lines and not any(ln.startswith("numpy<") for ln in lines)
    assert "numpy<2" in reqs and "--no-deps" in reqs  # the reason, written beside it
    # --no-deps (numpy<2), editable: nanotron/data's Makefile and helpers.cpp are not in a plain install
    assert re.search(r'--no-deps -e "\$nanotron"', BUILD.read_text())


@pytest.mark.parametrize("env, message", [
    ({}, "usage: make train-env TRAIN_ENV=<dir>"),
    ({"TRAIN_ENV": "/nonexistent/x", "NANOTRON_SRC": "/nonexistent/src"}, "NANOTRON_SRC=/nonexistent/src is not a source folder"),
])
def test_make_train_env_refuses_bad_arguments_with_one_line(env, message):
    args = [f"{k}={v}" for k, v in env.items()]
    cp = subprocess.run(["make", "-s", "train-env", *args], cwd=paths.REPO_ROOT, capture_output=True, text=True)
    assert cp.returncode != 0
    assert message in cp.stderr, cp.stderr


# --- the built train env (CI: .ci/run builds it CPU-only from the vendored snapshots) ----------

def test_train_env_imports_nanotron_config_with_numpy2_and_the_avoid_s3_datatrove(tmp_path):
    cp = cluster_env.run(
        "import inspect, numpy, nanotron.config, flash_attn, torch\n"
        "from nanotron.config import Config, get_config_from_file\n"
        "from datatrove.utils.dataset import DatatroveFolderDataset as D\n"
        "print(numpy.__version__.split('.')[0], torch.__version__, flash_attn.__version__)\n"
        "print(sorted(inspect.signature(D).parameters))", cwd=tmp_path)
    major, torch_version, fa = cp.stdout.splitlines()[0].split()
    assert int(major) >= 2
    params = cp.stdout.splitlines()[1]
    for name in ("folder_path", "max_tokens", "eos_token_id", "read_path", "matched_files", "file_sizes"):
        assert f"'{name}'" in params
    if torch_version.endswith("+cpu"):
        assert fa == "0.0.0+stand-in"  # flash_attn is the named stand-in on a CPU build
    assert (cluster_env.nanotron_src() / "run_train.py").is_file()


def test_train_env_without_the_standins_cannot_import_nanotron_config_on_cpu(tmp_path):
    python = cluster_env.python()
    probe = subprocess.run([str(python), "-c", "import flash_attn"], capture_output=True, cwd=tmp_path)
    if probe.returncode == 0:
        pytest.skip("flash_attn is really installed here (a GPU train env): no stand-in is needed")
    env = cluster_env.environ()
    env.pop("PYTHONPATH")
    cp = subprocess.run([str(python), "-c", "import nanotron.config"], capture_output=True, text=True,
                        env=env, cwd=tmp_path)
    assert cp.returncode != 0 and "flash_attn" in cp.stderr  # what the stand-ins are for, and all they are for


def test_standin_refuses_to_run_a_kernel(tmp_path):
    cp = cluster_env.run(
        "import torch\nfrom flash_attn.flash_attn_interface import flash_attn_func\n"
        "try:\n    flash_attn_func(torch.zeros(1))\nexcept RuntimeError as e:\n    print('refused', e)\n",
        cwd=tmp_path)
    if "refused" not in cp.stdout:
        pytest.skip("flash_attn is really installed here")
    assert "CPU-test stand-in" in cp.stdout
