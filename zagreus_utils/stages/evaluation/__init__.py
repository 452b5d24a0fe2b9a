"""Stage 06 eval: every base checkpoint and the SFT model with lm-evaluation-harness.

``tasks`` holds the suites (the spec's lm-eval tasks, or the local held-out tasks of the smoke
profile) and lm-eval's task registry; ``models`` finds the checkpoints and the SFT model;
``evaluate`` runs lm-eval (the :class:`EvalPlan`, one call per model and n-shot group, rerun-safe);
``results`` ingests lm-eval's JSON into the report's tidy format and checks learning; ``figures``
writes the tables and figures; ``slurm_job`` renders and runs the Slurm array; ``stage`` holds
``run_eval`` and the stage, ``run(ctx) -> StageResult``. ``python -m zagreus_utils.stages.evaluation
array-task`` (``__main__``) is one Slurm array task.
"""

from .evaluate import EvalPlan, evaluate_all, evaluate_model, is_done, lm_eval_version, prepare
from .figures import build_outputs, checkpoints_figure, metrics_table
from .models import ModelEntry, check_model, discover_models, find_checkpoints, model_fingerprint
from .results import (EXTRA_COLUMNS, ingest, ingest_file, learning_check, load_results, read_results_json, tidy,
                      write_csv)
from .slurm_job import array_task, follow, run_array, sbatch_command, slurm_script, submit, write_slurm
from .stage import describe_suites, finish, run, run_eval
from .tasks import (BPB_DOCS, FEWSHOT_ITEMS, TASK_CONFIGS, TEST_ITEMS, SuiteTask, calls, find_heldout, go_offline,
                    render_tasks, resolve, suite, suite_source, task_manager, tasks_digest)

__all__ = [
    "BPB_DOCS", "EXTRA_COLUMNS", "EvalPlan", "FEWSHOT_ITEMS", "ModelEntry", "SuiteTask", "TASK_CONFIGS",
    "TEST_ITEMS", "array_task", "build_outputs", "calls", "check_model", "checkpoints_figure",
    "describe_suites", "discover_models", "evaluate_all", "evaluate_model", "find_checkpoints",
    "find_heldout", "finish", "follow", "go_offline", "ingest", "ingest_file", "is_done", "learning_check",
    "lm_eval_version", "load_results", "metrics_table", "model_fingerprint", "prepare", "read_results_json",
    "write_slurm",
    "render_tasks", "resolve", "run", "run_array", "run_eval", "sbatch_command", "slurm_script", "submit",
    "suite", "suite_source", "task_manager", "tasks_digest", "tidy", "write_csv",
]
