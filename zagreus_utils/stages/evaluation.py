"""Stage 06: evaluate every base checkpoint and the SFT model with lm-evaluation-harness.

The suite comes from the spec:

* ``full`` (and any profile on real data): ``configs/languages/<lang>.yaml``'s ``evaluation``
  lists, i.e. the report's commands (sections 6-7): base checkpoints get ``m_mmlu_<iso>`` 5-shot
  acc, ``hellaswag_<iso>`` and ``arc_<iso>`` acc_norm (plus the language's ``extra`` leaderboard
  tasks where installed); the SFT model gets the ``instruct`` list: IFEval with the chat template
  (``ifeval-ita`` only where that task is installed), English ``mmlu``/``hellaswag``/``arc`` and the
  language's own tasks. ``pretrained=`` is always the folder of the model being evaluated.
* ``smoke`` (profiles whose data is the generated sample corpus): the local task YAMLs committed in
  ``configs/lm_eval/`` over the project's held-out items, in the run language and in English:
  MMLU-style (5-shot, from a separate few-shot split), ARC-style and HellaSwag-style multiple choice
  (acc, acc_norm) and bits per byte on held-out documents. :func:`render_tasks` copies them into
  ``<out_dir>/tasks/`` with the run's actual data paths; nothing touches the network.

Inputs, from the run folder: the held-out items of the data stage (``01_data/raw/heldout/``, else
any ``01_data/**/heldout/``); the base checkpoints, every sub-folder of ``04_conversion/hf/`` (an HF
model folder with config, weights and tokenizer; its step from ``zagreus_checkpoint.json``
``{"step": N}``, else from its name: ``step-100``, ``checkpoint-100``, ``iter_0000100``, ``95k``);
the SFT model ``05_sft/model/``. A missing or incomplete one is a clear error.

lm-eval runs through its Python API (``simple_evaluate`` with a ``TaskManager``), one call per
model and (n-shot, chat template) group, exactly as the report's separate commands do, and its own
``results_<date>.json`` / ``samples_<task>_<date>.jsonl`` are kept under
``<out_dir>/lm_eval/<model>/<call>/``. Each call is written as soon as it finishes, with a
``zagreus_eval.json`` marker (model fingerprint, tasks, limit, batch size): a rerun skips what is
done, and a failure keeps the finished results.

:func:`ingest` turns the results JSON into the tidy format of ``report/published/results.csv``
(``source == "this run"``) plus provenance columns (stderr, chance level, n-shot, chat-template
flag, batch size, lm-eval version, model path, checkpoint step): ``results.csv`` holds the numbers
that go into the report's tables (``<lang>_progression``; ``nesso_comparison`` for the Italian SFT
model) and loads with ``published.load``; ``metrics.csv`` holds every number lm-eval reported.
:func:`learning_check` says whether the run learned; :func:`build_outputs` writes the tables and
figures (``outputs.json``) that the HTML report embeds. The ``slurm`` launcher renders an array
job with one task per model (:func:`slurm_script`, :func:`submit`, :func:`follow`).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

from ..pipeline import paths
from ..pipeline.errors import ZagreusError
from ..pipeline.outputs import StageOutputs
from ..pipeline.spec import language_names
from ..results.benchmarks import (FAMILY_COLORS, FAMILY_MARKERS, HELDOUT_STYLES, STYLE_METRIC,  # noqa: F401
                                  benchmark_family, chance_level)

TASK_CONFIGS = paths.CONFIGS / "lm_eval"
BPB = "bpb"
BPB_METRIC = "bits_per_byte"
FEWSHOT_ITEMS = 10  # per style and language: the separate split the few-shot examples come from
TEST_ITEMS = 60     # per style and language: the test split (the 2-core time budget; 100 are generated)
BPB_DOCS = 50       # held-out documents per language for bits per byte
ACCURACY_METRICS = ("acc", "acc_norm")

# Where the upstream stages leave what this stage reads (relative to the run folder).
HELDOUT_DIR = ("01_data", "raw", "heldout")  # the first place looked; see find_heldout
CHECKPOINTS_DIR = ("04_conversion", "hf")
SFT_DIR = ("05_sft", "model")

RESULTS_CSV = "results.csv"
METRICS_CSV = "metrics.csv"
LEARNING_JSON = "learning_check.json"
MARKER = "zagreus_eval.json"
EXTRA_COLUMNS = [
    "stderr", "chance", "chat_template", "batch_size", "lm_eval_version", "model_path", "model_kind",
    "lm_eval_task", "filter", "limit", "n_samples", "profile", "run_language", "device", "dtype",
    "results_file", "evaluated_at", "headline",
]
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
_BUILDERS = {"json", "csv", "parquet", "text", "arrow", "pandas", "webdataset", "imagefolder", "audiofolder"}


# ---------------------------------------------------------------------------------------------
# Suites


@dataclass(frozen=True)
class SuiteTask:
    """One lm-eval task of a suite and how the report reads it."""

    task: str                    # the lm-eval task (or group) name
    metric: str                  # headline metric, lm-eval's key without the filter
    num_fewshot: int | None      # None: the task's own default (lm-eval's rule)
    chat_template: bool = False
    language: str = "eng"        # eng | the run language
    printed_as: str | None = None  # the report's name for it (the tidy ``task``)
    requires: str | None = None  # what must be installed; such a task is skipped when absent
    local: bool = False          # a held-out task from configs/lm_eval

    @property
    def name(self) -> str:
        return self.printed_as or self.task


def suite_source(spec) -> str:
    """``"heldout"`` for profiles on the generated sample corpus (smoke), else ``"lm-eval"``.

    A future ``eval.suite`` key in the profile (``heldout`` | ``lm-eval``) wins when present.
    """
    chosen = getattr(spec.profile.eval, "suite", None)
    if chosen:
        if chosen not in ("heldout", "lm-eval"):
            raise ZagreusError(f"configs/profiles/{spec.profile.name}.yaml eval.suite = {chosen!r}; "
                               "use heldout or lm-eval")
        return chosen
    return "heldout" if spec.profile.data.source == "sample" else "lm-eval"


def heldout_suite(language: str, kind: str = "base") -> list[SuiteTask]:
    """The smoke suite: MMLU/ARC/HellaSwag-style MC in the language and English, plus bits per
    byte for base checkpoints (the learning curve; the SFT model is compared on the MC tasks).

    n-shot is the local task's own default (5 for MMLU-style, 0 otherwise, in its YAML).
    """
    out = []
    for lang in (language, "eng"):
        for style in HELDOUT_STYLES:
            out.append(SuiteTask(f"{style}_{lang}", STYLE_METRIC[style], None, False, lang, local=True))
        if kind == "base":
            out.append(SuiteTask(f"{BPB}_{lang}", BPB_METRIC, None, False, lang, local=True))
    return out


def _task_language(task: str, spec) -> str:
    lang = spec.language
    if re.search(rf"(^|[_\-])({re.escape(lang.iso639_1)}|{re.escape(lang.code)})$", task):
        return lang.code
    return "eng"


def _from_spec(tasks, spec, language: str | None = None) -> list[SuiteTask]:
    return [SuiteTask(t.task, t.metric, t.num_fewshot, t.chat_template,
                      language or _task_language(t.task, spec), t.printed_as, t.requires)
            for t in tasks]


# Post-trained models of a language whose spec lists no instruct suite: the report's section 7
# commands (English side), then the language's own base tasks.
_DEFAULT_INSTRUCT_ENGLISH = (
    ("ifeval", "prompt_level_strict_acc", 0, True, None),
    ("arc_challenge", "acc_norm", 0, False, "arc"),
    ("hellaswag", "acc_norm", 0, False, None),
    ("mmlu", "acc", 5, False, None),
)


def suite(spec, kind: str = "base") -> list[SuiteTask]:
    """The tasks a model of ``kind`` (``base`` checkpoint | ``instruct`` SFT model) is evaluated on."""
    if kind not in ("base", "instruct"):
        raise ZagreusError(f"unknown model kind {kind!r}; use base or instruct")
    if suite_source(spec) == "heldout":
        return heldout_suite(spec.language.code, kind)
    ev = spec.language.evaluation
    if kind == "base":
        return _from_spec(ev.base, spec, spec.language.code) + _from_spec(ev.extra, spec, spec.language.code)
    if ev.instruct:
        return _from_spec(ev.instruct, spec)
    english = [SuiteTask(t, m, n, c, "eng", p) for t, m, n, c, p in _DEFAULT_INSTRUCT_ENGLISH]
    return english + _from_spec(ev.base, spec, spec.language.code)


def calls(tasks: list[SuiteTask]) -> list[tuple[str, int | None, bool, list[SuiteTask]]]:
    """Group a suite into lm-eval calls by (n-shot, chat template), in suite order.

    Returns ``(call_id, num_fewshot, chat_template, tasks)``; ``call_id`` names the folder
    (``fewshot-5``, ``fewshot-0-chat``, ``fewshot-default`` for the tasks' own defaults).
    """
    groups: dict[tuple, list[SuiteTask]] = {}
    for t in tasks:
        groups.setdefault((t.num_fewshot, t.chat_template), []).append(t)
    out = []
    for (n, chat), group in groups.items():
        call_id = ("fewshot-default" if n is None else f"fewshot-{n}") + ("-chat" if chat else "")
        out.append((call_id, n, chat, group))
    return out


# ---------------------------------------------------------------------------------------------
# Local tasks


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ZagreusError(f"{path}:{i}: not valid JSON ({exc.msg}); regenerate it with the data stage") from None
    return rows


def _write_if_changed(path: Path, text: str) -> Path:
    """Write ``text`` unless the file already holds it (its mtime then stays, and so does the
    ``datasets`` cache built from it: reruns do not rebuild it)."""
    data = text.encode("utf-8")
    if not (path.is_file() and path.read_bytes() == data):
        path.write_bytes(data)
    return path


def _write_jsonl(path: Path, rows: Iterable[dict]) -> Path:
    return _write_if_changed(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def _check_item(item: dict, path: Path, line: int) -> None:
    choices, answer = item.get("choices"), item.get("answer")
    text = item.get("question") if item.get("style") != "hellaswag" else item.get("context")
    if not isinstance(choices, list) or len(choices) < 2 or not isinstance(answer, int) \
            or not 0 <= answer < len(choices) or not isinstance(text, str):
        raise ZagreusError(f"{path}:{line}: a held-out item needs question (or context), a list of "
                           "choices and an answer index within it; regenerate it with the data stage")


def render_tasks(heldout_dir, tasks_dir, language: str, fewshot_items: int = FEWSHOT_ITEMS,
                 test_items: int | None = TEST_ITEMS, bpb_docs: int | None = BPB_DOCS,
                 configs: Path = TASK_CONFIGS) -> dict:
    """Copy the local task YAMLs of ``language`` and English into ``tasks_dir`` with real data paths.

    Each style's items are split in file order: the first ``fewshot_items`` form the ``fewshot``
    split (the only place few-shot examples come from), the next ``test_items`` (None: all the
    rest) the ``test`` split; bits per byte reads the first ``bpb_docs`` documents. Returns the
    index written to ``tasks_dir/tasks.json`` (task -> items and files).
    """
    import yaml

    heldout_dir, tasks_dir = Path(heldout_dir), Path(tasks_dir)
    if not heldout_dir.is_dir():
        raise ZagreusError(f"no held-out items: {heldout_dir} does not exist. They come from the data "
                           f"stage (zagreus run --profile smoke --languages {language} --stages data)")
    data_dir = tasks_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    written: set[Path] = set()
    index: dict[str, dict] = {}
    for lang in (language, "eng"):
        mc_path, text_path = heldout_dir / f"mc_{lang}.jsonl", heldout_dir / f"text_{lang}.jsonl"
        for p in (mc_path, text_path):
            if not p.is_file():
                raise ZagreusError(f"missing held-out file {p}; rerun the data stage "
                                   f"(zagreus run --profile smoke --languages {language} --stages data --force)")
        items = _read_jsonl(mc_path)
        for i, item in enumerate(items, 1):
            _check_item(item, mc_path, i)
        for style in HELDOUT_STYLES + (BPB,):
            name = f"{style}_{lang}"
            source = configs / f"{name}.yaml"
            if not source.is_file():
                have = sorted(p.stem for p in configs.glob("*.yaml") if not p.stem.startswith("_"))
                raise ZagreusError(f"no local lm-eval task {name}: {source} is missing. Local tasks: {', '.join(have)}")
            if style == BPB:
                docs = [d for d in _read_jsonl(text_path) if str(d.get("text", "")).strip()][:bpb_docs]
                if not docs:
                    raise ZagreusError(f"{text_path} holds no documents with text; rerun the data stage")
                splits = {"test": docs}
            else:
                chosen = [it for it in items if it.get("style") == style]
                if style == "hellaswag" and any(len(it.get("endings") or ()) != len(it["choices"]) for it in chosen):
                    raise ZagreusError(f"{mc_path}: HellaSwag-style items need one ending per choice "
                                       "(written by the data stage since this version); rerun it with --force")
                if len(chosen) <= fewshot_items:
                    raise ZagreusError(f"{mc_path}: only {len(chosen)} {style}-style items; need more than "
                                       f"{fewshot_items} (the few-shot split) to have a test split")
                end = None if test_items is None else fewshot_items + test_items
                splits = {"fewshot": chosen[:fewshot_items], "test": chosen[fewshot_items:end]}
            cfg = yaml.safe_load(source.read_text(encoding="utf-8"))
            files = cfg.get("dataset_kwargs", {}).get("data_files", {})
            if set(files) != set(splits):
                raise ZagreusError(f"{source}: dataset_kwargs.data_files must name the splits {sorted(splits)}, "
                                   f"found {sorted(files)}")
            for split, rows in splits.items():
                target = data_dir / Path(files[split]).name
                written.add(_write_jsonl(target, rows))
                files[split] = str(target.resolve())
            shown = source.relative_to(paths.REPO_ROOT) if source.is_relative_to(paths.REPO_ROOT) else source
            header = (f"# Rendered by zagreus_utils.stages.evaluation.render_tasks from {shown} over the data stage's\n"
                      "# held-out items (see tasks.json); do not edit: rerun the eval stage.\n")
            written.add(_write_if_changed(tasks_dir / f"{name}.yaml", header + yaml.safe_dump(
                cfg, allow_unicode=True, sort_keys=False, width=1000)))
            index[name] = {"language": lang, "style": style, "config": str(source),
                           "source": str(text_path if style == BPB else mc_path),
                           **{f"n_{k}": len(v) for k, v in splits.items()}, "files": files}
    for template in sorted(configs.glob("_*.yaml")):
        written.add(_write_if_changed(tasks_dir / template.name, template.read_text(encoding="utf-8")))
    written.add(_write_if_changed(tasks_dir / "tasks.json", json.dumps(index, indent=2, ensure_ascii=False) + "\n"))
    for stale in [p for p in tasks_dir.rglob("*") if p.is_file() and p not in written]:
        stale.unlink()  # tasks of another language, an older layout
    return index


def find_heldout(run_dir, language: str) -> Path:
    """The data stage's held-out folder (``01_data/raw/heldout``, else any ``01_data/**/heldout``
    holding ``mc_<language>.jsonl``)."""
    data = Path(run_dir) / HELDOUT_DIR[0]
    first = Path(run_dir).joinpath(*HELDOUT_DIR)
    if (first / f"mc_{language}.jsonl").is_file():
        return first
    found = sorted(p.parent for p in data.glob(f"**/heldout/mc_{language}.jsonl")) if data.is_dir() else []
    if found:
        return found[0]
    return first  # render_tasks names what is missing there


def tasks_digest(tasks_dir: Path) -> str:
    """A hash of the rendered local tasks (YAMLs and data) that does not depend on where they lie,
    so a copied stage folder still matches its finished results."""
    tasks_dir = Path(tasks_dir)
    data = str((tasks_dir / "data").resolve())
    h = hashlib.sha256()
    for p in sorted(tasks_dir.rglob("*")):
        if p.is_file() and p.name != "tasks.json":
            h.update(p.relative_to(tasks_dir).as_posix().encode())
            text = p.read_bytes()
            h.update(text.replace(data.encode(), b"<data>") if p.suffix == ".yaml" else text)
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# lm-eval's task registry


def _offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in OFFLINE_VARIABLES[:2])


def go_offline() -> None:
    """Set the offline variables (before ``datasets`` is imported, or it pings the Hub)."""
    for name in OFFLINE_VARIABLES:
        os.environ.setdefault(name, "1")


def task_manager(tasks_dir: Path | None = None, include_defaults: bool = True):
    """lm-eval's ``TaskManager``: the local tasks only (smoke), or lm-eval's own tasks (+ local)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(tasks_dir) if tasks_dir else None, include_defaults=include_defaults)


def _task_datasets(tm, name: str, depth: int = 0) -> set[str]:
    """The Hub datasets a task (or group/tag) reads, from its YAML (no code imported)."""
    from lm_eval.utils import load_yaml_config

    entry = tm.task_index.get(name)
    if entry is None or depth > 8:
        return set()
    kind, path = entry.get("type"), entry.get("yaml_path", -1)
    if kind == "task" and path != -1:
        cfg = load_yaml_config(path, mode="simple")
        return {str(cfg["dataset_path"])} if cfg.get("dataset_path") else set()
    subtasks: list = []
    if kind == "group" and path != -1:
        subtasks = load_yaml_config(path, mode="simple").get("task", []) or []
    elif isinstance(entry.get("task"), list):
        subtasks = entry["task"]
    found: set[str] = set()
    for sub in subtasks:
        if isinstance(sub, dict):
            if sub.get("dataset_path"):
                found.add(str(sub["dataset_path"]))
            sub = sub.get("task")
        if isinstance(sub, str):
            found |= _task_datasets(tm, sub, depth + 1)
    return found


def _dataset_cached(dataset: str) -> bool:
    if dataset in _BUILDERS or Path(dataset).exists():
        return True
    try:
        from datasets import config as ds_config
        from huggingface_hub import constants as hub_constants
    except ImportError:  # pragma: no cover
        return False
    hub = Path(hub_constants.HF_HUB_CACHE) / ("datasets--" + dataset.replace("/", "--"))
    built = Path(ds_config.HF_DATASETS_CACHE) / dataset.replace("/", "___")
    return hub.is_dir() or built.is_dir()


def _local_tasks(tm, tasks_dir: Path | None) -> list[str]:
    if tasks_dir is None:
        return []
    root = str(Path(tasks_dir).resolve())
    return sorted(n for n, e in tm.task_index.items()
                  if e.get("type") == "task" and str(e.get("yaml_path", "")).startswith(root))


def resolve(tasks: list[SuiteTask], tm, tasks_dir: Path | None = None) -> tuple[list[SuiteTask], list[str]]:
    """The suite's tasks that lm-eval has here, and notes on those skipped.

    A task with ``requires`` (e.g. ``ifeval-ita``, from the mii-llm fork) is skipped with a note when
    lm-eval does not know it; any other unknown task, or (offline) a task whose dataset is not in the
    local cache, is a clear error listing the tasks that are available.
    """
    known = set(tm.all_tasks)
    keep, notes, unknown = [], [], []
    for t in tasks:
        if t.task in known:
            keep.append(t)
        elif t.requires:
            notes.append(f"{t.task} skipped: not installed here (needs {t.requires})")
        else:
            unknown.append(t.task)
    local = _local_tasks(tm, tasks_dir)
    if unknown:
        if len(known) <= 200:
            listing = ", ".join(sorted(n for n in known if tm.task_index[n].get("type") == "task"))
        else:
            close = sorted({m for u in unknown for m in difflib.get_close_matches(u, known, n=6, cutoff=0.6)})
            listing = (", ".join(close) + f" (closest matches; {len(known)} tasks in all, "
                       "`lm-eval ls tasks` lists them)")
        raise ZagreusError(f"lm-eval task(s) {', '.join(unknown)} not available here. Available: {listing}")
    if _offline():
        missing = {}
        for t in keep:
            if t.task in local:
                continue
            absent = sorted(d for d in _task_datasets(tm, t.task) if not _dataset_cached(d))
            if absent:
                missing[t.task] = absent
        if missing:
            offline_ok = local + [t.task for t in keep if t.task not in missing and t.task not in local]
            what = "; ".join(f"{k} needs {', '.join(v)}" for k, v in missing.items())
            from datasets import config as ds_config
            from huggingface_hub import constants as hub_constants

            raise ZagreusError(
                f"lm-eval task(s) not available offline: {what} from the Hugging Face Hub, not in the local "
                f"caches ({hub_constants.HF_HUB_CACHE}, {ds_config.HF_DATASETS_CACHE}) and the run is offline "
                f"(HF_HUB_OFFLINE/HF_DATASETS_OFFLINE). Available offline: {', '.join(offline_ok) or 'none'}. "
                "Fill the cache on a machine with network access, or use the smoke profile's local tasks")
    return keep, notes


# ---------------------------------------------------------------------------------------------
# Models


@dataclass(frozen=True)
class ModelEntry:
    name: str                 # folder name, e.g. step-100; "sft" for the SFT model
    path: str
    kind: str                 # base | instruct
    step: int | None = None


_STEP_KEYS = ("step", "checkpoint_step", "iteration", "train_step", "global_step")
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def _step_of(folder: Path) -> int | None:
    meta = folder / "zagreus_checkpoint.json"
    if meta.is_file():
        try:
            data = json.loads(meta.read_text())
        except json.JSONDecodeError:
            raise ZagreusError(f"{meta} is not valid JSON; rerun the conversion stage") from None
        for key in _STEP_KEYS:
            if isinstance(data.get(key), int):
                return data[key]
    m = re.search(r"(\d+)(k?)$", folder.name)
    if m:
        return int(m.group(1)) * (1000 if m.group(2) else 1)
    return None


def check_model(folder: Path, what: str = "checkpoint") -> None:
    """A Hugging Face model folder: config.json, weights and a tokenizer, or a clear error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ZagreusError(f"missing {what}: {folder} does not exist")
    problems = []
    if not (folder / "config.json").is_file():
        problems.append("no config.json")
    if not any((folder / w).is_file() for w in _WEIGHTS):
        problems.append("no weights (model.safetensors or pytorch_model.bin)")
    if not any((folder / t).is_file() for t in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")):
        problems.append("no tokenizer")
    if problems:
        raise ZagreusError(f"{what} {folder} is not a complete Hugging Face model folder ({'; '.join(problems)}); "
                           "rerun the stage that writes it")


def find_checkpoints(hf_dir: Path, steps: Iterable[int | str] | None = None) -> list[ModelEntry]:
    """The converted base checkpoints under ``hf_dir``, sorted by training step.

    Every sub-folder is a checkpoint; its step is ``step`` (or ``checkpoint_step``/``iteration``)
    in its ``zagreus_checkpoint.json``, else the number that ends its name (``step-100``,
    ``checkpoint-100``, ``iter_0000100``, ``95k``). ``steps`` (numbers or folder names) selects
    some; one that is not there is an error listing those that are.
    """
    hf_dir = Path(hf_dir)
    if not hf_dir.is_dir():
        raise ZagreusError(f"no converted checkpoints: {hf_dir} does not exist. Run the conversion stage "
                           "first (zagreus run --stages conversion)")
    found: dict[str, ModelEntry] = {}
    seen: set[Path] = set()
    for folder in sorted(p for p in hf_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        real = folder.resolve()
        if real in seen:  # e.g. a `latest` link to another checkpoint
            continue
        seen.add(real)
        check_model(folder)
        step = _step_of(folder)
        if step is None:
            raise ZagreusError(f"cannot tell the training step of checkpoint {folder}: name it step-<N> or "
                               'write {"step": N} into its zagreus_checkpoint.json')
        found[folder.name] = ModelEntry(folder.name, str(folder.resolve()), "base", step)
    if not found:
        raise ZagreusError(f"no converted checkpoints in {hf_dir}; run the conversion stage first "
                           "(zagreus run --stages conversion)")
    models = sorted(found.values(), key=lambda m: (m.step, m.name))
    if steps is not None:
        wanted = list(steps)
        chosen = []
        for s in wanted:
            hit = [m for m in models if str(s) in (m.name, str(m.step))]
            if not hit:
                have = ", ".join(f"{m.name} (step {m.step})" for m in models)
                raise ZagreusError(f"missing checkpoint {s!r} in {hf_dir}; available: {have}")
            chosen.extend(h for h in hit if h not in chosen)
        models = chosen
    return models


def discover_models(run_dir: Path, *, steps=None, sft: bool = True) -> list[ModelEntry]:
    """Base checkpoints (``04_conversion/hf/*``) then the SFT model (``05_sft/model``)."""
    run_dir = Path(run_dir)
    models = find_checkpoints(run_dir.joinpath(*CHECKPOINTS_DIR), steps)
    if sft:
        folder = run_dir.joinpath(*SFT_DIR)
        if not folder.is_dir():
            raise ZagreusError(f"missing SFT model: {folder} does not exist. Run the SFT stage first "
                               "(zagreus run --stages sft)")
        check_model(folder, "SFT model")
        models.append(ModelEntry("sft", str(folder.resolve()), "instruct", None))
    return models


def model_fingerprint(folder: Path) -> str:
    """A hash of a model folder's files (size + content; size + mtime above 64 MiB)."""
    h = hashlib.sha256()
    for p in sorted(Path(folder).rglob("*")):
        if not p.is_file():
            continue
        st = p.stat()
        h.update(f"{p.relative_to(folder)}:{st.st_size}".encode())
        if st.st_size <= 64 * 2**20:
            h.update(p.read_bytes())
        else:
            h.update(str(st.st_mtime_ns).encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Running lm-eval


def lm_eval_version() -> str:
    try:
        return metadata.version("lm_eval")
    except metadata.PackageNotFoundError:  # pragma: no cover
        return "unknown"


@dataclass
class Plan:
    """Everything one eval run needs; also what a Slurm array task reloads (``plan.json``)."""

    profile: str
    language: str
    overrides: dict
    run_dir: str
    out_dir: str
    models: list[ModelEntry]
    suites: dict[str, list[SuiteTask]]
    tasks_dir: str | None
    include_defaults: bool
    tasks_digest: str
    batch_size: int | str
    device: str
    dtype: str
    limit: int | float | None = None
    offline: bool = False
    notes: list[str] = field(default_factory=list)

    def tasks_for(self, model: ModelEntry) -> list[SuiteTask]:
        return self.suites[model.kind]

    def to_json(self) -> dict:
        d = asdict(self)
        d["models"] = [asdict(m) for m in self.models]
        d["suites"] = {k: [asdict(t) for t in v] for k, v in self.suites.items()}
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Plan":
        d = dict(d)
        d["models"] = [ModelEntry(**m) for m in d["models"]]
        d["suites"] = {k: [SuiteTask(**t) for t in v] for k, v in d["suites"].items()}
        return cls(**d)


def prepare(spec, run_dir, out_dir, *, models: list[ModelEntry] | None = None, limit=None, steps=None,
            tm=None, overrides: dict | None = None) -> tuple[Plan, Any]:
    """Render the local tasks (smoke), check every task is available, find the models."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if spec.profile.offline:
        go_offline()
    if models is None:
        models = discover_models(run_dir, steps=steps)
    else:
        for m in models:
            check_model(Path(m.path), "SFT model" if m.kind == "instruct" else "checkpoint")
    local = suite_source(spec) == "heldout"
    tasks_dir = None
    if local:
        tasks_dir = out_dir / "tasks"
        render_tasks(find_heldout(run_dir, spec.language.code), tasks_dir, spec.language.code)
        digest = tasks_digest(tasks_dir)
    else:
        digest = f"lm-eval {lm_eval_version()}"
    if tm is None:
        tm = task_manager(tasks_dir, include_defaults=not local)
    suites, notes = {}, []
    for kind in sorted({m.kind for m in models}):
        keep, skipped = resolve(suite(spec, kind), tm, tasks_dir)
        suites[kind] = keep
        notes += [n for n in skipped if n not in notes]
    plan = Plan(profile=spec.profile.name, language=spec.language.code, overrides=dict(overrides or {}),
                run_dir=str(run_dir), out_dir=str(out_dir), models=list(models), suites=suites,
                tasks_dir=str(tasks_dir) if tasks_dir else None, include_defaults=not local,
                tasks_digest=digest, batch_size=spec.profile.eval.batch_size, device=spec.profile.eval.device,
                dtype=spec.profile.model.dtype, limit=limit, offline=spec.profile.offline, notes=notes)
    return plan, tm


def _call_dir(plan: Plan, model: ModelEntry, call_id: str) -> Path:
    return Path(plan.out_dir) / "lm_eval" / model.name / call_id


def _marker(plan: Plan, model: ModelEntry, fingerprint: str, n, chat: bool, tasks: list[SuiteTask]) -> dict:
    return {"model": model.name, "model_path": model.path, "model_fingerprint": fingerprint,
            "tasks": [t.task for t in tasks], "num_fewshot": n, "chat_template": chat,
            "limit": plan.limit, "batch_size": plan.batch_size, "device": plan.device, "dtype": plan.dtype,
            "tasks_digest": plan.tasks_digest, "lm_eval_version": lm_eval_version()}


def _latest(folder: Path, pattern: str = "results_*.json") -> Path | None:
    found = sorted(Path(folder).glob(pattern))
    return found[-1] if found else None


def is_done(folder: Path, marker: dict) -> bool:
    path = Path(folder) / MARKER
    if not path.is_file():
        return False
    try:
        saved = json.loads(path.read_text())
    except json.JSONDecodeError:
        return False
    results = saved.get("results_file")
    same = all(saved.get(k) == v for k, v in marker.items() if k != "model_path")  # a moved run folder still matches
    return same and bool(results) and (Path(folder) / results).is_file()


def evaluate_model(plan: Plan, model: ModelEntry, tm, *, log: Callable[[str], None] = print,
                   force: bool = False) -> list[Path]:
    """Run lm-eval on one model (one call per n-shot/chat group); returns its results JSON files.

    A call whose marker matches (same model files, tasks, limit, batch size) is skipped.
    """
    check_model(Path(model.path), "SFT model" if model.kind == "instruct" else "checkpoint")
    fingerprint = model_fingerprint(Path(model.path))
    with _cpu_threads(plan.device):
        return [_evaluate_call(plan, model, tm, fingerprint, call, log, force) for call in calls(plan.tasks_for(model))]


@contextlib.contextmanager
def _cpu_threads(device: str):
    """On CPU, run torch single-threaded unless ``ZAGREUS_EVAL_THREADS`` says otherwise.

    The smoke models are tiny: a second intra-op thread buys little on an idle 2-core machine and
    costs a lot on a busy one (measured 36 s -> 7 s per checkpoint with 1 thread at load 6).
    """
    import torch

    wanted = os.environ.get("ZAGREUS_EVAL_THREADS", "1" if str(device).startswith("cpu") else "")
    before = torch.get_num_threads()
    if wanted.strip().isdigit() and int(wanted) > 0:
        torch.set_num_threads(int(wanted))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _evaluate_call(plan: Plan, model: ModelEntry, tm, fingerprint: str, call: tuple, log, force: bool) -> Path:
    """One lm-eval call (tasks sharing n-shot and chat template); lm-eval's own files are kept."""
    import lm_eval
    from lm_eval.loggers import EvaluationTracker

    call_id, n, chat, tasks = call
    folder = _call_dir(plan, model, call_id)
    marker = _marker(plan, model, fingerprint, n, chat, tasks)
    if not force and is_done(folder, marker):
        log(f"{model.name}/{call_id}: up to date, skipped")
        return folder / json.loads((folder / MARKER).read_text())["results_file"]
    if folder.exists():
        shutil.rmtree(folder)  # results of another model version or task set: redo them
    folder.mkdir(parents=True)
    t0 = time.perf_counter()
    tracker = EvaluationTracker(output_path=str(folder / "results.json"))
    # lm-eval's progress bars go to lm_eval.log beside its results, not into the notebook
    with open(folder / "lm_eval.log", "w", encoding="utf-8") as log_file, contextlib.redirect_stderr(log_file):
        results = lm_eval.simple_evaluate(
            model="hf", model_args={"pretrained": model.path, "dtype": plan.dtype},
            tasks=[t.task for t in tasks], num_fewshot=n, batch_size=plan.batch_size, device=plan.device,
            limit=plan.limit, log_samples=True, apply_chat_template=chat, fewshot_as_multiturn=chat,
            task_manager=tm, evaluation_tracker=tracker, verbosity="WARNING")
    samples = results.pop("samples")
    tracker.save_results_aggregated(results=results, samples=samples)
    for task_name in results["configs"]:
        tracker.save_results_samples(task_name=task_name, samples=samples[task_name])
    written = _latest(folder)
    if written is None:
        raise ZagreusError(f"lm-eval did not write its results JSON into {folder} (disk full or not writable?)")
    marker.update(results_file=written.name, seconds=round(time.perf_counter() - t0, 2))
    tmp = folder / (MARKER + ".tmp")
    tmp.write_text(json.dumps(marker, indent=2) + "\n")
    os.replace(tmp, folder / MARKER)
    log(f"{model.name}/{call_id}: {', '.join(t.task for t in tasks)} in {marker['seconds']:.1f} s")
    return written


def evaluate_all(plan: Plan, tm, *, log: Callable[[str], None] = print, force: bool = False) -> dict:
    """Evaluate every model of the plan; one model failing does not stop the others."""
    finished, failed = [], {}
    for model in plan.models:
        try:
            evaluate_model(plan, model, tm, log=log, force=force)
            finished.append(model.name)
        except Exception as exc:  # keep going: the finished results stay, a rerun skips them
            failed[model.name] = f"{type(exc).__name__}: {exc}"
            log(f"{model.name}: FAILED: {failed[model.name]}")
    return {"finished": finished, "failed": failed}


# ---------------------------------------------------------------------------------------------
# Ingestion


def read_results_json(path: Path) -> dict:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ZagreusError(f"{path}: cannot read an lm-eval results JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict) or "configs" not in data:
        raise ZagreusError(f"{path}: not an lm-eval results JSON (no `results`/`configs`); "
                           "pass the results_<date>.json that lm-eval wrote")
    return data


def _float(value) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return out


def _samples(results_path: Path, task: str) -> list[dict]:
    date = results_path.stem[len("results_"):] if results_path.stem.startswith("results_") else ""
    path = results_path.parent / f"samples_{task}_{date}.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _bpb_stderr(samples: list[dict]) -> float:
    """Standard error of bits per byte (a ratio of sums) from lm-eval's per-document samples."""
    pairs = []
    for s in samples:
        v = s.get(BPB_METRIC)
        if isinstance(v, (list, tuple)) and len(v) == 2:
            pairs.append((float(v[0]), float(v[1])))
    n = len(pairs)
    if n < 2:
        return float("nan")
    total_ll, total_bytes = sum(p[0] for p in pairs), sum(p[1] for p in pairs)
    r = total_ll / total_bytes
    var = n / (n - 1) * sum((ll - r * b) ** 2 for ll, b in pairs) / total_bytes ** 2
    return math.sqrt(var) / math.log(2)


def _chance(task: SuiteTask, metric: str, samples: list[dict]) -> float:
    if metric not in ACCURACY_METRICS:
        return float("nan")
    try:
        return chance_level(task.name)
    except ZagreusError:
        pass
    counts = [len(s.get("filtered_resps") or s.get("resps") or []) for s in samples]
    counts = [c for c in counts if c > 0]
    return float(sum(1 / c for c in counts) / len(counts)) if counts else float("nan")


def _model_path_of(data: dict) -> str:
    args = (data.get("config") or {}).get("model_args")
    if isinstance(args, dict):
        return str(args.get("pretrained", ""))
    m = re.search(r"pretrained=([^,]+)", str(args or ""))
    return m.group(1) if m else ""


def ingest_file(path: Path, tasks: list[SuiteTask], model: ModelEntry | None = None) -> list[dict]:
    """One lm-eval results JSON -> one row per (task, metric) it reports, with provenance.

    ``tasks``: the suite tasks this file must hold; a file from another task set (or, with
    ``model``, of another model) is a clear error.
    """
    path = Path(path)
    data = read_results_json(path)
    results = data["results"]
    subtasks = {s for subs in (data.get("group_subtasks") or {}).values() for s in subs}
    expected = [t.task for t in tasks]
    missing = [t for t in expected if t not in results]
    foreign = sorted(set(results) - set(expected) - subtasks)
    if missing or foreign:
        raise ZagreusError(
            f"{path} holds lm-eval results for tasks {sorted(results)}, not this suite's {expected} "
            f"({'missing ' + ', '.join(missing) if missing else ''}{'; ' if missing and foreign else ''}"
            f"{'unexpected ' + ', '.join(foreign) if foreign else ''}): it comes from another task set. "
            "Move it out of the stage folder, or rerun the eval stage with --force")
    found_path = _model_path_of(data)
    if model is not None and found_path and Path(found_path).resolve() != Path(model.path).resolve() \
            and Path(found_path).name != Path(model.path).name:  # same folder name: a moved run folder
        raise ZagreusError(f"{path} holds results of model {found_path}, not of {model.path}; "
                           "rerun the eval stage with --force")
    config = data.get("config") or {}
    common = {
        "chat_template": bool(data.get("chat_template")),
        "batch_size": str(config.get("batch_size")),
        "lm_eval_version": str(data.get("lm_eval_version") or lm_eval_version()),
        "model_path": found_path or (model.path if model else ""),
        "limit": config.get("limit"),
        "device": str(config.get("device")),
        "results_file": str(path),
        "evaluated_at": str(data.get("date", "")),
    }
    rows = []
    for t in tasks:
        r = results[t.task]
        samples = _samples(path, t.task)
        keys = [k for k in r if "," in k and "_stderr," not in k]
        if not any(k.split(",")[0] == t.metric for k in keys):
            raise ZagreusError(f"{path}: task {t.task} has no metric {t.metric!r} "
                               f"(it has {sorted({k.split(',')[0] for k in keys})}); fix the suite's metric")
        n_samples = (data.get("n-samples") or {}).get(t.task, {})
        for metric_order, key in enumerate(keys):
            metric, _, filt = key.partition(",")
            value = _float(r[key])
            stderr = _float(r.get(f"{metric}_stderr,{filt}"))
            note = ""
            if metric == BPB_METRIC and math.isnan(stderr):
                stderr, note = _bpb_stderr(samples), "stderr from lm-eval's per-document samples (ratio estimator)"
            rows.append({
                **common, "lm_eval_task": t.task, "task": t.name, "metric": metric, "filter": filt,
                "headline": metric == t.metric, "value": value, "stderr": stderr,
                "chance": _chance(t, metric, samples), "n_shot": (data.get("n-shot") or {}).get(t.task, t.num_fewshot),
                "n_samples": n_samples.get("effective") if isinstance(n_samples, dict) else None,
                "language": t.language, "local": t.local, "note": note, "metric_order": metric_order,
            })
    return rows


def ingest(plan: Plan, *, strict: bool = False) -> pd.DataFrame:
    """Every finished model's results as one long frame (all metrics); unfinished models are left
    out (``strict``: an error instead)."""
    rows = []
    for order, model in enumerate(plan.models):
        for call_id, _, _, tasks in calls(plan.tasks_for(model)):
            folder = _call_dir(plan, model, call_id)
            path = None
            if (folder / MARKER).is_file():
                name = json.loads((folder / MARKER).read_text()).get("results_file")
                path = folder / name if name else None
            if path is None or not path.is_file():
                if strict:
                    raise ZagreusError(f"no lm-eval results for {model.name} ({call_id}) in {folder}; "
                                       "run the eval stage")
                continue
            for row in ingest_file(path, tasks, model):
                row.update(model_name=model.name, model_kind=model.kind, checkpoint_step=model.step,
                           model_order=order, results_file=os.path.relpath(path, plan.out_dir))
                rows.append(row)
    return pd.DataFrame(rows)


def _placement(spec, kind: str, task: SuiteTask | None, row) -> str:
    """Which report table a headline number goes into ("" for none).

    Base checkpoints: the language's own tasks -> ``<lang>_progression`` (the Portuguese leaderboard
    tasks -> ``por_leaderboard``). The SFT model: ``nesso_comparison`` for Italian (section 7 compares
    Nesso on English and Italian), else the language's progression table as a row without a step.
    Bits per byte and English tasks of base checkpoints are in ``metrics.csv`` only.
    """
    lang = spec.language.code
    if not row["headline"] or row["metric"] == BPB_METRIC:
        return ""
    if kind == "instruct" and lang == "ita":
        return "nesso_comparison"
    if row["language"] != lang:
        return ""
    if lang == "por" and task is not None and task.task in {t.task for t in spec.language.evaluation.extra}:
        return "por_leaderboard"
    return f"{lang}_progression"


def tidy(metrics: pd.DataFrame, spec, plan: Plan) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(results, metrics)`` in the published tidy format (+ provenance columns).

    ``results``: the headline numbers placed in the report's tables, plus their averages (the
    report's ``Media``/``Average``; ``Media EN``/``Media IT``/``Media Totale`` for the comparison);
    ``metrics``: every number, ``table_id`` empty where it is not placed.
    """
    from ..results.published import COLUMNS, TABLES

    if metrics.empty:
        empty = pd.DataFrame(columns=COLUMNS + EXTRA_COLUMNS)
        return empty, empty
    tasks_by_kind = {k: {t.task: t for t in v} for k, v in plan.suites.items()}
    lang = spec.language.code
    out = []
    for _, r in metrics.iterrows():
        task = tasks_by_kind.get(r["model_kind"], {}).get(r["lm_eval_task"])
        names = list(tasks_by_kind.get(r["model_kind"], {}))
        col_order = (names.index(r["lm_eval_task"]) + 1 if task is not None else 0) * 100 + int(r["metric_order"])
        table = _placement(spec, r["model_kind"], task, r)
        sft = r["model_kind"] == "instruct"
        model_name = f"{spec.language.model_name}-sft" if sft else spec.language.model_name
        info = TABLES.get(table)
        out.append({
            "source": "this run", "table_id": table, "section": info.section if info else "",
            "table_title": f"{info.title}: this run ({spec.profile.name})" if info else f"this run ({spec.profile.name})",
            "language": r["language"], "row_label": r["model_name"], "model": model_name,
            "checkpoint_step": r["checkpoint_step"], "column": f"{r['task']} ({r['metric']})",
            "task": r["task"], "metric": r["metric"], "n_shot": r["n_shot"], "is_average": False,
            "value": r["value"], "printed": "" if pd.isna(r["value"]) else f"{r['value']:.4f}",
            "row_order": 1000 + int(r["model_order"]), "col_order": col_order,
            "line": 0, "note": r["note"] or ("held-out smoke task, configs/lm_eval/" + r["lm_eval_task"] + ".yaml"
                                              if r["local"] else f"lm-eval task {r['lm_eval_task']}"),
            "stderr": r["stderr"], "chance": r["chance"], "chat_template": r["chat_template"],
            "batch_size": r["batch_size"], "lm_eval_version": r["lm_eval_version"], "model_path": r["model_path"],
            "model_kind": r["model_kind"], "lm_eval_task": r["lm_eval_task"], "filter": r["filter"],
            "limit": r["limit"], "n_samples": r["n_samples"], "profile": spec.profile.name, "run_language": lang,
            "device": r["device"], "dtype": plan.dtype, "results_file": r["results_file"],
            "evaluated_at": r["evaluated_at"], "headline": bool(r["headline"]),
        })
    every = pd.DataFrame(out)
    placed = every[every["table_id"] != ""]
    averages = []
    for (table, row_order), rows in placed.groupby(["table_id", "row_order"], sort=False):
        groups = ([("Media EN", "eng"), ("Media IT", "ita"), ("Media Totale", "")]
                  if table == "nesso_comparison" else [("Average", lang)])
        for k, (column, language) in enumerate(groups):
            sel = rows if not language else rows[rows["language"] == language]
            if sel.empty:
                continue
            first = sel.iloc[0]
            value = float(sel["value"].mean())
            se = math.sqrt(float((sel["stderr"].fillna(0) ** 2).sum())) / len(sel)
            chance = sel["chance"].mean() if sel["chance"].notna().all() else float("nan")
            averages.append({
                **first.to_dict(), "language": language, "column": column, "task": "", "metric": "",
                "lm_eval_task": "", "filter": "", "n_shot": pd.NA, "is_average": True, "value": value,
                "printed": f"{value:.4f}", "col_order": 10_000 + k, "stderr": se, "chance": chance,
                "n_samples": None, "note": f"mean of {len(sel)} cells: {', '.join(sel['task'])}",
            })
    results = pd.concat([placed, pd.DataFrame(averages)], ignore_index=True) if averages else placed.copy()
    every = pd.concat([every, pd.DataFrame(averages)], ignore_index=True) if averages else every
    for frame in (results, every):
        frame["checkpoint_step"] = pd.array(frame["checkpoint_step"], dtype="Int64")
        frame["n_shot"] = pd.array(pd.to_numeric(frame["n_shot"], errors="coerce"), dtype="Int64")
    order = COLUMNS + EXTRA_COLUMNS
    return results[order].reset_index(drop=True), every[order].reset_index(drop=True)


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    out = df.copy()
    out["is_average"] = out["is_average"].map(lambda v: "true" if bool(v) else "false")
    for col in ("chat_template", "headline"):
        out[col] = out[col].map(lambda v: "true" if bool(v) else "false")
    out.to_csv(path, index=False, encoding="utf-8", float_format="%.10g")
    return Path(path)


def load_results(path) -> pd.DataFrame:
    """This run's ``results.csv``/``metrics.csv`` with its provenance columns (types restored).

    ``results.csv`` is validated by ``published.load`` (the same checks as the published data).
    """
    from ..results.published import COLUMNS, load

    path = Path(path)
    if not path.is_file():
        raise ZagreusError(f"{path}: no eval results; run the eval stage (zagreus run --stages eval)")
    raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    missing = [c for c in COLUMNS + EXTRA_COLUMNS if c not in raw.columns]
    if missing:
        raise ZagreusError(f"{path}: missing column(s) {', '.join(missing)}; rerun the eval stage")
    if (raw["table_id"] == "").any():  # metrics.csv: numbers outside the report's tables
        df = raw[COLUMNS].copy()
        for col, kind in [("checkpoint_step", "Int64"), ("n_shot", "Int64"), ("value", "float"),
                          ("row_order", "int"), ("col_order", "int"), ("line", "int")]:
            df[col] = pd.to_numeric(df[col].mask(df[col] == "")).astype(kind)
        df["is_average"] = df["is_average"] == "true"
    else:
        df = load(path)
    for col in EXTRA_COLUMNS:
        df[col] = raw[col].values
    for col in ("stderr", "chance"):
        df[col] = pd.to_numeric(df[col].mask(df[col] == ""), errors="coerce").astype(float)
    for col in ("chat_template", "headline"):
        df[col] = df[col] == "true"
    df["n_samples"] = pd.array(pd.to_numeric(df["n_samples"].mask(df["n_samples"] == ""), errors="coerce"),
                               dtype="Int64")
    return df


# ---------------------------------------------------------------------------------------------
# Did it learn?


def learning_check(results: pd.DataFrame) -> dict:
    """Whether the run learned, from this run's metrics (``metrics.csv`` frame or ``tidy``'s).

    * accuracy: at the last base checkpoint, the mean held-out accuracy (headline metric of every
      multiple-choice task with a chance level) is above the mean chance level by more than its
      standard error (sqrt(sum se^2) / n); each task is reported too.
    * bits per byte: falls from the first to the last base checkpoint by more than the last value's
      standard error, on every bits-per-byte task (and whether it falls at every checkpoint).

    Random weights already score a little above chance on the held-out items (item bias: ~0.28
    pooled), so the accuracy criterion alone does not tell learning apart; the bits-per-byte one does.
    """
    df = results[(results["model_kind"] == "base") & results["checkpoint_step"].notna()
                 & ~results["is_average"].astype(bool)]
    out: dict[str, Any] = {"learning": False, "accuracy": None, "bits_per_byte": None, "summary": []}
    if df.empty:
        out["summary"].append("no base-checkpoint results: nothing to check")
        return out
    steps = sorted(int(s) for s in df["checkpoint_step"].dropna().unique())
    last = steps[-1]
    acc = df[df["metric"].isin(ACCURACY_METRICS) & df["chance"].notna() & (df["checkpoint_step"] == last)]
    acc = acc[acc.apply(_is_headline, axis=1)] if len(acc) else acc  # one metric per task
    per_task = []
    for _, r in acc.iterrows():
        per_task.append({"task": r["task"], "metric": r["metric"], "value": float(r["value"]),
                         "stderr": float(r["stderr"]), "chance": float(r["chance"]),
                         "above": bool(r["value"] - r["chance"] > r["stderr"])})
    acc_ok = False
    if per_task:
        n = len(per_task)
        mean = sum(t["value"] for t in per_task) / n
        chance = sum(t["chance"] for t in per_task) / n
        se = math.sqrt(sum(t["stderr"] ** 2 for t in per_task)) / n
        acc_ok = mean - chance > se
        out["accuracy"] = {"step": last, "mean": mean, "chance": chance, "stderr": se, "above_chance": acc_ok,
                           "margin_in_stderr": (mean - chance) / se if se > 0 else float("inf"),
                           "tasks": per_task}
        out["summary"].append(
            f"held-out accuracy at the last checkpoint (step {last}): mean {mean:.4f} over {n} tasks vs chance "
            f"{chance:.4f}, stderr {se:.4f}: {'above chance beyond its stderr' if acc_ok else 'NOT above chance beyond its stderr'}"
            f" ({sum(t['above'] for t in per_task)}/{n} tasks above on their own)")
    else:
        out["summary"].append("no multiple-choice accuracy with a chance level at the last checkpoint")
    bpb = df[df["metric"] == BPB_METRIC]
    bpb_ok = False
    if not bpb.empty:
        series = {}
        for task, rows in bpb.groupby("task"):
            rows = rows.sort_values("checkpoint_step")
            values = [float(v) for v in rows["value"]]
            se = float(rows["stderr"].iloc[-1]) if pd.notna(rows["stderr"].iloc[-1]) else 0.0
            series[task] = {"steps": [int(s) for s in rows["checkpoint_step"]], "values": values,
                            "stderr_last": se,
                            "falls": len(values) >= 2 and values[0] - values[-1] > se,
                            "monotone": len(values) >= 2 and all(b < a for a, b in zip(values, values[1:]))}
        bpb_ok = all(s["falls"] for s in series.values())
        out["bits_per_byte"] = {"falls": bpb_ok, "tasks": series}
        for task, s in series.items():
            trail = " → ".join(f"{v:.3f}" for v in s["values"])
            out["summary"].append(f"{task} bits per byte over steps {s['steps']}: {trail}: "
                                  + ("falls by more than its stderr" if s["falls"] else
                                     f"does NOT fall by more than its stderr ({s['stderr_last']:.3f})")
                                  + (", at every checkpoint" if s["monotone"] else ""))
        checked = bpb_ok
    else:
        out["summary"].append("no bits-per-byte results (the lm-eval suite of this profile has none)")
        checked = True
    out["learning"] = bool(acc_ok and checked)
    out["summary"].insert(0, "the run shows learning" if out["learning"] else "the run does NOT show learning")
    return out


def _is_headline(row) -> bool:
    """The suite's headline metric (``headline`` column); without it, acc for MMLU-style and
    acc_norm for ARC/HellaSwag-style (the report's choice)."""
    if "headline" in row.index and str(row["headline"]) not in ("", "nan", "None"):
        return str(row["headline"]).lower() == "true"

    family = benchmark_family(str(row["task"]))
    wanted = STYLE_METRIC.get(family)
    return wanted is None or row["metric"] == wanted


# ---------------------------------------------------------------------------------------------
# Tables and figures


def checkpoints_figure(metrics: pd.DataFrame, language: str):
    """This run's base checkpoints: accuracy per task (with stderr and chance) and bits per byte."""
    from matplotlib.figure import Figure

    df = metrics[(metrics["model_kind"] == "base") & metrics["checkpoint_step"].notna()
                 & ~metrics["is_average"].astype(bool)]
    acc = df[df["metric"].isin(ACCURACY_METRICS) & df.apply(_is_headline, axis=1)]
    bpb = df[df["metric"] == BPB_METRIC]
    fig = Figure(figsize=(13, 6), layout="constrained")
    axes = fig.subplots(1, 2 if not bpb.empty else 1, squeeze=False)[0]
    ax = axes[0]
    for task, rows in acc.groupby("task", sort=False):
        rows = rows.sort_values("checkpoint_step")
        family = benchmark_family(task)
        dashed = rows["language"].iloc[0] == "eng"
        ax.errorbar(rows["checkpoint_step"].astype(float), rows["value"], yerr=rows["stderr"].fillna(0),
                    marker=FAMILY_MARKERS.get(family, "D"), color=FAMILY_COLORS.get(family, "#000000"),
                    ls="--" if dashed else "-", capsize=3,
                    label=f"{task} ({rows['metric'].iloc[0]}, {int(rows['n_shot'].iloc[0]) if pd.notna(rows['n_shot'].iloc[0]) else '?'}-shot)")
    for level in sorted(set(acc["chance"].dropna())):
        ax.axhline(level, color="#555555", ls=":", lw=1.2, label=f"chance {level:g}")
    ax.set_xlabel("training step")
    ax.set_ylabel("accuracy (error bars: stderr)")
    ax.set_title("multiple choice (solid: run language, dashed: English)", fontsize=10)
    ax.grid(True, axis="y", color="#e5e5e5")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncols=2, frameon=False)
    if not bpb.empty:
        bx = axes[1]
        for task, rows in bpb.groupby("task", sort=False):
            rows = rows.sort_values("checkpoint_step")
            bx.errorbar(rows["checkpoint_step"].astype(float), rows["value"], yerr=rows["stderr"].fillna(0),
                        marker="o", ls="--" if rows["language"].iloc[0] == "eng" else "-", capsize=3, label=task)
        bx.set_xlabel("training step")
        bx.set_ylabel("bits per byte (lower is better)")
        bx.set_title("held-out text", fontsize=10)
        bx.grid(True, axis="y", color="#e5e5e5")
        bx.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncols=2, frameon=False)
    fig.suptitle(f"This run ({language_names().get(language, language)}): every task per base checkpoint", fontsize=12)
    return fig


def metrics_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Every number with its provenance, one row per (model, task, metric)."""
    df = metrics[~metrics["is_average"].astype(bool)]
    cols = ["row_label", "checkpoint_step", "task", "metric", "value", "stderr", "chance", "n_shot",
            "chat_template", "batch_size", "n_samples", "lm_eval_version", "model_path"]
    return df[cols].rename(columns={"row_label": "model"}).reset_index(drop=True)


def build_outputs(out_dir, spec, results: pd.DataFrame, metrics: pd.DataFrame, check: dict,
                  notes: list[str] = (), published_df: pd.DataFrame | None = None) -> dict:
    """Tables and figures of this run next to the published ones, indexed in ``outputs.json``."""
    from . import plots
    from ..results import published, tables

    out = StageOutputs(out_dir)
    df = published.load() if published_df is None else published_df
    lang = spec.language.code

    for table_id in [t for t in published.TABLES if t in set(results["table_id"])]:
        wide = tables.with_run_results(df, results, table_id)
        integers = tables.style_options(df, table_id)["integer_columns"]
        out.table(table_id, wide, f"{tables.provenance(df, table_id)['title']}: published and this run",
                  tables.styled_table(df, table_id, results),
                  csv=lambda path, wide=wide, integers=integers: tables.to_csv(wide, path, integer_columns=integers))
    full = metrics_table(metrics)
    out.table("eval-metrics", full, "Every number of this run, with its provenance",
              full.style.hide(axis="index").format(precision=4, na_rep="—"),
              csv=lambda path: full.to_csv(path, index=False, float_format="%.6g"))
    add = out.figure

    progression = results[(results["table_id"] == f"{lang}_progression") & results["checkpoint_step"].notna()]
    if not progression.empty and f"{lang}_progression" in set(df["table_id"]):
        add(f"progression-{lang}", plots.progression_figure(df, lang, progression),
            f"{language_names().get(lang, lang)} checkpoint progression: published and this run",
            "Left: the report's checkpoints (section 6); right: this run's base checkpoints on their own step "
            "scale. Dashed: chance level.")
    base = metrics[metrics["model_kind"] == "base"]
    if not base.empty:
        add(f"checkpoints-{lang}", checkpoints_figure(metrics, lang), "This run per checkpoint: every task",
            "Headline metric per task (the report's: acc for MMLU, acc_norm for ARC and HellaSwag) with lm-eval's "
            "stderr as error bars, English dashed; dotted: chance. Right (smoke): bits per byte on held-out "
            "documents, stderr from lm-eval's per-document samples.")
    for note in list(check.get("summary", [])) + list(notes):
        out.note(note)
    out.write(prune=True)
    return out.index


# ---------------------------------------------------------------------------------------------
# The stage


def finish(plan: Plan, spec, *, outcome: dict | None = None, log: Callable[[str], None] = print) -> dict:
    """Ingest whatever finished, write results.csv / metrics.csv / outputs.json, check learning."""
    out_dir = Path(plan.out_dir)
    metrics_long = ingest(plan)
    results, metrics = tidy(metrics_long, spec, plan)
    write_csv(results, out_dir / RESULTS_CSV)
    write_csv(metrics, out_dir / METRICS_CSV)
    check = learning_check(metrics)
    (out_dir / LEARNING_JSON).write_text(json.dumps(check, indent=2) + "\n", encoding="utf-8")
    notes = list(plan.notes) + [
        f"lm-eval {lm_eval_version()}, batch size {plan.batch_size}, device {plan.device}, dtype {plan.dtype}"
        + (f", limit {plan.limit}" if plan.limit else "")]
    index = build_outputs(out_dir, spec, results, metrics, check, notes)
    summary = {"plan": plan.to_json(), "learning": check, "outputs": index,
               "finished": (outcome or {}).get("finished"), "failed": (outcome or {}).get("failed", {})}
    (out_dir / "eval_summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    for line in check["summary"]:
        log(line)
    return summary


def run(spec, run_dir, out_dir, *, launcher: str = "local", models: list[ModelEntry] | None = None,
        steps=None, limit=None, force: bool = False, overrides: dict | None = None, dry_run: bool = False,
        poll_s: float = 15, timeout_s: float | None = None, log: Callable[[str], None] = print,
        progress: bool = True) -> dict:
    """Evaluate every base checkpoint and the SFT model, ingest, write the stage outputs.

    ``launcher``: ``local`` (here, one model after the other) or ``slurm`` (an array job, one task
    per model; ``dry_run`` returns the rendered script without submitting). A model that fails does
    not stop the others; its error is raised at the end, after the finished results are written.
    """
    if launcher not in ("local", "slurm"):
        raise ZagreusError(f"unknown launcher {launcher!r}; choose local or slurm")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plan, tm = prepare(spec, run_dir, out_dir, models=models, limit=limit, steps=steps, overrides=overrides)
    if launcher == "slurm":
        script = write_slurm(plan)
        if dry_run:
            return {"plan": plan.to_json(), "script": script.read_text(), "script_path": str(script),
                    "command": sbatch_command(plan, script)}
        from ..pipeline import manifest as manifest_mod
        from ..cluster import slurm as slurm_mod

        launch = manifest_mod.LaunchRecord(out_dir, "slurm")
        slurm_mod.require("sbatch")
        slurm_mod.check_nodes(spec.profile.slurm.partition)  # all drained/down: a clear error, nothing submitted
        job = submit(plan, script)
        launch.job("eval array", job, "SUBMITTED", tasks=len(plan.models), logs="slurm/logs/%A_%a.out")
        log(f"submitted eval array job {job} ({len(plan.models)} tasks)")
        t0 = time.perf_counter()
        error = None
        try:
            state = follow(job, poll_s=poll_s, timeout_s=timeout_s, progress=progress,
                           log_path=_slurm_dir(plan) / "logs" / "%A_%a.out")
        except slurm_mod.JobFailed as exc:  # finished models are still ingested below
            state, error = exc.job, exc
        launch.job("eval array", job, state.state, seconds=round(time.perf_counter() - t0, 1),
                   tasks={t.array_task_id: t.state for t in state.tasks})
        task_state = {str(t.array_task_id): t.state for t in state.tasks}
        outcome = {"finished": [m.name for m in plan.models if _model_done(plan, m)],
                   "failed": {m.name: f"array task {job}_{i}: {task_state.get(str(i), state.state)}"
                              for i, m in enumerate(plan.models) if not _model_done(plan, m)},
                   "job": {"job_id": job, "state": state.state, "tasks": task_state}}
        if error is not None and not outcome["failed"]:
            outcome["failed"]["(array)"] = str(error)
        if error is not None:
            outcome["error"] = str(error)
    else:
        from ..pipeline.manifest import LaunchRecord

        LaunchRecord(out_dir, "local")
        outcome = evaluate_all(plan, tm, log=log, force=force)
    summary = finish(plan, spec, outcome=outcome, log=log)
    if outcome["failed"]:
        kept = ", ".join(outcome["finished"]) or "none"
        raise ZagreusError(
            f"evaluation failed for {', '.join(outcome['failed'])} ("
            + "; ".join(f"{k}: {v}" for k, v in outcome["failed"].items())
            + f"). Finished results kept ({kept}) in {out_dir / 'lm_eval'}; a rerun skips them"
            + (f"\n{outcome['error']}" if outcome.get("error") else ""))
    return summary


def _model_done(plan: Plan, model: ModelEntry) -> bool:
    return all((_call_dir(plan, model, c) / MARKER).is_file() for c, _, _, _ in calls(plan.tasks_for(model)))


# ---------------------------------------------------------------------------------------------
# Slurm


_SLURM_TIME = re.compile(r"^(\d+-)?\d{1,3}(:\d{1,2}){0,2}$|^\d+-\d{1,2}$")


def slurm_script(plan: Plan, plan_file: Path, *, python: str | None = None, job_name: str | None = None,
                 workdir: Path = paths.REPO_ROOT, spec=None) -> str:
    """The sbatch script: an array with one task per model (``0..n-1``, in ``plan.models`` order).

    The ``#SBATCH`` lines come from :func:`zagreus_utils.cluster.slurm.sbatch_header` (sbatch's own quoting;
    a line break in a value is refused); every other value is ``shlex.quote``-d. The log path goes
    on the sbatch command line (:func:`sbatch_command`).
    """
    from ..cluster import slurm as slurm_mod
    from ..pipeline.spec import load_spec

    spec = spec or load_spec(plan.language, plan.profile, plan.overrides)
    s = spec.profile.slurm
    res = s.eval
    if not _SLURM_TIME.match(res.time or ""):
        raise ZagreusError(f"configs/profiles/{plan.profile}.yaml slurm.eval.time = {res.time!r} is not a Slurm "
                           "time limit; write e.g. \"04:00:00\"")
    if not plan.models:
        raise ZagreusError("no models to evaluate: nothing to submit")
    gres = res.gres or (f"gpu:{res.gpus_per_node}" if res.gpus_per_node else None)
    header = slurm_mod.sbatch_header(
        job_name=job_name or f"zagreus-eval-{plan.language}", array=f"0-{len(plan.models) - 1}",
        nodes=res.nodes or 1, ntasks=1, time=res.time, cpus_per_task=res.cpus_per_task or None, gres=gres,
        mem_per_cpu=f"{int(math.ceil(res.mem_per_cpu_gb * 1024))}M" if res.mem_per_cpu_gb else None,
        account=s.account, partition=s.partition)
    lines = ["#!/bin/bash", header.rstrip()]
    lines += ["", f"# Stage 06 eval, {plan.profile}/{plan.language}: one array task per model (lm-eval "
                  f"{lm_eval_version()}); the plan is {plan_file.name}.",
              *[f"#   {i}: {m.name} ({m.kind}{'' if m.step is None else ', step ' + str(m.step)})"
                for i, m in enumerate(plan.models)],
              "set -euo pipefail", "", "export TOKENIZERS_PARALLELISM=false"]
    if spec.profile.offline:
        lines += [f"export {v}=1" for v in OFFLINE_VARIABLES]
    for var in ("HF_HOME", "ZAGREUS_RUNS", "ZAGREUS_CONFIGS"):
        if os.environ.get(var):
            lines.append(f"export {var}={shlex.quote(os.environ[var])}")
    # lm-eval's ifeval reads punkt_tab: the folder `zagreus prefetch` fills
    lines.append(f"export NLTK_DATA={shlex.quote(str(paths.nltk_data_dir()))}")
    lines += [f"cd {shlex.quote(str(workdir))}",
              f"exec {shlex.quote(python or sys.executable)} -m zagreus_utils.stages.evaluation array-task "
              f"--plan {shlex.quote(str(plan_file))} --index \"${{SLURM_ARRAY_TASK_ID}}\"", ""]
    return "\n".join(lines)


def _slurm_dir(plan: Plan) -> Path:
    return Path(plan.out_dir) / "slurm"


def write_slurm(plan: Plan, **kwargs) -> Path:
    """Write ``plan.json`` and ``eval_array.sbatch`` into ``<out_dir>/slurm/``; returns the script."""
    folder = _slurm_dir(plan)
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    plan_file = folder / "plan.json"
    plan_file.write_text(json.dumps(plan.to_json(), indent=2) + "\n", encoding="utf-8")
    script = folder / "eval_array.sbatch"
    script.write_text(slurm_script(plan, plan_file, **kwargs), encoding="utf-8")
    script.chmod(0o755)
    return script


def sbatch_command(plan: Plan, script: Path) -> list[str]:
    return ["sbatch", "--parsable", f"--output={_slurm_dir(plan) / 'logs' / '%A_%a.out'}", str(script)]


def submit(plan: Plan, script: Path) -> str:
    """``sbatch --parsable`` (:func:`zagreus_utils.cluster.slurm.submit`); returns the array job id."""
    from ..cluster import slurm as slurm_mod

    return slurm_mod.submit(script, extra=sbatch_command(plan, script)[2:-1])


def follow(job_id: str, *, poll_s: float = 15, timeout_s: float | None = None, progress: bool = True,
           pending_timeout: float | None = 600, log_path: str | Path | None = None):
    """Follow the array until every task has ended (:func:`zagreus_utils.cluster.slurm.follow`: a progress
    line with the tasks' states; :class:`zagreus_utils.cluster.slurm.JobFailed` with the failed tasks and
    the tail of a failed task's log when one ended other than COMPLETED). Returns the final JobState."""
    from ..cluster import slurm as slurm_mod

    return slurm_mod.follow(job_id, poll=poll_s, timeout=timeout_s, progress=progress,
                            pending_timeout=pending_timeout, label="eval array: Slurm job", log_path=log_path)


def array_task(plan_file: Path, index: int) -> list[Path]:
    """What one Slurm array task runs: evaluate model ``index`` of the plan."""
    plan = Plan.from_json(json.loads(Path(plan_file).read_text(encoding="utf-8")))
    if not 0 <= index < len(plan.models):
        raise ZagreusError(f"array index {index} out of range: the plan has {len(plan.models)} models")
    if plan.offline:
        go_offline()
    tm = task_manager(Path(plan.tasks_dir) if plan.tasks_dir else None, include_defaults=plan.include_defaults)
    return evaluate_model(plan, plan.models[index], tm)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zagreus_utils.stages.evaluation")
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("array-task", help="evaluate one model of a plan (a Slurm array task)")
    a.add_argument("--plan", required=True)
    a.add_argument("--index", required=True, type=int)
    args = parser.parse_args(argv)
    try:
        paths_out = array_task(Path(args.plan), args.index)
    except ZagreusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for p in paths_out:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
