"""``zagreus prefetch``: what a profile reads from the network at run time, listed and fetched.

Compute nodes usually have no internet. On a login node, ``zagreus prefetch --profile full``
downloads into ``HF_HOME`` / ``NLTK_DATA`` everything the full profile's jobs read: the tokenizer,
the mixture's dataset shards (the same ``hf://datasets`` folders the data stage reads,
:func:`zagreus_utils.stages.data_inputs.hub_input`; offline, the data stage reads them from the cache,
:func:`cached_input`), the lm-eval task datasets of the language's evaluation suite
(from the task YAMLs of the installed lm-eval), and NLTK's ``punkt_tab`` (lm-eval's ``ifeval`` loads
it at run time). ``--dry-run`` lists them without any network access. Tasks that the installed
lm-eval lacks are listed with where to get them (:data:`EXTERNAL_TASKS`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..model.start_model import looks_like_hub_id, resolve_path
from ..pipeline import paths
from ..pipeline.errors import ZagreusError
from ..pipeline.spec import load_spec
from ..pipeline.paths import hf_home, hub_cache, nltk_data_dir  # noqa: F401 (re-exported)
from ..stages.data_inputs import SourceInput, hub_input

TOKENIZER_FILES = ["tokenizer*", "special_tokens_map.json", "config.json", "generation_config.json"]
NLTK_RESOURCES = ("punkt_tab",)

# Report tasks that lm-eval's releases do not ship (configs/languages/*.yaml `requires:`), and what
# to install for them. Their task folders load with `lm-eval --include_path <folder>`.
EXTERNAL_TASKS = {
    "lm-evaluation-harness-pt": (
        "the Open Portuguese LLM Leaderboard's fork: git clone https://github.com/eduagarcia/lm-evaluation-harness-pt "
        "and pass its lm_eval/tasks folder with --include_path (or pip install it into a separate env: it "
        "replaces lm_eval, which axolotl pins to 0.4.11)"),
    "mii-llm fork of lm-evaluation-harness": (
        "mii-llm's fork of lm-evaluation-harness (task ifeval-ita, dataset mii-llm/ifeval-ita): clone it and pass "
        "its ifeval-ita task folder with --include_path"),
}


@dataclass(frozen=True)
class Item:
    kind: str                 # tokenizer | model | dataset | lm-eval | nltk | external
    name: str                 # hub repo id, NLTK resource, or task name
    patterns: tuple = ()      # allow_patterns of snapshot_download (empty: the whole repo)
    repo_type: str = "model"
    reason: str = ""          # who reads it
    fix: str = ""             # kind "external": what to install

    def line(self) -> str:
        what = f"{self.name}" + (f" [{', '.join(self.patterns)}]" if self.patterns else "")
        return f"{self.kind:9} {what}  ({self.reason})" + (f": {self.fix}" if self.fix else "")


@lru_cache(maxsize=1)
def _task_index() -> dict:
    from lm_eval.tasks import TaskManager

    return TaskManager().task_index


def task_datasets(task: str) -> list[tuple[str, str | None]] | None:
    """(dataset_path, dataset_name) pairs an installed lm-eval task (or group) reads; None if unknown.

    Reads the task YAMLs in ``simple`` mode: no task code is imported (lm-eval's ifeval module would
    fetch NLTK data at import)."""
    from lm_eval.utils import load_yaml_config

    index = _task_index()
    entry = index.get(task)
    if entry is None or not entry.get("yaml_path") or entry["yaml_path"] == -1:
        return None
    paths = [entry["yaml_path"]]
    if entry["type"] != "task":  # a group: its tasks are the task YAMLs of its folder
        folder = Path(entry["yaml_path"]).parent
        paths = [v["yaml_path"] for v in index.values() if v.get("type") == "task"
                 and v.get("yaml_path") not in (None, -1) and Path(v["yaml_path"]).parent == folder]
    found = set()
    for p in paths:
        cfg = load_yaml_config(yaml_path=p, mode="simple")
        if cfg.get("dataset_path"):
            found.add((cfg["dataset_path"], cfg.get("dataset_name")))
    return sorted(found, key=lambda x: (x[0], x[1] or ""))


def items(profile: str, languages: list[str]) -> list[Item]:
    """Everything the profile reads at run time for these languages, deduplicated, in fetch order."""
    from ..stages.evaluation.tasks import suite_source  # imports this module: a cycle at import time

    out: list[Item] = []
    specs = [load_spec(lang, profile) for lang in languages]
    tok = specs[0].profile.tokenizer
    if tok.kind == "pretrained":
        out.append(Item("tokenizer", tok.name_or_path, tuple(TOKENIZER_FILES), "model", "stages 02 tokenization, 03-06"))
    start = specs[0].profile.training.init_from
    if start and looks_like_hub_id(start) and not resolve_path(start, paths.REPO_ROOT).exists():
        out.append(Item("model", start, (), "model", "stage 03 pretraining: the start model (training.init_from)"))
    needs_nltk = False
    for spec in specs:
        if spec.profile.data.source == "hub":
            for source in spec.language.mixture:
                it = source_item(source)
                out.append(Item(it.kind, it.name, it.patterns, it.repo_type,
                                f"stage 01 data, {spec.language.code} source {source.id}"))
        if suite_source(spec) != "lm-eval":
            continue  # the generated held-out tasks (smoke): nothing to fetch
        ev = spec.language.evaluation
        for t in ev.base + ev.instruct + ev.extra:
            where = f"stage 06 eval, {spec.language.code}"
            if t.requires:
                out.append(Item("external", t.task, reason=f"{where}; not in lm-eval",
                                fix=EXTERNAL_TASKS.get(t.requires, t.requires)))
                continue
            found = task_datasets(t.task)
            if found is None:
                out.append(Item("external", t.task, reason=f"{where}; not in the installed lm-eval",
                                fix=f"a lm-eval release with task {t.task}"))
                continue
            for path, _name in found:
                out.append(Item("lm-eval", path, (), "dataset", f"{where}, task {t.task}"))
            needs_nltk = needs_nltk or t.task.startswith("ifeval")
    if needs_nltk:
        out += [Item("nltk", r, reason="lm-eval ifeval (sentence splitting)") for r in NLTK_RESOURCES]
    seen, unique = set(), []
    for it in out:  # one download per (kind, repo, patterns); the first reason is kept
        key = (it.kind, it.name, it.patterns)
        if key not in seen:
            seen.add(key)
            unique.append(it)
    return unique


def snapshot(item: Item) -> Path | None:
    """The local snapshot folder of a hub item in HF_HUB_CACHE, or None when it was not fetched."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(item.name, repo_type=item.repo_type, allow_patterns=list(item.patterns) or None,
                                      local_files_only=True, cache_dir=hub_cache()))
    except Exception:  # huggingface_hub raises LocalEntryNotFoundError (and others) when absent
        return None


def cached(item: Item) -> bool:
    """Whether the item is already in HF_HOME / NLTK_DATA (offline check)."""
    if item.kind == "nltk":
        return (nltk_data_dir() / "tokenizers" / item.name).is_dir()
    if item.kind == "external":
        return False
    return snapshot(item) is not None


def source_item(source) -> Item:
    """The hub files a mixture source reads: the folder and glob of :func:`zagreus_utils.stages.data_inputs.hub_input`."""
    inp = hub_input(source)
    folder = inp.folder.removeprefix(f"hf://datasets/{source.dataset}").strip("/")
    return Item("dataset", source.dataset, (f"{folder}/{inp.glob}" if folder else inp.glob,), "dataset")


def cached_input(source, spec):
    """Offline: the mixture source's prefetched shards in HF_HUB_CACHE, as a local data-stage input."""
    inp, item = hub_input(source), source_item(source)
    snap = snapshot(item)
    if snap is None:
        raise ZagreusError(
            f"offline (HF_HUB_OFFLINE=1) and {source.dataset} [{item.patterns[0]}] (source {source.id}) is not in "
            f"{hub_cache()}: run `zagreus prefetch --profile {spec.profile.name} --languages "
            f"{spec.language.code}` on a login node with the same HF_HOME, or use the smoke profile (--profile smoke)")
    folder = inp.folder.removeprefix(f"hf://datasets/{source.dataset}").strip("/")
    return SourceInput(source, str(snap / folder) if folder else str(snap), inp.glob, inp.text_key, local=True)


def fetch(item: Item) -> Path | None:
    """Download one item (with huggingface_hub's / NLTK's progress bars)."""
    if item.kind == "external":
        return None
    if item.kind == "nltk":
        import nltk

        target = nltk_data_dir()
        target.mkdir(parents=True, exist_ok=True)
        if not nltk.download(item.name, download_dir=str(target), quiet=False, raise_on_error=True):
            raise ZagreusError(f"NLTK could not download {item.name} into {target}; check the network")
        return target
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(item.name, repo_type=item.repo_type, allow_patterns=list(item.patterns) or None,
                                  cache_dir=hub_cache()))


def main(profile: str, languages: list[str], *, dry_run: bool, log=print) -> int:
    todo = items(profile, languages)
    log(f"profile {profile}, languages {' '.join(languages)}: {len(todo)} items "
        f"(HF_HOME={hf_home()}, NLTK_DATA={nltk_data_dir()})")
    if dry_run:
        for it in todo:
            log(("cached    " if cached(it) else "to fetch  ") + it.line() if it.kind != "external"
                else "install   " + it.line())
        return 0
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ZagreusError("HF_HUB_OFFLINE=1: prefetch downloads; run it on a login node with network, "
                           "without the offline variables (or use --dry-run)")
    for n, it in enumerate(todo, 1):
        if it.kind == "external":
            log(f"[{n}/{len(todo)}] not downloadable here: {it.line()}")
            continue
        log(f"[{n}/{len(todo)}] {it.line()}")
        fetch(it)
    return 0
