"""What a continual pretraining run reads besides its own upstream stages, for its fingerprint.

Stage 03 with ``training.init_from`` reads the start model, and a data stage that names another
language's source reads that language's stage-02 token folders: a changed start model (same path,
other weights) or re-tokenized data of the other language makes the stage out of date, as a change
of its own upstream does (:func:`zagreus_utils.pipeline.runner.execute_stage`).
"""

from __future__ import annotations

from pathlib import Path

from . import manifest, paths, stages as stage_mod
from .errors import ZagreusError
from .spec import data_stages, load_spec
from ..model.start_model import NANOTRON, locate

START_FILES = ("*.json", "*.safetensors", "*.bin", "*.model", "*.txt", "*.yaml")


def start_model_digest(init_from: str) -> dict[str, str]:
    """sha256 of each file of the start model (config, weights, tokenizer); ``{"missing": why}``
    when it cannot be found (the stage's pre-flight refuses it then)."""
    try:
        start = locate(init_from, paths.REPO_ROOT)
    except ZagreusError as exc:
        return {"missing": str(exc)}
    root = start.folder
    files = sorted(p for pattern in START_FILES for p in root.glob(pattern) if p.is_file())
    if start.kind == NANOTRON:
        files += sorted(p for p in (root / "model").rglob("*") if p.is_file())
    return {str(p.relative_to(root)): manifest.sha256_file(p) for p in files}


def stage_inputs(stage: stage_mod.Stage, profile: str, language: str | None, overrides: dict | None,
                 all_stages: list[stage_mod.Stage], root: Path | None = None) -> dict:
    """The extra inputs of ``stage`` (only pretraining has any): ``start_model`` and
    ``other_languages`` (each named language's tokenization manifest fingerprint and outputs)."""
    if stage.key != "pretraining" or language is None:
        return {}
    spec = load_spec(language, profile, overrides)
    extra: dict = {}
    if spec.profile.training.init_from is not None:
        extra["start_model"] = start_model_digest(spec.profile.training.init_from)
    others = sorted({s.language for stage_ in data_stages(spec) for s in stage_.sources} - {language})
    tokenization = next((s for s in all_stages if s.key == "tokenization"), None)
    if others and tokenization is not None:
        found = {}
        for lang in others:
            m = manifest.read(tokenization.folder(profile, lang, root)) or {}
            found[lang] = manifest.sha256_json([m.get("fingerprint"), manifest.content_ids(m.get("outputs", {}))])
        extra["other_languages"] = found
    return extra
