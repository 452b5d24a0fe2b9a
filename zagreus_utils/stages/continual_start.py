"""Stage 03 with nanotron and ``training.init_from``: the start checkpoint the rendered config loads.

A nanotron start checkpoint is loaded where it is (:func:`start_folder`). A Hugging Face start
model (a folder, or a Hub id fetched into the Hugging Face cache) is converted to nanotron's layout
by the project's converter (:func:`zagreus_utils.convert.hf_to_nanotron`, logits and round trip
verified), sharded over the config's ``parallelism.tp``, into
``<stage folder>/start_checkpoint`` (:data:`zagreus_utils.nanotron.continual.START_FOLDER`), once:
a record beside it (source, tp, the source weights' sha256) lets a rerun reuse it and a changed
source convert again. After a stop, the run resumes from its own checkpoints (:func:`own_checkpoints`)
with every state loaded, not from the start model again.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..model.start_model import NANOTRON, locate, looks_like_hub_id, resolve_path
from ..nanotron.continual import START_FOLDER
from ..pipeline import manifest
from ..pipeline.errors import ZagreusError
from ..pipeline.paths import hub_cache

RECORD = "zagreus_start.json"  # beside the converted weights: what they were converted from
WEIGHT_PATTERNS = ("*.safetensors", "*.bin")


def start_folder(spec, base: Path, out_dir: Path) -> Path | None:
    """The folder the config loads at the start: a nanotron start model where it is; a Hugging Face
    one (or one that cannot be found: the pre-flight says why) as converted into ``out_dir``;
    None without ``init_from``."""
    if spec.profile.training.init_from is None:
        return None
    try:
        start = locate(spec.profile.training.init_from, base)
    except ZagreusError:
        return Path(out_dir) / START_FOLDER
    return start.folder if start.kind == NANOTRON else Path(out_dir) / START_FOLDER


def own_checkpoints(checkpoints: Path) -> Path | None:
    """This run's checkpoints folder when nanotron has written one (``latest.txt``): resume there."""
    return checkpoints if (Path(checkpoints) / "latest.txt").is_file() else None


def _source_record(src: Path, tp: int) -> dict:
    files = sorted(p for pattern in WEIGHT_PATTERNS for p in src.glob(pattern))
    return {"source": str(src.resolve()), "tp": tp,
            "weights": {p.name: manifest.sha256_file(p) for p in files}}


def convert_start(spec, config: dict, base: Path) -> str | None:
    """Put the start checkpoint the config names in place; returns what was done (None: no
    ``init_from``). Converts a Hugging Face start model unless its record says it is done."""
    t = spec.profile.training
    if t.init_from is None:
        return None
    ckpt = config["checkpoints"]
    target = resolve_path(str(ckpt["resume_checkpoint_path"]), base)
    if target.name != START_FOLDER:
        return f"loads {target} (load_optimizer={ckpt.get('load_optimizer', True)}, " \
               f"load_lr_scheduler={ckpt.get('load_lr_scheduler', True)})"
    start = locate(t.init_from, base)
    if start.kind == NANOTRON:
        raise ZagreusError(f"the config loads {target} but training.init_from {t.init_from} is a nanotron checkpoint "
                           f"({start.folder}); re-render the config")
    src = start.folder
    if not any(p for pattern in WEIGHT_PATTERNS for p in src.glob(pattern)) and looks_like_hub_id(t.init_from):
        from huggingface_hub import snapshot_download

        try:
            # the weights too (locate read only the config and the tokenizer)
            src = Path(snapshot_download(t.init_from, cache_dir=hub_cache()))
        except Exception as exc:
            raise ZagreusError(f"training.init_from {t.init_from}: cannot download its weights ({type(exc).__name__}: "
                               f"{exc}); download it on a machine with network (huggingface-cli download "
                               f"{t.init_from}) or give a local folder") from None
    tp = int((config.get("parallelism") or {}).get("tp") or 1)
    record = _source_record(src, tp)
    done = target / RECORD
    if done.is_file() and json.loads(done.read_text(encoding="utf-8")) == record:
        return f"start checkpoint {target} already converted from {src} (tp {tp}): reused"
    from ..convert import hf_to_nanotron  # imports torch: only when a conversion is due

    report = hf_to_nanotron(src, target, tp=tp, overwrite=True, verify=True)
    manifest.write_json(done, record)
    diff = "n/a" if report.max_logits_diff is None else f"{report.max_logits_diff:.3g}"
    return (f"converted the start model {src} to nanotron's layout in {target} (tp {tp}, {report.parameters:,} "
            f"parameters, logits max diff {diff}, round trip identical: {report.roundtrip_identical}, "
            f"{report.seconds:.1f} s)")
