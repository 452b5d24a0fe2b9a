"""Benchmark: convert a full-size 0.44B nanotron checkpoint to Hugging Face on CPU.

Target (issue 5): <= 60 s on 2 cores with peak memory <= 3x the model's size. The checkpoint has
the report's architecture (hidden 960, intermediate 2560, 32 layers, 15 heads, 5 kv heads, vocab
128256, tied embeddings) with random weights, written on the fly by the project's own exporter
(``write_nanotron_checkpoint``) in the report's dtype (bfloat16). Each conversion runs in a fresh
process (as ``zagreus convert nanotron-to-hf`` would), including the built-in verification (logits
against the fused-tensor reference, and the bit-exact round trip); the process reports its own
peak RSS, which includes the interpreter, torch and transformers themselves (~0.6 GB here).

Peak RSS is read from ``/proc/self/status`` (VmHWM). ``resource.getrusage(RUSAGE_SELF).ru_maxrss``
is printed too but is not used on Linux: Python starts children with vfork/exec, and the kernel
carries the parent's high-water mark over the exec, so ru_maxrss never reads below the parent's.

    .venv/bin/python benchmarks/bench_convert.py [--repeat 3] [--dtype bfloat16] [--tp 1] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ZAGREUS_044B = {
    "bos_token_id": 128000, "eos_token_id": 128001, "hidden_act": "silu", "hidden_size": 960,
    "initializer_range": 0.03227, "intermediate_size": 2560, "is_llama_config": True,
    "max_position_embeddings": 4096, "num_attention_heads": 15, "num_hidden_layers": 32,
    "num_key_value_heads": 5, "pad_token_id": None, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
    "rope_scaling": None, "rope_theta": 100000.0, "rope_interleaved": False, "tie_word_embeddings": True,
    "use_cache": True, "vocab_size": 128256,
}

CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from zagreus_utils import convert
mode, src, dst = sys.argv[1:4]
if mode == "baseline":
    from transformers import LlamaForCausalLM  # what a conversion imports, nothing converted
    out = {}
elif mode == "generate":
    sys.path.insert(0, "benchmarks")
    import bench_convert
    out = {"size": bench_convert.make_checkpoint(__import__("pathlib").Path(src), *dst.split(":"))}
else:
    out = convert.nanotron_to_hf(src, dst, overwrite=True).to_dict()
out["process_seconds"] = time.perf_counter() - t0
usage = resource.getrusage(resource.RUSAGE_SELF)
out["cpu_seconds"] = usage.ru_utime + usage.ru_stime
out["ru_maxrss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
out["peak_rss_bytes"] = int(status["VmHWM"].split()[0]) * 1024
print("RESULT " + json.dumps(out))
"""


def make_checkpoint(folder: Path, dtype: str, tp: int | str) -> int:
    import torch

    from zagreus_utils.convert import folders, names, to_nanotron

    torch.manual_seed(0)
    dt = folders.DTYPES[dtype]
    arch, _ = names.arch_from_model_config(ZAGREUS_044B, "bench")

    def tensors():
        for name, shape in names.nanotron_shapes(arch).items():
            if len(shape) == 1:
                yield name, torch.ones(shape, dtype=dt)
            else:
                yield name, (torch.randn(shape) * ZAGREUS_044B["initializer_range"]).to(dt)

    to_nanotron.write_nanotron_checkpoint(folder, ZAGREUS_044B, tensors(), tp=int(tp), overwrite=True)
    return sum(p.stat().st_size for p in (folder / "model").rglob("*.safetensors"))


def child(mode: str, src: Path, dst: Path | str) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, mode, str(src), str(dst)], cwd=ROOT,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        sys.exit(f"conversion failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    out = json.loads(line[len("RESULT "):])
    out["wall_seconds"] = wall
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16")
    ap.add_argument("--tp", type=int, default=1, help="tensor-parallel shards in the generated checkpoint (the report's 15 heads and vocab 128256 only allow tp=1 without vocab padding)")
    ap.add_argument("--keep", type=Path, default=None, help="work in DIR and keep it (default: a temp dir)")
    args = ap.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-convert-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        size = child("generate", work / "nanotron", f"{args.dtype}:{args.tp}")["size"]
        print(f"generated a random 0.44B nanotron checkpoint ({args.dtype}, tp={args.tp}, "
              f"{size / 1e9:.3f} GB) in {time.perf_counter() - t0:.1f} s", flush=True)
        base = child("baseline", work / "nanotron", work / "hf")
        runs = []
        for i in range(args.repeat):
            r = child("convert", work / "nanotron", work / "hf")
            runs.append(r)
            print(f"run {i + 1}: convert {r['seconds']:.1f} s, process {r['wall_seconds']:.1f} s "
                  f"({r['cpu_seconds']:.1f} CPU s), "
                  f"peak RSS {r['peak_rss_bytes'] / 1e9:.2f} GB, max logits diff {r['max_logits_diff']:.3g}, "
                  f"round trip identical {r['roundtrip_identical']}", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)

    med = lambda key: statistics.median(r[key] for r in runs)  # noqa: E731
    last = runs[-1]
    rows = [
        ("conversion, in-process (s)", med("seconds"), 60.0, "s"),
        ("conversion, whole process (s)", med("wall_seconds"), 60.0, "s"),
        ("CPU s of the process (60 s x 2 cores)", med("cpu_seconds"), 120.0, "s"),
        ("peak RSS (GB)", med("peak_rss_bytes") / 1e9, 3 * size / 1e9, "GB"),
        ("peak RSS minus import baseline (GB)", (med("peak_rss_bytes") - base["peak_rss_bytes"]) / 1e9,
         3 * size / 1e9, "GB"),
    ]
    print(f"\nmodel: {last['parameters'] / 1e6:.1f} M parameters, {size / 1e9:.3f} GB on disk ({args.dtype}); "
          f"HF output {last['bytes_written'] / 1e9:.3f} GB; import baseline RSS "
          f"{base['peak_rss_bytes'] / 1e9:.2f} GB; medians of {len(runs)} runs")
    print(f"machine load average while measuring: {open('/proc/loadavg').read().split()[0]} (2 cores)")
    print(f"{'what':38} {'median':>8} {'target':>8} {'ratio':>6}")
    for what, value, target, unit in rows:
        print(f"{what:38} {value:8.2f} {target:8.2f} {value / target:6.2f}  "
              + ("met" if value <= target else "MISSED"))
    print(f"peak RSS / model size: {med('peak_rss_bytes') / size:.2f}x (target <= 3x)")
    wall, peak = rows[1], rows[3]
    return 0 if wall[1] <= wall[2] and peak[1] <= peak[2] else 1


if __name__ == "__main__":
    sys.exit(main())
