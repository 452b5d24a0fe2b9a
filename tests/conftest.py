import os
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest

# Keep Jupyter/IPython/matplotlib state out of $HOME and never touch the network.
_STATE = Path(tempfile.mkdtemp(prefix="zagreus-tests-"))
for _name, _sub in [("MPLCONFIGDIR", "mpl"), ("IPYTHONDIR", "ipython"), ("JUPYTER_CONFIG_DIR", "jcfg"),
                    ("JUPYTER_RUNTIME_DIR", "jrun"), ("JUPYTER_DATA_DIR", "jdata"), ("HF_HOME", "hf")]:
    os.environ.setdefault(_name, str(_STATE / _sub))
for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "AXOLOTL_DO_NOT_TRACK",
              "DO_NOT_TRACK"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")


def make_notebook(path: Path, parameters: str, body: str, optional: bool = False,
                  reads: list[str] | None = None) -> Path:
    """A tiny stage notebook: a cell tagged `parameters`, then the body (``optional``: run only when
    named; ``reads``: the earlier stages it depends on)."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    if optional or reads is not None:
        nb.metadata["zagreus"] = {"optional": optional, **({"reads": reads} if reads is not None else {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture
def report_source():
    """The technical report's markdown when it is present beside the repository (CI has it)."""
    from zagreus_utils.pipeline import paths

    path = paths.DEFAULT_REPORT_SOURCE
    if not path.is_file():
        pytest.skip(f"the report's markdown is not present at {path}")
    return path


def stage_ctx(key: str, run_dir, overrides: dict | None = None, *, out_dir="", launcher: str = "local",
              profile: str = "smoke", language: str = "ita", force: bool = False):
    """The StageContext a stage notebook builds, for a run folder of a test (``out_dir``: its default)."""
    from zagreus_utils.pipeline.context import StageContext

    return StageContext.create(key, profile=profile, language=language, run_dir=run_dir, out_dir=out_dir,
                               launcher=launcher, overrides=overrides, force=force)


def finish(folder, profile: str = "smoke", language: str = "ita") -> None:
    """Record stage ``folder`` as finished ``ok``, as ``zagreus run`` does after its notebook ran."""
    from zagreus_utils.pipeline import manifest

    manifest.write(Path(folder), {"status": "ok", "profile": profile, "language": language})


def full_run_naming(tmp_path, checkpoints_path) -> tuple[Path, Path]:
    """A full-profile run folder whose 03_pretraining nanotron config names ``checkpoints_path`` (the
    cluster's checkpoints), and its empty 04_conversion folder: ``(run_dir, out_dir)``."""
    import yaml

    rd = tmp_path / "full" / "ita"
    (rd / "03_pretraining").mkdir(parents=True)
    (rd / "03_pretraining" / "nanotron_config.yaml").write_text(
        yaml.safe_dump({"checkpoints": {"checkpoints_path": str(checkpoints_path)}}))
    out = rd / "04_conversion"
    out.mkdir()
    return rd, out


def zagreus_cli(workdir, *args):
    """The ``zagreus`` command in a subprocess, its runs and report in ``workdir``."""
    env = {**os.environ, "ZAGREUS_RUNS": str(workdir / "runs"), "ZAGREUS_REPORT_DIR": str(workdir / "report")}
    return subprocess.run([sys.executable, "-m", "zagreus_utils.cli", *args], capture_output=True,
                          text=True, env=env, timeout=1800)


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    """The end-to-end smoke run's folder (runs/ and report/), shared by the tests marked smoke."""
    return tmp_path_factory.mktemp("smoke")


@pytest.fixture(scope="session")
def smoke_run(workdir):
    """The whole smoke pipeline (ita) through the real CLI, once per session: ``(result, with_audit)``."""
    from zagreus_utils.pipeline import paths

    source = paths.DEFAULT_REPORT_SOURCE
    extra = ["--report-source", str(source)] if source.is_file() else []
    out = zagreus_cli(workdir, "run", "--profile", "smoke", "--languages", "ita", "--quiet", *extra)
    assert out.returncode == 0, out.stdout + out.stderr
    return out, bool(extra)
