"""Build ``report/<profile>/index.html`` from existing runs: one self-contained page.

The first screen answers what was run (profile, languages, commit), whether each stage worked,
whether the model learned (the eval stage's check against chance, beside the report's published
numbers) and what the audit found, with links down to each part. Below it, a table of contents
that stays on screen and the sections of :data:`zagreus_utils.results.report_sections.SECTIONS`
(published tables and figures, this run's stages, the audit, run details, notebooks), each folded
under a one-line summary. Figures are embedded as data URIs, tables scroll in their own box,
machine paths are shown relative to the run folder or the repository
(:mod:`zagreus_utils.results.shareable`), and all text that comes from data is escaped.
"""

from __future__ import annotations

import time
from pathlib import Path

import jinja2

from ..pipeline import manifest, paths
from ..pipeline.stages import folder_name
from ..pipeline.errors import ZagreusError
from . import shareable
from .report_glance import glance
from .report_sections import SECTIONS, ReportContext

TEMPLATE = paths.REPORT / "template.html.j2"
# nbconvert's lab template loads require.js, MathJax, mermaid and the widget renderer from a CDN;
# the stage notebooks use none of them (matplotlib images, HTML tables, text), so the rendered pages
# name no script to fetch and open offline, as the report does.
OFFLINE_EXPORTER = {name: "" for name in ("require_js_url", "mathjax_url", "jquery_url", "mermaid_js_url",
                                          "mermaid_layout_elk_js_url", "widget_renderer_url")}


def _render_notebook(nb_path: Path, target: Path, pairs: list[tuple[str, str]]) -> None:
    """Executed notebook -> HTML, machine paths replaced (skipped when the HTML is newer than the
    notebook and than the code that renders it and replaces the paths)."""
    newest_input = max(nb_path.stat().st_mtime, Path(shareable.__file__).stat().st_mtime,
                       Path(__file__).stat().st_mtime)
    if target.is_file() and target.stat().st_mtime >= newest_input:
        return
    import nbformat
    from nbconvert import HTMLExporter

    target.parent.mkdir(parents=True, exist_ok=True)
    body, _ = HTMLExporter(template_name="lab", **OFFLINE_EXPORTER).from_notebook_node(
        nbformat.read(nb_path, as_version=4))
    target.write_text(shareable.scrub(body, pairs), encoding="utf-8")


def collect_stages(profile: str, root: Path | None = None) -> list[dict]:
    """Every stage folder of the profile that has a manifest, in (language, stage) order."""
    base = paths.run_dir(profile, root=root)
    found = []
    for mf in sorted(base.glob("*/manifest.json")) + sorted(base.glob("*/*/manifest.json")):
        try:
            m = manifest.read(mf.parent)
        except manifest.CorruptManifest as exc:  # listed as such in the report's stage table
            m = {"status": "corrupt", "error": str(exc),
                 "language": mf.parent.parent.name if mf.parent.parent != base else None}
        if m is None:
            continue
        found.append({"folder": mf.parent, "manifest": m, "language": m.get("language"),
                      "stage": m.get("stage", mf.parent.name)})
    return sorted(found, key=lambda s: (s["language"] or "~", s["stage"]))


def build(profile: str, source: Path | None = None, root: Path | None = None,
          out_dir: Path | None = None) -> Path:
    """Write ``report/<profile>/index.html`` (and the rendered notebooks beside it)."""
    t0 = time.perf_counter()
    base = paths.run_dir(profile, root=root)
    if not base.is_dir():
        raise ZagreusError(f"no runs for profile {profile!r}: {base} does not exist. "
                           f"Run the pipeline first: zagreus run --profile {profile}")
    stages = collect_stages(profile, root)
    plots_name = folder_name("plots")
    plots = next((s for s in stages if s["stage"] == plots_name), None)
    if plots is None or plots["manifest"].get("status") != "ok":
        raise ZagreusError(f"the plots stage has not run for profile {profile!r} (no ok manifest in "
                           f"{base / plots_name}). Run: zagreus run --profile {profile} --stages plots")

    out = Path(out_dir) if out_dir else paths.report_dir(profile)
    out.mkdir(parents=True, exist_ok=True)
    pairs = shareable.replacements(runs=Path(root) if root is not None else paths.runs_root())
    ctx = ReportContext(profile, stages, source=source)
    for s in stages:
        nb = s["folder"] / s["manifest"].get("notebook", f"{s['stage']}.ipynb")
        if nb.is_file():
            target = out / "notebooks" / (s["language"] or "all") / f"{s['stage']}.html"
            _render_notebook(nb, target, pairs)
            ctx.links[(s["language"], s["stage"])] = target.relative_to(out).as_posix()
    sections = [section for builder in SECTIONS for section in builder(ctx)]
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE.parent)),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    html = env.get_template(TEMPLATE.name).render(
        profile=profile,
        built=manifest.now(),
        glance=glance(ctx),
        sections=sections,
        seconds=round(time.perf_counter() - t0, 1),
    )
    index = out / "index.html"
    index.write_text(shareable.scrub(html, pairs), encoding="utf-8")
    return index
