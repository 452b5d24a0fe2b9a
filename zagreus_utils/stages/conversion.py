"""Stage 04: checkpoints between nanotron's layout and Hugging Face transformers.

``smoke``: every local pretraining checkpoint (a transformers folder) is exported to nanotron's
layout and converted back, as the round-trip check of :mod:`zagreus_utils.convert`; the HF folders
under ``hf/step-<N>/`` (with the run's tokenizer and a model card) are what SFT and evaluation use.
``full``: the nanotron checkpoints written on the cluster (the rendered config's
``checkpoints_path``) are converted to HF folders the same way.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

import yaml
from tqdm.auto import tqdm

from .. import convert
from ..model import checkpoints
from ..pipeline import manifest
from ..pipeline.context import StageContext, StageResult
from ..pipeline.errors import ZagreusError
from ..pipeline.outputs import StageOutputs
from ..pipeline.spec import ENGLISH, Spec
from ..pipeline.stages import folder_name
from ..sample_corpus.knowledge import PROMPTS

CARD = "README.md"
CHECKPOINT_INFO = convert.CHECKPOINT_INFO


def hf_models(out_dir: Path) -> list[Path]:
    """The converted HF folders ``hf/step-<N>``, by step."""
    found = []
    for p in (Path(out_dir) / "hf").glob("step-*"):
        if p.is_dir() and p.name[5:].isdigit() and (p / "config.json").is_file():
            found.append((int(p.name[5:]), p))
    return [p for _, p in sorted(found)]


def final_model(run_dir: Path) -> Path:
    """The HF folder of the last pretraining checkpoint (the base model for SFT)."""
    folder = Path(run_dir) / folder_name("conversion")
    models = hf_models(folder)
    if not models:
        raise ZagreusError(f"no converted checkpoints under {folder / 'hf'}; "
                           "run the conversion stage first: zagreus run --stages conversion")
    return models[-1]


def _sources(spec: Spec, run_dir: Path) -> tuple[str, list[tuple[int, Path]]]:
    """(kind, [(step, checkpoint folder)]) of what this run's pretraining produced."""
    pre = run_dir / folder_name("pretraining")
    if spec.profile.name == "full" or not (pre / "checkpoints").is_dir():
        config = next(iter(sorted(pre.glob("*.yaml"))), None)
        ckpt_root = None
        if config is not None:
            ckpt_root = Path((yaml.safe_load(config.read_text()) or {}).get("checkpoints", {})
                             .get("checkpoints_path", ""))
        if not ckpt_root or not ckpt_root.is_dir():
            raise ZagreusError(f"no pretraining checkpoints found: neither {pre / 'checkpoints'} (local trainer) "
                               f"nor the nanotron checkpoints_path {ckpt_root or '(no config in ' + str(pre) + ')'} "
                               "exists. Copy the cluster's checkpoints there or run pretraining first.")
        steps = sorted((int(p.name), p) for p in ckpt_root.iterdir() if p.is_dir() and p.name.isdigit())
        if not steps:
            raise ZagreusError(f"{ckpt_root} holds no <step>/ checkpoint folders")
        return "nanotron", steps
    ckpts = checkpoints.checkpoints(pre / "checkpoints")
    if not ckpts:
        raise ZagreusError(f"{pre / 'checkpoints'} holds no complete checkpoint; rerun pretraining: "
                           f"zagreus run --profile {spec.profile.name} --languages {spec.language.code} "
                           "--stages pretraining --force")
    return "hf", [(checkpoints.step_of(c), c) for c in ckpts]


def _tokens_seen(run_dir: Path) -> dict[int, int]:
    """Tokens seen per step, from the local trainer's metrics log."""
    seen: dict[int, int] = {}
    log = run_dir / folder_name("pretraining") / "metrics.jsonl"
    if log.is_file():
        for line in log.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "step" in row and "tokens_seen" in row:
                seen[int(row["step"])] = int(row["tokens_seen"])
    return seen


def _consumed_tokens(checkpoint: Path) -> int | None:
    """Tokens seen by a nanotron checkpoint (``checkpoint_metadata.json``: metas.consumed_tokens_total)."""
    try:
        metas = json.loads((checkpoint / "checkpoint_metadata.json").read_text()).get("metas", {})
        return int(metas["consumed_tokens_total"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _copy_tokenizer(tokenizer: Path | None, dst: Path) -> None:
    if tokenizer is None:
        return
    for f in tokenizer.iterdir():
        if f.is_file():
            shutil.copy2(f, dst / f.name)


def convert_all(spec: Spec, run_dir: Path, out_dir: Path, *, progress: bool = True) -> pd.DataFrame:
    """Convert every checkpoint; one row per conversion (with its verification)."""
    kind, sources = _sources(spec, run_dir)
    tokenizer = run_dir / folder_name("tokenization") / "tokenizer"
    tokenizer = tokenizer if tokenizer.is_dir() else None
    seen = _tokens_seen(run_dir)
    rows = []
    for step, src in tqdm(sources, desc="converting checkpoints", disable=not progress):
        hf_dir = out_dir / "hf" / f"step-{step}"
        if kind == "hf":  # local checkpoint -> nanotron layout -> back to HF (round trip)
            nt_dir = out_dir / "nanotron" / str(step)
            there = convert.hf_to_nanotron(src, nt_dir, tp=spec.profile.parallelism.tp, overwrite=True)
            rows.append({"step": step, **_row(there)})
            src = nt_dir
        tokens = seen.get(step) if kind == "hf" else _consumed_tokens(src)
        info = {"step": step, "tokens_seen": tokens, "source": str(src), "kind": kind}
        # written into the same temporary folder, so hf/step-<N> appears only verified and complete
        back = convert.nanotron_to_hf(src, hf_dir, tokenizer=tokenizer, overwrite=True,
                                      extra_files={CHECKPOINT_INFO: json.dumps(info, indent=2)})
        rows.append({"step": step, **_row(back)})
        if kind == "hf":
            rows[-1]["bit_identical_to_checkpoint"] = _identical(rows[-2]["src"], hf_dir)
    frame = pd.DataFrame(rows)
    frame.to_csv(out_dir / "conversions.csv", index=False)
    return frame


def _row(r: convert.ConversionReport) -> dict:
    return {"direction": r.direction, "src": str(r.src), "dst": str(r.dst), "tp": r.tp, "dtype": r.dtype,
            "parameters": r.parameters, "max_logits_diff": r.max_logits_diff,
            "roundtrip_identical": r.roundtrip_identical, "seconds": round(r.seconds, 2),
            "bytes_written": r.bytes_written}


def _identical(a: str | Path, b: Path) -> bool:
    """Every tensor of HF folder ``b`` equals the one in the original checkpoint ``a``."""
    import torch

    wa, wb = convert.HFWeights(Path(a)), convert.HFWeights(b)
    try:
        names = set(wb.where) - {n for n in wb.where if n.endswith("rotary_emb.inv_freq")}
        return all(torch.equal(wa.get(n), wb.get(n)) for n in names)
    finally:
        wa.close()
        wb.close()


def sizes(model_dir: Path) -> pd.DataFrame:
    """Size on disk now, and what fp32 / bf16 weights of the same model take."""
    n = _count(model_dir)
    on_disk = sum(f.stat().st_size for f in model_dir.glob("*.safetensors"))
    return pd.DataFrame([
        {"what": "weights on disk (safetensors)", "bytes": on_disk},
        {"what": "fp32 weights (4 bytes/parameter)", "bytes": 4 * n},
        {"what": "bf16 weights (2 bytes/parameter)", "bytes": 2 * n},
    ]).assign(MB=lambda d: (d["bytes"] / 2**20).round(2), parameters=n)


def _count(model_dir: Path) -> int:
    w = convert.HFWeights(model_dir)
    try:
        return sum(w.get(n).numel() for n in w.where if not n.endswith("rotary_emb.inv_freq"))
    finally:
        w.close()


SAMPLE_PROMPTS = PROMPTS  # configs/sample_corpus/<lang>.yaml: prompts


def generations(model_dir: Path, language: str, max_new_tokens: int = 12) -> pd.DataFrame:
    """Greedy continuations of a few prompts in English and the run's language."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    rows = []
    for lang in (ENGLISH[0], language):
        for prompt in SAMPLE_PROMPTS.get(lang, []):
            ids = tok(prompt, return_tensors="pt").input_ids
            with torch.no_grad():
                out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
            rows.append({"language": lang, "prompt": prompt,
                         "continuation": tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)})
    return pd.DataFrame(rows)


def model_card(spec: Spec, model_dir: Path, run_dir: Path, conversions: pd.DataFrame) -> str:
    """A model card (README.md) for the converted final checkpoint."""
    info = json.loads((model_dir / CHECKPOINT_INFO).read_text())
    size = sizes(model_dir)
    m = spec.profile.model
    lines = [
        f"# {spec.language.model_name} ({spec.profile.name} profile reproduction)", "",
        f"A Llama-style decoder trained by the Zagreus reproducibility kit on English + {spec.language.name}.", "",
        "## Architecture", "",
        f"- hidden size {m.hidden_size}, intermediate {m.intermediate_size}, {m.num_hidden_layers} layers, "
        f"{m.num_attention_heads} attention heads, {m.num_key_value_heads} KV heads (GQA), "
        f"tied embeddings: {m.tie_word_embeddings}, RoPE theta {m.rope_theta}, "
        f"vocabulary {spec.profile.tokenizer.vocab_size}",
        f"- parameters: {int(size['parameters'].iloc[0]):,}",
        f"- training step {info['step']}, tokens seen: {info['tokens_seen'] if info.get('tokens_seen') else 'unknown'}",
        "", "## Data mixture", "",
    ]
    for s in spec.language.mixture:
        lines.append(f"- {s.id}: {s.dataset}{' / ' + s.subset if s.subset else ''} ({s.language})"
                     + (" — generated sample stand-in (smoke profile)" if spec.profile.data.source == "sample" else ""))
    last = conversions[conversions["step"] == info["step"]]
    lines += ["", "## Conversion check", ""]
    for _, r in last.iterrows():
        lines.append(f"- {r['direction']}: max |logits difference| {r['max_logits_diff']}, "
                     f"round trip identical: {r['roundtrip_identical']}")
    evaluated = folder_name("eval")
    results = run_dir / evaluated / "results.csv"
    lines += ["", "## Evaluation", ""]
    if results.is_file():
        df = pd.read_csv(results)
        df = df[df.get("checkpoint_step", pd.Series(dtype=float)) == info["step"]] if "checkpoint_step" in df else df
        for _, r in df.iterrows():
            lines.append(f"- {r.get('task')}: {r.get('metric')} = {r.get('value')}")
    else:
        lines.append(f"No evaluation results yet (stage {evaluated}).")
    return "\n".join(lines) + "\n"


def run(ctx: StageContext, *, progress: bool = True) -> StageResult:
    """The stage: convert, verify, size, sample, card; the tables for the notebook and the HTML report."""
    spec, od = ctx.spec, ctx.out_dir
    ctx.upstream("pretraining")
    od.mkdir(parents=True, exist_ok=True)
    # minutes of CPU work on files the earlier stages wrote: it runs here whatever the launcher
    manifest.LaunchRecord(od, manifest.in_process(ctx.launcher), ctx.launcher,
                          note="" if ctx.launcher == "local" else "conversion runs in the notebook's process, not as a job")
    conversions = convert_all(spec, ctx.run_dir, od, progress=progress)
    final = hf_models(od)[-1]
    card = model_card(spec, final, ctx.run_dir, conversions)
    (final / CARD).write_text(card)
    result = StageResult(od, ctx.launcher, summary={"final": str(final)}, extra={"final": final, "card": card})
    result.frames.update(conversions=conversions.drop(columns=["src", "dst"]), sizes=sizes(final),
                         generations=generations(final, spec.language.code))
    result.tables.update(
        conversions=result.frames["conversions"].style.hide(axis="index").format(precision=6),
        sizes=result.frames["sizes"].style.hide(axis="index").format({"MB": "{:.2f}", "bytes": "{:,}"}),
        generations=result.frames["generations"].style.hide(axis="index").format(escape="html"))
    out = StageOutputs(od)
    out.table("conversions", result.frames["conversions"],
              "Conversions and their verification (logits difference, round trip)")
    out.table("sizes", result.frames["sizes"], f"Size of {final.name} on disk, fp32 and bf16")
    out.table("generations", result.frames["generations"], f"Greedy continuations of {final.name}")
    note = f"Model card written to {final.name}/{CARD}."
    out.note(note)
    result.notes.append(note)
    out.write()
    return result
