"""Paths in a shareable page: the machine's folders replaced by names a reader can place.

The stages record absolute paths (tokenizer folders, model paths, run folders) because they are
useful on the machine that ran them; a page that is sent to someone else shows them relative to
the run folder or the repository instead: ``<runs>/smoke/ita/04_conversion/hf/step-400`` becomes
``runs/smoke/ita/04_conversion/hf/step-400``, a file of the checkout ``configs/profiles/smoke.yaml``,
the Python environment ``$VENV/...``, the Hugging Face cache ``$HF_HOME/...``, the home folder
``~/...``, the temporary folder ``$TMPDIR/...``, a folder beside the checkout ``../shared/...``.
Embedded ``data:`` URIs are left untouched.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

from ..pipeline import paths

_DATA_URI = re.compile(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+")


def _forms(path: Path) -> set[str]:
    """A folder as written (absolute) and resolved (symlinks), without a trailing slash."""
    out = {str(Path(path).absolute()).rstrip("/")}
    try:
        out.add(str(Path(path).resolve()).rstrip("/"))
    except OSError:
        pass
    return {p for p in out if p and p != "/"}


def replacements(runs: Path | None = None, repo: Path | None = None) -> list[tuple[str, str]]:
    """``(machine folder, shown as)`` pairs, the longest folder first (so the most specific wins).

    ``runs``: the runs root (``runs/`` or ``$ZAGREUS_RUNS``), shown as ``runs``; ``repo``: the
    checkout, whose files are shown relative to it."""
    named = [(runs if runs is not None else paths.runs_root(), "runs"),
             (repo if repo is not None else paths.REPO_ROOT, ""),
             (Path(sys.prefix), "$VENV"),
             (Path(os.environ["HF_HOME"]) if os.environ.get("HF_HOME") else Path.home() / ".cache" / "huggingface",
              "$HF_HOME"),
             (Path(tempfile.gettempdir()), "$TMPDIR"),
             (Path.home(), "~"),
             ((repo if repo is not None else paths.REPO_ROOT).parent, "..")]  # beside the checkout: ../shared/...
    pairs = {}
    for folder, shown in named:
        for form in _forms(folder):
            pairs.setdefault(form, shown)
    return sorted(pairs.items(), key=lambda kv: -len(kv[0]))


def _pattern(pairs: list[tuple[str, str]]) -> re.Pattern:
    # a folder counts only as a whole path component: /work/repo matches /work/repo/x, not /work/repo2
    alternatives = "|".join(re.escape(folder) for folder, _ in pairs)
    return re.compile(rf"(?<![\w.-])({alternatives})(?:(/)|(?![\w.-]))")


def scrub(text: str, pairs: list[tuple[str, str]] | None = None) -> str:
    """``text`` (plain or HTML) with every machine folder of :func:`replacements` replaced;
    ``data:`` URIs are kept as they are."""
    pairs = replacements() if pairs is None else pairs
    if not pairs:
        return text
    pattern, shown = _pattern(pairs), dict(pairs)

    def one(match: re.Match) -> str:
        name, slash = shown[match.group(1)], match.group(2) or ""
        if name:
            return name + slash
        return "" if slash else "."  # the checkout: "<repo>/configs/x" -> "configs/x", "<repo>" -> "."

    out, last = [], 0
    for uri in _DATA_URI.finditer(text):
        out.append(pattern.sub(one, text[last:uri.start()]))
        out.append(uri.group(0))
        last = uri.end()
    out.append(pattern.sub(one, text[last:]))
    return "".join(out)
