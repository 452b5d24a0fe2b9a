"""The checks behind ``zagreus audit``: each reads a parsed markdown report and returns findings.

Every check is a plain function ``check_<name>(doc) -> list[Finding]``, written in the module of
its topic and listed once in ``CHECKS`` below. They only compare the report with itself: tables
against their own averages, configs against the tools' schemas, launch scripts and logs against
the configs, prose against the architecture.
"""

from __future__ import annotations

from typing import Callable

from ..markdown import Document
from .budgets import check_dataset_sources, check_param_count, check_token_budget
from .common import SEVERITIES, Finding
from .configs import axolotl_schema, check_config_keys, check_config_settings, check_yaml_syntax
from .eval_models import check_eval_models
from .launch import check_launch
from .tables import check_averages, check_duplicate_rows
from .text import check_duplicate_sections, check_python_syntax, check_tokenizer
from .training_log import check_training_log

CHECKS: list[Callable[[Document], list[Finding]]] = [
    check_duplicate_sections,
    check_averages,
    check_duplicate_rows,
    check_yaml_syntax,
    check_config_keys,
    check_config_settings,
    check_launch,
    check_eval_models,
    check_training_log,
    check_param_count,
    check_token_budget,
    check_dataset_sources,
    check_tokenizer,
    check_python_syntax,
]

__all__ = ["CHECKS", "SEVERITIES", "Finding", "axolotl_schema"] + [c.__name__ for c in CHECKS]
