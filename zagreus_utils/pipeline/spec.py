"""The run spec: one language x one profile (+ overrides), typed and validated.

``configs/languages/<code>.yaml`` holds what a language is (pretraining mixture, evaluation suite,
published tables); ``configs/profiles/<name>.yaml`` holds the scale (model, training, parallelism,
hardware, Slurm). Every stage's settings derive from the :class:`Spec` built here, and every
mistake in those files is reported with the file, the line and the valid choices.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from . import paths
from .data_stages import (DEFAULT_STAGE_NAME, RESETS, DataStage, InitReset, ResolvedStage, init_problems,
                          late_stage_problems, resolve, stage_problems)
from .errors import ZagreusError
from ..model.arch import head_problems
from ..nanotron.schedule import wsd_decay


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- language -------------------------------------------------------------------------------

class Source(_Strict):
    id: str
    dataset: str
    subset: str | None = None
    language: str  # eng | <code> | code
    tokens: int | None = None  # as printed in the report; None where it prints none


class Budget(_Strict):
    eng: int
    target: int
    code: int

    @property
    def total(self) -> int:
        return self.eng + self.target + self.code


class EvalTask(_Strict):
    task: str
    metric: str
    num_fewshot: int | None = None  # None: the task's own default
    chat_template: bool = False
    printed_as: str | None = None
    requires: str | None = None


class Evaluation(_Strict):
    base: list[EvalTask]
    instruct: list[EvalTask] = []
    extra: list[EvalTask] = []


class LanguageSpec(_Strict):
    code: str
    name: str
    iso639_1: str
    model_name: str
    published_model: str
    mixture: list[Source]
    budget: Budget
    evaluation: Evaluation
    published_tables: list[str]
    # the language the continual-pretraining demonstration (optional stage 09) continues a run into
    second_language: str | None = None

    @model_validator(mode="after")
    def _unique_sources(self):
        ids = [s.id for s in self.mixture]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"mixture source ids must be unique; repeated: {dupes}")
        return self


# --- profile --------------------------------------------------------------------------------

class DataSettings(_Strict):
    source: Literal["sample", "hub"]
    sample_scale: float = 1.0
    sample_facts_per_type: int | None = None  # the sample corpus' knowledge: at most N facts per type (None: all)
    max_docs_per_source: int | None = None
    min_doc_chars: int = 200
    dedup: Literal["minhash", "none"] = "minhash"
    workers: int = 1


class TokenizerSettings(_Strict):
    kind: Literal["bpe", "pretrained"]
    name_or_path: str
    vocab_size: int


class ModelSettings(_Strict):
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int
    rms_norm_eps: float
    rope_theta: float
    rope_interleaved: bool = False
    tie_word_embeddings: bool = True
    hidden_act: str = "silu"
    init_std: float
    initializer_range: float = 0.02
    bos_token_id: int
    eos_token_id: int
    dtype: Literal["float32", "bfloat16", "float16"]
    # SmolLM3 recipe: no rotary embedding in every Nth layer (NoPE); None keeps RoPE everywhere
    no_rope_layer: int | None = None

    @model_validator(mode="after")
    def _heads(self):
        problems = head_problems(self.hidden_size, self.num_attention_heads, self.num_key_value_heads)
        if self.no_rope_layer is not None and (self.no_rope_layer < 1
                                               or self.num_hidden_layers % self.no_rope_layer):
            problems.append(f"no_rope_layer ({self.no_rope_layer}) must be a positive divisor of "
                            f"num_hidden_layers ({self.num_hidden_layers}): e.g. 4 drops RoPE in every 4th "
                            f"layer, null keeps it everywhere")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class TrainingSettings(_Strict):
    sequence_length: int
    micro_batch_size: int
    batch_accumulation_per_replica: int
    train_steps: int
    checkpoint_interval: int
    seed: int
    learning_rate: float
    lr_warmup_steps: int
    lr_warmup_style: Literal["linear", "constant"] = "linear"
    lr_decay_starting_step: int | None = None
    lr_decay_steps: int | None = None
    lr_decay_style: Literal["linear", "cosine", "1-sqrt"] = "linear"
    min_decay_lr: float
    adam_beta1: float
    adam_beta2: float
    adam_eps: float
    weight_decay: float
    clip_grad: float
    # SmolLM3 recipe switches (all off by default)
    document_masking: bool = False  # tokens attend only within their own document (EOS-delimited)
    weight_decay_exclude: list[str] = []  # parameter-name patterns (regex) trained without weight decay
    # WSD ending in a linear decay to zero over this final fraction of the steps; it then replaces
    # lr_decay_starting_step, lr_decay_steps, lr_decay_style and min_decay_lr
    wsd_decay_fraction: float | None = None
    # continual pretraining (zagreus_utils.pipeline.data_stages): start from a model or checkpoint
    init_from: str | None = None  # HF folder or Hub id, or nanotron checkpoint folder; None: from scratch
    init_reset: list[InitReset] = list(RESETS)  # what is not taken over from init_from
    init_rewarmup_steps: int | None = None  # warmup of a run from init_from (None: lr_warmup_steps)

    @property
    def warmup_steps(self) -> int:
        """The warmup this run uses: ``init_rewarmup_steps`` when it starts from ``init_from``
        with a reset schedule and sets one, else ``lr_warmup_steps``."""
        if self.init_from is not None and self.init_rewarmup_steps is not None:
            return self.init_rewarmup_steps
        return self.lr_warmup_steps

    @model_validator(mode="after")
    def _recipe(self):
        problems = init_problems(self.init_from, self.init_reset, self.init_rewarmup_steps, self.train_steps)
        if problems:
            raise ValueError("; ".join(problems))
        f = self.wsd_decay_fraction
        if f is not None:
            if not 0 < f < 1:
                raise ValueError(f"wsd_decay_fraction ({f}) must lie between 0 and 1, e.g. 0.1 for the last 10 % "
                                 f"of the steps; null keeps the lr_decay_* keys")
            start, _ = wsd_decay(self.train_steps, f)
            if start < self.warmup_steps:
                raise ValueError(f"wsd_decay_fraction ({f}) starts the decay at step "
                                 f"{start}, before the end of warmup "
                                 f"(step {self.warmup_steps}): use a smaller fraction")
        for pattern in self.weight_decay_exclude:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"weight_decay_exclude pattern {pattern!r} is not a regular expression ({exc})")
        return self


class Parallelism(_Strict):
    dp: int
    tp: int = 1
    pp: int = 1

    @property
    def world_size(self) -> int:
        return self.dp * self.tp * self.pp


class Hardware(_Strict):
    nodes: int
    gpus_per_node: int
    gpu: str
    gpu_memory_gb: float
    peak_tflops: float | None = None


class SlurmStage(_Strict):
    nodes: int | None = None
    gpus_per_node: int | None = None
    # CPU profiles only (gpus_per_node 0): torchrun processes per node under the slurm launcher
    # (DDP over gloo); a GPU profile runs one process per GPU and leaves this unset.
    procs_per_node: int | None = None
    cpus_per_task: int | None = None
    tasks: int | None = None
    workers: int | None = None
    time: str
    mem_per_cpu_gb: float | None = None
    gres: str | None = None


class SlurmSettings(_Strict):
    account: str | None = None
    partition: str | None = None
    # The training environment (nanotron, datatrove, flash-attn) that `make train-env TRAIN_ENV=<dir>`
    # builds; relative to the repository root or absolute. A GPU profile's pretraining script
    # activates it ($ZAGREUS_TRAIN_ENV at submission time wins) and runs <dir>/src/nanotron/run_train.py.
    train_env: str = ".venv-train"
    tokenization: SlurmStage
    pretraining: SlurmStage
    sft: SlurmStage
    eval: SlurmStage


class SftSettings(_Strict):
    sequence_len: int
    micro_batch_size: int
    gradient_accumulation_steps: int
    num_epochs: int
    learning_rate: float
    val_set_size: float


class EvalSettings(_Strict):
    batch_size: int
    device: str


#: what an offline profile (``offline: true``) sets to 1: the Hugging Face libraries read no network
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


class ProfileSpec(_Strict):
    name: str
    description: str
    offline: bool
    data: DataSettings
    tokenizer: TokenizerSettings
    model: ModelSettings
    training: TrainingSettings
    parallelism: Parallelism
    hardware: Hardware
    slurm: SlurmSettings
    sft: SftSettings
    eval: EvalSettings
    # the mixture from each step on (zagreus_utils.pipeline.data_stages); default: one stage, the language's
    data_stages: list[DataStage] = [DataStage(name=DEFAULT_STAGE_NAME, start_step=0)]

    @field_validator("data_stages")
    @classmethod
    def _stage_order(cls, stages):
        problems = stage_problems(stages)
        if problems:
            raise ValueError("; ".join(problems))
        return stages


class Spec(_Strict):
    """One run: a language and a profile."""

    language: LanguageSpec
    profile: ProfileSpec

    @property
    def run_id(self) -> str:
        return f"{self.profile.name}/{self.language.code}"

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def digest(self) -> str:
        """A stable hash of the resolved spec (what the stages' up-to-date check keys on)."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# --- loading --------------------------------------------------------------------------------

def available(kind: Literal["languages", "profiles"], root: Path | None = None) -> list[str]:
    folder = (root or paths.CONFIGS) / kind
    return sorted(p.stem for p in folder.glob("*.yaml"))


def _config_file(kind: Literal["languages", "profiles"], name: str, root: Path | None) -> Path:
    path = (root or paths.CONFIGS) / kind / f"{name}.yaml"
    if not path.is_file():
        choices = ", ".join(available(kind, root)) or "(none found)"
        what = "language" if kind == "languages" else "profile"
        raise ZagreusError(f"unknown {what} {name!r}: no file {path}. Valid {kind}: {choices}")
    return path


def read_yaml(path: Path) -> Any:
    """Parse a YAML file; a syntax error names the file and line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ZagreusError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ZagreusError(f"malformed YAML in {path}{where}: {problem}. Fix the syntax there.") from None


def _key_line(path: Path, loc: tuple) -> int | None:
    """1-based line of the key at ``loc`` (a pydantic error location) in the YAML file."""
    try:
        node = yaml.compose(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part:
                    line, node = key.start_mark.line + 1, value
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The pydantic model that owns the last element of ``loc`` (to list valid keys)."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return None
        ann = field.annotation
        for arg in (ann, *getattr(ann, "__args__", ())):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                current = arg
                break
        else:
            return None
    return current


def _validate(model: type[BaseModel], data: Any, path: Path, sources: dict[str, Path] | None = None,
              overrides: dict[str, Any] | None = None):
    if not isinstance(data, dict):
        raise ZagreusError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            dotted = ".".join(str(p) for p in loc) or "(top level)"
            file = path
            if sources and loc and loc[0] in sources:  # a Spec: language/profile halves
                file, loc = sources[loc[0]], loc[1:]
                dotted = ".".join(str(p) for p in loc) or "(top level)"
            line = _key_line(file, loc)
            where = f"{file}:{line}" if line else str(file)
            if overrides and dotted in overrides:  # the bad value came from the command line
                where = override_text(dotted, overrides[dotted])
            if err["type"] == "extra_forbidden":
                owner = _model_at(model if not sources else Spec, tuple(err["loc"]))
                valid = ", ".join(owner.model_fields) if owner else "see the schema"
                lines.append(f"{where}: unknown key {dotted!r}. Valid keys here: {valid}")
            elif err["type"] == "missing":
                lines.append(f"{where}: missing key {dotted!r}; add it")
            else:
                got = err.get("input")  # a whole section (a validator across keys) is not repeated back
                shown = "" if isinstance(got, (dict, list)) and err["type"] == "value_error" else f" (got {got!r})"
                lines.append(f"{where}: {dotted}: {err['msg'].removeprefix('Value error, ')}{shown}")
        raise ZagreusError("; ".join(lines)) from None


def _apply_overrides(data: dict, overrides: dict[str, Any], path: Path) -> dict:
    """Apply ``{"training.train_steps": 10}``-style overrides to a profile mapping."""
    data = copy.deepcopy(data)
    for dotted, value in overrides.items():
        keys = dotted.split(".")
        node = data
        for i, key in enumerate(keys[:-1]):
            if not isinstance(node.get(key), dict):
                raise ZagreusError(f"override {dotted!r}: {'.'.join(keys[:i + 1])!r} is not a "
                                   f"section of {path}. Sections: {', '.join(k for k, v in data.items() if isinstance(v, dict))}")
            node = node[key]
        if keys[-1] not in node:
            raise ZagreusError(f"override {dotted!r}: no key {keys[-1]!r} in {path}"
                               f"{' section ' + '.'.join(keys[:-1]) if len(keys) > 1 else ''}. "
                               f"Valid keys: {', '.join(node)}")
        node[keys[-1]] = value
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """``"training.train_steps=10"`` -> ``("training.train_steps", 10)`` (value parsed as YAML)."""
    if "=" not in text:
        raise ZagreusError(f"override {text!r} must look like section.key=value, e.g. training.train_steps=10")
    key, _, raw = text.partition("=")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise ZagreusError(f"override {text!r}: the value {raw!r} is not valid YAML") from None
    if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string; a number is meant
        try:
            value = float(value)
        except ValueError:
            pass
    return key.strip(), value


def override_text(dotted: str, value: Any) -> str:
    """How an override reads on the command line: ``--set training.train_steps=50``."""
    shown = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    return f"--set {dotted}={shown}"


def value_source(profile: str, dotted: str, overrides: dict[str, Any] | None = None,
                 root: Path | None = None) -> str:
    """Where a profile value comes from: the ``--set`` that gave it, else ``file:line``."""
    if overrides and dotted in overrides:
        return override_text(dotted, overrides[dotted])
    path = _config_file("profiles", profile, root)
    line = _key_line(path, tuple(dotted.split(".")))
    shown = path.relative_to(paths.REPO_ROOT) if path.is_relative_to(paths.REPO_ROOT) else path
    return f"{shown}:{line}" if line else str(shown)


def load_language(code: str, root: Path | None = None) -> LanguageSpec:
    path = _config_file("languages", code, root)
    spec = _validate(LanguageSpec, read_yaml(path), path)
    if spec.code != code:
        raise ZagreusError(f"{path}: code {spec.code!r} does not match the file name; set code: {code}")
    return spec


# English: the second language of every run (its sample-corpus words: configs/sample_corpus/eng.yaml);
# it has no configs/languages/ file because no run is English only.
ENGLISH = ("eng", "English")


def language_names(root: Path | None = None) -> dict[str, str]:
    """``{code: name}`` of every configured language (``configs/languages/*.yaml``), then English."""
    names = {code: load_language(code, root).name for code in available("languages", root)}
    return {**names, ENGLISH[0]: ENGLISH[1]}


def load_profile(name: str, overrides: dict[str, Any] | None = None, root: Path | None = None) -> ProfileSpec:
    path = _config_file("profiles", name, root)
    data = read_yaml(path)
    if overrides:
        if not isinstance(data, dict):
            raise ZagreusError(f"{path}: expected a mapping of keys at the top level")
        data = _apply_overrides(data, overrides, path)
    spec = _validate(ProfileSpec, data, path, overrides=overrides)
    if spec.name != name:
        raise ZagreusError(f"{path}: name {spec.name!r} does not match the file name; set name: {name}")
    return spec


def load_spec(language: str, profile: str, overrides: dict[str, Any] | None = None,
              root: Path | None = None) -> Spec:
    """Build and validate the spec of one run (language x profile + overrides)."""
    spec = Spec(language=load_language(language, root), profile=load_profile(profile, overrides, root))
    data_stages(spec, root, overrides)  # every source a stage names exists
    return spec


def data_stages(spec: Spec, root: Path | None = None, overrides: dict[str, Any] | None = None) -> list[ResolvedStage]:
    """The run's data stages with their sources (:func:`zagreus_utils.pipeline.data_stages.resolve`);
    a stage starting at or after the last step, an unknown language or source is refused naming
    where the stages were written."""
    where = value_source(spec.profile.name, "data_stages", overrides, root)
    late = late_stage_problems(list(spec.profile.data_stages), spec.profile.training.train_steps)
    if late:
        raise ZagreusError(f"{where}: " + "; ".join(late))
    try:
        return resolve(list(spec.profile.data_stages), spec.language, lambda code: load_language(code, root))
    except (ValueError, ZagreusError) as exc:
        raise ZagreusError(f"{where}: {exc}") from None
