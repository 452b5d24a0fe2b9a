"""The report's own nanotron config against the rendered one: each difference with its reason
(:data:`CORRECTIONS`), what is kept but worth knowing (:data:`OBSERVATIONS`), and the table of both."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..pipeline import paths
from ..pipeline.errors import ZagreusError
from . import schema


@dataclass(frozen=True)
class Correction:
    """A difference between the report's config and the rendered one, with its reason."""

    key: str     # dotted key in the rendered config ("*" for the whole file)
    kind: str    # "correction" (the report's config is wrong) | "adaptation" (site-specific value)
    reason: str

    def as_row(self, report_value: Any = None, kit_value: Any = None) -> dict:
        return {"key": self.key, "kind": self.kind, "report": _short(report_value),
                "rendered": _short(kit_value), "reason": self.reason}


CORRECTIONS: tuple[Correction, ...] = (
    Correction("*", "correction",
               "Invalid YAML: `  save_initial_state: false` is indented under the scalar "
               "`save_final_state: false` (yaml: 'mapping values are not allowed here'); no YAML "
               "parser, nanotron's included, loads the file. The line is un-indented."),
    Correction("checkpoints.resume_checkpoint_path", "correction",
               "Written at the top level, where nanotron's Config has no such field: dacite's strict "
               "mode rejects the file (UnexpectedDataError). It belongs under `checkpoints`."),
    Correction("checkpoints.save_final_state", "correction",
               "Written at the top level (not a Config field; rejected in strict mode). Moved under "
               "`checkpoints`; the report's value (false) is kept."),
    Correction("checkpoints.save_initial_state", "correction",
               "Written (mis-indented) outside `checkpoints`. Moved under `checkpoints`; the report's "
               "value (false) is kept."),
)

ADAPTATIONS: tuple[Correction, ...] = (
    Correction("checkpoints.checkpoints_path", "adaptation",
               "A folder of the report's cluster; the kit writes checkpoints into its run folder "
               "(runs/<profile>/<language>/03_pretraining/checkpoints)."),
    Correction("checkpoints.resume_checkpoint_path", "adaptation",
               "The report resumed an earlier run from its step-630000 checkpoint, which exists only on "
               "its cluster; a reproduction starts from scratch (null). The pretraining stage sets it "
               "to resume a run of its own, and pre-flight checks that the path exists."),
    Correction("data_stages[0].data.dataset.dataset_folder", "adaptation",
               "Paths on the report's cluster (one Italian web folder, seven fineweb-edu-350BT shards, "
               "finepdf, starcoder, while section 3 lists fineweb sample-350BT); the kit points at its "
               "own stage-02 output, one tokenized folder per mixture source of the language spec, "
               "mixed in proportion to their sizes. Without dataset_weights (as in the report and in these "
               "files, rendered before any data exists) nanotron main's TokenizedBytes loader blends the "
               "folders equally, so the pretraining stage writes each folder's share of the tokens as "
               "dataset_weights into the config it submits (size_weights)."),
)

#: kept as the report has them, but worth knowing (shown beside the corrections)
OBSERVATIONS = (
    "The schedule decays linearly from step 750,000 to 800,000 and then stays at min_decay_lr "
    "(1e-7) for the remaining 1.2M of the 2M train_steps; the report's log line shows "
    "'iteration: 211364 / 1500000' and lr 0.0001, neither of which this config produces "
    "(it gives lr 0.003 at that step): the log comes from a differently configured run.",
    "The tokenization script (section 3) tokenizes with the local path "
    "'/hub/models--meta-llama--Llama-3.2-1B' while this config names 'meta-llama/Llama-3.2-1B': "
    "nanotron asserts that the tokenizer string recorded in each folder's .metadata equals "
    "tokenizer_name_or_path, so data tokenized that way is refused. The kit tokenizes with the "
    "hub name and pre-flight checks the metadata.",
    "The report's sbatch script sets GPUS_PER_NODE=4 with 8 nodes (32 ranks) for a config with "
    "dp=64 (and #SBATCH --gres=gpu:8): torchrun would start 32 ranks and nanotron would refuse "
    "the world size. The kit renders GPUs per node from the spec and pre-flights dp x tp x pp.",
)


def _short(value: Any, limit: int = 90) -> str:
    if value is None:
        return "null"
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    text = text.removesuffix("...").strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- the report's own config ----------------------------------------------------------------

_REPORT_BLOCK = re.compile(r"Nanotron Training Configuration.*?```yaml\n(.*?)```", re.S)


@dataclass
class ReportConfig:
    text: str                 # the YAML block as printed
    yaml_error: str | None    # why it does not parse as printed
    repaired_lines: list[int]  # 1-based lines un-indented to make it parse
    raw: dict                 # as printed, after the minimal YAML repair
    normalized: dict          # with top-level checkpoint keys moved under `checkpoints`
    moved: list[str]          # the keys moved


def extract_report_yaml(markdown: str) -> str:
    m = _REPORT_BLOCK.search(markdown)
    if not m:
        raise ZagreusError("no 'Nanotron Training Configuration' YAML block found in the report's markdown")
    return m.group(1)


def _repair(text: str) -> tuple[dict, str | None, list[int]]:
    """Parse, un-indenting lines that YAML refuses as 'mapping values are not allowed here'."""
    lines = text.splitlines()
    first_error, repaired = None, []
    for _ in range(20):
        try:
            data = yaml.safe_load("\n".join(lines))
            return data, first_error, repaired
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            if first_error is None:
                first_error = f"line {mark.line + 1}: {exc.problem}" if mark else str(exc)
            if mark is None or "mapping values are not allowed" not in str(getattr(exc, "problem", "")):
                raise ZagreusError(f"the report's nanotron config is not valid YAML ({first_error}) "
                                   "and cannot be repaired automatically") from None
            idx = mark.line
            prev = next(j for j in range(idx - 1, -1, -1) if lines[j].strip())
            indent = len(lines[prev]) - len(lines[prev].lstrip())
            lines[idx] = " " * indent + lines[idx].lstrip()
            repaired.append(idx + 1)
    raise ZagreusError("the report's nanotron config could not be repaired")


def report_config(markdown_path: str | Path | None = None) -> ReportConfig:
    """The report's section-4 config: as printed, repaired to parse, and normalised."""
    source = Path(markdown_path or paths.DEFAULT_REPORT_SOURCE)
    if not source.is_file():
        raise ZagreusError(f"the report's markdown is not at {source}; pass its path")
    text = extract_report_yaml(source.read_text(encoding="utf-8"))
    raw, error, repaired = _repair(text)
    normalized = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    moved = []
    ckpt_keys = set(schema.CHECKPOINTS)
    for key in list(normalized):
        if key in ckpt_keys and key not in schema.NANOTRON_SCHEMA:
            normalized.setdefault("checkpoints", {})[key] = normalized.pop(key)
            moved.append(key)
    return ReportConfig(text, error, repaired, raw, normalized, moved)


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": [1, {"c": 2}]}}`` -> ``{"a.b": [...]}``: lists of scalars stay leaves."""
    out: dict[str, Any] = {}
    if isinstance(node, dict):
        if not node and prefix:
            out[prefix] = {}
        for k, v in node.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(node, list) and any(isinstance(x, (dict, list)) for x in node):
        for i, v in enumerate(node):
            out.update(flatten(v, f"{prefix}[{i}]"))
    else:
        out[prefix] = node
    return out


def differences(report: dict, rendered: dict) -> list[dict]:
    """Leaves that differ between two configs: ``{key, report, rendered}``."""
    a, b = flatten(report), flatten(rendered)
    rows = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, "<absent>"), b.get(key, "<absent>")
        if va != vb:
            rows.append({"key": key, "report": va, "rendered": vb})
    return rows


def corrections_table(rendered: dict, report: ReportConfig | None = None) -> list[dict]:
    """Every correction and adaptation with the report's and the rendered value and the reason.

    With the report's config given, also checks that each difference is documented: an
    undocumented difference is returned with kind ``UNDOCUMENTED``.
    """
    documented = {c.key: c for c in CORRECTIONS + ADAPTATIONS}
    rows = []
    flat_r = flatten(rendered)
    flat_p = flatten(report.normalized) if report else {}
    raw_top = report.raw if report else {}
    for c in CORRECTIONS:
        if c.key == "*":
            rows.append(c.as_row(f"(does not parse: {report.yaml_error})" if report and report.yaml_error
                                 else "(does not parse)", "(parses)"))
        else:
            leaf = c.key.split(".", 1)[1]
            rows.append(c.as_row(f"top level: {leaf}: {_short(raw_top.get(leaf))}" if report else None,
                                 flat_r.get(c.key)))
    for c in ADAPTATIONS:
        rows.append(c.as_row(flat_p.get(c.key) if report else None, flat_r.get(c.key)))
    if report:
        for d in differences(report.normalized, rendered):
            if d["key"] not in documented:
                rows.append({"key": d["key"], "kind": "UNDOCUMENTED", "report": _short(d["report"]),
                             "rendered": _short(d["rendered"]), "reason": "not listed in CORRECTIONS/ADAPTATIONS"})
    return rows
