"""The second language's token data of the continual demonstration, made in the stage's own folder.

The continued model must read the new language with the tokenizer it was trained with, so the run
language's stage-02 tokenizer tokenizes it, not the second language's own. The text is what stage
01 would start from on the smoke profile: the project's sample corpus of that language (same seed,
scale and facts as the run's), generated into ``<stage>/<code>/raw/``; it is tokenized by stage
02's own datatrove jobs (:func:`zagreus_utils.stages.tokenization.stage_jobs`: the Nanoset
tokenizer, then the shuffled merge) into ``<stage>/<code>/tokenized/<source>/`` with the run's
tokenizer string in the metadata. Stage 01's filters and deduplication are not run on it (the
generated corpus holds no boilerplate or duplicates for them to remove).
"""

from __future__ import annotations

from pathlib import Path

from ...cluster.executors import run_job
from ...pipeline.manifest import sha256_file
from ...pipeline.spec import Spec
from ...sample_corpus import corpus
from ..reruns import code_digest, fresh_if_changed
from ..tokenization import stage_jobs

SOURCES = ("fineweb2", "finepdfs")  # the target-language sources of the sample corpus


def prepare(spec2: Spec, folder: Path, tokenizer_file: Path, tokenizer_name: str) -> dict:
    """Generate and tokenize ``spec2``'s language into ``folder``; returns ``{"tokenized": {source:
    folder}, "heldout": held-out text file, "summary": the corpus summary}``. Reuses what an
    earlier run with the same settings, tokenizer and code left there."""
    raw, tokenized = folder / "raw", folder / "tokenized"
    data = spec2.profile.data
    key = {"language": spec2.language.code, "seed": spec2.profile.training.seed, "scale": data.sample_scale,
           "facts_per_type": data.sample_facts_per_type, "tokenizer": tokenizer_name,
           "tokenizer_sha256": sha256_file(tokenizer_file),
           "code": code_digest("sample_corpus/corpus", "stages/tokenization", "stages/nanoset",
                               "stages/continual/second_language")}
    fresh_if_changed(folder, key, [raw, tokenized, folder / "work", folder / "logs"], folder / "config.json")
    summary_file = raw / "summary.json"
    if not summary_file.is_file():
        corpus.generate(raw, spec2.language.code, seed=spec2.profile.training.seed, scale=data.sample_scale,
                        facts_per_type=data.sample_facts_per_type)
    clean = {sid: raw / "sources" / sid for sid in SOURCES}
    for job, executor in stage_jobs(spec2, "local", clean, folder, tokenizer_file, tokenizer_name):
        run_job(executor, job, "local")
    code = spec2.language.code
    return {"tokenized": {sid: tokenized / sid for sid in SOURCES},
            "heldout": raw / "heldout" / f"text_{code}.jsonl"}
