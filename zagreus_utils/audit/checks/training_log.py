"""Checks of the nanotron step lines printed in the report against its configs and themselves."""

from __future__ import annotations

import math

from ..markdown import Document
from ...nanotron import logs
from ...nanotron.schedule import NanotronSchedule, lr_at
from ...pipeline.errors import ZagreusError
from ...results.formatting import duration, human
from .common import Finding, as_float, close, finding, get, nanotron_config_for

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
            f = logs.fields(text)
            m = logs.ITERATION.search(text) if f is not None else None
            if not m:
                continue
            line = block.line + 1 + i
            step, total = int(m.group("step")), int(m.group("total"))
            num = {k: logs.number(v) for k, v in f.items()}
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
                try:
                    want = lr_at(step, NanotronSchedule.from_section(sched, train_steps))
                except (TypeError, ValueError, ZagreusError):  # a bad value: check_config_settings names it
                    want = None
                if want is not None and not close(lr, want, 0.02):
                    note("lr", line, f"lr: {f['lr']} at iteration {step}",
                         f"the configured schedule (peak {sched['learning_rate']}, warmup"
                         f" {sched.get('lr_warmup_steps')}, decay from step {sched.get('lr_decay_starting_step')})"
                         f" gives {want:.3g}", "error")
            ms = num.get("time_per_iteration_ms") or num.get("elapsed_time_per_iteration_ms")
            if ms and tps and logged_gbs and not close(ms / 1000, logged_gbs / tps, 0.03):
                note("time", line, f"time_per_iteration_ms: {f.get('time_per_iteration_ms')}",
                     f"global_batch_size / tokens_per_sec = {logged_gbs / tps:.2f} s", "warning")
            eta = logs.parse_eta(f.get("eta", ""))
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
