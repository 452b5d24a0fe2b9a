"""The papermill runner on tiny stage notebooks (real papermill, real kernels)."""
import json
import time

import pytest

from conftest import make_notebook
from zagreus_utils.pipeline import manifest, runner, stages
from zagreus_utils.pipeline.errors import ZagreusError

LANG_PARAMS = 'profile = "smoke"\nlanguage = "ita"\nrun_dir = ""\nout_dir = ""\n'


@pytest.fixture
def pipeline(tmp_path):
    nbs = tmp_path / "notebooks"
    make_notebook(nbs / "01_alpha.ipynb", LANG_PARAMS,
                  "from pathlib import Path\n"
                  "if language == 'spa':\n    raise ValueError('alpha cannot handle spa')\n"
                  "Path(out_dir, 'alpha.txt').write_text(language)\n")
    make_notebook(nbs / "02_beta.ipynb", LANG_PARAMS,
                  "from pathlib import Path\n"
                  "a = Path(run_dir, '01_alpha', 'alpha.txt').read_text()\n"
                  "Path(out_dir, 'beta.txt').write_text(a + '+beta')\n")
    make_notebook(nbs / "09_summary.ipynb", 'profile = "smoke"\nlanguages = ["ita"]\nout_dir = ""\n',
                  "from pathlib import Path\nPath(out_dir, 'langs.txt').write_text(','.join(languages))\n")
    return nbs, tmp_path / "runs"


def _run(pipeline, languages, keys=None, **kw):
    nbs, root = pipeline
    return runner.run("smoke", languages, keys, root=root, notebooks=nbs, progress=False,
                      log=lambda m: None, **kw)


def test_discovers_stages_and_scopes(pipeline):
    found = stages.discover(pipeline[0])
    assert [(s.name, s.key, s.scope) for s in found] == [
        ("01_alpha", "alpha", "language"), ("02_beta", "beta", "language"), ("09_summary", "summary", "profile")]
    assert [s.name for s in stages.select(["2", "alpha"], pipeline[0])] == ["01_alpha", "02_beta"]
    with pytest.raises(ZagreusError, match="unknown stage 'gamma'. Valid stages: alpha, beta, summary"):
        stages.select(["gamma"], pipeline[0])


def test_optional_stage_runs_only_when_named(pipeline):
    nbs, root = pipeline
    make_notebook(nbs / "03_extra.ipynb", LANG_PARAMS,
                  "from pathlib import Path\nPath(out_dir, 'extra.txt').write_text('x')\n", optional=True)
    assert [s.key for s in stages.select(None, nbs)] == ["alpha", "beta", "summary"]
    assert [s.key for s in stages.select(["extra"], nbs)] == ["extra"]
    assert [r.stage for r in _run(pipeline, ["ita"]).results] == ["01_alpha", "02_beta", "09_summary"]
    assert not (root / "smoke" / "ita" / "03_extra").exists()
    named = _run(pipeline, ["ita"], ["extra"])
    assert [(r.stage, r.status) for r in named.results] == [("03_extra", "ok")]
    assert (root / "smoke" / "ita" / "03_extra" / "extra.txt").read_text() == "x"


def test_stage_naming_what_it_reads_needs_only_those(pipeline):
    nbs, root = pipeline
    body = "from pathlib import Path\nPath(out_dir, 'g.txt').write_text(Path(run_dir, '01_alpha', 'alpha.txt').read_text())\n"
    make_notebook(nbs / "03_gamma.ipynb", LANG_PARAMS, body, optional=True, reads=["alpha"])
    make_notebook(nbs / "04_delta.ipynb", LANG_PARAMS, body, optional=True)
    assert stages.select(["gamma"], nbs)[0].reads == ("alpha",) and stages.select(["delta"], nbs)[0].reads is None
    assert [r.status for r in _run(pipeline, ["ita"], ["alpha"]).results] == ["ok"]  # beta never ran
    gamma = _run(pipeline, ["ita"], ["gamma"]).results[0]
    assert (gamma.status, (root / "smoke" / "ita" / "03_gamma" / "g.txt").read_text()) == ("ok", "ita")
    assert list(manifest.read(root / "smoke" / "ita" / "03_gamma")["inputs"]["upstream"]) == ["01_alpha"]
    delta = _run(pipeline, ["ita"], ["delta"]).results[0]  # every earlier stage, beta too
    assert delta.status == "blocked" and "02_beta has not run" in delta.error


def test_runs_writes_manifests_then_skips(pipeline):
    nbs, root = pipeline
    first = _run(pipeline, ["ita"])
    assert [r.status for r in first.results] == ["ok", "ok", "ok"]
    beta = root / "smoke" / "ita" / "02_beta"
    assert (beta / "beta.txt").read_text() == "ita+beta"
    m = json.loads((beta / "manifest.json").read_text())
    assert m["status"] == "ok" and m["language"] == "ita" and m["launcher"] == "local"
    assert m["parameters"]["out_dir"] == str(beta) and "beta.txt" in m["outputs"]
    assert set(m["inputs"]) >= {"notebook", "zagreus_utils", "spec", "upstream", "parameters"}
    assert m["versions"]["papermill"] and m["seconds"] > 0 and (beta / "02_beta.ipynb").is_file()
    assert (root / "smoke" / "09_summary" / "langs.txt").read_text() == "ita"  # asked for, not every config

    second = _run(pipeline, ["ita"])
    assert [r.status for r in second.results] == ["skipped"] * 3
    forced = _run(pipeline, ["ita"], ["beta"], force=True)
    assert [(r.stage, r.status) for r in forced.results] == [("02_beta", "ok")]


def test_changed_upstream_or_override_reruns(pipeline):
    nbs, root = pipeline
    _run(pipeline, ["ita"])
    (root / "smoke" / "ita" / "01_alpha" / "alpha.txt").unlink()  # an output went missing
    again = _run(pipeline, ["ita"])
    assert [r.status for r in again.results] == ["ok", "ok", "ok"]  # alpha reran, so beta and summary too
    changed = _run(pipeline, ["ita"], overrides={"training.learning_rate": 0.002})
    assert [r.status for r in changed.results][:2] == ["ok", "ok"]


def test_failure_stops_that_language_only(pipeline):
    nbs, root = pipeline
    summary = _run(pipeline, ["spa", "ita"])
    got = [(r.language, r.stage, r.status) for r in summary.results]
    assert got == [("spa", "01_alpha", "failed"), ("ita", "01_alpha", "ok"), ("ita", "02_beta", "ok"),
                   (None, "09_summary", "ok")]
    failed = summary.results[0]
    assert "ValueError: alpha cannot handle spa" in failed.error
    m = manifest.read(root / "smoke" / "spa" / "01_alpha")
    assert m["status"] == "failed" and "alpha cannot handle spa" in m["error"]
    assert (root / "smoke" / "spa" / "01_alpha" / "01_alpha.ipynb").is_file()  # kept for debugging
    assert "failed" in summary.table() and len(summary.failed) == 1


def test_stage_before_its_inputs_is_blocked_with_a_fix(pipeline):
    summary = _run(pipeline, ["fra"], ["beta"])
    r = summary.results[0]
    assert r.status == "blocked"
    assert "01_alpha has not run" in r.error and "--stages alpha" in r.error


def test_bad_language_fails_before_running_anything(pipeline):
    nbs, root = pipeline
    with pytest.raises(ZagreusError, match="unknown language"):
        _run(pipeline, ["ita", "xx"])
    assert not (root / "smoke" / "ita").exists()


def test_environment_goes_into_the_run_folder(tmp_path, monkeypatch):
    for name in ("MPLCONFIGDIR", "IPYTHONDIR", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    set_now = runner.prepare_environment("smoke", True, tmp_path)
    assert set_now["MPLCONFIGDIR"].startswith(str(tmp_path)) and set_now["HF_HUB_OFFLINE"] == "1"
