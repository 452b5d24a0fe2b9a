"""An SFT run prepared (inputs checked, config rendered and validated) and run with axolotl's own CLI.

``local`` runs axolotl's CLI entry points (``axolotl.cli.preprocess`` then ``axolotl.cli.train``) as
subprocesses, offline and with telemetry off, logs in ``<out>/logs``. The process that runs them is
``python -m zagreus_utils.stages.sft`` (this package's ``__main__``), whose imports stay light.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ...pipeline import paths, progress, stages
from ...pipeline.errors import ZagreusError
from .config import is_cpu, load_config, render, resolve_base_model, to_yaml
from .inputs import DatasetStats, check_base_model, check_dataset, check_template
from .validate import Validation, apply_offline_env, validate

@dataclass
class SftPlan:
    """A checked, validated SFT run, ready to launch."""

    profile: str
    language: str
    run_dir: Path
    out_dir: Path
    config: dict
    config_path: Path
    base_model: Path
    dataset: DatasetStats
    validation: Validation | None
    cpu: bool
    rendered_example: str = ""


def prepare(spec, run_dir: str | Path, out_dir: str | Path | None = None, *, max_steps: int | None = None,
            chat_template: str | None = None, validate_config: bool = True) -> SftPlan:
    """Check the inputs, render and validate the config, write ``<out>/axolotl.yaml``."""
    run = Path(run_dir).resolve()
    out = Path(out_dir).resolve() if out_dir else run / stages.folder_name("sft")
    cfg = render(spec, run_dir=run, out_dir=out, max_steps=max_steps, chat_template=chat_template,
                 base_model=resolve_base_model(spec, run))
    ds = cfg["datasets"][0]
    stats = check_dataset(ds["path"], ds.get("field_messages", "messages"))
    base = Path(cfg["base_model"])
    tokenizer = check_base_model(base)
    eos = (cfg.get("special_tokens") or {}).get("eos_token")
    example = check_template(cfg["chat_template_jinja"], tokenizer, stats.first, eos)
    validation = validate(cfg, spec) if validate_config else None
    out.mkdir(parents=True, exist_ok=True)
    path = out / "axolotl.yaml"
    path.write_text(to_yaml(cfg, f"# axolotl config of {spec.profile.name}/{spec.language.code}, rendered by "
                               "zagreus_utils.stages.sft\n"), encoding="utf-8")
    return SftPlan(spec.profile.name, spec.language.code, run, out, cfg, path, base, stats, validation,
                is_cpu(spec), example)


def axolotl_argv(step: str, config: str | Path, entry: str = "kit") -> list[str]:
    """The command of one axolotl CLI step (``preprocess`` or ``train``).

    ``entry="axolotl"``: ``python -m axolotl.cli.<step> cfg`` exactly. ``"kit"`` (default): the same
    ``axolotl.cli.<step>.do_cli`` called from ``python -m zagreus_utils.stages.sft``, whose light main
    module keeps the process pool that ``datasets.save_to_disk`` spawns from re-importing all of
    axolotl (about 20 s per preprocess on 2 cores).
    """
    if step not in ("preprocess", "train"):
        raise ZagreusError(f"unknown axolotl step {step!r}: preprocess or train")
    if entry == "axolotl":
        return [sys.executable, "-m", f"axolotl.cli.{step}", str(config)]
    if entry == "kit":
        return [sys.executable, "-m", __package__, step, str(config)]
    raise ZagreusError(f"unknown entry {entry!r}: 'kit' or 'axolotl'")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    text = text.replace("\r", "\n")
    kept = [ln for ln in text.splitlines() if ln.strip()]
    return "\n".join(kept[-lines:])


def run_step(step: str, config: str | Path, log_path: str | Path, *, entry: str = "kit",
             timeout_s: float | None = None, env: dict | None = None) -> float:
    """Run one axolotl CLI step offline; raise with the log's tail when it fails. Returns seconds."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    argv = axolotl_argv(step, config, entry)
    environ = apply_offline_env(dict(os.environ if env is None else env))
    environ["PYTHONPATH"] = os.pathsep.join([str(paths.REPO_ROOT), environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    t0 = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        log.write(f"$ {shlex.join(argv)}\n")
        log.flush()
        with subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=environ,
                              cwd=str(Path(config).parent)) as proc:
            returncode = _follow(proc, step, log_path, t0, timeout_s)
    seconds = time.perf_counter() - t0
    if returncode is None:
        raise ZagreusError(f"axolotl {step} did not finish within {timeout_s:.0f} s; log: {log_path}\n"
                           f"--- last lines ---\n{_tail(log_path)}")
    if returncode:
        raise ZagreusError(f"axolotl {step} failed (exit {returncode}); log: {log_path}\n"
                           f"--- last lines ---\n{_tail(log_path)}")
    return seconds


def _follow(proc: subprocess.Popen, step: str, log_path: Path, t0: float, timeout_s: float | None,
            poll: float = 1.0) -> int | None:
    """Wait for axolotl, showing its training step in ``zagreus run``'s progress line; kill it after
    ``timeout_s`` (returns None then)."""
    while True:
        try:
            return proc.wait(timeout=poll)
        except subprocess.TimeoutExpired:
            pass
        if timeout_s is not None and time.perf_counter() - t0 > timeout_s:
            proc.kill()
            proc.wait()
            return None
        progress.report("sft", log_progress(step, log_path))


def log_progress(step: str, log_path: Path, tail_bytes: int = 8192) -> str:
    """``sft train step 12/40 · loss 2.345`` from the end of axolotl's log: the Trainer's tqdm bar
    (``12/40 [00:05<00:15, ...]``) and its last logged loss; ``sft preprocess`` before that."""
    try:
        with open(log_path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, 2) - tail_bytes))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        text = ""
    parts = [f"sft {step}"]
    bars = re.findall(r"(\d+)/(\d+) \[(?:[\d:]+)<([\d:?]+)", text)
    if step == "train" and bars:  # the training bar is the longest (an evaluation's or a save's is shorter)
        longest = max(int(total) for _, total, _ in bars)
        done, total, left = [b for b in bars if int(b[1]) == longest][-1]
        parts[0] += f" step {done}/{total}"
        losses = re.findall(r"'loss': '?([0-9.]+(?:e-?\d+)?)", text)
        if losses:
            parts.append(f"loss {float(losses[-1]):.3f}")
        if left and "?" not in left:
            parts.append(f"{left} left")
    return progress.SEP.join(parts)


@dataclass
class SftRun:
    """A finished SFT run (either launcher): the model folder, times and logs."""

    model_dir: Path
    seconds: dict[str, float]
    logs: dict[str, Path]
    chat_template: str


def run_local(plan: SftPlan | str | Path, out_dir: str | Path | None = None, *, entry: str = "kit",
              timeout_s: float | None = None) -> SftRun:
    """axolotl preprocess, then train, on this machine; checks that the output carries the template."""
    config_path = Path(plan.config_path if isinstance(plan, SftPlan) else plan)
    out = Path(out_dir) if out_dir else (plan.out_dir if isinstance(plan, SftPlan) else config_path.parent)
    cfg = load_config(config_path)
    model_dir = Path(cfg["output_dir"])
    _clear_previous_model(model_dir, out)
    logs = {step: out / "logs" / f"{step}.log" for step in ("preprocess", "train")}
    seconds = {step: run_step(step, config_path, logs[step], entry=entry, timeout_s=timeout_s)
               for step in ("preprocess", "train")}
    template = check_output(model_dir)
    return SftRun(model_dir, seconds, logs, template)


def _clear_previous_model(model_dir: Path, out: str | Path) -> None:
    if model_dir.is_dir() and Path(out).resolve() in model_dir.resolve().parents:
        shutil.rmtree(model_dir)  # a previous run's checkpoints would pass for this run's loss history


def check_output(model_dir: str | Path) -> str:
    """The trained folder loads and its tokenizer carries a chat template; returns the template."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise ZagreusError(f"axolotl finished but wrote no model to {model_dir} (no config.json); see the train log")
    apply_offline_env()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    if not tok.chat_template:
        raise ZagreusError(f"the SFT model's tokenizer in {model_dir} has no chat template "
                           "(chat_template.jinja missing); generation could not use the chat format")
    return tok.chat_template

