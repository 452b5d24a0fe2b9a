"""Checks of the report's YAML configs: syntax, keys against the tools' schemas, settings."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, get_args, get_origin

from ..markdown import Document
from ...nanotron.schema import NANOTRON_SCHEMA, REQUIRED, KeyProblem, Variants, check_keys, dotted
from .common import Finding, YamlBlock, finding, get, yaml_blocks

def check_yaml_syntax(doc: Document) -> list[Finding]:
    """Each YAML block parses."""
    out = []
    for y in yaml_blocks(doc):
        if y.error:
            fixed = " (it parses once that line is re-indented to its parent's level)" if y.data is not None else ""
            line_text = doc.lines[y.error_line - 1].strip() if 0 < y.error_line <= len(doc.lines) else ""
            out.append(finding(doc, "yaml_syntax", y.error_line, f"`{line_text}`",
                               f"invalid YAML: {y.error}{fixed}", "error"))
    return out


def _type_fields(annotation: Any) -> tuple[list[type], bool]:
    """pydantic models inside a type annotation, and whether they sit inside a list."""
    from pydantic import BaseModel

    models, in_list = [], False
    stack = [annotation]
    while stack:
        ann = stack.pop()
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            models.append(ann)
            continue
        if get_origin(ann) in (list, tuple, set):
            in_list = True
        stack.extend(get_args(ann))
    return models, in_list


def _pydantic_schema(model: type, depth: int = 0) -> dict:
    schema: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        sub: Any = None
        if depth < 3:
            models, in_list = _type_fields(info.annotation)
            if models:
                options = {m.__name__: _pydantic_schema(m, depth + 1) for m in models}
                sub = next(iter(options.values())) if len(options) == 1 else Variants(options)
                sub = [sub] if in_list else sub
        names = {name}
        for alias in (info.alias, info.validation_alias):
            names.update([alias] if isinstance(alias, str) else getattr(alias, "choices", []) or [])
        for n in names:
            if isinstance(n, str):
                schema[n] = sub
    if model.__name__ == "FSDPConfig":  # axolotl strips a leading ``fsdp_`` from these keys
        schema.update({f"fsdp_{k}": None for k in list(schema) if not k.startswith("fsdp_")})
    return schema


@lru_cache(maxsize=1)
def axolotl_schema() -> tuple[dict | None, str]:
    """Allowed keys of axolotl's input config, read from its pydantic models (lazy import)."""
    try:
        from axolotl.utils.schemas.config import AxolotlInputConfig
    except Exception as exc:  # noqa: BLE001 - a heavy optional import can fail in many ways
        return None, f"{type(exc).__name__}: {exc}"
    return _pydantic_schema(AxolotlInputConfig), ""


def _key_findings(doc: Document, y: YamlBlock, problems: list[KeyProblem], tool: str,
                  severity: str, effect: str) -> list[Finding]:
    out = []
    for p in problems:
        where = dotted(p.path) or "top level"
        if p.kind == "missing":
            out.append(finding(doc, "config_keys", y.line_of(p.path), f"{tool} config section `{where}`",
                               f"required key `{p.key}` is missing", "error"))
            continue
        line = y.line_of(p.path + (p.key,))
        if p.belongs:
            places = ", ".join(f"`{b}`" for b in p.belongs[:3])
            found = f"{tool} does not accept `{p.key}` at {where}; it belongs at {places}"
        else:
            found = f"{tool} has no key `{p.key}` at {where} ({effect})"
        out.append(finding(doc, "config_keys", line, f"`{p.key}` at {where}", found, severity))
    return out


def check_config_keys(doc: Document) -> list[Finding]:
    """YAML configs carry only keys their tool accepts, each at its place."""
    out = []
    for y in yaml_blocks(doc):
        if y.tool == "nanotron":
            problems = check_keys(y.data, NANOTRON_SCHEMA, REQUIRED)
            out += _key_findings(doc, y, problems, "nanotron", "error",
                                 "nanotron loads configs strictly: an unknown key is an error")
        elif y.tool == "axolotl":
            schema, why = axolotl_schema()
            if schema is None:
                out.append(finding(doc, "config_keys", y.block.line, "axolotl config",
                                   f"keys not checked: axolotl is not importable ({why})", "info"))
                continue
            out += _key_findings(doc, y, check_keys(y.data, schema), "axolotl", "warning",
                                 "axolotl silently drops unknown keys")
    return out


_COSINE_KNOBS = ("cosine_min_lr_ratio", "cosine_constant_lr_ratio", "lr_quadratic_warmup")


def _nanotron_settings(doc: Document, y: YamlBlock) -> list[Finding]:
    out, data = [], y.data
    mc = get(data, "model.model_config") or {}
    hidden, heads, kv = mc.get("hidden_size"), mc.get("num_attention_heads"), mc.get("num_key_value_heads")
    if isinstance(hidden, int) and isinstance(heads, int) and heads and hidden % heads:
        out.append(finding(doc, "config_settings", y.line_of(("model", "model_config", "hidden_size")),
                           f"hidden_size {hidden}, num_attention_heads {heads}",
                           "hidden_size is not a multiple of the number of heads", "error"))
    if isinstance(heads, int) and isinstance(kv, int) and kv and heads % kv:
        out.append(finding(doc, "config_settings", y.line_of(("model", "model_config", "num_key_value_heads")),
                           f"num_attention_heads {heads}, num_key_value_heads {kv}",
                           "the query heads do not split evenly over the key/value heads", "error"))
    sched = get(data, "optimizer.learning_rate_scheduler") or {}
    at = ("optimizer", "learning_rate_scheduler")
    train_steps = get(data, "tokens.train_steps")
    warmup = sched.get("lr_warmup_steps") or 0
    start = sched.get("lr_decay_starting_step")
    steps = sched.get("lr_decay_steps")
    if isinstance(train_steps, int) and isinstance(start, int) and isinstance(steps, int):
        end = start + steps
        if end < train_steps:
            min_lr = sched.get("min_decay_lr", sched.get("learning_rate"))
            out.append(finding(doc, "config_settings", y.line_of(at + ("lr_decay_steps",)),
                               f"lr_decay_starting_step {start} + lr_decay_steps {steps}; train_steps {train_steps}",
                               f"the learning rate reaches min_decay_lr ({min_lr}) at step {end} and stays there for"
                               f" the last {train_steps - end} steps ({(train_steps - end) / train_steps:.0%} of the"
                               " run)", "warning"))
        if start < warmup:
            out.append(finding(doc, "config_settings", y.line_of(at + ("lr_decay_starting_step",)),
                               f"lr_decay_starting_step {start}, lr_warmup_steps {warmup}",
                               "decay starts before the warmup ends", "warning"))
    stages = data.get("data_stages")
    if isinstance(stages, list) and stages:
        starts = [s.get("start_training_step") for s in stages if isinstance(s, dict)]
        names = [s.get("name") for s in stages if isinstance(s, dict)]
        if 1 not in starts:
            out.append(finding(doc, "config_settings", y.line_of(("data_stages",)), f"data_stages start at {starts}",
                               "nanotron needs one stage starting at step 1", "error"))
        if len(set(names)) < len(names) or len(set(starts)) < len(starts):
            out.append(finding(doc, "config_settings", y.line_of(("data_stages",)), f"data_stages {names}",
                               "stage names and start steps must be unique", "error"))
    return out


def _axolotl_settings(doc: Document, y: YamlBlock) -> list[Finding]:
    out, data = [], y.data
    scheduler = data.get("lr_scheduler", "cosine")
    for knob in _COSINE_KNOBS:
        if knob not in data or data.get("jagged_restart_steps"):
            continue
        if scheduler in (None, "cosine") or (knob == "cosine_min_lr_ratio" and scheduler == "rex"):
            continue
        out.append(finding(doc, "config_settings", y.line_of((knob,)), f"{knob}: {data[knob]}",
                           f"no effect: axolotl applies it only with lr_scheduler: cosine, and this config sets"
                           f" lr_scheduler: {scheduler} (line {y.line_of(('lr_scheduler',))})", "warning"))
    if scheduler == "constant":
        for knob in ("warmup_steps", "warmup_ratio"):
            if data.get(knob):
                out.append(finding(doc, "config_settings", y.line_of((knob,)), f"{knob}: {data[knob]}",
                                   "no effect with lr_scheduler: constant (use constant_with_warmup)", "warning"))
    return out


def check_config_settings(doc: Document) -> list[Finding]:
    """Settings that contradict each other or have no effect inside one config."""
    out = []
    for y in yaml_blocks(doc):
        if isinstance(y.data, dict):
            if y.tool == "nanotron":
                out += _nanotron_settings(doc, y)
            elif y.tool == "axolotl":
                out += _axolotl_settings(doc, y)
    return out
