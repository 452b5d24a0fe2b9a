"""The continual-pretraining demonstration (``notebooks/09_continual.ipynb``, optional: run it with
``zagreus run --profile smoke --languages ita --stages continual``).

It continues the run's final base checkpoint (stage 03's last complete checkpoint) on a second
language (:mod:`.second_language`: Italian -> Spanish), against a model trained from scratch on
the same data, schedule and budget, and scores both along the steps on held-out documents of the
two languages (:mod:`.heldout`): the gain on the new language and the forgetting on the old.

Both runs are the local trainer reading a nanotron config rendered from the run's spec with the
profile keys of :func:`run_overrides`: this stage's budget and schedule, two ``data_stages`` (a
mixture shift: the old and the new language half and half, then the new language only) and, for
the continued run, ``training.init_from`` = the base checkpoint with optimizer, LR schedule and
step counter reset (``training.init_reset``) and a re-warmup (``checkpoints.resume_checkpoint_path``
with ``load_optimizer``/``load_lr_scheduler`` false in the config); both pass stage 03's
pre-flight (the start model's shape and tokenizer against the token folders) before training.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from ...model import checkpoints as ckpts, preflight
from ...nanotron import config as ncfg
from ...pipeline import paths
from ...pipeline.context import StageContext, StageResult
from ...pipeline.errors import ZagreusError
from ...pipeline.outputs import StageOutputs
from ...pipeline.spec import load_spec
from ...pipeline.stages import folder_name
from . import figures, heldout, second_language

STEPS = 60         # the budget of each run (steps of the profile's batch): the stage within 3 min on 2 cores
EVERY = 15         # checkpoint and held-out scores every EVERY steps
REWARMUP = 6       # the continued run's (and the scratch run's) warmup
SHIFT_AT = 20      # the second data stage (the new language only) starts here
RUNS = ("continued", "scratch")
SUMMARY = "continual.json"


def base_checkpoint(pretraining_dir: Path) -> Path:
    """Stage 03's last complete checkpoint."""
    found = ckpts.checkpoints(pretraining_dir / "checkpoints")
    if not found:
        raise ZagreusError(f"{pretraining_dir / 'checkpoints'} holds no complete checkpoint to continue; "
                           "run the pretraining stage first (zagreus run --stages pretraining)")
    return found[-1]


def run_overrides(ctx: StageContext, second: str, start: Path | None) -> dict:
    """The profile keys of one run: this stage's budget and schedule, two data stages (the old and
    the new language half and half, then the new language only) and, for the continued run, the
    start model (``training.init_from``) with everything but its weights reset and a re-warmup."""
    keys = {**ctx.overrides, "training.train_steps": STEPS, "training.checkpoint_interval": EVERY,
            "training.lr_warmup_steps": REWARMUP, "training.lr_decay_starting_step": STEPS - STEPS // 5,
            "training.lr_decay_steps": STEPS // 5, "training.wsd_decay_fraction": None,
            "data_stages": [{"name": "shift", "start_step": 0, "mixture": {"fineweb2": 1, f"{second}/fineweb2": 1}},
                            {"name": "new language", "start_step": SHIFT_AT,
                             "mixture": {f"{second}/fineweb2": 3, f"{second}/finepdfs": 1}}]}
    if start is not None:
        keys.update({"training.init_from": str(start), "training.init_reset": ["optimizer", "lr_schedule", "step"],
                     "training.init_rewarmup_steps": REWARMUP})
    return keys


def run_config(spec, run_dir: Path, out: Path, tokenizer_name: str, second: str, new: dict[str, Path],
               start: Path | None) -> dict:
    """The nanotron config of one run, rendered from ``spec`` (:func:`run_overrides`), with the
    second language's token folders this stage made in place of that language's stage-02 ones."""
    cfg = ncfg.render(spec, run_dir=run_dir, checkpoints_path=out / "checkpoints", tokenizer_name_or_path=tokenizer_name,
                      start_checkpoint_path=start)
    theirs = run_dir.parent / second / folder_name("tokenization") / "tokenized"
    for stage in cfg["data_stages"]:
        ds = stage["data"]["dataset"]
        ds["dataset_folder"] = [str(new[Path(f).name]) if Path(f).parent == theirs else f
                                for f in ds["dataset_folder"]]
    return cfg


def models_along(settings, output_dir: Path, init) -> list[tuple[int, object]]:
    """(step, model) at step 0 (what the trainer starts from) and at every checkpoint."""
    from transformers import AutoModelForCausalLM

    from ...model import init_weights, trainer

    first = trainer.build_model(settings)
    if init is not None:
        init_weights.load_into(first, init, settings.arch)
    found = [(0, first)]
    for ck in ckpts.checkpoints(output_dir):
        found.append((ckpts.step_of(ck), AutoModelForCausalLM.from_pretrained(ck, dtype="float32")))
    return found


def run(ctx: StageContext, *, progress: bool = True) -> StageResult:
    from ...model import trainer

    t0 = time.perf_counter()
    spec, out = ctx.spec, ctx.out_dir
    code = spec.language.code
    second = spec.language.second_language
    if second is None:
        raise ZagreusError(f"the continual demonstration has no second language for {code!r}: set "
                           f"`second_language: <code>` in {paths.CONFIGS / 'languages' / (code + '.yaml')}")
    pre, tok_dir, data_dir = (ctx.upstream(k) for k in ("pretraining", "tokenization", "data"))
    start = base_checkpoint(pre)
    base = ncfg.load(pre / "nanotron_config.yaml")
    tokenizer_file = tok_dir / "tokenizer" / "tokenizer.json"
    tok_name = base["tokenizer"]["tokenizer_name_or_path"]
    out.mkdir(parents=True, exist_ok=True)
    result = StageResult(out, ctx.launcher)

    t = time.perf_counter()
    new = second_language.prepare(load_spec(second, ctx.profile, ctx.overrides), out / second, tokenizer_file,
                                  tok_name)
    result.seconds["second language data"] = round(time.perf_counter() - t, 2)
    configs = {}
    for name in RUNS:
        run_spec = load_spec(code, ctx.profile, run_overrides(ctx, second, start if name == "continued" else None))
        configs[name] = cfg = run_config(run_spec, ctx.run_dir, out / name, tok_name, second, new["tokenized"],
                                         start if name == "continued" else None)
        preflight.check_all(run_spec, cfg, base=paths.REPO_ROOT)  # the start model, the data, the stages
    seq_len = base["tokens"]["sequence_length"]
    docs = {code: heldout.load_docs(data_dir / "raw" / "heldout" / f"text_{code}.jsonl", tokenizer_file, seq_len),
            second: heldout.load_docs(new["heldout"], tokenizer_file, seq_len)}

    rows, trained = [], {}
    for name, cfg in configs.items():
        path = ncfg.write(cfg, out / name / "nanotron_config.yaml",
                          f"# {name} run of the continual demonstration ({ctx.profile}/{code} -> {second})\n")
        t = time.perf_counter()
        res = trainer.train(path, on_mismatch="move_aside", force=ctx.force, progress=progress)
        result.seconds[f"training ({name})"] = round(time.perf_counter() - t, 2)
        trained[name] = res
        s = trainer.Settings.from_nanotron(cfg)
        t = time.perf_counter()
        for step, model in models_along(s, Path(res.output_dir), s.init):
            for lang, lang_docs in docs.items():
                scores = heldout.summarise(heldout.doc_scores(model, lang_docs))
                rows.append({"run": name, "step": step, "language": lang,
                             "role": "old" if lang == code else "new", **scores})
        result.seconds[f"held-out scores ({name})"] = round(time.perf_counter() - t, 2)

    scores = pd.DataFrame(rows)
    table = figures.table(scores)
    deltas = figures.deltas(scores)
    result.frames.update(scores=scores, table=table, deltas=deltas)
    result.tables["scores"] = table
    result.figures["curves"] = figures.curves(scores, code, second)
    result.figures["gain_forgetting"] = figures.gain_forgetting(deltas, code, second)
    result.notes += [n for n in trained["continued"].notes if "weights of" in n]
    result.notes += figures.findings(deltas, code, second)
    result.summary = {"base_checkpoint": str(start), "second_language": second, "steps": STEPS,
                      "checkpoint_every": EVERY, "rewarmup_steps": REWARMUP, "shift_at": SHIFT_AT,
                      "samples_per_source": {n: r.samples_per_source for n, r in trained.items()},
                      "heldout_documents": {lang: len(d) for lang, d in docs.items()},
                      "accuracy": "next-token top-1 on the held-out documents' text tokens",
                      "standard_errors": f"over {heldout.GROUPS} held-out batches of documents"}
    result.seconds["stage"] = round(time.perf_counter() - t0, 2)
    scores.drop(columns=["bpb_groups", "acc_groups"]).to_csv(out / "scores.csv", index=False)
    (out / SUMMARY).write_text(json.dumps({**result.summary, "seconds": result.seconds, "notes": result.notes,
                                           "scores": rows}, indent=2), encoding="utf-8")
    write_outputs(result, code, second)
    return result


def write_outputs(result: StageResult, code: str, second: str) -> Path:
    outputs = StageOutputs(result.out_dir)
    outputs.figure(f"continual-curves-{code}", result.figures["curves"],
                   f"Continual pretraining {code} -> {second}: held-out scores along the steps",
                   f"Bits per byte and next-token top-1 accuracy on held-out documents of {code} (old) and {second} "
                   f"(new), for the base checkpoint continued on {second} and for the same model trained from "
                   f"scratch on the same data and budget ({STEPS} steps); bands: one standard error over "
                   f"{heldout.GROUPS} held-out batches.")
    outputs.figure(f"continual-gain-forgetting-{code}", result.figures["gain_forgetting"],
                   f"Gain on {second}, forgetting of {code}",
                   "Left: continued minus scratch on the new language (bits per byte: lower is better). Right: "
                   "the continued run's change on the old language since its start (bits per byte: up is "
                   "forgetting). Error bars: paired standard errors over the held-out batches.")
    outputs.table(f"continual-scores-{code}", result.frames["table"],
                  f"Continual pretraining {code} -> {second}: held-out scores (± one standard error)",
                  csv=lambda p: result.frames["scores"].drop(columns=["bpb_groups", "acc_groups"]).to_csv(p, index=False))
    for note in result.notes:
        outputs.note(note)
    return outputs.write(prune=True)
