"""The report's parts without a browser: machine paths made shareable, tables counted and folded."""
from pathlib import Path

from zagreus_utils.results import report_page, shareable


def test_machine_folders_are_shown_relative_and_data_uris_kept():
    pairs = shareable.replacements(runs=Path("/data/me/zagreus/runs"), repo=Path("/data/me/zagreus"))
    text = ('model /data/me/zagreus/runs/smoke/ita/05_sft/model, config /data/me/zagreus/configs/x.yaml, '
            'checkout /data/me/zagreus, sibling /data/me/zagreus2/y, beside /data/me/shared/r.md '
            '<img src="data:image/png;base64,/data/me/zagreus/AA==">')
    assert shareable.scrub(text, pairs) == (
        'model runs/smoke/ita/05_sft/model, config configs/x.yaml, checkout ., sibling ../zagreus2/y, '
        'beside ../shared/r.md <img src="data:image/png;base64,/data/me/zagreus/AA==">')


def test_long_tables_and_a_figure_s_own_numbers_are_folded():
    def html(n):
        return "<table><thead><tr><th>a</th></tr></thead><tbody>" + "<tr><td>1</td></tr>" * n + "</tbody></table>"

    assert report_page.body_rows(html(16)) == 16
    assert not report_page.table("t", html(report_page.FOLD_ROWS)).folded
    assert report_page.table("t", html(report_page.FOLD_ROWS + 1)).folded
    assert report_page.table("t", html(3), under_figure=True).folded


def test_rendered_notebook_pages_name_no_script_to_fetch(tmp_path):
    """The linked stage notebooks open offline, as the report does: nbconvert's lab template would load
    require.js and MathJax from a CDN."""
    import re

    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    from zagreus_utils.results import report

    nb = new_notebook(cells=[new_code_cell("print('loss 2.1')", outputs=[
        new_output("stream", name="stdout", text="loss 2.1 in /data/me/zagreus/runs/smoke\n")])])
    nb_path, target = tmp_path / "03_pretraining.ipynb", tmp_path / "html" / "03_pretraining.html"
    nbformat.write(nb, nb_path)
    report._render_notebook(nb_path, target, shareable.replacements(
        runs=Path("/data/me/zagreus/runs"), repo=Path("/data/me/zagreus")))
    html = target.read_text(encoding="utf-8")
    assert "loss 2.1 in runs/smoke" in html
    assert re.findall(r'<script[^>]*\bsrc="[^"]+"', html) == []
    assert not re.search(r'import\("https?:', html)
