"""The report's sections, one builder each, in page order: :data:`SECTIONS`.

A builder takes the :class:`ReportContext` (the profile's stage folders and manifests, the
rendered notebooks, the audit source) and returns the sections it adds (none when it has nothing
to show). To add a section, e.g. for an optional stage: write ``def my_section(ctx) -> list[Section]``
(``ctx.stage("<key>")`` finds a stage's folders; return ``[]`` when its outputs do not exist) and
insert it into :data:`SECTIONS` where it belongs. A stage that only writes an ``outputs.json``
needs no builder: :func:`run_sections` shows every stage folder's figures and tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from markupsafe import Markup

from ..audit import core as audit
from ..audit.checks import SEVERITIES
from ..pipeline import paths
from ..pipeline.errors import ZagreusError
from ..pipeline.stages import folder_name
from .ablation_report import ablation_sections
from .report_page import Html, Note, Section, anchor, count_blocks, read_outputs, stage_blocks, table



@dataclass
class ReportContext:
    profile: str
    stages: list[dict]  # report.collect_stages: folder, manifest, language, stage
    links: dict[tuple, str] = field(default_factory=dict)  # (language or None, stage) -> rendered notebook
    source: Path | None = None  # the report's markdown, for the audit
    audit_findings: list | None = None  # filled by audit_section, read by the first screen

    @property
    def languages(self) -> list[str]:
        return sorted({s["language"] for s in self.stages if s["language"]})

    def stage(self, key: str, language: str | None = None) -> list[dict]:
        """The collected stage folders of stage ``key`` (of ``language`` when given)."""
        name = folder_name(key)
        return [s for s in self.stages if s["stage"] == name and (language is None or s["language"] == language)]


#: optional stages with a section of their own (stage key -> that section's anchor prefix): the
#: "This run" part links there instead of repeating their figures
OWN_SECTIONS = {"continual": "continual", "ablations": "ablations"}


def stage_summary(s: dict) -> str:
    """``ok · 75.3 s · local``: a stage's status line."""
    m = s["manifest"]
    parts = [m.get("status") or "unknown"]
    if m.get("seconds") is not None:
        parts.append(f"{m['seconds']:.1f} s")
    if m.get("launcher"):
        parts.append(str(m["launcher"]))
    return " · ".join(parts)


def stage_section(ctx: ReportContext, s: dict) -> Section:
    """One stage folder: its status, error, figures and tables, and a link to its executed notebook."""
    m = s["manifest"]
    data = read_outputs(s["folder"])
    blocks = stage_blocks(s["folder"], data) if data else []
    own = OWN_SECTIONS.get(s["stage"].split("_", 1)[-1])
    if own and blocks and m.get("status") == "ok":  # shown once, in the stage's own section above
        blocks = [Html(Markup('<p>Its figures and tables are in <a href="#{0}">their own section</a>.</p>')
                       .format(anchor(own, s["language"])))]
    head = []
    if m.get("error"):
        head.append(Note(f"{m.get('status')}: {m['error']}"))
    link = ctx.links.get((s["language"], s["stage"]))
    if link:
        head.append(Html(Markup('<p class="meta">Executed notebook: <a href="{0}">{0}</a></p>').format(link)))
    held = count_blocks(blocks)
    return Section(anchor("stage", s["language"] or "all", s["stage"]), s["stage"],
                   stage_summary(s) + (f" · {held}" if held else ""), head + blocks,
                   status=m.get("status") or "")


def published_section(ctx: ReportContext) -> list[Section]:
    """The report's seven tables and their figures, from the plots stage (this run's rows included)."""
    plots = ctx.stage("plots")
    if not plots:
        return []
    s = plots[0]
    data = read_outputs(s["folder"])
    if data is None:
        raise ZagreusError(f"{s['folder'] / 'outputs.json'} is missing; rerun: "
                           f"zagreus run --profile {ctx.profile} --stages plots --force")
    intro = Note("The report's sections 6–7, transcribed cell by cell into report/published/results.csv (with "
                 "section, table, column as printed, task, metric, n-shot and the report's line for every number) "
                 "and regenerated here; a table of the same numbers as a figure is folded under it.")
    blocks = stage_blocks(s["folder"], data)
    return [Section("published", "Published tables and figures",
                    f"{count_blocks(blocks)} of the report, with this run's results where it has them",
                    [intro, *blocks])]


def continual_section(ctx: ReportContext) -> list[Section]:
    """The continual-pretraining demonstration (optional stage 09), where it has run: the base model
    continued on a second language against training from scratch (none when its outputs do not exist)."""
    found = []
    for s in ctx.stage("continual"):
        data = read_outputs(s["folder"]) if s["manifest"].get("status") == "ok" else None
        if data and (data.get("figures") or data.get("tables")):
            blocks = stage_blocks(s["folder"], data)
            found.append(Section(anchor("continual", s["language"]), f"{s['language']}: continued on a second language",
                                 count_blocks(blocks), blocks))
    if not found:
        return []
    intro = Note("The run's final base checkpoint continued on a second language's data, against the same model "
                 "trained from scratch on the same data and budget; held-out bits per byte and next-token top-1 "
                 "accuracy of both languages along the steps, with standard errors over held-out batches.")
    return [Section("continual", "Continual pretraining", f"{len(found)} language(s)", [intro], children=found,
                    folded=False)]


def run_sections(ctx: ReportContext) -> list[Section]:
    """This run: per language, every stage folder (per-profile stages other than the plots last)."""
    plots = folder_name("plots")
    groups: dict[str | None, list] = {}
    for s in ctx.stages:
        if s["stage"] != plots:
            groups.setdefault(s["language"], []).append(s)
    if not groups:
        return [Section("run", "This run's results", "no stage has run yet",
                        [Note("No stage of this run has produced results yet: zagreus run --profile "
                              f"{ctx.profile}")], folded=False)]
    children = []
    for language, found in sorted(groups.items(), key=lambda kv: kv[0] or "~"):
        subs = [stage_section(ctx, s) for s in found]
        ok = sum(sub.status == "ok" for sub in subs)
        children.append(Section(anchor("run", language or "all"), language or "all languages",
                                f"{ok}/{len(subs)} stages ok", children=subs, folded=False))
    return [Section("run", "This run's results", "every stage's figures and tables; click a stage to open it",
                    children=children, folded=False)]


def audit_section(ctx: ReportContext) -> list[Section]:
    """The audit of the report's own numbers (its markdown given), else how to include it."""
    if ctx.source is None:
        return [Section("audit", "Audit of the report's own consistency", "not run: no report source given",
                        [Html(Markup("<p>Provide the report's markdown: <code>make report REPORT_SOURCE={0}</code> "
                                     "or <code>zagreus report --profile {1} --report-source PATH</code>.</p>")
                              .format(paths.DEFAULT_REPORT_SOURCE, ctx.profile))], folded=False)]
    source = Path(ctx.source)
    if not source.is_file():
        raise ZagreusError(f"report source {source} does not exist; pass the report's markdown, "
                           f"e.g. REPORT_SOURCE={paths.DEFAULT_REPORT_SOURCE}")
    findings = audit.audit(source)
    ctx.audit_findings = findings
    frame = audit.findings_frame(findings)
    counts = severity_counts(findings)
    blocks = [Html(Markup("<p>Source: <code>{0}</code>. Each row: the check, where in the report, what it says, "
                          "what was computed.</p>").format(source))]
    if len(frame):
        order = {sev: i for i, sev in enumerate(SEVERITIES)}
        frame = frame.sort_values(["severity", "line"], key=lambda c: c.map(order) if c.name == "severity" else c,
                                  kind="stable")
        html = frame.style.hide(axis="index").set_table_attributes('class="audit"').format(escape="html").to_html()
        blocks.append(table("Findings", html))
    summary = f"{len(findings)} findings: " + ", ".join(f"{n} {sev}" for sev, n in counts.items())
    return [Section("audit", "Audit of the report's own consistency", summary, blocks)]


def severity_counts(findings: list) -> dict[str, int]:
    counts = {sev: 0 for sev in SEVERITIES}
    for f in findings:
        counts[f.severity] = counts.get(f.severity, 0) + 1
    return counts


def details_section(ctx: ReportContext) -> list[Section]:
    """Each stage's manifest in one table, and the package versions: how the run was made."""
    rows = []
    for s in ctx.stages:
        m = s["manifest"]
        rows.append(Markup("<tr><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td>"
                           "<td>{}</td><td class=\"text\">{}</td></tr>").format(
            s["language"] or "(all)", s["stage"], m.get("status"), m.get("status"), m.get("launcher") or "—",
            m.get("seconds") if m.get("seconds") is not None else "—", m.get("finished") or "—",
            m.get("git_commit") or "—", m.get("error") or ""))
    head = Markup("<thead><tr><th>language</th><th>stage</th><th>status</th><th>launcher</th><th>seconds</th>"
                  "<th>finished</th><th>commit</th><th>detail</th></tr></thead>")
    blocks = [table("Stages (each stage's manifest.json)", Markup("<table>") + head + Markup("<tbody>")
                    + Markup("").join(rows) + Markup("</tbody></table>"))]
    versions = next((s["manifest"].get("versions") for s in reversed(ctx.stages) if s["manifest"].get("versions")), {})
    if versions:
        vhead = Markup("").join(Markup("<th>{}</th>").format(k) for k in versions)
        vrow = Markup("").join(Markup("<td>{}</td>").format(v or "—") for v in versions.values())
        blocks.append(table("Package versions", Markup("<table><thead><tr>") + vhead
                            + Markup("</tr></thead><tbody><tr>") + vrow + Markup("</tr></tbody></table>")))
    return [Section("details", "Run details", f"{len(rows)} stage manifests, package versions", blocks)]


def notebooks_section(ctx: ReportContext) -> list[Section]:
    """Links to every executed stage notebook, rendered to HTML beside the page."""
    items = [Markup('<li><a href="{}">{} · {}</a> <span class="{}">({})</span></li>').format(
        ctx.links[(s["language"], s["stage"])], s["language"] or "(all)", s["stage"],
        s["manifest"].get("status"), s["manifest"].get("status"))
        for s in ctx.stages if (s["language"], s["stage"]) in ctx.links]
    body = Markup("<ul>") + Markup("").join(items) + Markup("</ul>") if items else Markup("<p>none</p>")
    return [Section("notebooks", "Executed stage notebooks", f"{len(items)} notebooks rendered to HTML",
                    [Html(body)])]


SECTIONS: list[Callable[[ReportContext], list[Section]]] = [
    published_section,
    continual_section,
    run_sections,
    ablation_sections,  # the optional ablation stage, when it has run
    audit_section,
    details_section,
    notebooks_section,
]

