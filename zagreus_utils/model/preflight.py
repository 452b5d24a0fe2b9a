"""Pre-flight: everything that can be checked before a pretraining job is submitted or started.

Each check gives a row (name, ok, detail, fix); :func:`run` raises one :class:`ZagreusError`
listing every failure with its fix, so that a typo costs seconds, not a queue wait:

- parallelism: nodes x GPUs per node (hardware and the Slurm request) = dp x tp x pp (x ep);
- the config is one nanotron (main) accepts (strict keys, cross-field assertions);
- data: every dataset folder exists and holds datatrove token files whose ``.metadata``
  tokenizer string equals the config's tokenizer and whose token size fits the vocabulary; the
  tokenizer's vocabulary equals the model's ``vocab_size`` (nanotron asserts both); each ``.ds``
  holds exactly the tokens its ``.ds.index`` says (a truncated or padded file is refused);
- data volume: with nanotron (a GPU profile) each folder holds its share of ``train_steps`` x
  global batch samples (nanotron main does not repeat a folder; the local trainer does);
- schedule: warmup, decay start and decay end fit in ``train_steps``; min lr <= lr;
- sequence length <= ``max_position_embeddings``;
- a resume path, when set, exists;
- every data stage starts within the run; a start model (``training.init_from``) matches the
  spec and the token folders (:mod:`zagreus_utils.model.start_checks`);
- the estimated memory per rank fits the declared GPU (host RAM for a CPU profile).
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..nanotron import config as ncfg
from ..pipeline import paths
from . import planning, start_checks
from .arch import LlamaArch
from .checks import Check
from .param_names import NANOTRON_EXCLUDE_FAULT
from ..pipeline.errors import ZagreusError

GIB = 2**30
RETOKENIZE = ("rerun the tokenization stage for this profile and language "
              "(zagreus run --profile <profile> --languages <lang> --stages tokenization --force)")


def _resolve(path: str | Path, base: Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else base / p


# --- individual checks ----------------------------------------------------------------------

def check_parallelism(spec, config: dict, launcher: str = "local") -> Check:
    par = config.get("parallelism", {})
    dp, tp, pp = par.get("dp", 1), par.get("tp", 1), par.get("pp", 1)
    ep = par.get("expert_parallel_size", 1) or 1
    world = dp * tp * pp * (ep if ep > 1 else 1)
    hw = spec.profile.hardware
    slurm = spec.profile.slurm.pretraining
    s_nodes = slurm.nodes or hw.nodes
    s_gpus = slurm.gpus_per_node if slurm.gpus_per_node is not None else hw.gpus_per_node
    cpu_procs = slurm.procs_per_node or 1
    # a CPU profile runs one process per node locally, slurm.pretraining.procs_per_node under Slurm
    procs_per_node = hw.gpus_per_node or (cpu_procs if launcher == "slurm" else 1)
    declared = hw.nodes * procs_per_node
    requested = s_nodes * (s_gpus or cpu_procs)
    what = f"dp {dp} x tp {tp} x pp {pp}" + (f" x ep {ep}" if ep > 1 else "") + f" = {world}"
    problems = []
    if declared != world:
        problems.append(f"hardware: {hw.nodes} nodes x {procs_per_node} {'GPUs' if hw.gpus_per_node else 'processes'} "
                        f"per node = {declared} ranks, but {what}")
    if requested != world and (hw.gpus_per_node or launcher == "slurm"):  # the request matters where it is used
        problems.append(f"slurm.pretraining requests {s_nodes} nodes x {s_gpus or cpu_procs} per node = {requested} "
                        f"ranks, but {what}")
    if problems:
        fix = (f"make nodes x gpus_per_node equal dp x tp x pp in configs/profiles/{spec.profile.name}.yaml "
               f"(e.g. parallelism.dp: {declared // max(tp * pp, 1)} for {declared} GPUs, or hardware/slurm "
               f"nodes x gpus_per_node = {world})")
        return Check("parallelism (world size)", False, "; ".join(problems), fix)
    return Check("parallelism (world size)", True,
                 f"{hw.nodes} node(s) x {procs_per_node} = {declared} = {what}")


def check_config(config: dict) -> Check:
    problems = ncfg.validate(config)
    if problems:
        return Check("nanotron config (strict schema)", False, "; ".join(problems),
                     "fix the keys/values named (unknown keys are errors in nanotron)")
    return Check("nanotron config (strict schema)", True, "all keys known to nanotron main; cross-field checks pass")


def read_metadata(folder: Path) -> list[tuple[Path, str, int]]:
    """``(file, tokenizer, token_size)`` for each ``*.metadata`` of a token folder."""
    found = []
    for meta in sorted(Path(folder).glob("*.metadata")):
        first = meta.read_text(encoding="utf-8", errors="replace").splitlines()[:1]
        line = first[0].strip() if first else ""
        if "|" not in line:
            found.append((meta, line, -1))
            continue
        tok, _, size = line.rpartition("|")
        try:
            found.append((meta, tok, int(size)))
        except ValueError:
            found.append((meta, tok, -1))
    return found


def token_file_problems(folder: Path, token_size: int | None = None) -> list[str]:
    """One line per ``*.ds`` of a token folder whose size is not what its ``.ds.index`` says
    (the last document end, in tokens, x the token size of its ``.metadata``)."""
    import struct

    sizes = {meta.name[:-len(".metadata")]: size for meta, _, size in read_metadata(folder)}
    problems = []
    for ds in sorted(Path(folder).glob("*.ds")):
        index = ds.with_name(ds.name + ".index")
        if not index.is_file():
            continue  # datatrove reads a .ds without an index (positions from the tokens): nothing to compare
        size = sizes.get(ds.name, token_size) or token_size
        n_index = index.stat().st_size
        if n_index % 8:
            problems.append(f"{index} is {n_index} bytes, not a whole number of 8-byte document ends")
            continue
        with open(index, "rb") as fh:
            if n_index:
                fh.seek(-8, os.SEEK_END)
            tokens = struct.unpack("<Q", fh.read(8))[0] if n_index else 0
        have = ds.stat().st_size
        if size and size > 0 and have != tokens * size:
            problems.append(f"{ds} holds {have:,} bytes but its index {index.name} says {tokens:,} tokens x "
                            f"{size} bytes = {tokens * size:,}: the file is truncated or corrupt")
    return problems


def _summary_for(folders: list[Path]) -> dict | None:
    for parent in {f.parent for f in folders}:
        path = parent / "summary.json"
        if path.is_file():
            try:
                return json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                return None
    return None


def _find(d: Any, *keys: str) -> Any:
    """First value under any of ``keys``, at the top level or one mapping down."""
    if not isinstance(d, dict):
        return None
    for k in keys:
        if k in d and not isinstance(d[k], dict):
            return d[k]
    for v in d.values():
        if isinstance(v, dict):
            for k in keys:
                if k in v and not isinstance(v[k], dict):
                    return v[k]
    return None


def tokenizer_vocab_size(tokenizer: str, summary: dict | None = None) -> tuple[int | None, str]:
    """The tokenizer's vocabulary (added tokens included, as nanotron counts it) and where it came from:
    the tokenizer itself when it is a local folder or file, else stage 02's summary.json, else the
    local Hugging Face cache."""
    p = Path(tokenizer) if tokenizer else None
    tok_file = None
    if p is not None and p.is_dir() and (p / "tokenizer.json").is_file():
        tok_file = p / "tokenizer.json"
    elif p is not None and p.is_file() and p.suffix == ".json":
        tok_file = p
    if tok_file is not None:
        try:
            from tokenizers import Tokenizer

            return Tokenizer.from_file(str(tok_file)).get_vocab_size(with_added_tokens=True), str(tok_file)
        except Exception:
            pass
    vocab = _find(summary, "vocab_size")
    if vocab:
        return int(vocab), "stage-02 summary.json"
    if tokenizer and tokenizer.count("/") == 1 and not tokenizer.startswith(("/", ".")):
        try:
            from transformers import AutoTokenizer

            return len(AutoTokenizer.from_pretrained(tokenizer, local_files_only=True).get_vocab()), \
                "local Hugging Face cache"
        except Exception:
            pass
    return None, ""


def check_data(config: dict, base: Path = paths.REPO_ROOT) -> list[Check]:
    checks: list[Check] = []
    tok_cfg = (config.get("tokenizer") or {}).get("tokenizer_name_or_path")
    vocab = ((config.get("model") or {}).get("model_config") or {}).get("vocab_size")
    all_folders: list[Path] = []
    for i, stage in enumerate(config.get("data_stages") or []):
        ds = ((stage or {}).get("data") or {}).get("dataset") or {}
        folders = ds.get("dataset_folder") or []
        folders = [folders] if isinstance(folders, str) else folders
        missing, empty, mism, sizes, corrupt = [], [], [], set(), []
        for f in folders:
            folder = _resolve(f, base)
            all_folders.append(folder)
            if not folder.is_dir():
                missing.append(str(folder))
                continue
            if not glob.glob(str(folder / "*.ds")):
                empty.append(str(folder))
                continue
            metas = read_metadata(folder)
            if not metas:
                empty.append(f"{folder} (no .metadata)")
            for meta, tok, size in metas:
                sizes.add(size)
                if tok != tok_cfg:
                    mism.append(f"{meta.name} in {folder.name}: {tok!r}")
            corrupt += token_file_problems(folder)
        name = f"data stage {stage.get('name', i)!r}: folders"
        if missing or empty:
            detail = "; ".join(([f"missing: {', '.join(missing)}"] if missing else [])
                               + ([f"no datatrove token files (*.ds + .metadata): {', '.join(empty)}"] if empty else []))
            checks.append(Check(name, False, detail,
                                "run the tokenization stage for this profile and language "
                                "(zagreus run --profile <profile> --languages <lang> --stages tokenization) "
                                "or fix data_stages[].data.dataset.dataset_folder"))
        else:
            checks.append(Check(name, True, f"{len(folders)} folder(s) with token files"))
        if corrupt:
            checks.append(Check("token files (.ds vs .ds.index)", False, "; ".join(corrupt),
                                RETOKENIZE))
        elif folders and not missing and not empty:
            checks.append(Check("token files (.ds vs .ds.index)", True,
                                "every .ds holds the tokens its .ds.index counts"))
        if mism:
            checks.append(Check("tokenizer string (.metadata vs config)", False,
                                f"config tokenizer_name_or_path is {tok_cfg!r} but " + "; ".join(mism[:6])
                                + (f" (+{len(mism) - 6} more)" if len(mism) > 6 else ""),
                                "nanotron asserts they are equal: re-tokenize with the config's tokenizer string "
                                "(stage 02 with the same name_or_path) or set tokenizer.tokenizer_name_or_path "
                                "to the string recorded in the metadata"))
        elif folders and not missing and not empty:
            checks.append(Check("tokenizer string (.metadata vs config)", True, f"every .metadata says {tok_cfg!r}"))
        if sizes and vocab:
            need = 4 if vocab > 65536 else 2
            bad = sorted(s for s in sizes if s not in (need, 4))
            if bad or len(sizes) > 1:
                checks.append(Check("token size (.metadata vs vocab)", False,
                                    f"token sizes {sorted(sizes)} bytes for vocab_size {vocab} (needs {need})",
                                    "re-tokenize: token ids of a vocabulary over 65,536 need 4-byte tokens, and "
                                    "all folders of a stage must use the same size"))
            else:
                checks.append(Check("token size (.metadata vs vocab)", True, f"{sizes.pop()} bytes per token"))
    if not all_folders:
        checks.append(Check("data stages", False, "the config has no data_stages with dataset folders",
                            "render the config with the language's mixture (zagreus_utils.nanotron.config.render)"))
        return checks
    summary = _summary_for(all_folders)
    tok_vocab, where = tokenizer_vocab_size(tok_cfg or "", summary)
    if tok_vocab is None:
        checks.append(Check("vocabulary (tokenizer vs model)", None,
                            f"cannot load {tok_cfg!r} offline to count its vocabulary",
                            "pre-fill the Hugging Face cache (HF_HOME) or keep stage 02's summary.json"))
    elif vocab != tok_vocab:
        checks.append(Check("vocabulary (tokenizer vs model)", False,
                            f"model vocab_size {vocab} but the tokenizer has {tok_vocab} tokens ({where})",
                            f"set tokenizer.vocab_size: {tok_vocab} in the profile (or re-tokenize with a "
                            f"{vocab}-token tokenizer); nanotron asserts they are equal"))
    else:
        checks.append(Check("vocabulary (tokenizer vs model)", True, f"{vocab} tokens ({where})"))
    return checks


def check_data_volume(config: dict, base: Path = paths.REPO_ROOT, repeats: bool = False) -> Check:
    """Each folder holds the samples its share of its stage's steps x global batch needs.

    nanotron main's TokenizedBytes loader reads each folder once, in order, blended by
    ``dataset_weights`` (equally without them), and fails with IndexError past a folder's last
    ``sequence_length + 1`` window; it does not start the folder again. A data stage runs from its
    ``start_training_step`` to the next stage's (the last to ``train_steps``). The local trainer
    repeats folders (``repeats``): there the check only reports the epochs.
    """
    name = "data volume (samples per folder)"
    stages = config.get("data_stages") or []
    tokens = config.get("tokens") or {}
    par = config.get("parallelism") or {}
    try:
        seq = int(tokens["sequence_length"])
        steps = int(tokens["train_steps"])
        batch = int(tokens["micro_batch_size"]) * int(tokens["batch_accumulation_per_replica"]) * int(par.get("dp") or 1)
        starts = [int(s.get("start_training_step") or 1) for s in stages] + [steps + 1]
        datasets = [s["data"]["dataset"] for s in stages]
        if not datasets:
            raise KeyError("data_stages")
    except (KeyError, IndexError, TypeError, ValueError):
        return Check(name, None, "the config has no tokens/data stage to count against")
    short, total_needed, total_have = [], 0, 0
    for k, ds in enumerate(datasets):
        needed = max(starts[k + 1] - starts[k], 0) * batch
        folders = ds["dataset_folder"]
        folders = [folders] if isinstance(folders, str) else list(folders)
        sizes = []
        for f in folders:
            folder = _resolve(f, base)
            metas = read_metadata(folder) if folder.is_dir() else []
            token_size = next((size for _, _, size in metas if size > 0), 0)
            if not token_size:
                return Check(name, None, f"{folder}: no token files to count (see the data checks)")
            tokens_in = sum(p.stat().st_size for p in folder.glob("*.ds")) // token_size
            sizes.append(tokens_in // (seq + 1))
        weights = ds.get("dataset_weights") or [1.0] * len(folders)
        total = float(sum(weights))
        where = f"stage {stages[k].get('name')!r}: " if len(datasets) > 1 else ""
        for f, have, w in zip(folders, sizes, weights):
            need = int(needed * w / total) + 1  # the blend keeps each folder within one sample of its share
            if needed and need > have:
                short.append(f"{where}{Path(f).name}: {have:,} samples of {seq + 1} tokens, its share needs {need:,}")
        total_needed += needed
        total_have += sum(sizes)
    epochs = total_needed / max(total_have, 1)
    if short and not repeats:
        return Check(name, False, f"train_steps x global batch = {total_needed:,} samples; " + "; ".join(short)
                     + " (nanotron main reads each folder once and stops with IndexError at its end)",
                     "tokenize more data for those sources, lower training.train_steps, or set "
                     "dataset_weights that match the folders' sizes")
    return Check(name, True, f"{total_needed:,} samples from {total_have:,} ({epochs:.2f} epochs"
                 + (", the local trainer repeats folders)" if short else ")"))


def check_schedule(config: dict) -> Check:
    t = (config.get("tokens") or {}).get("train_steps")
    s = ((config.get("optimizer") or {}).get("learning_rate_scheduler")) or {}
    lr, warm = s.get("learning_rate"), s.get("lr_warmup_steps") or 0
    start = s.get("lr_decay_starting_step")
    start = warm if start is None else start
    steps = s.get("lr_decay_steps")
    steps = (t - warm) if steps is None and t is not None else steps
    problems = []
    if not isinstance(t, int) or t <= 0:
        problems.append(f"train_steps must be a positive integer (got {t!r})")
    else:
        if warm < 0 or warm > t:
            problems.append(f"lr_warmup_steps {warm} must be within 0..train_steps ({t})")
        if start < warm:
            problems.append(f"lr_decay_starting_step {start} is before the end of warmup ({warm})")
        if start > t:
            problems.append(f"lr_decay_starting_step {start} is after train_steps ({t})")
        if steps is None or steps < 0:
            problems.append(f"lr_decay_steps must be >= 0 (got {steps!r})")
        elif start + steps > t:
            problems.append(f"the decay ends at step {start + steps} (lr_decay_starting_step {start} + "
                            f"lr_decay_steps {steps}), after train_steps ({t}): the lr never reaches min_decay_lr")
    if not isinstance(lr, (int, float)) or lr <= 0:
        problems.append(f"learning_rate must be > 0 (got {lr!r})")
    elif s.get("min_decay_lr") is not None and s["min_decay_lr"] > lr:
        problems.append(f"min_decay_lr {s['min_decay_lr']} is above learning_rate {lr}")
    ckpt = (config.get("checkpoints") or {}).get("checkpoint_interval")
    if isinstance(t, int) and isinstance(ckpt, int) and ckpt > t:
        problems.append(f"checkpoint_interval {ckpt} > train_steps {t}: no checkpoint would be written")
    if problems:
        return Check("schedule (warmup / decay / steps)", False, "; ".join(problems),
                     "fix training.lr_warmup_steps / lr_decay_starting_step / lr_decay_steps / train_steps "
                     "in the profile so that warmup <= decay start and decay start + decay steps <= train_steps")
    return Check("schedule (warmup / decay / steps)", True,
                 f"warmup 0..{warm}, constant to {start}, {s.get('lr_decay_style') or 'linear'} decay to "
                 f"{start + steps} (min lr {s.get('min_decay_lr')}), {t} steps")


def check_sequence(config: dict) -> Check:
    seq = (config.get("tokens") or {}).get("sequence_length")
    mpe = ((config.get("model") or {}).get("model_config") or {}).get("max_position_embeddings")
    if seq is None or mpe is None or seq > mpe:
        return Check("sequence length", False, f"sequence_length {seq} > max_position_embeddings {mpe}",
                     "lower training.sequence_length or raise model.max_position_embeddings in the profile")
    return Check("sequence length", True, f"{seq} <= max_position_embeddings {mpe}")


def check_resume(config: dict, base: Path = paths.REPO_ROOT, pending: Path | None = None) -> Check:
    """``resume_checkpoint_path`` exists, or is ``pending`` (the start model stage 03 converts there)."""
    path = (config.get("checkpoints") or {}).get("resume_checkpoint_path")
    if not path:
        return Check("resume checkpoint", True, "none set: training starts from scratch")
    p = _resolve(path, base)
    if pending is not None and p == pending:
        return Check("resume checkpoint", True, f"{p}: the start model, converted there before training")
    if not p.is_dir() or not any(p.iterdir()):
        return Check("resume checkpoint", False, f"resume_checkpoint_path {path} does not exist (or is empty)",
                     "point checkpoints.resume_checkpoint_path at an existing checkpoint folder, or set it to null")
    return Check("resume checkpoint", True, f"{p} exists")


def host_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def memory_estimate(spec, config: dict) -> dict:
    arch = LlamaArch.from_nanotron(config)
    tok, par = config.get("tokens", {}), config.get("parallelism", {})
    bf16 = str(config.get("model", {}).get("dtype", "bfloat16")) not in ("float32", "float", "fp32")
    gpu = bool(spec.profile.hardware.gpus_per_node)
    s = planning.MemorySettings(
        micro_batch_size=tok.get("micro_batch_size", 1), seq_len=tok.get("sequence_length", 1),
        dp=par.get("dp", 1), tp=par.get("tp", 1), pp=par.get("pp", 1),
        zero_stage=(config.get("optimizer") or {}).get("zero_stage", 0),
        param_bytes=2 if bf16 else 4, fp32_master=bf16,
        fp32_grad_accumulation=bool((config.get("optimizer") or {}).get("accumulate_grad_in_fp32", bf16)) and bf16,
        recompute_layer=bool(par.get("recompute_layer", False)), overhead_gib=1.5 if gpu else 0.5)
    return planning.training_memory(arch, s)


def check_memory(spec, config: dict) -> Check:
    est = memory_estimate(spec, config)
    need = est["total"]
    hw = spec.profile.hardware
    parts = ", ".join(f"{k} {planning.fmt_bytes(v)}" for k, v in est.items() if k != "total" and v)
    if hw.gpus_per_node:
        have = hw.gpu_memory_gb * GIB
        where = f"{hw.gpu} ({hw.gpu_memory_gb:g} GiB)"
        fix = ("lower tokens.micro_batch_size (raise batch_accumulation_per_replica to keep the batch), "
               "set parallelism.recompute_layer, use zero_stage 1 or tensor parallelism, or a bigger GPU")
    else:
        have = host_memory_bytes()
        where = f"host RAM ({planning.fmt_bytes(have) if have else 'unknown'})"
        fix = "lower training.micro_batch_size or sequence_length in the profile"
        if have is None:
            return Check("memory per rank", None, f"estimated {planning.fmt_bytes(need)}; host RAM unknown")
    if need > have:
        return Check("memory per rank", False, f"estimated {planning.fmt_bytes(need)} > {where} ({parts})", fix)
    return Check("memory per rank", True, f"estimated {planning.fmt_bytes(need)} of {where} ({parts})")


def check_weight_decay_exclusion(config: dict, nanotron: bool) -> Check:
    """``weight_decay_exclude_named_params``: applied as nanotron's rule by the local trainer; refused
    for a nanotron run, whose optimizer builder misapplies it (:data:`NANOTRON_EXCLUDE_FAULT`)."""
    name = "weight decay exclusion"
    patterns = (config.get("optimizer") or {}).get("weight_decay_exclude_named_params") or []
    if not patterns:
        return Check(name, True, "none: every parameter decays")
    if not nanotron:
        return Check(name, True, f"{patterns}: no weight decay on the parameters they re.match (nanotron's names)")
    return Check(name, False, f"{patterns} on a nanotron run: {NANOTRON_EXCLUDE_FAULT}",
                 "leave training.weight_decay_exclude empty for a nanotron run (the local trainer applies it "
                 "correctly), or pin a nanotron whose optimizer builder is fixed")


# --- all together ---------------------------------------------------------------------------

def check_all(spec, config: dict, *, base: Path = paths.REPO_ROOT, raise_on_failure: bool = True,
        launcher: str = "local", overrides: dict | None = None) -> list[Check]:
    """Every check; raises one :class:`ZagreusError` naming each failure and its fix (``overrides``:
    the ``--set`` values, named where a check cites a profile key)."""
    checks = [check_parallelism(spec, config, launcher), check_config(config)]
    checks += check_data(config, base)
    checks.append(check_data_volume(config, base, repeats=not spec.profile.hardware.gpus_per_node))
    checks += [check_schedule(config), check_sequence(config),
               check_resume(config, base, start_checks.pending_start(spec, config, base)),
               check_memory(spec, config), start_checks.check_stages(config),
               check_weight_decay_exclusion(config, nanotron=bool(spec.profile.hardware.gpus_per_node))]
    checks += start_checks.check_start(spec, config, base, overrides)  # training.init_from (none when null)
    if raise_on_failure:
        raise_if_failed(checks)
    return checks


def raise_if_failed(checks: list[Check]) -> None:
    failed = [c for c in checks if c.ok is False]
    if failed:
        lines = [f"{c.name}: {c.detail}. Fix: {c.fix}" for c in failed]
        raise ZagreusError(f"pre-flight failed ({len(failed)} check(s)); nothing was submitted or trained:\n  - "
                           + "\n  - ".join(lines))


def as_records(checks: list[Check]) -> list[dict]:
    return [{"check": c.name, "status": c.status, "detail": c.detail, "fix": c.fix} for c in checks]


def frame(checks: list[Check]):
    import pandas as pd

    return pd.DataFrame(as_records(checks))


def to_json(checks: list[Check]) -> str:
    return json.dumps([asdict(c) for c in checks], indent=2)
