"""End-to-end: the whole smoke pipeline through the real CLI, ending in the HTML report."""
import json
import os
import re

import pytest

from conftest import zagreus_cli as _zagreus
from zagreus_utils.pipeline import paths, stages

pytestmark = pytest.mark.smoke


# the run itself (fixtures `workdir`, `smoke_run`) is in conftest.py: the browser test reads its report too


def test_every_stage_ran_with_an_ok_manifest(smoke_run, workdir):
    for stage in stages.select(None):  # the optional stages run only when named
        folder = stage.folder("smoke", "ita", workdir / "runs")
        m = json.loads((folder / "manifest.json").read_text())
        assert m["status"] == "ok", (stage.name, m.get("error"))
        assert (folder / f"{stage.name}.ipynb").is_file()


def test_the_smoke_run_learns(smoke_run, workdir):
    """Issue 7: held-out accuracy above chance beyond its stderr at the last checkpoint, and bits per
    byte falling across checkpoints, measured by lm-eval on this run's checkpoints."""
    check = json.loads((workdir / "runs" / "smoke" / "ita" / "06_eval" / "learning_check.json").read_text())
    assert check["learning"], "\n".join(check["summary"])
    assert len(check["bits_per_byte"]["tasks"]["bpb_ita"]["steps"]) >= 4


def test_report_is_self_contained_and_complete(smoke_run, workdir):
    out, with_audit = smoke_run
    html = (workdir / "report" / "smoke" / "index.html").read_text()
    # seven published tables and their figures, embedded
    from zagreus_utils.results import published

    for info in published.TABLES.values():
        assert info.title in html, info.table_id
    assert html.count("<table") >= 7 + 2
    assert len(re.findall(r'<img src="data:image/png;base64,', html)) >= 6
    assert not re.search(r'<img src="(?!data:)', html), "figures must be embedded"
    assert "jp-InputArea" not in html  # no input cells in the report itself
    for heading in ["Overview", "Published tables and figures", "This run", "Audit", "Executed stage notebooks"]:
        assert heading in html
    if with_audit:
        assert 'class="audit"' in html
    else:
        assert "REPORT_SOURCE=" in html
    for link in re.findall(r'href="(notebooks/[^"]+)"', html):
        assert (workdir / "report" / "smoke" / link).is_file()


def test_noop_rerun_skips_everything(smoke_run, workdir):
    out = _zagreus(workdir, "run", "--profile", "smoke", "--languages", "ita", "--quiet", "--no-report")
    assert out.returncode == 0, out.stderr
    statuses = re.findall(r"^\S+\s+\S+\s+(ok|skipped|failed|blocked)\s", out.stdout, flags=re.M)
    assert statuses and set(statuses) == {"skipped"}, out.stdout


def test_continual_demonstration_reaches_the_report(smoke_run, workdir):
    """The optional continual stage, named, on the finished smoke run: both runs trained, scores
    with standard errors for both languages at every checkpoint, and its section in the report."""
    out = _zagreus(workdir, "run", "--profile", "smoke", "--languages", "ita", "--stages", "continual", "--quiet")
    assert out.returncode == 0, out.stdout + out.stderr
    stage = workdir / "runs" / "smoke" / "ita" / "09_continual"
    info = json.loads((stage / "continual.json").read_text())
    scores = info["scores"]
    assert {(r["run"], r["language"]) for r in scores} == {(run, lang) for run in ("continued", "scratch")
                                                          for lang in ("ita", "spa")}
    assert sorted({r["step"] for r in scores}) == list(range(0, info["steps"] + 1, info["checkpoint_every"]))
    assert all(r["bpb_se"] > 0 and r["acc_se"] > 0 for r in scores)
    first = {(r["run"], r["language"]): r for r in scores if r["step"] == 0}
    assert first[("continued", "ita")]["bpb"] < first[("scratch", "ita")]["bpb"] - 1  # it starts from the base model
    html = (workdir / "report" / "smoke" / "index.html").read_text()
    assert "Continual pretraining ita -&gt; spa" in html or "Continual pretraining ita -> spa" in html


@pytest.mark.parametrize("notebook", sorted(s.notebook.name for s in stages.select(None)))
def test_notebook_runs_with_default_parameters(notebook, smoke_run, workdir, tmp_path):
    """As a person in JupyterLab would: no injected parameters at all."""
    import papermill as pm

    env_backup = os.environ.get("ZAGREUS_RUNS")
    os.environ["ZAGREUS_RUNS"] = str(workdir / "runs")
    try:
        pm.execute_notebook(str(paths.NOTEBOOKS / notebook), str(tmp_path / notebook),
                            kernel_name="python3", progress_bar=False, cwd=str(tmp_path))
    finally:
        if env_backup is None:
            os.environ.pop("ZAGREUS_RUNS", None)
        else:
            os.environ["ZAGREUS_RUNS"] = env_backup


def test_notebooks_are_stored_without_outputs():
    import nbformat

    for nb_path in paths.NOTEBOOKS.glob("*.ipynb"):
        nb = nbformat.read(nb_path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, nb_path.name
        assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells), nb_path.name
