"""The report's section on the ablation stage (``notebooks/08_ablations.ipynb``): each claim quoted
from the SmolLM notes beside this run's verdicts and the figures that show them, then the summary
table and the notes. Present only where the stage finished ``ok`` and wrote ``claims.json`` and
``outputs.json`` (a section builder of :data:`zagreus_utils.results.report_sections.SECTIONS`)."""

from __future__ import annotations

import json

from markupsafe import Markup

from ..pipeline.errors import ZagreusError
from .report_page import Html, Note, Section, anchor, data_uri, read_outputs, table

CLAIMS = "claims.json"
VERDICT_CLASS = {"agrees": "ok", "disagrees": "failed", "cannot tell": "skipped"}  # the page's status colours


def _claim_block(claim: dict, figures: dict[str, dict], folder) -> Html:
    rows = Markup("").join(
        Markup("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"text\"><strong class=\"{}\">{}</strong>: "
               "{}</td></tr>").format(k["metric"], k["expected"], k["Δ vs baseline"], k["seeds"],
                                      VERDICT_CLASS.get(k["verdict"], ""), k["verdict"], k["why"])
        for k in claim["checks"])
    figs = Markup("").join(
        Markup('<figure style="margin:0 0 1rem"><img src="{}" alt="{}"><figcaption><strong>{}.</strong> {}'
               "</figcaption></figure>").format(data_uri(folder / figures[f]["png"]), figures[f]["title"],
                                                figures[f]["title"], figures[f].get("caption", ""))
        for f in claim["figures"] if f in figures)
    return Html(Markup('<div style="display:flex;gap:1.2rem;align-items:flex-start;border-top:1px solid #e6eaef;'
                       'padding-top:.8rem"><div style="flex:1 1 50%;min-width:0">'
                       '<blockquote style="margin:0 0 .5rem;padding:.4rem .8rem;border-left:4px solid #c9a227;'
                       'background:#fbf8ec">{}</blockquote><p class="meta">{}; tested by the variant <code>{}</code> '
                       "against the baseline.</p><div class=\"scroll\"><table><thead><tr><th>metric</th>"
                       "<th>expected</th><th>Δ vs baseline ± s.e.</th><th>seeds</th><th>verdict</th></tr></thead>"
                       '<tbody>{}</tbody></table></div></div><div style="flex:1 1 50%;min-width:0">{}</div></div>')
                .format(claim["quote"], claim["source"], claim["variant"], rows, figs))


def ablation_sections(ctx) -> list[Section]:
    """One section per language whose ablation stage has results (none otherwise)."""
    try:
        found = ctx.stage("ablations")
    except ZagreusError:  # a kit without the ablation notebook
        return []
    sections = []
    for s in found:
        path = s["folder"] / CLAIMS
        data = read_outputs(s["folder"]) if s["manifest"].get("status") == "ok" and path.is_file() else None
        if data is None:
            continue
        try:
            claims = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ZagreusError(f"{path} is not valid JSON ({exc}); rerun: zagreus run --profile {ctx.profile} "
                               f"--languages {s['language']} --stages ablations --force") from None
        figures = {f["id"]: f for f in data.get("figures", [])}
        blocks = [_claim_block(c, figures, s["folder"]) for c in claims.get("claims", [])]
        blocks += [table(t["title"], (s["folder"] / t["html"]).read_text(encoding="utf-8"))
                   for t in data.get("tables", []) if t["id"] == "summary"]
        blocks += [Note(n) for n in claims.get("notes", [])]
        verdicts = [k["verdict"] for c in claims.get("claims", []) for k in c["checks"]]
        summary = ", ".join(f"{verdicts.count(v)} {v}" for v in VERDICT_CLASS if verdicts.count(v))
        sections.append(Section(anchor("ablations", s["language"]),
                                f"The SmolLM3 recipe at small scale ({s['language']})",
                                f"{len(claims.get('claims', []))} claims of the SmolLM notes, {len(verdicts)} checks: "
                                f"{summary or 'none'}", blocks))
    return sections
