"""Benchmark the local pretraining path (issue 4).

1. Throughput: the local trainer (transformers' Trainer, ``zagreus_utils.model.trainer``) vs a minimal
   hand-written torch loop on the same model, batch, data, optimizer and schedule. Steady-state
   tokens/s is the median over steps (the first two are warm-up), per run; runs alternate between
   the two and the medians of ``--repeat`` runs are compared. Target: ratio >= 0.9.
2. Smoke pretraining wall time for one language: the whole stage (``pretraining.prepare`` +
   ``execute``, a fresh process, as ``zagreus run`` would) on the smoke profile, with the loss at
   the start and at the end. Target: <= 90 s with visibly falling loss. It uses the stage-02 output
   of ``--run-dir`` when given, else builds one like stage 02 does (the project's sample corpus, a
   byte-level BPE, datatrove's DocumentTokenizer) in a temporary folder.

    .venv/bin/python benchmarks/bench_trainer.py [--repeat 3] [--steps 30] [--run-dir runs/smoke/ita]
        [--skip-throughput] [--skip-smoke] [--set training.micro_batch_size=4 ...]
    .venv/bin/python benchmarks/bench_trainer.py --gpu-full 30   # where a GPU is lent: tokens/s and MFU
    .venv/bin/python benchmarks/bench_trainer.py --switches [--repeat 3] [--steps 30]

``--switches``: the local trainer's tokens/s on the smoke profile, the baseline and each SmolLM3
recipe switch alone (``zagreus_utils.model.recipe.SWITCHES``), runs interleaved, medians of
``--repeat``; target: each within 10 % of the baseline (document masking and NoPE must keep the
fast attention path). It also times one forward+backward per variant on one thread and names
the attention kernels PyTorch ran (``step_costs``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


# --- data like stage 02 ---------------------------------------------------------------------

def build_stage02(run_dir: Path, language: str = "ita", vocab_size: int = 8192) -> None:
    """The sample corpus, a byte-level BPE and datatrove token folders under ``run_dir``."""
    import glob

    import pyarrow.parquet as pq
    from pretraining_helpers import write_stage02

    from zagreus_utils.sample_corpus import corpus

    corpus.generate(run_dir / "01_data", language, seed=8)
    texts = {s: [t for f in sorted(glob.glob(str(run_dir / "01_data" / "sources" / s / "*.parquet")))
                 for t in pq.read_table(f)["text"].to_pylist()] for s in corpus.SOURCES}
    write_stage02(run_dir, texts, vocab_size, bos="<|begin_of_text|>", eos="<|end_of_text|>")


# --- 1. throughput --------------------------------------------------------------------------

def _settings(run_dir: Path, overrides: dict, steps: int, out: Path):
    from zagreus_utils.nanotron import config as nanotron_config
    from zagreus_utils.stages import pretraining
    from zagreus_utils.model import trainer
    from zagreus_utils.pipeline.spec import load_spec
    from zagreus_utils.pipeline.stages import folder_name

    spec = load_spec("ita", "smoke", {**overrides, "training.train_steps": steps,
                                      "training.checkpoint_interval": steps * 10,
                                      "training.lr_decay_starting_step": steps - 1, "training.lr_decay_steps": 1,
                                      "training.lr_warmup_steps": min(2, steps - 1)})
    config = nanotron_config.render(spec, run_dir=run_dir, checkpoints_path=out / "checkpoints",
                                    tokenizer_name_or_path=pretraining._tokenizer_string(
                                        spec, run_dir / folder_name("tokenization")))
    return config, trainer.Settings.from_nanotron(config)


def _stats(tps: list[float], tpc: list[float]) -> tuple[float, float, float]:
    """(median tokens/s, median tokens per CPU-second, 90th-percentile tokens/s) over a run's steps.

    The 90th percentile (the fastest steps) is what the code does when no other process takes
    the CPU; on a shared machine it is the steadier comparison."""
    return statistics.median(tps), statistics.median(tpc), sorted(tps)[int(0.9 * (len(tps) - 1))]


def run_trainer(run_dir: Path, overrides: dict, steps: int) -> tuple[float, float, float]:
    """Tokens/s statistics (see ``_stats``) over steps 3.. of one Trainer run."""
    from zagreus_utils.model import trainer

    with tempfile.TemporaryDirectory() as tmp:
        config, s = _settings(run_dir, overrides, steps, Path(tmp))
        res = trainer.train(config, progress=False, resume=False)
        rows = [json.loads(x) for x in Path(res.metrics_path).read_text().splitlines()]
    tokens = s.micro_batch_size * s.accumulation * s.sequence_length
    return _stats([tokens / r["step_time_s"] for r in rows[2:]], [tokens / r["step_cpu_s"] for r in rows[2:]])


def run_torch_loop(run_dir: Path, overrides: dict, steps: int) -> tuple[float, float, float]:
    """The same steps with a minimal hand-written loop (statistics as ``_stats``)."""
    import torch

    from zagreus_utils.model import token_data, trainer

    with tempfile.TemporaryDirectory() as tmp:
        _, s = _settings(run_dir, overrides, steps, Path(tmp))
    torch.manual_seed(s.seed)
    model = trainer.build_model(s)
    model.train()
    data = token_data.TokenDataset(list(s.dataset_folders), s.sequence_length, steps * s.micro_batch_size * s.accumulation,
                                seed=s.data_seed, vocab_size=s.arch.vocab_size)
    loader = torch.utils.data.DataLoader(data, batch_size=s.micro_batch_size, shuffle=False, collate_fn=token_data.collate,
                                         drop_last=True)
    opt = torch.optim.AdamW(model.parameters(), lr=s.learning_rate, betas=(s.adam_beta1, s.adam_beta2),
                            eps=s.adam_eps, weight_decay=s.weight_decay)
    sched, _ = trainer.build_scheduler(opt, s)
    tokens = s.micro_batch_size * s.accumulation * s.sequence_length
    times, cpus, t, c, it = [], [], time.perf_counter(), time.process_time(), iter(loader)
    for _ in range(steps):
        for _ in range(s.accumulation):
            batch = next(it)
            batch.pop("sample_index")
            loss = model(**batch).loss / s.accumulation
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), s.clip_grad)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        float(loss.detach())  # the Trainer logs the loss every step: same sync
        now, cpu = time.perf_counter(), time.process_time()
        times.append(now - t)
        cpus.append(cpu - c)
        t, c = now, cpu
    return _stats([tokens / dt for dt in times[2:]], [tokens / dc for dc in cpus[2:]])


# --- 3. (a lent GPU only) the full config through the local path -----------------------------

def synthetic_token_folders(root: Path, folders: list[str], tokenizer: str, vocab: int, tokens_each: int,
                            eos_token_id: int | None = None, doc_tokens: int = 2048) -> None:
    """datatrove-format token files of random ids in ``doc_tokens``-token documents, each ended by
    ``eos_token_id`` when given (so document masking has documents to mask); throughput only, the
    report's tokenizer is not needed."""
    import numpy as np

    size = 4 if vocab > 65536 else 2
    rng = np.random.default_rng(0)
    for name in folders:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        ids = rng.integers(0, vocab, tokens_each, dtype=np.uint32 if size == 4 else np.uint16)
        # a document ends every doc_tokens tokens, the last one at the file's end (the trainer's checks)
        ends = np.append(np.arange(doc_tokens, tokens_each, doc_tokens), tokens_each).astype(np.uint64)
        if eos_token_id is not None:
            ids[ends.astype(np.int64) - 1] = eos_token_id
        (folder / f"000_{name}.ds").write_bytes(ids.tobytes())
        (folder / f"000_{name}.ds.index").write_bytes(ends.tobytes())
        (folder / f"000_{name}.ds.metadata").write_text(f"{tokenizer}|{size}\n{tokens_each}\n")


def run_gpu_full(steps: int, overrides: dict | None = None) -> dict:
    """The report's 0.44B model at sequence 4096, bf16, one GPU, through the local trainer: tokens/s, MFU."""
    import torch

    from zagreus_utils.nanotron import config as nanotron_config
    from zagreus_utils.model import planning, trainer
    from zagreus_utils.model.arch import LlamaArch
    from zagreus_utils.pipeline.spec import load_spec

    if not torch.cuda.is_available():
        raise SystemExit("--gpu-full needs a CUDA GPU")
    name = torch.cuda.get_device_name(0)
    peak = next((v for k, v in planning.PEAK_TFLOPS.items() if k in name.upper()), None)
    spec = load_spec("ita", "full", {"parallelism.dp": 1, "hardware.nodes": 1, "hardware.gpus_per_node": 1,
                                     "training.train_steps": steps, "training.checkpoint_interval": steps * 10,
                                     "training.lr_warmup_steps": 2, "training.lr_decay_starting_step": steps - 1,
                                     "training.lr_decay_steps": 1, **(overrides or {})})
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "full" / "ita"
        seq, mbs = spec.profile.training.sequence_length, spec.profile.training.micro_batch_size
        synthetic_token_folders(run_dir / "02_tokenization" / "tokenized", [s.id for s in spec.language.mixture],
                                spec.profile.tokenizer.name_or_path, spec.profile.tokenizer.vocab_size,
                                (steps * mbs + 8) * (seq + 1), spec.profile.model.eos_token_id, doc_tokens=1024)
        config = nanotron_config.render(spec, run_dir=run_dir, checkpoints_path=Path(tmp) / "ckpt")
        res = trainer.train(config, progress=False, resume=False)
        rows = [json.loads(x) for x in Path(res.metrics_path).read_text().splitlines()]
    tps = statistics.median(r["tokens_per_sec"] for r in rows[3:])
    fpt = planning.flops_per_token(LlamaArch.from_spec(spec), seq)["total"]
    return {"gpu": name, "tokens_per_sec": tps, "micro_batch_size": mbs, "sequence_length": seq, "tflops": tps * fpt / 1e12,
            "mfu": planning.mfu(tps, fpt, peak) if peak else None, "precision": res.precision,
            "memory_gib": torch.cuda.max_memory_allocated() / 2**30}


# --- 4. the recipe switches ----------------------------------------------------------------------

def step_costs(run_dir: Path, overrides: dict, repeat: int = 30) -> dict[str, tuple[float, list[str]]]:
    """Per variant: the median CPU time of one forward+backward on the same smoke batch (one torch
    thread, variants interleaved: on a shared machine CPU time of several threads counts their spin
    waits too) and the attention kernels PyTorch ran (``torch.profiler``): the fast path is
    ``_scaled_dot_product_flash_attention_for_cpu`` (CUDA: ``_flash_attention``/``_efficient_attention``)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from zagreus_utils.model import recipe, token_data, trainer
    from zagreus_utils.model.recipe import SWITCHES

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    built = {}
    for name, switch in {"baseline": {}, "nope": SWITCHES["nope"], "doc_masking": SWITCHES["doc_masking"]}.items():
        with tempfile.TemporaryDirectory() as tmp:
            _, s = _settings(run_dir, {**overrides, **switch}, 4, Path(tmp))
        data = token_data.TokenDataset(list(s.dataset_folders), s.sequence_length, s.micro_batch_size,
                                       seed=s.data_seed, vocab_size=s.arch.vocab_size)
        batch = recipe.collate_for(s.arch, s.document_masking)([data[i] for i in range(s.micro_batch_size)])
        batch.pop("sample_index")
        built[name] = (trainer.build_model(s), batch)
    times: dict[str, list[float]] = {name: [] for name in built}
    for _ in range(repeat):
        for name, (model, batch) in built.items():
            t = time.process_time()
            model(**batch).loss.backward()
            model.zero_grad(set_to_none=True)
            times[name].append(time.process_time() - t)
    out = {}
    for name, (model, batch) in built.items():
        with profile(activities=[ProfilerActivity.CPU]) as prof, torch.no_grad():
            model(**batch)
        kernels = sorted({e.key for e in prof.key_averages() if e.key.startswith("aten::_scaled_dot_product")
                          or e.key.startswith("aten::_flash") or e.key.startswith("aten::_efficient")})
        out[name] = (statistics.median(times[name][2:]), kernels)
    torch.set_num_threads(threads)
    return out


def run_switches(run_dir: Path, overrides: dict, steps: int, repeat: int) -> None:
    from zagreus_utils.model.recipe import SWITCHES

    variants = {"baseline": {}, **SWITCHES}
    got: dict[str, list] = {name: [] for name in variants}
    for r in range(repeat):
        for name, switch in variants.items():
            got[name].append(run_trainer(run_dir, {**overrides, **switch}, steps))
        print(f"  round {r + 1}: " + ", ".join(f"{n} {v[-1][0]:,.0f}" for n, v in got.items())
              + f" tok/s, load {os.getloadavg()[0]:.2f}", flush=True)
    med = {n: [statistics.median(x[k] for x in v) for k in range(3)] for n, v in got.items()}
    base = med["baseline"]
    print(f"\n{'median of ' + str(repeat) + ' runs':22} {'tokens/s':>10} {'tokens/CPU-s':>13} {'p90 tokens/s':>13}"
          f" {'ratio':>7} {'ratio/CPU-s':>12}")
    for name, c in med.items():
        print(f"{name:22} {c[0]:10,.0f} {c[1]:13,.0f} {c[2]:13,.0f} {c[0] / base[0]:7.3f} {c[1] / base[1]:12.3f}"
              + ("" if name == "baseline" else f"  within 10 %: {'yes' if c[1] / base[1] >= 0.9 else 'NO'}"))
    costs = step_costs(run_dir, overrides)
    print("\none forward+backward on the same batch (CPU time, 1 thread, median of 28) and its attention kernels:")
    for name, (cpu, kernels) in costs.items():
        print(f"{name:22} {cpu * 1000:8.1f} ms  ratio {costs['baseline'][0] / cpu:.3f}  {', '.join(kernels)}")


# --- 2. smoke wall time ---------------------------------------------------------------------

SMOKE = """
import json, sys, time
t0 = time.perf_counter()
from zagreus_utils.pipeline.context import StageContext
from zagreus_utils.stages import pretraining
prep = pretraining.prepare(StageContext.create("pretraining", language="ita", run_dir=sys.argv[1], out_dir=sys.argv[2],
                                               overrides=json.loads(sys.argv[3])))
res = pretraining.execute(prep, progress=False)
times = sorted(json.loads(x)["step_time_s"] for x in open(res.metrics_path).read().splitlines()[1:])
print(json.dumps({"wall_s": time.perf_counter() - t0, "train_s": res.wall_s, "initial_loss": res.initial_loss,
                  "final_loss": res.final_loss, "checkpoints": len(res.checkpoints), "steps": res.steps,
                  "tokens_per_sec": res.tokens_per_sec_median, "step_p10_s": times[len(times) // 10],
                  "step_median_s": times[len(times) // 2]}))
"""


def run_smoke(run_dir: Path, overrides: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", SMOKE, str(run_dir), str(Path(tmp) / "03_pretraining"),
                              json.dumps(overrides)], capture_output=True, text=True, cwd=REPO)
        wall = time.perf_counter() - t0
    if out.returncode:
        raise SystemExit(f"smoke run failed:\n{out.stderr[-3000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["process_wall_s"] = wall
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    res["process_cpu_s"] = usage.ru_utime + usage.ru_stime
    return res


def main() -> int:
    from zagreus_utils.pipeline.spec import parse_override

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30, help="optimizer steps per throughput run")
    ap.add_argument("--run-dir", default=None, help="a run folder with a stage-02 output (default: build one)")
    ap.add_argument("--set", action="append", default=[], help="profile override, e.g. training.micro_batch_size=4")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--skip-smoke", action="store_true")
    ap.add_argument("--switches", action="store_true",
                    help="tokens/s of the baseline and of each SmolLM3 recipe switch alone (smoke profile)")
    ap.add_argument("--gpu-full", type=int, default=0, metavar="STEPS",
                    help="only on a GPU: the full 0.44B config at sequence 4096, bf16, through the local path")
    args = ap.parse_args()
    if args.gpu_full:
        r = run_gpu_full(args.gpu_full, dict(parse_override(x) for x in args.set))
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a (unknown peak)"
        print(f"full config on {r['gpu']} ({r['precision']}, micro-batch {r['micro_batch_size']} x seq "
              f"{r['sequence_length']}): {r['tokens_per_sec']:,.0f} tokens/s, "
              f"{r['tflops']:.1f} model TFLOP/s, MFU {mfu} (aim >= 35 %), peak memory {r['memory_gib']:.1f} GiB"
              f"; overrides: {' '.join(args.set) or 'none'}")
        return 0
    overrides = dict(parse_override(x) for x in args.set)
    tmp = None
    if args.run_dir:
        run_dir = Path(args.run_dir).resolve()
    else:
        tmp = tempfile.TemporaryDirectory()
        run_dir = Path(tmp.name) / "smoke" / "ita"
        print("building a stage-02 output (sample corpus, BPE, datatrove) ...", flush=True)
        build_stage02(run_dir)
    import torch

    print(f"torch threads: {torch.get_num_threads()}, overrides: {overrides or 'none'}", flush=True)
    print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores: above ~2, other processes share the CPU "
          "and wall-clock numbers drop; tokens per CPU-second is the steadier measure)", flush=True)
    if args.switches:
        run_switches(run_dir, overrides, args.steps, args.repeat)
        if tmp:
            tmp.cleanup()
        return 0
    if not args.skip_throughput:
        a, b = [], []
        for r in range(args.repeat):
            a.append(run_trainer(run_dir, overrides, args.steps))
            b.append(run_torch_loop(run_dir, overrides, args.steps))
            print(f"  run {r + 1}: trainer {a[-1][0]:,.0f} tok/s (p90 {a[-1][2]:,.0f}), "
                  f"torch loop {b[-1][0]:,.0f} tok/s (p90 {b[-1][2]:,.0f}), load {os.getloadavg()[0]:.2f}", flush=True)
        cols = [statistics.median(x[k] for x in a) for k in range(3)], [statistics.median(x[k] for x in b) for k in range(3)]
        print(f"\n{'median of ' + str(args.repeat) + ' runs':38} {'tokens/s':>10} {'tokens/CPU-s':>13} {'p90 tokens/s':>13}")
        for label, c in zip(("local trainer (transformers Trainer)", "minimal torch loop"), cols):
            print(f"{label:38} {c[0]:10,.0f} {c[1]:13,.0f} {c[2]:13,.0f}")
        ratios = [cols[0][k] / cols[1][k] for k in range(3)]
        print(f"{'ratio trainer / loop':38} {ratios[0]:10.3f} {ratios[1]:13.3f} {ratios[2]:13.3f}  target >= 0.90: "
              f"{'met' if ratios[0] >= 0.9 else 'MISSED'} (median tokens/s)")
    if not args.skip_smoke:
        res = run_smoke(run_dir, overrides)
        falling = res["final_loss"] < res["initial_loss"] - 1.0
        print(f"\nsmoke pretraining (ita, {res['steps']} steps, {res['checkpoints']} checkpoints): "
              f"{res['process_wall_s']:.1f} s wall, {res['process_cpu_s']:.1f} CPU-s (training {res['train_s']:.1f} s, "
              f"{res['tokens_per_sec']:,.0f} tok/s); loss {res['initial_loss']:.3f} -> {res['final_loss']:.3f}; "
              f"load average after {os.getloadavg()[0]:.2f}")
        print(f"target <= 90 s with falling loss: {'met' if res['process_wall_s'] <= 90 and falling else 'MISSED'}")
        projected = (res["process_wall_s"] - res["train_s"]) + res["steps"] * res["step_p10_s"]
        print(f"step time: median {res['step_median_s']:.3f} s, 10th percentile {res['step_p10_s']:.3f} s; "
              f"projection for an idle machine (start-up + steps x 10th-percentile step): {projected:.1f} s")
    if tmp:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
