"""Checks of the report's prose and code: repeated sections, tokenizer names, Python syntax."""

from __future__ import annotations

import ast
import re

from ..markdown import Document
from .common import Finding, YamlBlock, finding, get, headings, yaml_blocks

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
    for block in (b for b in doc.code_blocks if b.lang in ("python", "py")):
        try:
            ast.parse(block.text)
        except SyntaxError as exc:
            line = block.line + (exc.lineno or 1)
            text = doc.lines[line - 1].strip() if line <= len(doc.lines) else ""
            msg = re.sub(r"\s*\(detected at line \d+\)", "", exc.msg)
            out.append(finding(doc, "python_syntax", line, f"`{text}`", f"Python syntax error: {msg}", "error"))
    return out
