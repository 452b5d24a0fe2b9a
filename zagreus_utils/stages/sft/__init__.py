"""Stage 05 SFT: the report's axolotl config rendered from the spec, checked, and run for real.

``config`` renders the config and its differences from the report's; ``validate`` asks axolotl's own
validation and lists what it lets through; ``inputs`` checks the data, base model and template;
``axolotl`` prepares a run and runs axolotl's CLI here; ``slurm_job`` renders, submits and follows the
Slurm job; ``inspect`` reads the result (label mask, loss curves, chats); ``stage`` holds the stage,
``run(ctx) -> StageResult``. ``python -m zagreus_utils.stages.sft`` (``__main__``) is the process
that runs axolotl's CLI, so the imports here stay light (no torch, transformers or axolotl).
"""

from .axolotl import SftPlan, SftRun, axolotl_argv, check_output, prepare, run_local, run_step
from .config import (ADAPTATIONS, CHATML_TEMPLATE, CONVERTED, CPU_CHANGES, SFT_DATA, _same, base_model_path,
                     committed_path, converted_dir, differences, flatten, is_cpu, load_config, render,
                     render_committed, report_config, resolve_base_model, sft_data_path, to_yaml, write_committed)
from .inputs import check_base_model, check_dataset, check_template
from .inspect import (chat, compare_chats, label_mask_example, label_mask_html, loss_curves, plot_loss,
                      sample_prompts, trained_spans, write_outputs)
from .stage import describe_run, launch, run
from .slurm_job import render_sbatch, run_slurm, slurm
from .validate import Validation, validate, validate_report

__all__ = [
    "ADAPTATIONS", "CHATML_TEMPLATE", "CONVERTED", "CPU_CHANGES", "SFT_DATA", "SftPlan", "SftRun", "Validation",
    "axolotl_argv", "base_model_path", "chat", "check_base_model", "check_dataset", "check_output",
    "check_template", "committed_path", "compare_chats", "converted_dir", "describe_run", "differences",
    "flatten", "is_cpu", "label_mask_example", "label_mask_html", "launch", "load_config", "loss_curves",
    "plot_loss", "prepare", "render", "render_committed", "render_sbatch", "report_config",
    "resolve_base_model", "run", "run_local", "run_slurm", "run_step", "sample_prompts", "sft_data_path",
    "slurm", "to_yaml", "trained_spans", "validate", "validate_report", "write_committed", "write_outputs",
    "_same",
]
