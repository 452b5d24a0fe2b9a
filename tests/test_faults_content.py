"""Fault injection: up to date means the same content, and manifest faults end in one clear line.

A tiny three-stage pipeline (a parquet, a ``.ds`` token file made from it, a "model" made from the
tokens) runs once through the real runner and papermill; each test corrupts a copy of its run
folder the way a user or a disk can, then runs the runner again.
"""
import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from conftest import make_notebook
from zagreus_utils import cli
from zagreus_utils.pipeline import manifest, paths, runner
from zagreus_utils.results import report

LANG_PARAMS = 'profile = "smoke"\nlanguage = "ita"\nrun_dir = ""\nout_dir = ""\n'
ROWS = 100


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The notebooks and a run folder where every stage finished ok (built once)."""
    base = tmp_path_factory.mktemp("faults")
    nbs = base / "notebooks"
    make_notebook(nbs / "01_data.ipynb", LANG_PARAMS,
                  "from pathlib import Path\nimport pandas as pd\n"
                  "Path(out_dir, 'clean').mkdir(exist_ok=True)\n"
                  f"pd.DataFrame({{'text': [f'doc {{i}} of {{language}}' for i in range({ROWS})]}})"
                  ".to_parquet(Path(out_dir, 'clean', 'docs.parquet'))\n")
    make_notebook(nbs / "02_tokenization.ipynb", LANG_PARAMS,
                  "from pathlib import Path\nimport numpy as np, pandas as pd\n"
                  "df = pd.read_parquet(Path(run_dir, '01_data', 'clean', 'docs.parquet'))\n"
                  "Path(out_dir, 'tokenized').mkdir(exist_ok=True)\n"
                  "np.array([len(t) for t in df['text']], dtype=np.uint16)"
                  ".tofile(Path(out_dir, 'tokenized', f'{language}.ds'))\n")
    make_notebook(nbs / "03_pretraining.ipynb", LANG_PARAMS,
                  "from pathlib import Path\nimport numpy as np\n"
                  "tokens = np.fromfile(Path(run_dir, '02_tokenization', 'tokenized', f'{language}.ds'), dtype=np.uint16)\n"
                  "Path(out_dir, 'model.txt').write_text(f'{len(tokens)} {int(tokens.sum())}')\n")
    root = base / "runs"
    summary = _run(nbs, root)
    assert [r.status for r in summary.results] == ["ok", "ok", "ok"], summary.table()
    return nbs, root


@pytest.fixture
def pipeline(built, tmp_path):
    """A copy of the built run folder (files keep their mtimes, so it is up to date) to corrupt."""
    nbs, root = built
    shutil.copytree(root, tmp_path / "runs")
    return nbs, tmp_path / "runs"


def _run(nbs, root, keys=None, **kw):
    return runner.run("smoke", ["ita"], keys, root=root, notebooks=nbs, progress=False, log=lambda m: None, **kw)


def _statuses(summary):
    return [(r.stage, r.status) for r in summary.results]


def _stage(root, name):
    return root / "smoke" / "ita" / name


def test_finding2_same_size_ds_corruption_is_detected(pipeline):
    nbs, root = pipeline
    ds = _stage(root, "02_tokenization") / "tokenized" / "ita.ds"
    data = bytearray(ds.read_bytes())
    data[10] ^= 0xFF  # one byte flipped, same size
    ds.write_bytes(bytes(data))

    # pretraining alone refuses to train on it, naming the file and the stage that rebuilds it
    alone = _run(nbs, root, ["pretraining"])
    assert _statuses(alone) == [("03_pretraining", "blocked")]
    assert str(ds) in alone.results[0].error and "same size" in alone.results[0].error
    assert "zagreus run --profile smoke --languages ita --stages tokenization" in alone.results[0].error

    # with tokenization selected too, it reruns (rebuilding the file), and so does pretraining
    again = _run(nbs, root)
    assert _statuses(again) == [("01_data", "skipped"), ("02_tokenization", "ok"), ("03_pretraining", "ok")]
    assert ds.read_bytes() != bytes(data)
    assert manifest.read(ds.parents[1])["rerun_because"].startswith("its output tokenized/ita.ds changed")
    assert manifest.read(_stage(root, "03_pretraining"))["rerun_because"] == "changed inputs: upstream/02_tokenization"
    assert _run(nbs, root, ["pretraining"]).results[0].status == "skipped"


def test_finding2_parquet_rows_removed_is_detected(pipeline):
    nbs, root = pipeline
    parquet = _stage(root, "01_data") / "clean" / "docs.parquet"
    pd.read_parquet(parquet).head(ROWS // 10).to_parquet(parquet)  # 90 % of the rows gone

    alone = _run(nbs, root, ["tokenization", "pretraining"])
    assert _statuses(alone) == [("02_tokenization", "blocked")]
    assert str(parquet) in alone.results[0].error and "--stages data" in alone.results[0].error

    again = _run(nbs, root, ["data", "tokenization"])
    assert _statuses(again) == [("01_data", "ok"), ("02_tokenization", "ok")]
    assert len(pd.read_parquet(parquet)) == ROWS
    ds = _stage(root, "02_tokenization") / "tokenized" / "ita.ds"
    assert ds.stat().st_size == 2 * ROWS


def test_finding5_other_language_comment_does_not_rerun(built, tmp_path, monkeypatch):
    nbs, _ = built
    configs = tmp_path / "configs"
    shutil.copytree(paths.CONFIGS, configs)
    monkeypatch.setattr(paths, "CONFIGS", configs)  # edit a copy, never the repository's files
    root = tmp_path / "runs"
    assert _statuses(_run(nbs, root, ["data"])) == [("01_data", "ok")]

    fra = configs / "languages" / "fra.yaml"
    fra.write_text(fra.read_text() + "# a comment in another language's file\n")
    shutil.copy(fra, configs / "languages" / "deu.yaml")  # and a language file added
    assert _statuses(_run(nbs, root, ["data"])) == [("01_data", "skipped")]
    m = manifest.read(_stage(root, "01_data"))
    # its own language's files (the sample corpus' facts included: stage 01 generates from them)
    assert sorted(m["inputs"]["configs"]) == ["languages/ita.yaml", "profiles/smoke.yaml", "sample_corpus/eng.yaml",
                                              "sample_corpus/facts.yaml", "sample_corpus/ita.yaml"]

    ita = configs / "languages" / "ita.yaml"
    ita.write_text(ita.read_text() + "# a comment in its own file\n")
    assert _statuses(_run(nbs, root, ["data"])) == [("01_data", "ok")]
    assert manifest.read(_stage(root, "01_data"))["rerun_because"] == "changed inputs: configs/languages/ita.yaml"


def test_finding6_truncated_manifest_is_corrupt_not_missing(pipeline):
    nbs, root = pipeline
    mf = _stage(root, "01_data") / manifest.MANIFEST
    text = mf.read_text()
    mf.write_text(text[: len(text) // 2])

    blocked = _run(nbs, root, ["tokenization"])
    assert _statuses(blocked) == [("02_tokenization", "blocked")]
    error = blocked.results[0].error
    assert f"corrupt manifest {mf}" in error and "has not run" not in error
    assert "zagreus run --profile smoke --languages ita --stages data" in error
    listed = {s["stage"]: s for s in report.collect_stages("smoke", root)}  # the report says so too
    assert listed["01_data"]["manifest"]["status"] == "corrupt" and listed["01_data"]["language"] == "ita"

    # the stage itself reruns over it and writes a whole manifest again
    assert _statuses(_run(nbs, root, ["data"])) == [("01_data", "ok")]
    assert manifest.read(mf.parent)["status"] == "ok"


@contextlib.contextmanager
def _read_only(folder: Path):
    """Make ``folder`` refuse new files: its mode, or (as root, whom modes do not stop) the
    immutable attribute."""
    folder.chmod(0o555)
    immutable = False
    try:
        try:
            (folder / ".probe").touch()
            (folder / ".probe").unlink()
            writable = True
        except OSError:
            writable = False
        if writable:
            immutable = shutil.which("chattr") is not None and subprocess.run(
                ["chattr", "+i", str(folder)], capture_output=True).returncode == 0
            if not immutable:
                pytest.skip("cannot make a folder read-only here (root without chattr)")
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


def test_finding6_readonly_disk_fails_manifest_cleanly(pipeline):
    nbs, root = pipeline
    folder = _stage(root, "03_pretraining")
    before = (folder / manifest.MANIFEST).read_text()
    with _read_only(folder):
        summary = _run(nbs, root, ["pretraining"], force=True)
    assert _statuses(summary) == [("03_pretraining", "failed")]
    error = summary.results[0].error
    assert error.startswith(f"cannot write {folder / 'manifest.tmp'}: ") and "\n" not in error
    assert "free space or make it writable" in error
    assert not (folder / "manifest.tmp").exists()
    assert (folder / manifest.MANIFEST).read_text() == before  # nothing could be written: it is as it was


def test_finding6_full_disk_fails_manifest_cleanly(pipeline):
    nbs, root = pipeline
    folder = _stage(root, "03_pretraining")
    # the executed notebook lands on a full disk: the manifest ends failed, naming it
    nb = folder / "03_pretraining.ipynb"
    nb.unlink()
    nb.symlink_to("/dev/full")
    summary = _run(nbs, root, ["pretraining"], force=True)
    assert _statuses(summary) == [("03_pretraining", "failed")]
    error = summary.results[0].error
    assert error.startswith(f"cannot write {nb}: No space left on device") and "\n" not in error
    m = manifest.read(folder)
    assert m["status"] == "failed" and m["error"] == error and "traceback" not in m
    assert not (folder / "manifest.tmp").exists()
    nb.unlink()

    # the manifest itself lands on a full disk: one line, and no manifest.tmp left behind
    (folder / "manifest.tmp").symlink_to("/dev/full")
    summary = _run(nbs, root, ["pretraining"], force=True)
    assert _statuses(summary) == [("03_pretraining", "failed")]
    assert summary.results[0].error.startswith(f"cannot write {folder / 'manifest.tmp'}: No space left on device")
    assert not (folder / "manifest.tmp").is_symlink()
    assert manifest.read(folder)["status"] == "failed"  # written once the disk had room again


def test_verify_hashes_every_recorded_output(pipeline, monkeypatch, capsys):
    nbs, root = pipeline
    monkeypatch.setenv("ZAGREUS_RUNS", str(root))
    assert cli.main(["verify", "--profile", "smoke", "--languages", "ita"]) == 0
    out = capsys.readouterr().out
    assert out.count("ok ") == 3 and "3 of 3 stage folders" in out

    # same size and the recorded mtime put back: only a full hash sees it
    ds = _stage(root, "02_tokenization") / "tokenized" / "ita.ds"
    st = ds.stat()
    data = bytearray(ds.read_bytes())
    data[0] ^= 0x01
    ds.write_bytes(bytes(data))
    os.utime(ds, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert manifest.check_outputs(ds.parents[1], manifest.read(ds.parents[1])["outputs"]) == {}
    (_stage(root, "03_pretraining") / "model.txt").unlink()
    assert cli.main(["verify", "--profile", "smoke"]) == 1
    out = capsys.readouterr().out
    assert "CHANGED" in out and "02_tokenization/tokenized/ita.ds: content differs" in out
    assert "03_pretraining/model.txt: missing" in out
    assert "rebuild it: zagreus run --profile smoke --languages ita --stages tokenization" in out
    assert "1 of 3 stage folders" in out


def test_outputs_checked_by_stat_then_hash(tmp_path, monkeypatch):
    small, big = tmp_path / "small.bin", tmp_path / "big.bin"
    small.write_bytes(b"abcd")
    big.write_bytes(b"0123456789" * 10)
    monkeypatch.setattr(manifest, "_FULL_HASH_LIMIT", 50)
    outputs = manifest.describe_outputs(tmp_path)
    assert {"bytes", "mtime_ns", "sha256"} <= set(outputs["small.bin"])
    assert "sha256" not in outputs["big.bin"] and "mtime_ns" in outputs["big.bin"]
    assert manifest.check_outputs(tmp_path, outputs) == {}

    os.utime(small, ns=(0, 10**9))  # touched, same content: the hash says unchanged
    os.utime(big, ns=(0, 10**9))  # too big to hash: a changed mtime is a change
    changed = manifest.check_outputs(tmp_path, outputs)
    assert list(changed) == ["big.bin"] and "too big to be hashed" in changed["big.bin"]
    small.write_bytes(b"abce")
    assert "small.bin" in manifest.check_outputs(tmp_path, outputs)
