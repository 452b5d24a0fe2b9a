"""pyproject.toml and environment.yml must list the same dependencies."""
import re
import tomllib

import yaml

from zagreus_utils import paths


def _norm(req: str) -> str:
    return re.sub(r"\s+", "", req).lower().replace("_", "-")


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((paths.REPO_ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = {_norm(r) for r in project["dependencies"] + extras["dev"] + extras["cluster"]}
    env = yaml.safe_load((paths.REPO_ROOT / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {_norm(r) for r in pip if not r.startswith("-e")}
    assert listed == wanted, f"only in pyproject: {wanted - listed}; only in environment.yml: {listed - wanted}"


def test_torch_is_pinned_to_the_cpu_build_on_disk():
    project = tomllib.loads((paths.REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert "torch==2.13.0" in project["dependencies"]


def test_nanotron_is_pinned_to_a_git_commit_for_cluster_users():
    project = tomllib.loads((paths.REPO_ROOT / "pyproject.toml").read_text())["project"]
    (req,) = project["optional-dependencies"]["cluster"]
    assert re.fullmatch(r"nanotron @ git\+https://github\.com/huggingface/nanotron@[0-9a-f]{40}", req), req
