"""What every audit check shares: the ``Finding``, headings, numbers in cells, the report's YAML
blocks (which tool each is for) and the architecture of its nanotron config."""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..markdown import CodeBlock, Document
from ...model.arch import LlamaArch
from ...nanotron.schema import NANOTRON_MARKERS
from ...pipeline.errors import ZagreusError

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
