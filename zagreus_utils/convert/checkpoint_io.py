"""Reading and writing the two checkpoint layouts: nanotron's (one safetensors file per parameter,
tp shards merged by their recorded slices) and Hugging Face's (sharded ``model*.safetensors``)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
import yaml

from ..pipeline.errors import ZagreusError
from .names import NT_LM_HEAD, arch_from_model_config, nanotron_shapes, split_spec

CHECKPOINT_VERSION = "1.5"  # nanotron's CHECKPOINT_VERSION on main (2026)
MAX_SHARD_BYTES = 2 * 1024**3  # Hugging Face weight files are split at 2 GB


_FILE_RE = re.compile(r"model_(?P<suffix>[A-Za-z0-9_]+?)"
                      r"(?:_pp-rank-(?P<pp>\d+)-of-(?P<pps>\d+)_tp-rank-(?P<tp>\d+)-of-(?P<tps>\d+)"
                      r"(?:_exp-rank-(?P<exp>\d+)-of-(?P<exps>\d+))?)?\.safetensors")


def _slice_str(s: slice) -> str:
    return ",".join("None" if x is None else str(int(x)) for x in (s.start, s.stop, s.step))


def _int_or_none(text: str) -> int | None:
    text = text.strip()
    if text == "None":
        return None
    digits = re.findall(r"-?\d+", text)  # tolerate numpy reprs such as "np.int64(1600)"
    if not digits:
        raise ValueError(text)
    return int(digits[-1])


def format_slices_pairs(pairs: Iterable[tuple[tuple[slice, ...], tuple[slice, ...]]]) -> str:
    """nanotron's ``local_global_slices_pairs`` string: ``l|l#g|g;...`` with ``start,stop,step``."""
    return ";".join("|".join(map(_slice_str, local)) + "#" + "|".join(map(_slice_str, glob))
                    for local, glob in pairs)


def parse_slices_pairs(text: str) -> list[tuple[tuple[slice, ...], tuple[slice, ...]]]:
    pairs = []
    for pair in text.split(";"):
        local, glob = pair.split("#")
        pairs.append(tuple(tuple(slice(*(_int_or_none(x) for x in s.split(","))) for s in side.split("|"))
                           for side in (local, glob)))
    return pairs


def parse_shape(text: str) -> tuple[int, ...]:
    return tuple(_int_or_none(x) for x in text.strip().strip("()").split(",") if x.strip())


def shard_file_name(tp_rank: int, tp: int, pp_rank: int = 0, pp: int = 1, suffix: str = "weight") -> str:
    return f"model_{suffix}_pp-rank-{pp_rank}-of-{pp}_tp-rank-{tp_rank}-of-{tp}.safetensors"


def param_folder(model_dir: Path, nt_name: str) -> Path:
    return model_dir.joinpath(*nt_name.split(".")[:-1])


def shard_tensor(t: torch.Tensor, tp: int, spec: tuple[int, tuple[int, ...] | None]
                 ) -> list[tuple[torch.Tensor, str]]:
    """nanotron's tp sharding of one full tensor: [(local tensor, local_global_slices_pairs)] per rank."""
    dim, chunks = spec
    nd = t.dim()
    full = tuple(slice(None) for _ in range(nd))

    def along(s: slice) -> tuple[slice, ...]:
        return tuple(s if d == dim else slice(None) for d in range(nd))

    out = []
    for rank in range(tp):
        if chunks is None:
            size = t.shape[dim] // tp
            glob = slice(rank * size, (rank + 1) * size)
            out.append((t.narrow(dim, rank * size, size).contiguous(), format_slices_pairs([(full, along(glob))])))
            continue
        pieces, pairs, g0 = [], [], 0
        for chunk in chunks:
            size = chunk // tp
            l0 = g0 // tp
            pieces.append(t.narrow(dim, g0 + rank * size, size))
            pairs.append((along(slice(l0, l0 + size)), along(slice(g0 + rank * size, g0 + (rank + 1) * size))))
            g0 += chunk
        out.append((torch.cat(pieces, dim).contiguous(), format_slices_pairs(pairs)))
    return out


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


class NanotronCheckpoint:
    """A nanotron checkpoint folder on disk: its config, and its parameters merged over tp shards."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.model_dir = folder / "model"
        self.config_file = folder / "model_config.json"
        self.config = self._read_config()
        self.arch, self.dropped_keys = arch_from_model_config(self.config, str(self.config_file))
        self.meta = self._read_json(folder / "checkpoint_metadata.json")
        self.shapes = nanotron_shapes(self.arch)
        self.files = self._scan()
        tps = {int(m["tps"]) for fs in self.files.values() for _, m in fs if m["tps"]}
        self.tp = max(tps) if tps else 1

    # -- config
    def _read_json(self, path: Path) -> dict | None:
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ZagreusError(f"{path}: not valid JSON ({exc})") from exc

    def _read_config(self) -> dict:
        cfg = self._read_json(self.config_file)
        if cfg is not None:
            return cfg
        yaml_file = self.folder / "config.yaml"
        if yaml_file.is_file():
            data = yaml.safe_load(yaml_file.read_text()) or {}
            cfg = (data.get("model") or {}).get("model_config")
            if isinstance(cfg, dict):
                self.config_file = yaml_file
                return cfg
            raise ZagreusError(f"{yaml_file}: no model.model_config section, and no model_config.json beside it")
        raise ZagreusError(f"{self.folder} is not a nanotron checkpoint: model_config.json is missing")

    def yaml_config(self) -> dict:
        path = self.folder / "config.yaml"
        if not path.is_file():
            return {}
        try:
            return yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ZagreusError(f"{path}: not valid YAML ({exc})") from exc

    # -- files
    def _scan(self) -> dict[str, list[tuple[Path, dict]]]:
        if not self.model_dir.is_dir():
            raise ZagreusError(f"{self.folder} is not a nanotron checkpoint: the model/ folder is missing")
        found: dict[str, list[tuple[Path, dict]]] = {}
        bad = []
        for path in sorted(self.model_dir.rglob("*.safetensors")):
            m = _FILE_RE.fullmatch(path.name)
            if not m:
                bad.append(path)
                continue
            parts = path.parent.relative_to(self.model_dir).parts
            found.setdefault(".".join(parts + (m["suffix"],)), []).append((path, m.groupdict()))
        unknown = [n for n in found if n not in self.shapes] + [_rel(p, self.folder) for p in bad]
        if unknown:
            hint = (" (tie_word_embeddings is true in the config, so lm_head must not be stored)"
                    if NT_LM_HEAD in unknown and self.arch.tie_word_embeddings else "")
            raise ZagreusError(f"{self.model_dir}: unknown parameters for the config in {self.config_file.name}"
                               f"{hint}: {', '.join(sorted(unknown)[:8])}"
                               + (f" and {len(unknown) - 8} more" if len(unknown) > 8 else ""))
        missing = [n for n in self.shapes if n not in found]
        if missing:
            tp = max((int(m["tps"]) for fs in found.values() for _, m in fs if m["tps"]), default=1)
            expected = [_rel(param_folder(self.model_dir, n) / (
                shard_file_name(0, tp) if split_spec(self.arch, n) else "model_weight.safetensors"), self.folder)
                for n in missing]
            raise ZagreusError(f"{self.folder}: missing parameters ({len(missing)}): expected file "
                               + ", ".join(expected[:5]) + (" ..." if len(expected) > 5 else ""))
        return found

    def read(self, name: str) -> torch.Tensor:
        """The full tensor of parameter ``name``, merged from its shards by their recorded slices."""
        from safetensors import safe_open

        expected = self.shapes[name]
        entries = self.files[name]
        sharded = [(p, m) for p, m in entries if m["tps"]]
        if len(entries) == 1 and not sharded:
            path = entries[0][0]
            t, _ = self._open(path, safe_open)
            self._check_shape(path, tuple(t.shape), expected, name)
            return t
        if len(sharded) != len(entries):
            raise ZagreusError(f"{param_folder(self.model_dir, name)}: both sharded and unsharded files for {name}")
        tp = int(sharded[0][1]["tps"])
        by_rank: dict[int, tuple[Path, dict]] = {}
        for path, m in sharded:
            if int(m["tps"]) != tp:
                raise ZagreusError(f"{path}: tp size {m['tps']} differs from {tp} of the other shards of {name}")
            if int(m["tp"]) in by_rank:
                raise ZagreusError(f"{path}: a second file for tp rank {m['tp']} of {name} "
                                   f"(also {by_rank[int(m['tp'])][0].name})")
            by_rank[int(m["tp"])] = (path, m)
        for rank in range(tp):
            if rank not in by_rank:
                some = sharded[0][1]
                want = param_folder(self.model_dir, name) / shard_file_name(rank, tp, int(some["pp"]), int(some["pps"]))
                raise ZagreusError(f"missing shard: {want} (tp rank {rank} of {tp} for {name})")
        out = None
        covered: list[tuple[int, int, int]] = []  # (dim, start, stop) of global slices filled
        for rank in range(tp):
            path, _ = by_rank[rank]
            shard, meta = self._open(path, safe_open)
            try:
                pairs = parse_slices_pairs(meta["local_global_slices_pairs"])
                shape = parse_shape(meta["unsharded_shape"])
            except (KeyError, ValueError, TypeError) as exc:
                if tp == 1:  # a single shard without usable metadata holds the whole tensor
                    self._check_shape(path, tuple(shard.shape), expected, name)
                    return shard
                raise ZagreusError(f"{path}: unreadable tp metadata (local_global_slices_pairs, "
                                   f"unsharded_shape): {exc!r}") from exc
            self._check_shape(path, shape, expected, name, what="unsharded_shape")
            if out is None:
                if len(pairs) == 1 and tuple(shard.shape) == shape and tp == 1:
                    return shard
                out = torch.empty(shape, dtype=shard.dtype)
            if shard.dtype != out.dtype:
                raise ZagreusError(f"{path}: dtype {shard.dtype} differs from {out.dtype} of the other shards")
            for local, glob in pairs:
                try:
                    src, dst = shard[local], out[glob]
                except IndexError as exc:
                    raise ZagreusError(f"{path}: slices {_fmt_slices(local)} -> {_fmt_slices(glob)} do not fit "
                                       f"a shard of shape {tuple(shard.shape)} in {shape}") from exc
                if src.shape != dst.shape:
                    raise ZagreusError(f"{path}: wrong tensor shape: its slice {_fmt_slices(local)} is "
                                       f"{tuple(src.shape)} but the global slice {_fmt_slices(glob)} needs "
                                       f"{tuple(dst.shape)} (tensor shape {tuple(shard.shape)})")
                dst.copy_(src)
                covered.extend(_extent(glob, shape))
        _check_coverage(covered, shape, param_folder(self.model_dir, name), name)
        return out

    def _open(self, path: Path, safe_open) -> tuple[torch.Tensor, dict]:
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                keys = set(f.keys())
                if "data" not in keys:
                    found = ", ".join(sorted(keys)) or "none"
                    raise ZagreusError(f"{path}: no tensor under the key 'data' (found: {found})")
                return f.get_tensor("data"), (f.metadata() or {})
        except ZagreusError:
            raise
        except Exception as exc:  # safetensors raises its own error types for damaged files
            raise unreadable(path, exc) from exc

    def _check_shape(self, path: Path, found: tuple, expected: tuple, name: str, what: str = "tensor shape"):
        if tuple(found) != tuple(expected):
            a = self.arch
            raise ZagreusError(
                f"{path}: wrong {what} for {name}: expected {tuple(expected)} from {self.config_file.name} "
                f"(hidden_size={a.hidden_size}, intermediate_size={a.intermediate_size}, "
                f"heads={a.num_heads}/{a.num_kv_heads} kv, vocab_size={a.vocab_size}), found {tuple(found)}: "
                "the config and the weights do not match")

    def tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        for name in self.shapes:
            yield name, self.read(name)


def _fmt_slices(slices: tuple[slice, ...]) -> str:
    return "[" + ", ".join(f"{'' if s.start is None else s.start}:{'' if s.stop is None else s.stop}"
                           for s in slices) + "]"


def _extent(glob: tuple[slice, ...], shape: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """The dims a global slice restricts, as (dim, start, stop); (-1, 0, 0) for the whole tensor."""
    cut = []
    for d, s in enumerate(glob):
        start, stop, step = s.indices(shape[d]) if d < len(shape) else (0, 0, 1)
        if step != 1:
            raise ZagreusError(f"strided tp slices are not supported ({s})")
        if (start, stop) != (0, shape[d]):
            cut.append((d, start, stop))
    if len(cut) > 1:
        raise ZagreusError(f"tp slices cutting several dims are not supported ({glob})")
    return cut or [(-1, 0, 0)]


def _check_coverage(covered: list[tuple[int, int, int]], shape: tuple[int, ...], folder: Path, name: str) -> None:
    if any(d == -1 for d, _, _ in covered):
        return
    dims = {d for d, _, _ in covered}
    if len(dims) != 1:
        raise ZagreusError(f"{folder}: shards of {name} split several dims; cannot merge")
    dim = dims.pop()
    end = 0
    for _, start, stop in sorted(covered, key=lambda c: c[1]):
        if start > end:
            break
        end = max(end, stop)
    if end < shape[dim]:
        raise ZagreusError(f"{folder}: the shards of {name} leave rows {end}: of dim {dim} (size {shape[dim]}) "
                           "uncovered; a shard is missing or its slices are wrong")


class HFWeights:
    """The safetensors weights of a transformers model folder (single file or sharded with an index)."""

    def __init__(self, folder: Path):
        from safetensors import safe_open

        self.folder = folder
        index = folder / "model.safetensors.index.json"
        single = folder / "model.safetensors"
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text()).get("weight_map", {})
            except (json.JSONDecodeError, AttributeError) as exc:
                raise ZagreusError(f"{index}: not a valid safetensors index ({exc}); copy it again") from exc
            self.where = {k: folder / v for k, v in weight_map.items()}
        elif single.is_file():
            self.where = dict.fromkeys(self._keys(single, safe_open), single)
        else:
            bins = sorted(p.name for p in folder.glob("pytorch_model*.bin"))
            raise ZagreusError(f"{folder}: no model.safetensors or model.safetensors.index.json"
                               + (f" ({bins[0]} found: convert it to safetensors first)" if bins else ""))
        for path in sorted(set(self.where.values())):
            if not path.is_file():
                raise ZagreusError(f"missing shard: {path} (listed in {index.name})")
            if path != single:
                self._keys(path, safe_open)  # a damaged or truncated shard is named before any work
        self._safe_open = safe_open

    @staticmethod
    def _keys(path: Path, safe_open) -> list[str]:
        """The tensor names in a weight file (reads its header; a truncated file fails here)."""
        try:
            with safe_open(str(path), framework="pt") as f:
                return list(f.keys())
        except Exception as exc:  # safetensors raises its own error types for damaged files
            raise unreadable(path, exc) from exc

    def get(self, name: str) -> torch.Tensor:
        if name not in self.where:
            raise ZagreusError(f"{self.folder}: missing tensor {name}")
        # opened per tensor: a mapping kept open would keep every page read so far resident
        try:
            with self._safe_open(str(self.where[name]), framework="pt", device="cpu") as f:
                return f.get_tensor(name)
        except Exception as exc:
            raise unreadable(self.where[name], exc) from exc

    def close(self) -> None:
        pass


class HFShardWriter:
    """Writes transformers weights as they stream in, into files of at most ``max_bytes`` each."""

    def __init__(self, folder: Path, plan: list[tuple[str, int]], max_bytes: int = MAX_SHARD_BYTES):
        self.folder = folder
        shards: list[list[str]] = [[]]
        size = 0
        for name, nbytes in plan:
            if shards[-1] and size + nbytes > max_bytes:
                shards.append([])
                size = 0
            shards[-1].append(name)
            size += nbytes
        n = len(shards)
        self.file_of = {}
        for i, names in enumerate(shards):
            fname = "model.safetensors" if n == 1 else f"model-{i + 1:05d}-of-{n:05d}.safetensors"
            self.file_of.update(dict.fromkeys(names, fname))
        self.remaining = {f: sum(1 for v in self.file_of.values() if v == f) for f in set(self.file_of.values())}
        self.total = sum(b for _, b in plan)
        self.buffers: dict[str, dict[str, torch.Tensor]] = {}
        self.bytes_written = 0
        self.tensors_written = 0

    def add(self, name: str, tensor: torch.Tensor) -> None:
        fname = self.file_of[name]
        buf = self.buffers.setdefault(fname, {})
        buf[name] = tensor.contiguous()
        self.remaining[fname] -= 1
        if self.remaining[fname] == 0:
            path = self.folder / fname
            save_safetensors(buf, path, {"format": "pt"})
            self.bytes_written += path.stat().st_size
            self.tensors_written += len(buf)
            del self.buffers[fname]

    def finish(self) -> None:
        if any(self.remaining.values()):
            raise RuntimeError(f"tensors never written: {[f for f, n in self.remaining.items() if n]}")
        if len(set(self.file_of.values())) > 1:
            index = {"metadata": {"total_size": self.total}, "weight_map": dict(sorted(self.file_of.items()))}
            path = self.folder / "model.safetensors.index.json"
            path.write_text(json.dumps(index, indent=2) + "\n")
            self.bytes_written += path.stat().st_size


def save_safetensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict | None) -> None:
    """``safetensors.torch.save_file``, with its I/O failures raised as :class:`OSError` on ``path``."""
    from safetensors.torch import save_file

    try:
        save_file(tensors, str(path), metadata=metadata)
    except OSError:
        raise
    except Exception as exc:  # safetensors wraps I/O errors in its own type: "... (os error 28)"
        code = re.search(r"os error (\d+)", str(exc))
        if code is None:
            raise
        raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(path)) from exc


def unreadable(path: Path, exc: Exception) -> ZagreusError:
    """A damaged or truncated weight file: one line naming it and what to do."""
    return ZagreusError(f"{path}: not a readable safetensors file ({exc}); it is damaged or truncated "
                        "(an interrupted copy or download?): copy it again from its source")
