"""Stage 08, ablations (optional: ``zagreus run --stages ablations``): the SmolLM3 recipe's claims
tested at small scale on this run's tokenized data.

:func:`run` holds out the last documents of each stage-02 token folder (:mod:`.heldout`), trains
every variant of the plan (``configs/ablations/smollm3.yaml``: baseline, each switch alone, all
together) for every seed with the local trainer at the same token budget (:mod:`.runs`), measures
each model on the held-out slice (:mod:`.probe`), and writes the per-seed results
(``results.csv``, ``results.json``), the summary and claims tables, the figures
(``outputs.json``) and ``claims.json``, which the HTML report shows beside each quoted claim.
"""

from __future__ import annotations

import json
import time

import pandas as pd

from ...model.trainer import _load_tokenizer
from ...pipeline import manifest
from ...pipeline.context import StageContext, StageResult
from ...pipeline.outputs import StageOutputs
from ..display import styled
from ..pretraining import _tokenizer_string
from . import figures, heldout as heldout_mod, probe, runs, tables
from .plan import Plan, load_plan
from .stats import K_SE

RESULTS_CSV, RESULTS_JSON, CLAIMS_JSON = "results.csv", "results.json", "claims.json"
FIGURE_OF = {"probe": "probe", "embed": "embed_norms", "heldout": "bars", "final": "bars"}


def _figures_for(metrics: list[str]) -> list[str]:
    return list(dict.fromkeys(FIGURE_OF[m.split("_")[0]] for m in metrics if m.split("_")[0] in FIGURE_OF))


def claims_record(claims: pd.DataFrame, plan: Plan) -> list[dict]:
    """``claims.json``: each claim with its quote, checks (verdict and why) and the figures that show it."""
    out = []
    for claim in plan.claims:
        sel = claims[claims["claim"] == claim.id]
        out.append({"id": claim.id, "quote": claim.quote, "variant": claim.variant, "source": plan.source,
                    "checks": sel.drop(columns=["claim", "quote", "variant"]).to_dict("records"),
                    "figures": _figures_for([c.metric for c in claim.checks])})
    return out


def run(ctx: StageContext, *, plan: Plan | None = None, progress: bool = True) -> StageResult:
    t0 = time.perf_counter()
    plan = plan or load_plan()
    spec = ctx.spec
    tokenization = ctx.upstream("tokenization")
    out = ctx.out_dir
    out.mkdir(parents=True, exist_ok=True)
    manifest.LaunchRecord(out, manifest.in_process(ctx.launcher), ctx.launcher,
                          note="" if ctx.launcher == "local" else "the ablations train in the notebook's process")
    vocab = spec.profile.tokenizer.vocab_size
    folders = [tokenization / "tokenized" / s.id for s in spec.language.mixture]
    held = heldout_mod.split(folders, out, plan.heldout_fraction, vocab)
    tokenizer = _tokenizer_string(spec, tokenization)
    table = probe.token_bytes(_load_tokenizer(tokenizer), vocab)
    seq_len = spec.profile.training.sequence_length

    t_train = time.perf_counter()
    rows, notes = runs.train_all(ctx, plan, held, tokenizer, table, progress=progress)
    train_s = time.perf_counter() - t_train
    frame = pd.DataFrame(rows)
    frame.to_csv(out / RESULTS_CSV, index=False)
    (out / RESULTS_JSON).write_text(json.dumps(rows, indent=2), encoding="utf-8")

    stats = tables.stats_frame(frame, plan)
    summary = tables.summary_table(frame, stats, plan)
    claims = tables.claims_table(stats, plan)
    same = tables.identical_to_baseline(frame, plan)
    budget = frame["tokens"].dropna().unique()
    notes = [f"{len(plan.variants)} variants x {len(plan.seeds)} seeds (seeds {plan.seeds}), {plan.steps} steps each "
             f"({', '.join(f'{int(b):,}' for b in budget)} training tokens per run); held out: "
             f"{len(held.documents)} documents, {held.tokens:,} tokens (the last {plan.heldout_fraction:.0%} of each "
             f"token folder, never trained on); bits per byte and next-token top-1 accuracy are scored on "
             f"{plan.heldout_tokens:,} of those tokens (whole documents in a fixed shuffled order), the "
             f"long-context probe on {plan.probe_windows} window(s) of {max(plan.probe_lengths)}x the sequence length.",
             f"Verdicts: a difference to the baseline beyond {K_SE:g} standard errors agrees or disagrees with the "
             "claim; within that it is 'cannot tell'. Differences are paired by seed (same initial weights and "
             "data order) where every seed ran.",
             "The long-context probe evaluates every variant with plain causal attention over windows of "
             "concatenated held-out documents (positions from 0): it measures how a model copes with inputs "
             "longer than it was trained on; the documents are short, so it cannot show the use of long-range "
             "information.", *notes]
    if same:
        notes.append(f"SWITCH WITHOUT EFFECT: {', '.join(same)} ended with exactly the baseline's training loss "
                     "for every seed; the trainer ignored the switch, and its verdicts say nothing about the claim.")

    outputs = StageOutputs(out)
    figs = {"embed_norms": figures.embed_norm_figure(runs.curves(out, plan), plan),
            "probe": figures.probe_figure(frame, plan, seq_len), "bars": figures.bars_figure(frame, plan)}
    outputs.figure("embed_norms", figs["embed_norms"], "Embedding norms during training",
                   "Mean L2 norm of the embedding rows against the step, mean ± standard error over seeds.")
    outputs.figure("probe", figs["probe"], "Long-context probe",
                   "Held-out bits per byte at 1x, 2x, 4x the training sequence length (the same tokens predicted "
                   "at every length), mean ± standard error over seeds.")
    outputs.figure("bars", figs["bars"], "Held-out bits per byte and accuracy",
                   "Per variant: mean ± standard error over seeds, each seed a dot.")
    outputs.table("summary", summary, "Per variant: mean ± standard error over seeds, and the difference to "
                  "the baseline ± its standard error", styled(summary))
    outputs.table("claims", claims, "The claims of the SmolLM notes against this run", styled(claims))
    for note in notes:
        outputs.note(note)
    outputs.write(prune=True)
    (out / CLAIMS_JSON).write_text(json.dumps({"claims": claims_record(claims, plan), "notes": notes,
                                               "plan": plan.model_dump()}, indent=2, default=str), encoding="utf-8")
    seconds = {"training": round(train_s, 1), "total": round(time.perf_counter() - t0, 1)}
    return StageResult(out, ctx.launcher, tables={"summary": styled(summary), "claims": styled(claims)},
                       frames={"results": frame, "stats": stats, "summary": summary, "claims": claims},
                       figures=figs, notes=notes, seconds=seconds,
                       summary={"runs": len(rows), "variants": len(plan.variants), "seeds": len(plan.seeds),
                                "steps": plan.steps, "heldout_documents": len(held.documents),
                                "heldout_tokens": held.tokens, **{f"{k}_s": v for k, v in seconds.items()}},
                       extra={"per_source": held.per_source, "identical_to_baseline": same})
