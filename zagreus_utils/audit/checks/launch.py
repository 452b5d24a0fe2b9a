"""Checks of the report's launch scripts (sbatch headers, torchrun/srun arguments) against its configs."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from ..markdown import CodeBlock, Document
from .common import Finding, finding, nanotron_config_for

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
