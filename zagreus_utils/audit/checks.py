"""The checks behind ``zagreus audit``: each reads a parsed markdown report and returns findings.

Every check is a plain function ``check_<name>(doc) -> list[Finding]`` listed in ``CHECKS``. They
only compare the report with itself: tables against their own averages, configs against the
tools' schemas, launch scripts and logs against the configs, prose against the architecture.
"""

from __future__ import annotations

import ast
import bisect
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable

import yaml

from .markdown import CodeBlock, Document, Table
from ..model.arch import LlamaArch
from ..model.planning import parameter_counts
from ..pipeline.errors import ZagreusError
from ..pipeline.spec import language_names
from ..nanotron.schema import (
    NANOTRON_MARKERS,
    NANOTRON_SCHEMA,
    REQUIRED,
    KeyProblem,
    Variants,
    check_keys,
    dotted,
)

SEVERITIES = ("error", "warning", "info")


@dataclass
class Finding:
    check: str
    line: int  # 1-based line in the report (0 when the finding is about the whole report)
    heading: str  # nearest heading above that line
    says: str  # what the report says
    found: str  # what was computed or what the rest of the report says
    severity: str  # "error" | "warning" | "info"

    @property
    def location(self) -> str:
        return f"line {self.line} ({self.heading})" if self.heading else f"line {self.line}"


# ----------------------------------------------------------------------------- helpers

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def headings(doc: Document) -> list[tuple[int, int, str]]:
    """(line, level, title) of every heading outside code blocks (read once per document)."""
    return doc.memo("headings", lambda: _scan_headings(doc))


def _scan_headings(doc: Document) -> list[tuple[int, int, str]]:
    out, fence = [], None
    for i, line in enumerate(doc.lines, 1):
        m = _FENCE.match(line)
        if m:
            fence = None if fence == m.group(1) else (fence or m.group(1))
            continue
        if fence is None and (h := _HEADING.match(line)):
            out.append((i, len(h.group(1)), h.group(2).strip()))
    return out


def heading_at(doc: Document, line: int) -> str:
    """Where ``line`` sits: its section and subsection (``Zagreus-0.4B-fra (French) › Evaluation Command``)."""
    lines, labels = doc.memo("heading_labels", lambda: _heading_labels(doc))
    k = bisect.bisect_right(lines, line)
    return labels[k - 1] if k else ""


def _heading_labels(doc: Document) -> tuple[list[int], list[str]]:
    """Heading lines, and for each the label :func:`heading_at` gives the lines below it."""
    lines, labels, stack = [], [], []
    for at, level, text in headings(doc):
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, text))
        lines.append(at)
        labels.append(" › ".join(t for _, t in stack[-2:]))
    return lines, labels


def code_lines(doc: Document) -> set[int]:
    """Line numbers that belong to fenced code blocks (fences included)."""
    lines: set[int] = set()
    for block in doc.code_blocks:
        lines.update(range(block.line, block.line + block.text.count("\n") + 3))
    return lines


def finding(doc: Document, check: str, line: int, says: str, found: str, severity: str) -> Finding:
    return Finding(check, line, heading_at(doc, line), says, found, severity)


_MISSING = {"", "—", "–", "-", "n/a", "na", "nan", "none", "null", "?"}
_NUM = re.compile(r"^[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?$")


def cell_number(cell: str) -> tuple[float | None, int] | None:
    """(value, decimals) of a table cell; (None, 0) when it marks a missing score; None if text."""
    text = cell.replace("*", "").replace("_", "").strip().rstrip("%").strip()
    if text.lower() in _MISSING:
        return None, 0
    if not _NUM.match(text):
        return None
    decimals = len(text.split(".")[1]) if "." in text and "e" not in text.lower() else 0
    return float(text), decimals


_SUFFIX = {"": 1.0, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}
_HUMAN = re.compile(r"^([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*([KMGBT]?)$")


def human_number(text: str) -> float | None:
    """nanotron's human-formatted numbers: ``8.79K`` -> 8790, ``480B`` -> 4.8e11."""
    m = _HUMAN.match(text.strip())
    return float(m.group(1)) * _SUFFIX[m.group(2)] if m else None


def human(value: float) -> str:
    """3 significant digits with a K/M/B/T suffix, like the logs."""
    for suffix, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def duration(seconds: float) -> str:
    """Seconds as the logs write them: ``131 days, 1:45:39``."""
    days, rest = divmod(int(round(seconds)), 86400)
    text = f"{rest // 3600}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days} day{'s' if days != 1 else ''}, {text}" if days else text


def close(a: float, b: float, rel: float) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-30)


def get(data: Any, dotted_path: str, default: Any = None) -> Any:
    for part in dotted_path.split("."):
        if not isinstance(data, dict) or part not in data:
            return default
        data = data[part]
    return data


def as_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# ----------------------------------------------------------------------------- YAML blocks


@dataclass
class YamlBlock:
    block: CodeBlock
    data: Any = None  # parsed value (after re-indenting a misplaced line, if that was needed)
    error: str = ""  # YAML's complaint about the block as written
    error_line: int = 0  # report line of that complaint
    key_lines: dict[tuple, int] = field(default_factory=dict)  # key path -> report line
    tool: str = ""  # "nanotron" | "axolotl" | ""

    def line_of(self, path: tuple) -> int:
        path = tuple(str(p) if not isinstance(p, int) else p for p in path)
        while path and path not in self.key_lines:
            path = path[:-1]
        return self.key_lines.get(path, self.block.line)


def _key_lines(node: yaml.Node, base: int, path: tuple = ()) -> dict[tuple, int]:
    lines: dict[tuple, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = path + (str(key.value),)
            lines[sub] = base + key.start_mark.line
            lines.update(_key_lines(value, base, sub))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[path + (i,)] = base + item.start_mark.line
            lines.update(_key_lines(item, base, path + (i,)))
    return lines


AXOLOTL_MARKERS = frozenset({
    "base_model", "datasets", "sequence_len", "micro_batch_size", "gradient_accumulation_steps",
    "num_epochs", "lr_scheduler", "sample_packing", "adapter", "dataset_prepared_path",
    "chat_template", "special_tokens", "val_set_size", "flash_attention", "fsdp_config",
})


def detect_tool(data: Any) -> str:
    if not isinstance(data, dict):
        return ""
    keys = {str(k) for k in data}
    nanotron, axolotl = len(keys & NANOTRON_MARKERS), len(keys & AXOLOTL_MARKERS)
    if nanotron >= 2 and nanotron >= axolotl:
        return "nanotron"
    return "axolotl" if axolotl >= 2 else ""


# libyaml's parser when PyYAML has it (same documents, several times faster); the pure-Python
# one reads what libyaml rejects, so the complaints quoted in findings are PyYAML's own.
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _parse_yaml(text: str) -> tuple[yaml.Node | None, Any]:
    """(node, value) of a YAML document, read in one pass (as ``yaml.compose`` + ``yaml.safe_load``)."""
    try:
        return _load_yaml(text, _FAST_LOADER)
    except yaml.YAMLError:
        return _load_yaml(text, yaml.SafeLoader)


def _load_yaml(text: str, loader_class) -> tuple[yaml.Node | None, Any]:
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        return node, (loader.construct_document(node) if node is not None else None)
    finally:
        loader.dispose()


def read_yaml(block: CodeBlock) -> YamlBlock:
    """Parse a YAML block; when a line is indented too far, retry with it re-indented."""
    out = YamlBlock(block)
    lines = block.text.split("\n")
    base = block.line + 1  # report line of the block's first line is base + 0
    for _ in range(10):
        text = "\n".join(lines)
        try:
            node, out.data = _parse_yaml(text)
            out.key_lines = _key_lines(node, base) if node is not None else {}
            break
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            if not out.error:
                out.error = f"{exc.problem or exc.context}"
                out.error_line = base + mark.line if mark else block.line
            idx = mark.line if mark else -1
            prev = next((j for j in range(idx - 1, -1, -1) if lines[j].strip()), None)
            if mark is None or prev is None or idx >= len(lines):
                break
            indent = len(lines[prev]) - len(lines[prev].lstrip())
            if len(lines[idx]) - len(lines[idx].lstrip()) <= indent:
                break
            lines[idx] = " " * indent + lines[idx].lstrip()
        except yaml.YAMLError as exc:
            out.error, out.error_line = str(exc), block.line
            break
    out.tool = detect_tool(out.data)
    return out




def yaml_blocks(doc: Document) -> list[YamlBlock]:
    """The document's YAML blocks, parsed once per document (checks ask repeatedly)."""
    return doc.memo("yaml_blocks", lambda: [read_yaml(b) for b in doc.code_blocks if b.lang in ("yaml", "yml")])


def nanotron_config_for(doc: Document, line: int, heads: list[str]) -> YamlBlock | None:
    """The nanotron config a block at ``line`` refers to: the one sharing the most enclosing
    headings; among those the nearest above, else the nearest below."""
    index = doc.memo("nanotron_configs", lambda: _configs_by_heading_prefix(doc))
    for depth in range(len(heads), -1, -1):
        found = index.get(tuple(heads[:depth]))
        if found:
            lines, configs = found
            k = bisect.bisect_left(lines, line)
            return configs[k - 1] if k else configs[0]
    return None


def _configs_by_heading_prefix(doc: Document) -> dict[tuple, tuple[list[int], list[YamlBlock]]]:
    """Nanotron configs (by line) under each heading prefix they have: (), (h1,), (h1, h2) ..."""
    index: dict[tuple, tuple[list[int], list[YamlBlock]]] = {}
    for y in yaml_blocks(doc):
        if y.tool == "nanotron" and isinstance(y.data, dict):
            for depth in range(len(y.block.headings) + 1):
                lines, configs = index.setdefault(tuple(y.block.headings[:depth]), ([], []))
                lines.append(y.block.line)
                configs.append(y)
    return index


# ----------------------------------------------------------------------------- architecture


def document_arch(doc: Document) -> tuple[LlamaArch | None, YamlBlock | None]:
    """The architecture of the document's first nanotron config that has one."""
    for y in yaml_blocks(doc):
        if y.tool != "nanotron":
            continue
        try:
            return LlamaArch.from_nanotron(y.data), y
        except ZagreusError:
            continue
    return None, None


def size_value(number: str, unit: str) -> float:
    return float(number) * (1e9 if unit.lower() in ("b", "billion") else 1e6)


def size_tolerance(number: str, unit: str) -> float:
    """Half a unit of the stated number's last significant digit (at least 5%): "0.4B" allows
    0.35-0.45B, "500M" allows 450-550M, "350M" allows 332.5-367.5M."""
    if not float(number):
        return 0.0
    if "." in number:
        step = 10.0 ** -len(number.split(".")[1])
    else:
        step = 10.0 ** (len(number) - len(number.rstrip("0")))
    value = size_value(number, unit)
    return max(0.5 * step * value / float(number), 0.05 * value)


def fmt_params(n: float) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


# ----------------------------------------------------------------------------- tables


_AVERAGE = re.compile(r"(?i)\b(media|average|avg|mean|totale?|overall)\b")
_LABEL_COLUMNS = re.compile(r"(?i)^(rank|#|n|step|steps|checkpoint|iteration|iter|tokens?)$")


def _clean(text: str) -> str:
    return text.replace("*", "").strip()


def score_columns(table: Table) -> tuple[list[int], list[int]]:
    """(score columns, average columns) of a results table (worked out once per table)."""
    if table.columns is None:
        table.columns = _score_columns(table)
    return table.columns


def _score_columns(table: Table) -> tuple[list[int], list[int]]:
    scores, averages = [], []
    for j, head in enumerate(table.header):
        cells = [cell_number(r[j]) if j < len(r) else None for r in table.rows]
        numeric = [c for c in cells if c is not None and c[0] is not None]
        if not table.rows or len(numeric) * 2 < len(table.rows):
            continue
        if any(c is None for c in cells) or _LABEL_COLUMNS.match(_clean(head)):
            continue
        (averages if _AVERAGE.search(_clean(head)) else scores).append(j)
    return scores, averages


def row_label(table: Table, row: list[str]) -> str:
    scores, averages = score_columns(table)
    parts = [_clean(c) for j, c in enumerate(row) if j not in scores + averages and _clean(c)]
    return " ".join(parts) or "(unlabelled)"


def _group(header: str) -> str:
    """The group suffix of an average column: ``Media EN`` -> ``en``; plain averages -> ``''``."""
    words = [w for w in re.split(r"[\s_]+", _clean(header).lower()) if w]
    rest = [w for w in words if not _AVERAGE.fullmatch(w)]
    return rest[-1] if rest else ""


def _in_group(header: str, group: str) -> bool:
    words = [w for w in re.split(r"[\s_\-]+", _clean(header).lower()) if w]
    return bool(words) and words[-1] == group


# ----------------------------------------------------------------------------- checks


def check_averages(doc: Document) -> list[Finding]:
    """An average column equals the mean of the row's (non-missing) scores it averages."""
    out = []
    for table in doc.tables:
        scores, averages = score_columns(table)
        if not scores or not averages:
            continue
        group_avgs = [j for j in averages if _group(table.header[j])]
        for row, line in zip(table.rows, table.row_lines):
            label = row_label(table, row)
            for j in averages:
                stated = cell_number(row[j])
                if not stated or stated[0] is None:
                    continue
                group = _group(table.header[j])
                cols = [k for k in scores if _in_group(table.header[k], group)] if group else scores
                if not cols:
                    continue
                cells = [cell_number(row[k]) for k in cols]
                present = [c for c in cells if c and c[0] is not None]
                if not present:
                    continue
                mean = sum(v for v, _ in present) / len(present)
                candidates = [mean]
                if not group and group_avgs:  # a total may be the mean of the group averages
                    subs = [cell_number(row[k]) for k in group_avgs]
                    if all(s and s[0] is not None for s in subs):
                        candidates.append(sum(s[0] for s in subs) / len(subs))
                tol = 0.5 * 10 ** -stated[1] + 0.5 * 10 ** -max(d for _, d in present) + 1e-9
                name = _clean(table.header[j])
                names = ", ".join(_clean(table.header[k]) for k in cols)
                if not any(abs(c - stated[0]) <= tol for c in candidates):
                    out.append(finding(doc, "averages", line, f"{label}: {name} = {row[j].strip('* ')}",
                                       f"mean of {len(present)} scores ({names}) = {mean:.4f}", "error"))
                elif len(present) < len(cols):
                    out.append(finding(doc, "averages", line, f"{label}: {name} = {row[j].strip('* ')}",
                                       f"averaged over {len(present)} of {len(cols)} scores (others missing);"
                                       " not comparable with the complete rows", "info"))
    return out


def check_duplicate_rows(doc: Document) -> list[Finding]:
    """Two rows of one table with identical scores under different labels."""
    out = []
    for table in doc.tables:
        scores, averages = score_columns(table)
        cols = scores + averages
        seen: dict[tuple, tuple[str, int]] = {}
        for row, line in zip(table.rows, table.row_lines):
            values = tuple(cell_number(row[j]) for j in cols)
            if sum(1 for v in values if v and v[0] is not None) < 2:
                continue
            key = tuple(v[0] if v else None for v in values)
            label = row_label(table, row)
            if key in seen and seen[key][0] != label:
                first, first_line = seen[key]
                out.append(finding(doc, "duplicate_rows", line,
                                   f"row '{label}' scores {', '.join(_clean(row[j]) for j in cols)}",
                                   f"identical to row '{first}' (line {first_line}); one of them is"
                                   " probably a copy-paste error", "warning"))
            else:
                seen.setdefault(key, (label, line))
    return out


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
    from typing import get_args, get_origin

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


# ----------------------------------------------------------------------------- launch scripts

_SBATCH = re.compile(r"^\s*#SBATCH\s+(--?[\w-]+)(?:[=\s]\s*([^\s#]+))?\s*(?:#\s*(.*))?$")
_ASSIGN = re.compile(r"^\s*(?:export\s+)?([A-Za-z_]\w*)=([^\s#]*)\s*(?:#\s*(.*))?$")
_GPU_WORDS = re.compile(r"(?i)gpu|a100|h100|h200|v100|l40|mi\d+|per node")


def _logical_lines(text: str, first_line: int) -> list[tuple[int, str]]:
    """Shell lines with backslash continuations joined, each with its report line."""
    out, buf, start = [], "", None
    for i, line in enumerate(text.split("\n")):
        if start is None:
            start = first_line + i
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        out.append((start, buf + line))
        buf, start = "", None
    if buf:
        out.append((start, buf))
    return out


def _first_int(text: str | None) -> int | None:
    m = re.match(r"\s*(\d+)", text or "")
    return int(m.group(1)) if m else None


@dataclass
class SlurmScript:
    """What a batch script asks Slurm for, and its shell variables (value, line, comment)."""

    nodes: int | None = None
    nodes_line: int = 0
    nodes_comment: str = ""
    gres: int | None = None  # GPUs per node
    gres_line: int = 0
    gres_comment: str = ""
    env: dict[str, tuple[str, int, str]] = field(default_factory=dict)

    def resolve(self, value: str | None, depth: int = 0) -> int | None:
        """An integer for a literal, ``$VAR`` or Slurm's own variables; None if unknown."""
        if value is None or depth > 5:
            return None
        value = value.strip("\"'")
        if value.isdigit():
            return int(value)
        var = re.fullmatch(r"\$\{?(\w+)\}?", value)
        if not var:
            return self.gres if value in ("gpu", "auto") else None
        name = var.group(1)
        if name in ("SLURM_JOB_NUM_NODES", "SLURM_NNODES"):
            return self.nodes
        if name in ("SLURM_GPUS_ON_NODE", "SLURM_GPUS_PER_NODE"):
            return self.gres
        return self.resolve(self.env[name][0], depth + 1) if name in self.env else None


def read_slurm(block: CodeBlock) -> SlurmScript:
    script = SlurmScript()
    for i, line in enumerate(block.text.split("\n")):
        at = block.line + 1 + i
        if m := _SBATCH.match(line):
            opt, val, comment = m.group(1), m.group(2) or "", m.group(3) or ""
            gpus = re.search(r"gpu(?::[\w-]+)?:(\d+)", val) if opt == "--gres" else None
            if opt in ("--nodes", "-N") and val.isdigit():
                script.nodes, script.nodes_line, script.nodes_comment = int(val), at, comment
            elif gpus or (opt == "--gpus-per-node" and val.isdigit()):
                script.gres, script.gres_line = int(gpus.group(1) if gpus else val), at
                script.gres_comment = comment
        elif m := _ASSIGN.match(line):
            script.env[m.group(1)] = (m.group(2), at, m.group(3) or "")
    return script


def _comment_findings(doc: Document, s: SlurmScript) -> list[Finding]:
    """Comments such as ``--nodes=8  # 4 nodes`` that contradict the value beside them."""
    out = []
    said = _first_int(s.nodes_comment)
    if s.nodes is not None and said not in (None, s.nodes) and (
            "node" in s.nodes_comment.lower() or s.nodes_comment.strip().isdigit()):
        out.append(finding(doc, "launch", s.nodes_line, doc.lines[s.nodes_line - 1].strip(),
                           f"the comment says {said} nodes but the job asks for {s.nodes}", "warning"))
    said = _first_int(s.gres_comment)
    if s.gres is not None and said not in (None, s.gres) and _GPU_WORDS.search(s.gres_comment):
        out.append(finding(doc, "launch", s.gres_line, doc.lines[s.gres_line - 1].strip(),
                           f"the comment says {said} GPUs per node but the job requests {s.gres}", "warning"))
    for name, (value, line, comment) in s.env.items():
        said, actual = _first_int(comment), s.resolve(value)
        if said is None or actual in (None, said) or not comment.split()[0].isdigit():
            continue
        if "node" in name.lower() or "gpu" in name.lower():
            out.append(finding(doc, "launch", line, f"{name}={value}  # {comment}",
                               f"the comment says {said} but {name} resolves to {actual}", "warning"))
    return out


def check_launch(doc: Document) -> list[Finding]:
    """Slurm + torchrun scripts agree with themselves and with the config they launch."""
    out = []
    for block in doc.code_blocks:
        if "#SBATCH" not in block.text or "torchrun" not in block.text:
            continue
        script = read_slurm(block)
        out += _comment_findings(doc, script)
        launch_line, cmd = next((ln, t) for ln, t in _logical_lines(block.text, block.line + 1) if "torchrun" in t)
        nproc_arg = re.search(r"--nproc[_-]per[_-]node[=\s]+(\S+)", cmd)
        nnodes_arg = re.search(r"--nnodes[=\s]+(\S+)", cmd)
        nproc = script.resolve(nproc_arg.group(1)) if nproc_arg else None
        nnodes = script.resolve(nnodes_arg.group(1)) if nnodes_arg else script.nodes
        nproc_text = nproc_arg.group(1) if nproc_arg else "?"
        if nproc_text.startswith("$"):
            nproc_text += f" = {nproc}"
        gres = script.gres
        if gres is not None and nproc is not None and nproc != gres:
            idle = f"{gres - nproc} GPUs per node idle" if nproc < gres else "more processes than GPUs"
            out.append(finding(doc, "launch", script.gres_line,
                               f"--gres=gpu:{gres} per node; torchrun --nproc_per_node {nproc_text}",
                               f"{nproc} processes per node on {gres} requested GPUs: {idle}",
                               "warning" if nproc < gres else "error"))
        is_nanotron = "run_train" in cmd or "--config-file" in cmd or "nanotron" in cmd
        config = nanotron_config_for(doc, block.line, block.headings) if is_nanotron else None
        if nnodes is None or nproc is None or config is None:
            continue
        par = config.data.get("parallelism") or {}
        dims = [int(par.get(k, 1) or 1) for k in ("dp", "tp", "pp")]
        cp = int(par.get("context_parallel_size", 1) or 1)
        expected, world = math.prod(dims) * cp, nnodes * nproc
        if world == expected:
            continue
        says = f"{nnodes} nodes × {nproc} processes per node ({nproc_text}) = {world} processes"
        if named := re.search(r"--config[-_]file[=\s]+(\S+)", cmd):
            says += f", launching {named.group(1)}"
        if prose := _prose_gpus(doc, block):
            says += f"; the text says {prose}"
        found = (f"the nanotron config (line {config.block.line}) needs dp×tp×pp = "
                 f"{dims[0]}×{dims[1]}×{dims[2]}{f'×cp {cp}' if cp > 1 else ''} = {expected} processes")
        out.append(finding(doc, "launch", launch_line, says, found, "error"))
    return out


def _prose_gpus(doc: Document, block: CodeBlock) -> str:
    """A '64 GPUs across 8 nodes' phrase in the text just above a block."""
    for line in reversed(doc.lines[max(0, block.line - 6):block.line - 1]):
        m = re.search(r"(\d+)\s+GPUs?\s+(?:across|on|over)\s+(\d+)\s+nodes", line, re.I)
        if m:
            return m.group(0)
    return ""


# ----------------------------------------------------------------------------- eval commands

_MODEL_NAME = re.compile(r"(?i)\b(?:open-)?(?:zagreus|nesso)(?:[\w.-]*[\w])?")
_LANG = re.compile(r"(?i)(?<![a-z])(ita|spa|fra|por|eng|deu)(?![a-z])")


def _name_size(name: str) -> tuple[str, str] | None:
    m = re.search(r"(?<![\w.])(\d+(?:\.\d+)?)([MB])(?![a-zA-Z])", name.replace("_", "-"))
    return (m.group(1), m.group(2)) if m else None


def _subject(doc: Document, line: int) -> tuple[str, str, int]:
    """(model name, heading title, heading line) of the nearest heading above ``line`` naming a
    zagreus/nesso model: the model a block of evaluation commands is about."""
    lines, subjects = doc.memo("model_headings", lambda: _model_headings(doc))
    k = bisect.bisect_right(lines, line)
    return subjects[k - 1] if k else ("", "", 0)


def _model_headings(doc: Document) -> tuple[list[int], list[tuple[str, str, int]]]:
    lines, subjects = [], []
    for at, _, title in headings(doc):
        if m := _MODEL_NAME.search(title):
            lines.append(at)
            subjects.append((m.group(0), title, at))
    return lines, subjects


def _table_after(doc: Document, line: int) -> Table | None:
    """The first table below ``line`` and above the next code block."""
    block_lines = doc.memo("code_block_lines", lambda: [b.line for b in doc.code_blocks])
    table_lines = doc.memo("table_lines", lambda: [t.line for t in doc.tables])
    b = bisect.bisect_right(block_lines, line)
    nxt = block_lines[b] if b < len(block_lines) else 10 ** 9
    t = bisect.bisect_right(table_lines, line)
    return doc.tables[t] if t < len(doc.tables) and table_lines[t] < nxt else None


def _steps_in(table: Table) -> set[int]:
    steps = set()
    for row in table.rows:
        for m in re.finditer(r"(?i)(\d+(?:\.\d+)?)\s*k\b", " ".join(row)):
            steps.add(int(float(m.group(1)) * 1000))
    return steps


def _own_model_problems(model: str, subject: str, section: str, table: Table | None,
                        arch: LlamaArch | None) -> list[str]:
    """How a zagreus/nesso model id disagrees with the section's model: size, language, step."""
    problems = []
    size, want = _name_size(model), _name_size(subject)
    wanted = size_value(*want) if want else (parameter_counts(arch)["total"] if arch else None)
    if size and wanted and abs(size_value(*size) - wanted) > size_tolerance(*(want or size)):
        problems.append(f"a {size[0]}{size[1]} model, while the section {section} is about a"
                        f" {want[0] + want[1] if want else fmt_params(wanted)} model")
    lang, subject_lang = _LANG.search(model), _LANG.search(subject)
    if lang and subject_lang and lang.group(1).lower() != subject_lang.group(1).lower():
        problems.append(f"language '{lang.group(1)}', while the section {section} is about '{subject_lang.group(1)}'")
    step = re.search(r"[-_](\d{4,})$", model)
    if step and table and (steps := _steps_in(table)) and int(step.group(1)) not in steps:
        problems.append(f"step {step.group(1)} is not among the checkpoints in the table below"
                        f" ({', '.join(f'{s // 1000}k' for s in sorted(steps))})")
    return problems


def _is_placeholder(model: str) -> bool:
    """``checkpoint``, ``./out``, ``$MODEL``: stands for the section's own model."""
    return model.startswith((".", "/", "~", "$")) or ("/" not in model and not _name_size(model))


def check_eval_models(doc: Document) -> list[Finding]:
    """Each lm-eval command evaluates the model its section is about."""
    out = []
    arch, _ = document_arch(doc)
    for block in doc.code_blocks:
        if not re.search(r"\blm[-_]eval\b", block.text):
            continue
        subject, title, subject_line = _subject(doc, block.line)
        if not subject:
            continue
        section = f"'{title}' (line {subject_line})"
        table = _table_after(doc, block.line)
        commands = []
        for line, cmd in _logical_lines(block.text, block.line + 1):
            m = re.search(r"pretrained=([^,\s\"']+)", cmd)
            if re.search(r"\blm[-_]eval\b", cmd) and m:
                tasks = re.search(r"--tasks[=\s]+(\S+)", cmd)
                commands.append((line, m.group(1), tasks.group(1) if tasks else ""))
        own_tasks = {t for _, model, tasks in commands
                     if _MODEL_NAME.search(model) or _is_placeholder(model) for t in tasks.split(",")}
        for line, model, tasks in commands:
            says = f"pretrained={model}" + (f" on {tasks}" if tasks else "")
            if _MODEL_NAME.search(model):
                if problems := _own_model_problems(model, subject, section, table, arch):
                    out.append(finding(doc, "eval_model", line, says, "evaluates " + "; ".join(problems), "error"))
                continue
            if _is_placeholder(model):
                continue
            compared = table is not None and any(model.lower() in " ".join(r).lower() for r in table.rows)
            if compared and tasks and set(tasks.split(",")) <= own_tasks:
                continue  # a baseline run beside the same tasks on the section's own model
            if compared:
                found = (f"evaluates {model}, a comparison model in the table, not the model of the section"
                         f" {section}; no command runs these tasks on the section's own model")
                out.append(finding(doc, "eval_model", line, says, found, "warning"))
            else:
                found = f"evaluates {model}, not {subject}, the model the section {section} reports on"
                out.append(finding(doc, "eval_model", line, says, found, "error"))
    return out


# ----------------------------------------------------------------------------- training logs

_ITER = re.compile(r"iteration:\s*(\d+)\s*/\s*(\d+)")


def parse_log_line(text: str) -> dict[str, str]:
    """``key: value`` fields of a nanotron step line (ANSI colours stripped)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    body = text.split("]:", 1)[1] if "]:" in text else text
    fields = {}
    for part in body.split("|"):
        if ":" in part:
            key, value = part.split(":", 1)
            fields[key.strip()] = value.strip()
    return fields


def parse_eta(text: str) -> float | None:
    m = re.match(r"(?:(\d+)\s+days?,\s*)?(\d+):(\d\d):(\d\d(?:\.\d+)?)", text.strip())
    if not m:
        return None
    days, hours, minutes, seconds = m.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def nanotron_lr(sched: dict, train_steps: int, step: int) -> float:
    """The learning rate nanotron's scheduler gives at ``step``."""
    lr = float(sched["learning_rate"])
    warmup = int(sched.get("lr_warmup_steps") or 0)
    min_lr = as_float(sched.get("min_decay_lr"))
    min_lr = lr if min_lr is None else min_lr
    start = sched.get("lr_decay_starting_step")
    start = warmup if start is None else int(start)
    steps = sched.get("lr_decay_steps")
    steps = train_steps - warmup if steps is None else int(steps)
    style = sched.get("lr_decay_style") or "linear"
    if step < warmup:
        return lr * step / max(warmup, 1) if (sched.get("lr_warmup_style") or "linear") == "linear" else lr
    if step < start:
        return lr
    if step < start + steps:
        frac = (step - start) / steps
        if style == "cosine":
            return min_lr + (lr - min_lr) * (1 + math.cos(math.pi * frac)) / 2
        if style == "1-sqrt":
            return min_lr + (lr - min_lr) * (1 - math.sqrt(frac))
        return min_lr + (lr - min_lr) * (1 - frac)
    return min_lr


def check_training_log(doc: Document) -> list[Finding]:
    """nanotron step lines agree with the config (batch, GPUs, steps, schedule) and themselves."""
    issues: dict[str, tuple[int, str, str, str, list[int]]] = {}

    def note(key: str, line: int, says: str, found: str, severity: str) -> None:
        if key in issues:
            issues[key][4].append(line)
        else:
            issues[key] = (line, says, found, severity, [])

    for block in doc.code_blocks:
        for i, text in enumerate(block.text.split("\n")):
            m = _ITER.search(text)
            if not m:
                continue
            line = block.line + 1 + i
            step, total = int(m.group(1)), int(m.group(2))
            f = parse_log_line(text)
            num = {k: human_number(v) for k, v in f.items()}
            config = nanotron_config_for(doc, block.line, block.headings)
            data = config.data if config else {}
            tok, par = data.get("tokens") or {}, data.get("parallelism") or {}
            train_steps = tok.get("train_steps")
            if isinstance(train_steps, int) and total != train_steps:
                note("steps", line, f"iteration {step} / {total}",
                     f"the config (line {config.line_of(('tokens', 'train_steps'))}) sets train_steps: {train_steps}",
                     "error")
            world = math.prod(int(par.get(k, 1) or 1) for k in ("dp", "tp", "pp")) if par else None
            try:
                seqs = int(tok["micro_batch_size"]) * int(tok["batch_accumulation_per_replica"]) * int(par["dp"])
                gbs_tokens = seqs * int(tok["sequence_length"])
            except (KeyError, TypeError, ValueError):
                seqs = gbs_tokens = None
            logged_gbs = num.get("global_batch_size")
            if gbs_tokens and logged_gbs and not (close(logged_gbs, gbs_tokens, 0.01) or close(logged_gbs, seqs, 0.01)):
                note("gbs", line, f"global_batch_size: {f['global_batch_size']}",
                     f"micro_batch_size {tok['micro_batch_size']} × batch_accumulation_per_replica"
                     f" {tok['batch_accumulation_per_replica']} × dp {par['dp']} × sequence_length"
                     f" {tok['sequence_length']} = {gbs_tokens:,} tokens ({human(gbs_tokens)})", "error")
            tps, tps_gpu = num.get("tokens_per_sec"), num.get("tokens_per_sec_per_gpu")
            if tps and tps_gpu and world and not close(tps, tps_gpu * world, 0.03):
                note("tps", line,
                     f"tokens_per_sec: {f['tokens_per_sec']}, tokens_per_sec_per_gpu: {f['tokens_per_sec_per_gpu']}",
                     f"{f['tokens_per_sec_per_gpu']} × {world} GPUs (dp×tp×pp) = {human(tps_gpu * world)};"
                     f" the two fields imply {tps / tps_gpu:.0f} GPUs", "error")
            consumed = num.get("consumed_tokens")
            if consumed and gbs_tokens:
                options = [gbs_tokens] + ([logged_gbs] if logged_gbs else [])
                if not any(close(consumed, step * g, 0.03) for g in options):
                    alt = f", or {human(step * logged_gbs)} with the logged batch" if logged_gbs else ""
                    note("consumed", line, f"consumed_tokens: {f['consumed_tokens']} at iteration {step}",
                         f"{step} steps × {human(gbs_tokens)} tokens per step = {human(step * gbs_tokens)}{alt}",
                         "warning")
            sched = get(data, "optimizer.learning_rate_scheduler")
            lr = as_float(f.get("lr"))
            if isinstance(sched, dict) and lr is not None and isinstance(train_steps, int) and "learning_rate" in sched:
                want = nanotron_lr(sched, train_steps, step)
                if not close(lr, want, 0.02):
                    note("lr", line, f"lr: {f['lr']} at iteration {step}",
                         f"the configured schedule (peak {sched['learning_rate']}, warmup"
                         f" {sched.get('lr_warmup_steps')}, decay from step {sched.get('lr_decay_starting_step')})"
                         f" gives {want:.3g}", "error")
            ms = num.get("time_per_iteration_ms") or num.get("elapsed_time_per_iteration_ms")
            if ms and tps and logged_gbs and not close(ms / 1000, logged_gbs / tps, 0.03):
                note("time", line, f"time_per_iteration_ms: {f.get('time_per_iteration_ms')}",
                     f"global_batch_size / tokens_per_sec = {logged_gbs / tps:.2f} s", "warning")
            eta = parse_eta(f.get("eta", ""))
            if eta and ms:
                want = (total - step) * ms / 1000
                if not close(eta, want, 0.03):
                    note("eta", line, f"eta: {f['eta']}",
                         f"{total - step} remaining steps × {ms / 1000:.2f} s = {duration(want)}", "warning")
    out = []
    for line, says, found, severity, more in issues.values():
        if more:
            found += f" (same on line{'s' if len(more) > 1 else ''} {', '.join(map(str, more))})"
        out.append(finding(doc, "training_log", line, says, found, severity))
    return out


# ----------------------------------------------------------------------------- sizes and budgets

_PROSE_SIZE = re.compile(r"(?i)(~|approximately|about|around|roughly|sub|under|below|less than)\s*"
                         r"(\d+(?:\.\d+)?)\s*(million|billion|M|B)\s*-?\s*param\w*")


def check_param_count(doc: Document) -> list[Finding]:
    """Sizes named in the text and in model names against the count from the architecture."""
    arch, config = document_arch(doc)
    if arch is None:
        return []
    counts = parameter_counts(arch)
    total, non_embedding = counts["total"], counts["non_embedding"]
    mentions: dict[str, list[tuple[int, str, str, str, str]]] = {}
    for i, line in enumerate(doc.lines, 1):
        for m in _PROSE_SIZE.finditer(line):
            number, unit = m.group(2), m.group(3)
            key = f"{number}{'B' if unit.lower() in ('b', 'billion') else 'M'}"
            mentions.setdefault(key, []).append((i, m.group(0), number, unit, m.group(1).lower()))
        for m in _MODEL_NAME.finditer(line):
            if size := _name_size(m.group(0)):
                mentions.setdefault(size[0] + size[1], []).append((i, m.group(0), size[0], size[1], "name"))
    out = []
    for key, found in mentions.items():
        line, quote, number, unit, kind = found[0]
        stated = size_value(number, unit)
        if kind in ("sub", "under", "below", "less than"):
            ok = total < stated
        else:
            ok = abs(total - stated) <= size_tolerance(number, unit)
        if ok:
            continue
        others = sorted({ln for ln, *_ in found[1:]} - {line})
        says = f"'{quote}'" + (f" (also on lines {', '.join(map(str, others))})" if others else "")
        ratio = max(total, stated) / min(total, stated)
        out.append(finding(doc, "param_count", line, says,
                           f"the architecture in the config (line {config.block.line}) has {total:,} parameters"
                           f" ({fmt_params(total)}; {fmt_params(non_embedding)} without embeddings)",
                           "error" if ratio > 2 else "warning"))
    return out


# The configured languages (configs/languages/*.yaml, and English) and German, which the report
# also names in its data plans.
_LANGS = {**{code: name.lower() for code, name in language_names().items()}, "deu": "german"}
_SPLIT_ITEM = re.compile(r"(\d+(?:\.\d+)?)\s*([BT])\s+("
                         + "|".join(name.title() for name in _LANGS.values()) + "|Code)", re.I)
_TOTAL = re.compile(r"(?i)(?:~|approximately|about|around|roughly)\s*(\d+(?:\.\d+)?|one|a)\s*"
                    r"(trillion|billion|[TB])\s+tokens")
_DATASET_URL = re.compile(r"https?://huggingface\.co/datasets/([^\s)\]]+)")
_COUNT = re.compile(r"\((\d+(?:\.\d+)?)\s*(billion|trillion|[BT])\s+tokens\)", re.I)


@dataclass
class Source:
    line: int
    name: str
    category: str
    tokens: float | None
    group: str


def listed_sources(doc: Document) -> list[Source]:
    """Dataset links in the text, with the token counts written next to them."""
    sources, group, in_code = [], "", code_lines(doc)
    for i, line in enumerate(doc.lines, 1):
        if i in in_code:
            continue
        if re.match(r"^\s*\*\*[^*]+\*\*:?\s*$", line):
            group = line.strip(" *:")
            continue
        m = _DATASET_URL.search(line)
        if not m or not line.lstrip().startswith(("*", "-")):
            continue
        name = m.group(1)
        lang = _LANG.search(name)
        if re.search(r"(?i)star ?coder|stack|code", name):
            category = "code"
        else:
            category = _LANGS.get(lang.group(1).lower(), "") if lang else "english"
        count = _COUNT.search(line)
        tokens = size_value(count.group(1), "b") * (1000 if count.group(2).lower()[0] == "t" else 1) if count else None
        sources.append(Source(i, name, category, tokens, group))
    return sources


def check_token_budget(doc: Document) -> list[Finding]:
    """A stated token split against the total, the listed sources and the training config."""
    out, in_code = [], code_lines(doc)
    total_stated = None
    for i, line in enumerate(doc.lines, 1):
        if i not in in_code and (m := _TOTAL.search(line)) and total_stated is None:
            number = {"one": "1", "a": "1"}.get(m.group(1).lower(), m.group(1))
            scale = 1e12 if m.group(2).lower()[0] == "t" else 1e9
            total_stated = (float(number) * scale, i, m.group(0))
    sources = listed_sources(doc)
    for i, line in enumerate(doc.lines, 1):
        items = _SPLIT_ITEM.findall(line) if i not in in_code else []
        if len(items) < 2:
            continue
        split = {cat.lower(): float(n) * (1e12 if u.upper() == "T" else 1e9) for n, u, cat in items}
        says = ", ".join(f"{n}{u} {cat}" for n, u, cat in items)
        said = {cat.lower(): f"{n}{u} {cat}" for n, u, cat in items}
        if total_stated and not close(sum(split.values()), total_stated[0], 0.05):
            out.append(finding(doc, "token_budget", i, says,
                               f"sums to {human(sum(split.values()))}, but line {total_stated[1]} says"
                               f" '{total_stated[2]}'", "warning"))
        langs = [c for c in split if c not in ("english", "code")]
        codes = [k for k, v in _LANGS.items() if v in langs]
        pool = [s for s in sources if any(c in s.group.lower() for c in codes)] or sources
        for category, stated in split.items():
            mine = {s.name: s for s in pool if s.category == category}
            if not mine:
                out.append(finding(doc, "token_budget", i, said[category],
                                   f"no listed source is {category}", "warning"))
                continue
            counted = [s for s in mine.values() if s.tokens]
            if len(counted) < len(mine):
                missing = ", ".join(s.name for s in mine.values() if not s.tokens)
                out.append(finding(doc, "token_budget", i, f"{said[category]} (of '{says}')",
                                   f"not checkable: no token count is given for {missing}", "info"))
                continue
            available = sum(s.tokens for s in counted)
            if stated > available * 1.02:
                names = ", ".join(f"{s.name} (line {s.line})" for s in counted)
                out.append(finding(doc, "token_budget", i, f"{said[category]} (of '{says}')",
                                   f"the listed {category} source{'s' if len(counted) > 1 else ''} {names}"
                                   f" hold{'' if len(counted) > 1 else 's'} only {human(available)} tokens", "warning"))
    if total_stated:
        for y in yaml_blocks(doc):
            if y.tool != "nanotron":
                continue
            tok, par = y.data.get("tokens") or {}, y.data.get("parallelism") or {}
            try:
                per_step = (int(tok["micro_batch_size"]) * int(tok["batch_accumulation_per_replica"])
                            * int(par["dp"]) * int(tok["sequence_length"]))
                planned = per_step * int(tok["train_steps"])
            except (KeyError, TypeError, ValueError):
                continue
            if not close(planned, total_stated[0], 0.2):
                out.append(finding(doc, "token_budget", y.line_of(("tokens", "train_steps")),
                                   f"train_steps {tok['train_steps']} × {human(per_step)} tokens per step",
                                   f"= {human(planned)} tokens, but line {total_stated[1]} says the model is trained"
                                   f" on '{total_stated[2]}'", "warning"))
    return out


_GENERIC = {"training", "pretraining", "tokenized", "output", "data", "datasets", "dataset", "viewer",
            "huggingfacefw", "huggingface", "https", "co", "sample", "latn"}


def _words(text: str) -> set[str]:
    return {w for w in re.split(r"[^a-z0-9]+", text.lower()) if w and w not in _GENERIC and not w.isdigit()}


def _matches(folder: set[str], source: set[str]) -> bool:
    return all(any(a.startswith(b) or b.startswith(a) for b in source) for a in folder)


def check_dataset_sources(doc: Document) -> list[Finding]:
    """Dataset folders in the config name sources the text lists."""
    sources = listed_sources(doc)
    if not sources:
        return []
    out = []
    source_words = list(dict.fromkeys(frozenset(_words(s.name)) for s in sources))  # distinct ones
    listed = ", ".join(sorted({s.name.split("/viewer/")[0] for s in sources}))
    known: dict[str, bool] = {}  # folder name -> matches a listed source
    for y in yaml_blocks(doc):
        if y.tool != "nanotron":
            continue
        for s_idx, stage in enumerate(y.data.get("data_stages") or []):
            folders = get(stage, "data.dataset.dataset_folder") if isinstance(stage, dict) else None
            folders = [folders] if isinstance(folders, str) else folders or []
            reported: set[str] = set()
            for f_idx, folder in enumerate(folders):
                parts = [p for p in str(folder).split("/") if _words(p)]
                name = parts[0] if parts else str(folder)
                if name not in known:
                    known[name] = any(_matches(_words(name), words) for words in source_words)
                if name in reported or known[name]:
                    continue
                reported.add(name)
                at = ("data_stages", s_idx, "data", "dataset", "dataset_folder", f_idx)
                out.append(finding(doc, "dataset_sources", y.line_of(at),
                                   f"dataset folder {folder}",
                                   f"'{name}' matches none of the listed sources ({listed})", "warning"))
    return out


# ----------------------------------------------------------------------------- other checks


def _sections(doc: Document) -> list[tuple[int, str, list[str]]]:
    """(heading line, title, body lines) for every heading; a body includes its subsections."""
    heads = headings(doc)
    ends = [len(doc.lines) + 1] * len(heads)
    open_: list[int] = []  # headings whose section has not ended yet, levels increasing
    for k, (line, level, _) in enumerate(heads):
        while open_ and heads[open_[-1]][1] >= level:
            ends[open_.pop()] = line
        open_.append(k)
    stripped = [x.strip() for x in doc.lines]
    return [(line, title, stripped[line:end - 1]) for (line, _, title), end in zip(heads, ends)]


def _paragraphs(body: list[str]) -> list[str]:
    paras, buf = [], []
    for line in body + [""]:
        if line and not re.fullmatch(r"[-*_ ]{3,}", line):
            buf.append(line)
        elif buf:
            paras.append(" ".join(buf))
            buf = []
    return paras


def check_duplicate_sections(doc: Document) -> list[Finding]:
    """The same heading with the same text appearing twice: each later copy is reported once,
    against the first earlier section it repeats (not inside a repeated section reported already).

    Sections are compared only with earlier ones of the same title, and earlier sections with
    identical text are compared once (the first of them stands for all): a report repeated n
    times costs n times the work, not n squared."""
    out = []
    # reported copies whose section b encloses the current one: (a start, a end, b start, b end);
    # sections nest, and come in line order, so those form a stack no deeper than the headings
    covered: list[tuple[int, int, int, int]] = []
    variants: dict[str, list[tuple[int, list[str], set[str], int]]] = {}  # title -> first of each text
    for line_b, title_b, body_b in _sections(doc):
        while covered and covered[-1][3] < line_b:
            covered.pop()
        paras_b = _paragraphs(body_b)
        earlier = variants.setdefault(title_b.lower(), [])
        if paras_b:
            for line_a, paras_a, set_a, len_a in earlier:
                if any(s <= line_a <= e for s, e, _, _ in covered):
                    continue  # a subsection of a copy reported already
                shorter, longer = (paras_a, set(paras_b)) if len(paras_a) <= len(paras_b) else (paras_b, set_a)
                shared = [p for p in shorter if p in longer]
                if len(shared) == len(shorter) and sum(map(len, shared)) >= 40:
                    covered.append((line_a, line_a + len_a, line_b, line_b + len(body_b)))
                    what = ("identical text" if paras_a == paras_b
                            else f"all {len(shared)} paragraphs of the shorter copy repeated")
                    out.append(finding(doc, "duplicate_sections", line_b, f"section '{title_b}'",
                                       f"repeats the section at line {line_a} ({what})", "warning"))
                    break
        if paras_b and not any(p == paras_b for _, p, _, _ in earlier):
            earlier.append((line_b, paras_b, set(paras_b), len(body_b)))
    return out


_TOKENIZER_ARG = re.compile(r"tokenizer_name_or_path\s*=\s*[\"']([^\"']+)[\"']")


def check_tokenizer(doc: Document) -> list[Finding]:
    """The tokenizer written into the token files is the one the training config names: each
    tokenizer used is compared with each distinct tokenizer the nanotron configs name (the first
    config naming it is cited), so a report repeated n times gives n times the findings."""
    out = []
    first_config: dict[str, YamlBlock] = {}
    for y in yaml_blocks(doc):
        if y.tool == "nanotron" and (wanted := get(y.data, "tokenizer.tokenizer_name_or_path")):
            first_config.setdefault(wanted if isinstance(wanted, str) else str(wanted), y)
    uses = [(block.line + 1 + i, m.group(1))
            for block in doc.code_blocks if block.lang == "python" and "DocumentTokenizer" in block.text
            for i, text in enumerate(block.text.split("\n")) if (m := _TOKENIZER_ARG.search(text))]
    for wanted, y in first_config.items():
        for line, used in uses:
            if used != wanted:
                extra = " (a Hugging Face cache folder, which datatrove sends to the hub as a name)" \
                    if re.search(r"models--[\w.-]+--", used) else ""
                out.append(finding(doc, "tokenizer", line, f"tokenized with {used}{extra}",
                                   f"the nanotron config (line {y.line_of(('tokenizer', 'tokenizer_name_or_path'))})"
                                   f" trains with {wanted}; nanotron's Nanoset asserts that the tokenizer recorded in"
                                   " the token files' metadata equals it", "warning"))
    return out


def check_python_syntax(doc: Document) -> list[Finding]:
    """Python blocks compile."""
    out = []
    for block in doc.code_blocks:
        if block.lang not in ("python", "py"):
            continue
        try:
            ast.parse(block.text)
        except SyntaxError as exc:
            line = block.line + (exc.lineno or 1)
            text = doc.lines[line - 1].strip() if line <= len(doc.lines) else ""
            msg = re.sub(r"\s*\(detected at line \d+\)", "", exc.msg)
            out.append(finding(doc, "python_syntax", line, f"`{text}`", f"Python syntax error: {msg}", "error"))
    return out


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
