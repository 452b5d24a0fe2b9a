"""The HTML report opened in a real browser (Debian's chromium through Playwright, 1280 px wide):
nothing cut off, every image and in-page link works, no machine path, folded to a few screens,
offline. Skipped only where chromium or Playwright is absent outside CI (CI=true: a failure)."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from conftest import finish
from report_browser import MAX_SCREENS, HEIGHT, check_page, chromium, problems
from zagreus_utils.pipeline import paths
from zagreus_utils.pipeline.outputs import StageOutputs
from zagreus_utils.results import report
from zagreus_utils.stages import plots


def _stage_with_hard_outputs(folder: Path, runs: Path) -> None:
    """A stage folder whose outputs are what made the page hard to read: a figure and the table of its
    numbers, a 40-column table, an 80-row table, and machine paths in cells and notes."""
    out = StageOutputs(folder)
    steps = np.arange(0, 400, 10)
    loss = 9.0 * np.exp(-steps / 150) + 2.0
    fig = Figure(figsize=(7, 3))
    fig.add_subplot().plot(steps, loss)
    out.figure("loss", fig, "Loss", "training loss by step")
    out.table("loss_history", pd.DataFrame({"step": steps, "loss": loss}), "Loss history", figure="loss")
    out.table("wide", pd.DataFrame([{f"a rather long column name {i}": 0.123456 * i for i in range(40)}]),
              "Config differences")
    out.table("long", pd.DataFrame({"checkpoint": [f"{runs / 'smoke/ita/03_pretraining/checkpoint'}-{i}"
                                                   for i in range(80)], "task": "arc_ita", "acc": 0.25}),
              "Per checkpoint and task")
    out.note(f"the tokenizer in {runs / 'smoke/ita/02_tokenization/tokenizer'} was trained here")
    out.write()
    finish(folder)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A report built from the real plots stage's outputs plus one stage folder of hard outputs."""
    chromium()
    tmp = tmp_path_factory.mktemp("browser")
    runs = tmp / "runs"
    plots_dir = runs / "smoke" / "07_plots"
    plots.build_all(plots_dir, plots.PLOT_LANGUAGES)
    finish(plots_dir, language=None)
    _stage_with_hard_outputs(runs / "smoke" / "ita" / "06_eval", runs)
    index = report.build("smoke", root=runs, out_dir=tmp / "report")
    return index, runs


def test_report_reads_well_in_chromium(built):
    index, runs = built
    measured = check_page(index, runs, section="stage-ita-06_eval")
    assert problems(measured) == []
    assert measured["details_total"] >= 5 and measured["details_open"] == 0  # everything folded at first
    assert measured["section_opened"]  # a link down opens the folded section it points to
    assert measured["images"] >= 7 and measured["tables"] >= 10


def test_report_html_has_no_machine_path_and_folds_figure_tables(built):
    index, runs = built
    html = index.read_text(encoding="utf-8")
    assert str(runs) not in html and str(paths.REPO_ROOT) not in html
    assert "runs/smoke/ita/02_tokenization/tokenizer" in html  # shown relative, not dropped
    loss = html.index('alt="Loss"')
    folded = '<details class="table"><summary>Loss history: 40 rows (the numbers of the figure above)'
    assert html.index(folded) > loss


@pytest.mark.smoke
def test_smoke_report_in_chromium(smoke_run, workdir):
    """The end-to-end smoke run's report (tests marked smoke); screenshots of the first screen and of
    the pretraining section go into the run folder, runs/smoke/report-screenshots/ (not committed)."""
    index = workdir / "report" / "smoke" / "index.html"
    shots = paths.runs_root() / "smoke" / "report-screenshots"
    measured = check_page(index, workdir / "runs", shots, section="stage-ita-03_pretraining")
    assert problems(measured) == []
    assert measured["section_opened"]
    assert measured["folded_height"] < MAX_SCREENS * HEIGHT
    for link in measured["file_links"]:
        assert (index.parent / link).is_file(), link
    # a linked stage notebook opens offline too, with no script error and no machine path
    notebook = next(link for link in measured["file_links"] if "03_pretraining" in link and link.endswith(".html"))
    page = check_page(index.parent / notebook, workdir / "runs")
    assert {key: page[key] for key in ("requests_blocked", "page_errors", "machine_paths_visible",
                                       "machine_paths_in_html")} == {
        "requests_blocked": [], "page_errors": [], "machine_paths_visible": [], "machine_paths_in_html": []}
    assert (shots / "first-screen.png").stat().st_size > 10_000
    assert (shots / "stage-section.png").stat().st_size > 10_000
