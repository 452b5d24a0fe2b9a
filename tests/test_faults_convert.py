"""Fault injection for checkpoint conversion and the audit (issue 12, finding 6).

Damaged weight files, a failed verification, a read-only or full destination: each gives one
``error:`` line naming the path, and the destination is either the verified result or left as it
was. The audit's work grows linearly with the size of the report.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import full_run_naming
from test_convert import nanotron_config, random_fused, shard_path, tiny_hf, write_nt
from zagreus_utils import cli
from zagreus_utils.convert import checkpoint_io, names, to_hf, to_nanotron

ROOT = Path(__file__).resolve().parents[1]
AUDIT_FIXTURES = Path(__file__).parent / "fixtures" / "audit"


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def error_lines(err: str) -> list[str]:
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if line.startswith("error:")]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with a hash of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(parent: Path, name: str) -> list[str]:
    """Temporary or set-aside siblings of ``parent / name`` (``name.tmp-<pid>``, ``name.replaced-<pid>``)."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(name + "."))


def cli_in_subprocess(args: list[str], preexec=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "zagreus_utils.cli", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300, preexec_fn=preexec)


def _obey_permissions() -> None:
    """In the child: root without the capabilities that let it ignore file permissions, so a
    read-only folder is read-only for it as for anyone (no-op for other users)."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop = 24
    for cap in (1, 2, 3):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER: gone after exec
        if libc.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


# ------------------------------------------------------------------------ damaged weight files


def test_finding6_truncated_safetensors_one_line(tmp_path, capsys):
    src = tiny_hf(tmp_path / "hf", tied=False)
    truncate(src / "model.safetensors")
    assert cli.main(["convert", "hf-to-nanotron", str(src), str(tmp_path / "nt")]) == 2
    (line,) = error_lines(capsys.readouterr().err)
    assert str(src / "model.safetensors") in line and "truncated" in line and "copy it again" in line
    assert not (tmp_path / "nt").exists() and leftovers(tmp_path, "nt") == []

    cfg = nanotron_config(tied=True)
    ckpt = write_nt(tmp_path / "ckpt", cfg, random_fused(cfg), tp=2)
    shard = shard_path(ckpt, "model.decoder.1.pp_block.attn.qkv_proj.weight", 1, 2)
    truncate(shard)
    assert cli.main(["convert", "nanotron-to-hf", str(ckpt), str(tmp_path / "out")]) == 2
    (line,) = error_lines(capsys.readouterr().err)
    assert str(shard) in line and "truncated" in line
    assert not (tmp_path / "out").exists() and leftovers(tmp_path, "out") == []


# ------------------------------------------------------------------------ failed verification


def test_finding6_failed_verification_leaves_no_destination(tmp_path, capsys):
    cfg = nanotron_config(tied=False)
    good = write_nt(tmp_path / "good", cfg, random_fused(cfg))
    tensors = random_fused(cfg, seed=3)
    tensors[names.NT_FINAL_NORM][0] = float("nan")  # a diverged run: the logits check must fail
    bad = write_nt(tmp_path / "bad", cfg, tensors)

    # a new destination is not created
    assert cli.main(["convert", "nanotron-to-hf", str(bad), str(tmp_path / "hf")]) == 2
    assert not (tmp_path / "hf").exists() and leftovers(tmp_path, "hf") == []
    (line,) = error_lines(capsys.readouterr().err)
    assert "verification failed" in line and "not finite" in line

    # a model already there is kept byte for byte, even with --overwrite
    assert cli.main(["convert", "nanotron-to-hf", str(good), str(tmp_path / "hf")]) == 0
    before = snapshot(tmp_path / "hf")
    assert "model.safetensors" in before
    capsys.readouterr()
    assert cli.main(["convert", "nanotron-to-hf", str(bad), str(tmp_path / "hf"), "--overwrite"]) == 2
    assert snapshot(tmp_path / "hf") == before and leftovers(tmp_path, "hf") == []
    (line,) = error_lines(capsys.readouterr().err)
    assert f"{tmp_path / 'hf'} was left as it was" in line

    # the other direction: a transformers folder with NaN weights
    src = tiny_hf(tmp_path / "hf_nan", tied=True)
    from safetensors.torch import load_file, save_file

    state = load_file(src / "model.safetensors")
    state["model.norm.weight"][:] = float("nan")
    save_file(state, str(src / "model.safetensors"), metadata={"format": "pt"})
    assert cli.main(["convert", "hf-to-nanotron", str(src), str(tmp_path / "nt")]) == 2
    assert not (tmp_path / "nt").exists() and leftovers(tmp_path, "nt") == []
    (line,) = error_lines(capsys.readouterr().err)
    assert "verification failed" in line


def test_overwrite_replaces_the_model_only_when_verified(tmp_path):
    """--overwrite swaps in the new folder: the user's own files stay, old weights and tokenizer go."""
    cfg = nanotron_config(tied=True)
    a = write_nt(tmp_path / "a", cfg, random_fused(cfg, seed=1))
    b = write_nt(tmp_path / "b", cfg, random_fused(cfg, seed=2))
    dst = tmp_path / "hf"
    to_hf.nanotron_to_hf(a, dst, extra_files={"zagreus_checkpoint.json": "{}"})
    (dst / "notes.txt").write_text("mine")
    (dst / "tokenizer.json").write_text("{}")  # the old model's tokenizer must not pair with new weights
    report = to_hf.nanotron_to_hf(b, dst, overwrite=True)
    assert report.roundtrip_identical and report.dst == dst
    assert (dst / "notes.txt").read_text() == "mine"
    assert not (dst / "tokenizer.json").exists() and not (dst / "zagreus_checkpoint.json").exists()
    got = checkpoint_io.HFWeights(dst).get("model.norm.weight")
    assert torch.equal(got, random_fused(cfg, seed=2)[names.NT_FINAL_NORM])
    assert leftovers(tmp_path, "hf") == []


def test_finding6_failed_verification_in_the_stage_keeps_earlier_conversions(tmp_path):
    """Stage 04 (full profile, cluster checkpoints): a checkpoint that fails verification leaves no
    hf/step-<N> behind, and the one converted before it stays as it was."""
    from zagreus_utils.stages import conversion
    from zagreus_utils.pipeline import spec
    from zagreus_utils.pipeline.errors import ZagreusError

    cfg = nanotron_config(tied=True)
    cluster = tmp_path / "cluster"
    write_nt(cluster / "1000", cfg, random_fused(cfg, seed=1))
    write_nt(cluster / "2000", cfg, random_fused(cfg, seed=2))
    rd, out = full_run_naming(tmp_path, cluster)
    s = spec.load_spec("ita", "full")
    conversion.convert_all(s, rd, out, progress=False)
    before = snapshot(out / "hf")
    assert f"step-2000/{conversion.CHECKPOINT_INFO}" in before

    diverged = random_fused(cfg, seed=3)
    diverged[names.NT_EMBED][:] = float("inf")
    to_nanotron.write_nanotron_checkpoint(cluster / "2000", cfg, diverged.items(), overwrite=True)
    write_nt(cluster / "3000", cfg, diverged)
    with pytest.raises(ZagreusError, match="verification failed"):
        conversion.convert_all(s, rd, out, progress=False)
    assert snapshot(out / "hf") == before  # step-1000 rewritten identically, step-2000 untouched
    assert [m.name for m in conversion.hf_models(out)] == ["step-1000", "step-2000"]
    assert sorted(p.name for p in (out / "hf").iterdir()) == ["step-1000", "step-2000"]


# ------------------------------------------------------------------------ disk faults


def test_finding6_readonly_destination_one_line(tmp_path):
    src = tiny_hf(tmp_path / "hf", tied=True)
    parent = tmp_path / "readonly"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        res = cli_in_subprocess(["convert", "hf-to-nanotron", str(src), str(parent / "nt")],
                                preexec=_obey_permissions)
    finally:
        parent.chmod(0o755)
    assert res.returncode == 2, res.stderr
    (line,) = error_lines(res.stderr)
    assert str(parent / "nt") in line and "ermission denied" in line and "writable" in line
    assert list(parent.iterdir()) == []


def _small_files_only() -> None:
    """In the child: no file may grow past 64 kB, as on a full disk (EFBIG instead of ENOSPC)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))


def test_finding6_full_disk_one_line(tmp_path):
    cfg = nanotron_config(tied=False)  # 300 x 64 float32 embedding and lm_head: 77 kB each
    ckpt = write_nt(tmp_path / "ckpt", cfg, random_fused(cfg))
    dst = tmp_path / "hf"
    res = cli_in_subprocess(["convert", "nanotron-to-hf", str(ckpt), str(dst)], preexec=_small_files_only)
    assert res.returncode == 2, res.stderr
    (line,) = error_lines(res.stderr)
    assert str(dst) in line and "too large" in line and "free space" in line
    assert not dst.exists() and leftovers(tmp_path, "hf") == []


# ------------------------------------------------------------------------ audit: linear work


def _calls_to_audit(text: str) -> int:
    """Function calls (Python and C) made while auditing ``text``: the work, independent of the machine."""
    from zagreus_utils.audit.core import audit_text

    calls = 0

    def count(frame, event, arg):
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1

    sys.setprofile(count)
    try:
        audit_text(text)
    finally:
        sys.setprofile(None)
    return calls


def test_finding6_audit_scales_linearly():
    """Four copies of a report full of findings (every check's inconsistent fixture) cost about
    four times the work of one: no per-finding rescan of the document, no all-pairs comparison."""
    report = "\n\n".join(p.read_text(encoding="utf-8") for p in sorted(AUDIT_FIXTURES.glob("*_bad.md")))
    _calls_to_audit(report)  # first use: lazy imports and the schemas read once per process
    one = _calls_to_audit(report)
    four = _calls_to_audit("\n\n".join([report] * 4))
    assert four <= 4.6 * one, f"4 copies cost {four / one:.2f}x the calls of one"
