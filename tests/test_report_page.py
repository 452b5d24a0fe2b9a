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
