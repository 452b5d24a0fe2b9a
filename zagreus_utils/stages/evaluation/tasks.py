"""The eval stage's task suites, the local held-out tasks it renders, and lm-eval's task registry.

The suite comes from the spec: ``full`` (any profile on real data) takes
``configs/languages/<lang>.yaml``'s ``evaluation`` lists, the report's commands (sections 6-7); ``smoke``
(profiles on the generated sample corpus) the local task YAMLs committed in ``configs/lm_eval/`` over
the project's held-out items, which :func:`render_tasks` copies into ``<out_dir>/tasks/`` with the
run's actual data paths (nothing touches the network). :func:`resolve` keeps the tasks lm-eval has
here and refuses, with the available ones listed, a task it does not know or cannot load offline.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import yaml

from ...pipeline import paths
from ...pipeline.errors import ZagreusError
from ...pipeline.spec import ENGLISH, OFFLINE_VARIABLES
from ...results.benchmarks import HELDOUT_STYLES, STYLE_METRIC  # noqa: F401 (re-exported)

TASK_CONFIGS = paths.CONFIGS / "lm_eval"
HELDOUT_DIR = Path("raw") / "heldout"  # in the data stage's folder: the first place looked (find_heldout)
BPB = "bpb"
BPB_METRIC = "bits_per_byte"
FEWSHOT_ITEMS = 10  # per style and language: the separate split the few-shot examples come from
TEST_ITEMS = 60     # per style and language: the test split (the 2-core time budget; 100 are generated)
BPB_DOCS = 50       # held-out documents per language for bits per byte
ACCURACY_METRICS = ("acc", "acc_norm")

_BUILDERS = {"json", "csv", "parquet", "text", "arrow", "pandas", "webdataset", "imagefolder", "audiofolder"}


@dataclass(frozen=True)
class SuiteTask:
    """One lm-eval task of a suite and how the report reads it."""

    task: str                    # the lm-eval task (or group) name
    metric: str                  # headline metric, lm-eval's key without the filter
    num_fewshot: int | None      # None: the task's own default (lm-eval's rule)
    chat_template: bool = False
    language: str = ENGLISH[0]   # eng | the run language
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
    for lang in (language, ENGLISH[0]):
        for style in HELDOUT_STYLES:
            out.append(SuiteTask(f"{style}_{lang}", STYLE_METRIC[style], None, False, lang, local=True))
        if kind == "base":
            out.append(SuiteTask(f"{BPB}_{lang}", BPB_METRIC, None, False, lang, local=True))
    return out


def _task_language(task: str, spec) -> str:
    lang = spec.language
    if re.search(rf"(^|[_\-])({re.escape(lang.iso639_1)}|{re.escape(lang.code)})$", task):
        return lang.code
    return ENGLISH[0]


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
    english = [SuiteTask(t, m, n, c, ENGLISH[0], p) for t, m, n, c, p in _DEFAULT_INSTRUCT_ENGLISH]
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
    heldout_dir, tasks_dir = Path(heldout_dir), Path(tasks_dir)
    if not heldout_dir.is_dir():
        raise ZagreusError(f"no held-out items: {heldout_dir} does not exist. They come from the data "
                           f"stage (zagreus run --profile smoke --languages {language} --stages data)")
    data_dir = tasks_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    written: set[Path] = set()
    index: dict[str, dict] = {}
    for lang in (language, ENGLISH[0]):
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


def find_heldout(data_dir, language: str) -> Path:
    """The data stage's held-out folder in its stage folder ``data_dir`` (``raw/heldout``, else any
    ``**/heldout`` holding ``mc_<language>.jsonl``)."""
    data = Path(data_dir)
    first = data / HELDOUT_DIR
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

