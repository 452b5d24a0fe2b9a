"""Training-log forensics: nanotron's iteration lines and the local trainer's metrics JSONL, one table.

nanotron prints one line per iteration::

    12/21 01:39:51 [INFO|DP=0|TP=0|lrdn0007]: iteration: 211364 / 1500000 | consumed_tokens: 480B |
    time_per_iteration_ms: 8.79K | tokens_per_sec: 182K | ... | lm_loss: 2.04 | lr: 0.0001 | ...

Formats read here (see ``shared/reference/nanotron-formats.md``):

- recent main: ``%m/%d %H:%M:%S`` dates, a rank field only for dimensions > 1, the prefix
  possibly wrapped in ANSI colour codes, human-formatted numbers (3 significant digits with
  K/M/B/T suffixes; older versions used G for billions), ``global_batch_size`` in tokens;
- v0.5: ``%m/%d/%Y`` dates, ``elapsed_time_per_iteration_ms``, ``consumed_samples``,
  ``hardware_tflops_per_gpu``, numbers as plain or scientific (``1.820000E+05``), global batch in
  samples (converted to tokens when the sequence length is given).

Every parsed number is a float; the ``format`` column says which dialect a row came from.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable

import pandas as pd

from ..pipeline.errors import ZagreusError

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_PREFIX = re.compile(
    r"^\s*(?P<date>\d{1,2}/\d{1,2}(?:/(?P<year>\d{4}))?)\s+(?P<time>\d{1,2}:\d{2}:\d{2})\s*"
    r"\[(?P<tags>[^\]]*)\]\s*:\s*(?P<msg>.*)$")
ITERATION = re.compile(r"iteration:\s*(?P<step>\d+)\s*/\s*(?P<total>\d+)")
SUFFIX = {"": 1.0, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
_NUMBER = re.compile(r"^(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(?P<suffix>[KMBGTPE]?)$")
_ETA = re.compile(r"^(?:(?P<days>\d+)\s+days?,\s*)?(?P<h>\d+):(?P<m>\d{2}):(?P<s>\d{2}(?:\.\d+)?)$")

#: nanotron field name -> column of the table
FIELDS = {
    "consumed_tokens": "consumed_tokens",
    "consumed_samples": "consumed_samples",
    "time_per_iteration_ms": "time_per_iteration_ms",
    "elapsed_time_per_iteration_ms": "time_per_iteration_ms",
    "tokens_per_sec": "tokens_per_sec",
    "tokens_per_sec_per_gpu": "tokens_per_sec_per_gpu",
    "global_batch_size": "global_batch_size",
    "grad_norm": "grad_norm",
    "lm_loss": "loss",
    "z_loss": "z_loss",
    "lr": "lr",
    "model_tflops_per_gpu": "model_tflops_per_gpu",
    "hardware_tflops_per_gpu": "hardware_tflops_per_gpu",
}

COLUMNS = ["source", "format", "timestamp", "step", "train_steps", "consumed_tokens", "loss", "lr",
           "grad_norm", "tokens_per_sec", "tokens_per_sec_per_gpu", "time_per_iteration_ms",
           "global_batch_tokens", "model_tflops_per_gpu", "hardware_tflops_per_gpu", "eta_seconds"]


def parse_number(text: str) -> float:
    """``"8.79K"`` -> 8790.0, ``"480B"`` -> 4.8e11, ``"1.820000E+05"`` -> 182000.0."""
    t = text.strip().replace(",", "")
    m = _NUMBER.match(t)
    if not m:
        raise ValueError(f"not a nanotron number: {text!r}")
    return float(m.group("num")) * SUFFIX[m.group("suffix")]


def parse_eta(text: str) -> float | None:
    """``"131 days, 1:45:39"`` -> seconds."""
    m = _ETA.match(text.strip())
    if not m:
        return None
    return (int(m.group("days") or 0) * 86400 + int(m.group("h")) * 3600 + int(m.group("m")) * 60
            + float(m.group("s")))


def number(text: str) -> float | None:
    """:func:`parse_number`, or ``None`` for text that is not a nanotron number (``"fast"``)."""
    try:
        return parse_number(text)
    except ValueError:
        return None


def _message(line: str) -> tuple[str, re.Match | None] | None:
    """(message, prefix match) of an iteration line, ANSI colours stripped; ``None`` for other lines."""
    clean = ANSI.sub("", line).strip()
    if "iteration:" not in clean:
        return None
    m = _PREFIX.match(clean)
    return (m.group("msg") if m else clean[clean.index("iteration:"):]), m  # else a bare message


def _fields(msg: str) -> dict[str, str]:
    out = {}
    for part in msg.split("|"):
        if ":" in part:
            key, _, value = part.partition(":")
            out[key.strip()] = value.strip()
    return out


def fields(line: str) -> dict[str, str] | None:
    """The ``key: value`` fields of an iteration line as written (``iteration`` first, values as
    printed: ``"480B"``); ``None`` for any other line."""
    got = _message(line)
    return None if got is None else _fields(got[0])


def parse_line(line: str, sequence_length: int | None = None) -> dict | None:
    """One nanotron iteration line -> a row (``None`` for any other line)."""
    got = _message(line)
    if got is None:
        return None
    msg, m = got
    if m:
        year = m.group("year")
        tags = [t for t in m.group("tags").split("|") if t]
        stamp = f"{m.group('date')} {m.group('time')}"
    else:
        year, tags, stamp = None, [], None
    it = ITERATION.search(msg)
    if not it:
        return None
    row: dict = {"timestamp": stamp, "step": float(it.group("step")), "train_steps": float(it.group("total")),
                 "level": tags[0] if tags else None}
    ranks = {k: int(v) for k, v in (t.split("=", 1) for t in tags[1:] if "=" in t and t.split("=", 1)[1].isdigit())}
    row.update({f"rank_{k.lower()}": v for k, v in ranks.items()})
    hosts = [t for t in tags[1:] if "=" not in t]
    row["host"] = hosts[-1] if hosts else None
    for key, value in _fields(msg.split("|", 1)[1] if "|" in msg else "").items():
        if key == "eta":
            row["eta_seconds"] = parse_eta(value)
            continue
        parsed = number(value)
        if parsed is None:
            row[key] = value
        else:
            row[FIELDS.get(key, key)] = parsed
    v05 = year is not None or "elapsed_time_per_iteration_ms" in msg or "consumed_samples" in msg
    row["format"] = "nanotron v0.5" if v05 else "nanotron"
    gbs = row.pop("global_batch_size", None)
    if gbs is not None:
        if v05:
            row["global_batch_samples"] = gbs
            row["global_batch_tokens"] = gbs * sequence_length if sequence_length else None
        else:
            row["global_batch_tokens"] = gbs
    if "consumed_tokens" not in row and row.get("consumed_samples") is not None and sequence_length:
        row["consumed_tokens"] = row["consumed_samples"] * sequence_length
    return row


def _lines(source) -> Iterable[str]:
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source and Path(source).is_file()):
        with open(source, encoding="utf-8", errors="replace") as fh:
            yield from fh
    elif isinstance(source, str):
        yield from source.splitlines()
    else:
        yield from source


def parse_nanotron_log(source, sequence_length: int | None = None, name: str = "nanotron") -> pd.DataFrame:
    """All iteration lines of a log (a path, the text, or an iterable of lines)."""
    rows = [r for r in (parse_line(line, sequence_length) for line in _lines(source)) if r]
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    df.insert(0, "source", name)
    return _ordered(df)


def read_local_metrics(path: str | Path, name: str = "local") -> pd.DataFrame:
    """The local trainer's ``metrics.jsonl`` (one JSON object per optimizer step)."""
    path = Path(path)
    if not path.is_file():
        raise ZagreusError(f"no metrics log at {path}; run the pretraining stage first")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            raise ZagreusError(f"{path}:{n} is not valid JSON; the log is damaged (rerun the stage)") from None
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    df = df.rename(columns={"tokens_seen": "consumed_tokens", "step_time_s": "time_per_iteration_s"})
    if "time_per_iteration_s" in df:
        df["time_per_iteration_ms"] = df["time_per_iteration_s"] * 1000
    if "global_batch_tokens" not in df and "consumed_tokens" in df:
        df["global_batch_tokens"] = df["consumed_tokens"] / df["step"]
    df.insert(0, "source", name)
    df["format"] = "local jsonl"
    return _ordered(df)


def _ordered(df: pd.DataFrame) -> pd.DataFrame:
    for col in COLUMNS:
        if col not in df:
            df[col] = None
    rest = [c for c in df.columns if c not in COLUMNS]
    out = df[COLUMNS + rest]
    numeric = [c for c in COLUMNS if c not in ("source", "format", "timestamp")]
    out = out.astype({c: "float64" for c in numeric})
    return out.reset_index(drop=True)


def metrics_table(*frames: pd.DataFrame) -> pd.DataFrame:
    """One table from several parsed logs (nanotron and local)."""
    frames = [f for f in frames if f is not None and len(f)]
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    return pd.concat(frames, ignore_index=True, sort=False)


def report_log_lines(markdown: str) -> list[str]:
    """The iteration lines printed in the report's markdown."""
    return [line for line in markdown.splitlines() if "iteration:" in line and "|" in line]
