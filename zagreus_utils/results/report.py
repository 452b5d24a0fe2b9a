"""Build ``report/<profile>/index.html`` from existing runs: one self-contained page.

Sections: overview (profile, languages, versions, commit, stage status), the report's published
tables and figures (from the ``plots`` stage, ``07_plots``), this run's own results (every stage folder that
wrote an ``outputs.json``), the audit of the report's own consistency (when its markdown is given)
and links to each executed stage notebook rendered to HTML. Figures are embedded as data URIs;
all text that comes from data or models is escaped by the template.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import jinja2

from ..audit import core as audit
from ..pipeline import manifest, paths
from ..pipeline.stages import folder_name
from ..pipeline.errors import ZagreusError

TEMPLATE = paths.REPORT / "template.html.j2"
OUTPUTS = "outputs.json"


def _data_uri(path: Path) -> str:
    mime = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg"}[path.suffix.lower()]
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def _load_outputs(folder: Path) -> dict | None:
    """A stage's figure/table index (``outputs.json``), with files resolved and embedded."""
    index = folder / OUTPUTS
    if not index.is_file():
        return None
    try:
        data = json.loads(index.read_text())
    except json.JSONDecodeError as exc:
        raise ZagreusError(f"{index} is not valid JSON ({exc}); rerun that stage with --force") from None
    figures, tables = [], []
    for fig in data.get("figures", []):
        png = folder / fig["png"]
        if not png.is_file():
            raise ZagreusError(f"{index} lists figure {fig['png']} but {png} is missing; rerun that stage with --force")
        figures.append({**fig, "src": _data_uri(png)})
    for tab in data.get("tables", []):
        html = folder / tab["html"]
        if not html.is_file():
            raise ZagreusError(f"{index} lists table {tab['html']} but {html} is missing; rerun that stage with --force")
        tables.append({**tab, "body": html.read_text(encoding="utf-8")})
    return {"figures": figures, "tables": tables, "notes": data.get("notes", [])}


def _render_notebook(nb_path: Path, target: Path) -> None:
    """Executed notebook -> HTML (skipped when the HTML is newer than the notebook)."""
    if target.is_file() and target.stat().st_mtime >= nb_path.stat().st_mtime:
        return
    import nbformat
    from nbconvert import HTMLExporter

    target.parent.mkdir(parents=True, exist_ok=True)
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nbformat.read(nb_path, as_version=4))
    target.write_text(body, encoding="utf-8")


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


def _audit_section(source: Path | None) -> dict:
    if source is None:
        return {"given": False}
    source = Path(source)
    if not source.is_file():
        raise ZagreusError(f"report source {source} does not exist; pass the report's markdown, "
                           f"e.g. REPORT_SOURCE={paths.DEFAULT_REPORT_SOURCE}")
    findings = audit.audit(source)
    order = {"error": 0, "warning": 1, "info": 2}
    frame = audit.findings_frame(findings)
    if len(frame):
        frame = frame.sort_values(["severity", "line"], key=lambda c: c.map(order) if c.name == "severity" else c,
                                  kind="stable")
    counts = frame["severity"].value_counts().to_dict() if len(frame) else {}
    table = (frame.style.hide(axis="index").set_table_attributes('class="audit"')
             .format(escape="html").to_html()) if len(frame) else ""
    return {"given": True, "source": str(source), "counts": counts, "table": table, "n": len(findings)}


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
    published = _load_outputs(plots["folder"])
    if published is None:
        raise ZagreusError(f"{plots['folder'] / OUTPUTS} is missing; rerun: zagreus run --profile {profile} --stages plots --force")

    out = Path(out_dir) if out_dir else paths.report_dir(profile)
    out.mkdir(parents=True, exist_ok=True)
    rows, own_results = [], []
    for s in stages:
        m = s["manifest"]
        nb = s["folder"] / m.get("notebook", f"{s['stage']}.ipynb")
        link = None
        if nb.is_file():
            target = out / "notebooks" / (s["language"] or "all") / f"{s['stage']}.html"
            _render_notebook(nb, target)
            link = str(target.relative_to(out))
        rows.append({"language": s["language"] or "(all)", "stage": s["stage"], "status": m.get("status"),
                     "launcher": m.get("launcher"), "seconds": m.get("seconds"),
                     "finished": m.get("finished"), "error": m.get("error"), "link": link})
        if s["stage"] != plots_name:
            res = _load_outputs(s["folder"])
            if res and (res["figures"] or res["tables"]):
                own_results.append({"language": s["language"], "stage": s["stage"], **res})

    first = plots["manifest"]
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE.parent)),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    html = env.get_template(TEMPLATE.name).render(
        profile=profile,
        languages=sorted({s["language"] for s in stages if s["language"]}),
        built=manifest.now(),
        git_commit=manifest.git_commit(),
        versions=first.get("versions", {}),
        stages=rows,
        published=published,
        own_results=own_results,
        audit=_audit_section(source),
        default_source=paths.DEFAULT_REPORT_SOURCE,
        seconds=round(time.perf_counter() - t0, 1),
    )
    index = out / "index.html"
    index.write_text(html, encoding="utf-8")
    return index
