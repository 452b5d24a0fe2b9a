"""The nanotron config's data stages and start checkpoint, rendered from the spec.

``data_stages``: one ``DatasetStageArgs`` per stage of the profile (:mod:`zagreus_utils.pipeline.data_stages`):
``start_training_step = start_step + 1`` (nanotron counts steps from 1), the stage's token folders
(``runs/<profile>/<code>/02_tokenization/tokenized/<source>``, another language's under its own run
folder) and, for a stage that names weights, ``dataset_weights`` normalised to 6 significant digits
(a stage of the language's own mixture is weighed by size later, :func:`zagreus_utils.nanotron.config.weigh_by_size`).

Start checkpoint (``training.init_from``): nanotron main loads the weights of
``checkpoints.resume_checkpoint_path``; ``load_optimizer`` takes Adam's state from it and
``load_lr_scheduler`` the schedule's state *and* the training metadata (the step counter and the
samples consumed per stage). With ``load_lr_scheduler: false`` the run starts at step 1 with a fresh
schedule built from this config, hence a re-warmup over ``lr_warmup_steps`` (the spec's
``init_rewarmup_steps`` when set). nanotron has no switch that resets the step but keeps the
schedule, or the reverse, and cannot re-warm a schedule it takes over: the spec refuses those.
A Hugging Face start model is first converted to nanotron's layout by the pretraining stage, into
``<pretraining folder>/START_FOLDER``.
"""

from __future__ import annotations

from pathlib import Path

from ..pipeline.spec import Spec, data_stages

START_FOLDER = "start_checkpoint"  # the converted start model, in the pretraining stage folder


def weights(stage) -> list[float] | None:
    """A stage's named weights, normalised (None: the language's mixture, weighed by size)."""
    given = [s.weight for s in stage.sources]
    if any(w is None for w in given):
        return None
    total = sum(given)
    return [float(f"{w / total:.6g}") for w in given]


def data_stages_section(spec: Spec, run_dir: Path, tokenization: str, seed: int, num_workers: int) -> list[dict]:
    """nanotron's ``data_stages`` of the spec; ``run_dir`` is ``runs/<profile>/<language>``,
    ``tokenization`` stage 02's folder name."""
    section = []
    for stage in data_stages(spec):
        folders = [str(run_dir.parent / s.language / tokenization / "tokenized" / s.source) for s in stage.sources]
        dataset: dict = {"dataset_folder": folders}
        w = weights(stage)
        if w is not None:
            dataset["dataset_weights"] = w
        section.append({"data": {"dataset": dataset, "num_loading_workers": num_workers, "seed": seed},
                        "name": stage.name, "start_training_step": stage.start_training_step})
    return section


def checkpoint_keys(spec: Spec, pretraining_dir: Path, resume: str | Path | None = None,
                    start: str | Path | None = None) -> dict:
    """``checkpoints`` keys of the start: ``resume`` (this run's own checkpoints, after a stop)
    loads everything; else ``training.init_from``'s nanotron folder ``start`` (default: where the
    stage converts a Hugging Face start model) with the load flags of ``training.init_reset``."""
    t = spec.profile.training
    if resume:
        return {"resume_checkpoint_path": str(resume),
                **({"load_optimizer": True, "load_lr_scheduler": True} if t.init_from else {})}
    if t.init_from is None:
        return {"resume_checkpoint_path": None}
    return {"resume_checkpoint_path": str(start or Path(pretraining_dir) / START_FOLDER),
            "load_optimizer": "optimizer" not in t.init_reset,
            "load_lr_scheduler": "lr_schedule" not in t.init_reset}
